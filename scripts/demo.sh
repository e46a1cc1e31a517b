#!/usr/bin/env bash
# The main job on the embedded default: transcribe and post-process the bundled Vietnamese sample
# with `omoai run` (the same pipeline the operator runs in a cluster), services in-process.
#
# Models: when the Hugging Face hub is reachable (decided within 5 s), the real ones: OMOAI's
# default ASR checkpoint khanhld/chunkformer-rnnt-large-vie (CC-BY-4.0) and Qwen/Qwen2.5-1.5B-Instruct
# (Apache-2.0; small enough for a CPU, multilingual with Vietnamese) for punctuation, summary and
# topics. When it is not (or HF_HUB_OFFLINE=1), a tiny random transducer ChunkFormer and a tiny
# random chat LM generated locally in .cache/models/: their text is MEANINGLESS; the pipeline,
# timestamps and formats are real. Choose models with:
#   OMOAI_DEMO_MODEL=khanhld/chunkformer-rnnt-large-vie OMOAI_DEMO_LLM_MODEL=Qwen/Qwen2.5-1.5B-Instruct make demo
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VENV:-.venv}/bin/python
OUT=${OMOAI_DEMO_OUT:-out/demo}
DEFAULT_ASR=khanhld/chunkformer-rnnt-large-vie
DEFAULT_LLM=Qwen/Qwen2.5-1.5B-Instruct
HUB=${HF_ENDPOINT:-https://huggingface.co}
HUB=${HUB%/}

# Is the hub reachable? One request for the default checkpoint's metadata, 4 s at most, so the
# decision takes under 5 s whatever the network does (no answer, no DNS, a firewall).
hub_reachable() {
  [ "${HF_HUB_OFFLINE:-0}" = "1" ] && return 1
  "$PY" - "$HUB/api/models/$DEFAULT_ASR" <<'PYEOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception:
    sys.exit(1)
PYEOF
}

REAL=0
if [ -z "${OMOAI_DEMO_MODEL:-}" ] || [ -z "${OMOAI_DEMO_LLM_MODEL:-}" ]; then
  started=$(date +%s.%N)
  if hub_reachable; then REAL=1; fi
  decided=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  if [ "$REAL" = 1 ]; then
    echo "[demo] the model hub ($HUB) is reachable (decided in ${decided} s): using real weights" >&2
  else
    cat >&2 <<WARN
[demo] ==========================================================================================
[demo] WARNING: the model hub ($HUB) is NOT reachable (decided in ${decided} s).
[demo] Falling back to tiny RANDOM models generated on this machine: the text will be MEANINGLESS.
[demo] The real default ASR model is $DEFAULT_ASR (transducer, CC-BY-4.0);
[demo] with network access this demo uses it and $DEFAULT_LLM.
[demo] ==========================================================================================
WARN
  fi
fi
if [ "$REAL" = 1 ]; then
  ASR_MODEL=${OMOAI_DEMO_MODEL:-$DEFAULT_ASR}
  LLM_MODEL=${OMOAI_DEMO_LLM_MODEL:-$DEFAULT_LLM}
else
  ASR_MODEL=${OMOAI_DEMO_MODEL:-.cache/models/omoai-demo-chunkformer-rnnt}
  LLM_MODEL=${OMOAI_DEMO_LLM_MODEL:-.cache/models/omoai-demo-llm}
fi

if [ -z "${OMOAI_DEMO_MODEL:-}" ] && [ "$REAL" = 0 ] && [ ! -f "$ASR_MODEL/config.yaml" ]; then
  echo "[demo] generating a tiny RANDOM transducer ChunkFormer in $ASR_MODEL (its text is gibberish)" >&2
  "$PY" -c 'import sys; from pathlib import Path; from omoai_asr.engine.testing import TINY_RNNT, write_random_checkpoint
write_random_checkpoint(Path(sys.argv[1]), TINY_RNNT)' "$ASR_MODEL"
fi
if [ -z "${OMOAI_DEMO_LLM_MODEL:-}" ] && [ "$REAL" = 0 ] && [ ! -f "$LLM_MODEL/config.json" ]; then
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
if [ "$REAL" = 0 ] && { [ -z "${OMOAI_DEMO_MODEL:-}" ] || [ -z "${OMOAI_DEMO_LLM_MODEL:-}" ]; }; then
  cat >&2 <<NOTE

[demo] NOTE: the text above comes from tiny RANDOM models generated on this machine (the model hub
[demo] was not reachable), so it is meaningless. Timestamps, segments, formats and the pipeline are
[demo] real. With network access the demo uses $DEFAULT_ASR (OMOAI's default) and
[demo] $DEFAULT_LLM; or set OMOAI_DEMO_MODEL (a hub id or a local copy in the official layout)
[demo] and OMOAI_DEMO_LLM_MODEL (a chat model's hub id or directory).
NOTE
fi
