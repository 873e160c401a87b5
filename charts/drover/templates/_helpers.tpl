{{/* Labels on everything the chart makes (the selector uses the first two). */}}
{{- define "drover.selector" -}}
app.kubernetes.io/name: drover
app.kubernetes.io/component: operator
{{- end }}

{{- define "drover.labels" -}}
{{ include "drover.selector" . }}
app.kubernetes.io/part-of: drover
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
