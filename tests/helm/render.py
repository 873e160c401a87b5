"""Renders and lints a Helm chart with Helm itself (Helm 4's Go SDK, through the
helm-python-sdk wheel: no `helm` binary is packaged for Debian here).

usage: python render.py CHART NAMESPACE VALUES_JSON
prints JSON: {"templates": {path: yaml}, "crds": [yaml], "lint": {...}}
"""
import json
import sys

import helm_python as helm

chart_dir, namespace, values = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with helm.Chart.load(chart_dir) as chart:
    templates = chart.render(values, name="drover", namespace=namespace, is_install=True)
    crds = [c["data"] for c in chart.crds]
lint = helm.lint(chart_dir, values, strict=True, namespace=namespace)
json.dump({"templates": templates, "crds": crds, "lint": lint}, sys.stdout)
