#!/usr/bin/env bash
# Builds the reference ChunkFormer (PyPI chunkformer==1.2.2) in its own virtualenv, idempotently,
# for benchmarks/asr_engine_vs_reference.py.
#
# The reference declares heavy dependencies (torchaudio, deepspeed, librosa, tensorboard, ...) that
# its decode path never uses, and torchaudio has no build for torch 2.13. So:
#   - chunkformer is installed with --no-deps, next to the same torch as ours (2.13.0, CPU build
#     from the local wheel cache) and only the packages its import chain really needs;
#   - `torchaudio` is a stub package holding torchaudio's pure-Python `compliance/kaldi.py`,
#     extracted at run time from the official torchaudio wheel on PyPI; every other torchaudio
#     attribute raises, so a code path that would need real torchaudio fails loudly instead of
#     being faked.
# Nothing of the reference or of torchaudio is committed to this repository: this script downloads
# them. Everything lands under .cache/ (gitignored).
#
# Usage: benchmarks/setup_reference.sh                 -> prints the reference python's path
#        benchmarks/setup_reference.sh --stub-into DIR -> only writes the torchaudio stub into DIR
# Env:   REF_VENV (default .cache/refvenv), PYTHON (default python3), TORCH_SPEC (torch==2.13.0),
#        CHUNKFORMER_SPEC (chunkformer==1.2.2), TORCHAUDIO_VERSION (2.9.0, the kaldi.py source)
set -euo pipefail
cd "$(dirname "$0")/.."

REF_VENV=${REF_VENV:-.cache/refvenv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
CHUNKFORMER_SPEC=${CHUNKFORMER_SPEC:-chunkformer==1.2.2}
TORCHAUDIO_VERSION=${TORCHAUDIO_VERSION:-2.9.0}
# What chunkformer_model.py imports at module level (transformers < 5: 1.2.2 predates 5.x).
REF_DEPS=(numpy pyyaml tqdm jiwer pandas colorama huggingface_hub pydub "transformers>=4.20,<5")

log() { printf '[setup-reference] %s\n' "$*" >&2; }
quiet() { grep -v -i -E 'is ignored: it is neither|^warning|^  warning' >&2 || true; }

# write_stub SITE_DIR: the torchaudio stub package around torchaudio's real compliance/kaldi.py,
# extracted from the official wheel (downloaded from PyPI now).
write_stub() {
  local site=$1 tmp wheel
  tmp=$(mktemp -d)
  log "fetching torchaudio/compliance/kaldi.py from torchaudio==$TORCHAUDIO_VERSION"
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 "torchaudio==$TORCHAUDIO_VERSION" -d "$tmp" 2>&1 | quiet
  wheel=$(ls "$tmp"/torchaudio-*.whl)
  rm -rf "$site/torchaudio"
  mkdir -p "$site/torchaudio/compliance" "$site/torchaudio/functional"
  python3 - "$wheel" "$site/torchaudio/compliance/kaldi.py" <<'PYEOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    data = z.read("torchaudio/compliance/kaldi.py")
open(sys.argv[2], "wb").write(data)
PYEOF
  rm -rf "$tmp"
  cat >"$site/torchaudio/__init__.py" <<PYEOF
"""Stub torchaudio for the OMOAI reference benchmark: only compliance.kaldi is real.

compliance/kaldi.py is torchaudio $TORCHAUDIO_VERSION's own pure-Python file. Any other attribute
raises, so nothing that needs the real torchaudio can silently run on a fake.
"""
from torchaudio import compliance, functional  # noqa: F401

__version__ = "$TORCHAUDIO_VERSION+omoai.stub"


def __getattr__(name):
    raise AttributeError(f"torchaudio.{name} is not available in the OMOAI reference stub")
PYEOF
  cat >"$site/torchaudio/compliance/__init__.py" <<'PYEOF'
from torchaudio.compliance import kaldi  # noqa: F401
PYEOF
  cat >"$site/torchaudio/functional/__init__.py" <<'PYEOF'
"""Stub: the reference imports this module but its CTC decode path uses none of it."""


def __getattr__(name):
    raise AttributeError(f"torchaudio.functional.{name} is not available in the OMOAI reference stub")
PYEOF
}

if [ "${1:-}" = "--stub-into" ]; then  # only the stub, e.g. for an offline GPU machine
  [ -n "${2:-}" ] || { log "usage: $0 --stub-into DIR"; exit 2; }
  mkdir -p "$2"
  write_stub "$2"
  log "torchaudio stub written to $2"
  exit 0
fi

want=$(printf '%s\n' "$TORCH_SPEC" "$CHUNKFORMER_SPEC" "$TORCHAUDIO_VERSION" "${REF_DEPS[@]}" \
  | cat - "$0" | sha256sum | cut -d' ' -f1)
stamp="$REF_VENV/.omoai-reference"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
  && "$REF_VENV/bin/python" -c 'import chunkformer, torchaudio.compliance.kaldi' >/dev/null 2>&1; then
  log "reference environment up to date"
  echo "$PWD/$REF_VENV/bin/python"
  exit 0
fi

if [ ! -x "$REF_VENV/bin/python" ]; then
  log "creating virtualenv $REF_VENV"
  mkdir -p "$(dirname "$REF_VENV")"
  "$PYTHON" -m venv "$REF_VENV"
fi
PY="$REF_VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)

if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
  log "installing $TORCH_SPEC (CPU build)"
  "${PIP[@]}" install "$TORCH_SPEC" 2>&1 | quiet
fi
log "installing $CHUNKFORMER_SPEC (--no-deps) and its decode-path imports"
"${PIP[@]}" install --no-deps "$CHUNKFORMER_SPEC" 2>&1 | quiet
"${PIP[@]}" install "${REF_DEPS[@]}" 2>&1 | quiet

write_stub "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

"$PY" -c 'import chunkformer, torchaudio.compliance.kaldi as k; assert callable(k.fbank)' >&2 \
  || { log "the reference does not import"; exit 1; }
echo "$want" >"$stamp"
log "done: $PY"
echo "$PWD/$PY"
