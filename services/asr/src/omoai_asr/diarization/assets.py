"""Where the default backend's pretrained files come from, offline.

Two wheels on PyPI carry them as package data, and we use nothing else from those packages (their
own code pulls librosa, webrtcvad, ctranslate2 and av, which the service does not need):

- ``resemblyzer`` ships ``resemblyzer/pretrained.pt``: a GE2E speaker encoder (3-layer LSTM over
  40 mel channels, 256-dim embeddings), Apache-2.0;
- ``faster-whisper`` ships ``faster_whisper/assets/silero_vad_v6.onnx``: Silero VAD v6, MIT.

``scripts/setup.sh`` (and the ASR image) installs both wheels with ``--no-deps``. The files are
found through the distributions' metadata, without importing the packages, and checked against
the sha256 the wheel's RECORD lists for them. Explicit paths (``OMOAI_DIARIZATION_ENCODER_PATH``,
``OMOAI_DIARIZATION_VAD_PATH``) take precedence, for images that copy the files elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from omoai_core.errors import ConfigError


@dataclass(frozen=True)
class PackagedAsset:
    """One file inside an installed distribution."""

    distribution: str
    path: str
    what: str


SPEAKER_ENCODER = PackagedAsset("resemblyzer", "resemblyzer/pretrained.pt", "GE2E speaker encoder")
SILERO_VAD = PackagedAsset("faster-whisper", "faster_whisper/assets/silero_vad_v6.onnx", "Silero VAD v6")

_INSTALL_HINT = (
    "install it with: pip install --no-deps resemblyzer==0.1.4 faster-whisper==1.2.1 (scripts/setup.sh does)"
)


def locate(asset: PackagedAsset, override: Path | None = None, *, verify: bool = True) -> Path:
    """The file's path on this machine; ``ConfigError`` that says how to get it when it is missing."""
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ConfigError(f"the {asset.what} file {path} does not exist")
        return path
    try:
        dist = importlib.metadata.distribution(asset.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"the {asset.what} comes with the {asset.distribution!r} wheel, which is not installed; {_INSTALL_HINT}"
        ) from None
    record = next((f for f in dist.files or () if str(f) == asset.path), None)
    path = Path(str(dist.locate_file(asset.path)))
    if record is None or not path.is_file():
        raise ConfigError(f"{asset.distribution} {dist.version} does not carry {asset.path}; {_INSTALL_HINT}")
    hashed = verify and record.hash is not None and record.hash.mode == "sha256"
    if hashed and _sha256_b64(path) != record.hash.value:  # type: ignore[union-attr]
        raise ConfigError(f"{path} does not match the sha256 its wheel recorded (a damaged install?)")
    return path


def _sha256_b64(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
