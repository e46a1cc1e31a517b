#!/usr/bin/env bash
# The system test: the whole platform on this machine (Kubernetes API emulator, ASR replicas, LLM
# service, operator, S3, Prometheus) under load and faults; prints a summary table. Extra arguments
# go to the harness (--jobs N, --asr-replicas N, --work DIR, --keep); see tests/system/harness.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VENV:-.venv}/bin/python"
for tool in kubectl prometheus; do
  command -v "$tool" >/dev/null || { echo "system: $tool is not installed (see scripts/setup.sh)" >&2; exit 2; }
done
PYTHONPATH=. exec "$PY" -m tests.system.harness "$@"
