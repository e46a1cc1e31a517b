#!/usr/bin/env bash
# The main job on the embedded default: transcribe and post-process the bundled Vietnamese sample
# with `omoai run` (the same pipeline the operator runs in a cluster), services in-process.
#
# Models: by default a tiny random ChunkFormer and a tiny random chat LM, generated locally in
# .cache/models/ because no weights can be downloaded here. Their text is MEANINGLESS; the
# pipeline, timestamps and formats are real. Use real models with:
#   OMOAI_DEMO_MODEL=khanhld/chunkformer-large-vie OMOAI_DEMO_LLM_MODEL=Qwen/Qwen2.5-1.5B-Instruct make demo
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VENV:-.venv}/bin/python
OUT=${OMOAI_DEMO_OUT:-out/demo}
ASR_MODEL=${OMOAI_DEMO_MODEL:-.cache/models/omoai-demo-chunkformer}
LLM_MODEL=${OMOAI_DEMO_LLM_MODEL:-.cache/models/omoai-demo-llm}

if [ -z "${OMOAI_DEMO_MODEL:-}" ] && [ ! -f "$ASR_MODEL/config.yaml" ]; then
  echo "[demo] generating a tiny RANDOM ChunkFormer in $ASR_MODEL (its text is gibberish)" >&2
  "$PY" -c 'import sys; from pathlib import Path; from omoai_asr.engine.testing import TINY, write_random_checkpoint
write_random_checkpoint(Path(sys.argv[1]), TINY)' "$ASR_MODEL"
fi
if [ -z "${OMOAI_DEMO_LLM_MODEL:-}" ] && [ ! -f "$LLM_MODEL/config.json" ]; then
  echo "[demo] generating a tiny RANDOM chat LM in $LLM_MODEL (its words are gibberish)" >&2
  "$PY" -c 'import sys; from pathlib import Path; from omoai_llm.testing import write_tiny_model
write_tiny_model(Path(sys.argv[1]))' "$LLM_MODEL"
fi

# The embedded default job: the bundled sample on the "omoai-data" claim, which `omoai run`
# maps to this directory; every output format, punctuation, summary and topics.
job=$(mktemp --suffix=.yaml)
trap 'rm -f "$job"' EXIT
cat >"$job" <<YAML
apiVersion: omoai.io/v1alpha1
kind: TranscriptionJob
metadata:
  name: xin-chao
spec:
  source:
    pvc:
      claimName: omoai-data
      path: samples/xin-chao.wav
  language: vi
  output:
    pvc:
      claimName: omoai-data
      path: out
    formats: [json, txt, srt, vtt, md]
YAML

rm -rf "$OUT"
OMOAI_THREADS=${OMOAI_THREADS:-2} "${VENV:-.venv}/bin/omoai" run "$job" \
  --asr-model "$ASR_MODEL" --llm-backend transformers --llm-model "$LLM_MODEL" --output-dir "$OUT"

echo >&2
echo "[demo] outputs in $OUT:" >&2
ls -l "$OUT" >&2
echo >&2
cat "$OUT"/*.md
if [ -z "${OMOAI_DEMO_MODEL:-}" ] || [ -z "${OMOAI_DEMO_LLM_MODEL:-}" ]; then
  cat >&2 <<'NOTE'

[demo] NOTE: the text above comes from tiny RANDOM models generated on this machine, so it is
[demo] meaningless. Timestamps, segments, formats and the pipeline are real. For a real
[demo] transcript set OMOAI_DEMO_MODEL (e.g. khanhld/chunkformer-large-vie, or a local copy in the
[demo] official layout) and OMOAI_DEMO_LLM_MODEL (a chat model's hub id or directory).
NOTE
fi
