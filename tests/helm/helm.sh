#!/usr/bin/env bash
# Prints the path of a Python that can render Helm charts: a venv with helm-python-sdk
# (Helm 4's own Go SDK as a shared library: Debian packages no `helm` binary), made
# once and cached outside the clone.
set -euo pipefail
V=${DROVER_HELM_VENV:-$HOME/.cache/drover/helm-venv}
if [ ! -x "$V/bin/python" ] || ! "$V/bin/python" -c 'import helm_python' 2>/dev/null; then
  python3 -m venv "$V" >&2
  "$V/bin/pip" install -q --disable-pip-version-check 'helm-python-sdk==0.2.2' >&2
fi
echo "$V/bin/python"
