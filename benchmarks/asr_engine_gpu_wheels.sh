#!/usr/bin/env bash
# Downloads, here, the wheels that benchmarks/asr_engine_vs_reference.py needs on a GPU machine
# that cannot reach PyPI (the lent H100/H200 image: Python 3.12 with torch, real torchaudio,
# numpy, PyYAML, prometheus-client, tqdm, pandas, colorama already installed).
#   .whl/ours/  what OMOAI's engine path imports beyond that image (pydantic)
#   .whl/ref/   chunkformer==1.2.2 (--no-deps) and what its decode path imports beyond that image,
#               with transformers < 5 as in setup_reference.sh
#   .whl/refstub/torchaudio/  the same torchaudio stub as on CPU (torchaudio's own kaldi.py), so the
#               reference computes its fbank with the same code whatever torchaudio the image has
# .whl/ is gitignored. See docs/benchmarks.md ("ASR engine vs reference", GPU recipe).
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
dl() {
  local dest=$1
  shift
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$PYVER" --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dest" "$@" 2>&1 \
    | grep -v -i -E 'is ignored: it is neither' >&2 || true
}
rm -rf .whl/ours .whl/ref .whl/refstub
mkdir -p .whl/ours .whl/ref
benchmarks/setup_reference.sh --stub-into .whl/refstub
dl .whl/ours "pydantic==2.14.4" "pydantic-core==2.50.5" "annotated-types==0.8.0" "typing-inspection==0.4.5" \
  "typing-extensions==4.16.0"
dl .whl/ref "chunkformer==1.2.2" "transformers==4.57.6" "tokenizers==0.22.2" "huggingface-hub==0.36.2" \
  "jiwer==4.0.0" "rapidfuzz==3.14.6" "pydub==0.25.1" "safetensors==0.8.0" "regex==2026.11.19"
du -sh .whl/ours .whl/ref .whl/refstub >&2
ls .whl/ours .whl/ref .whl/refstub
