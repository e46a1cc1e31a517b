"""Published ChunkFormer checkpoints we know: the default one and each one's license.

Torch-free, so ``--help`` and settings can show it without loading the engine.
"""

from __future__ import annotations

from pathlib import PurePath

# The authors' recommended Vietnamese model, and the only commercially usable one (CC-BY-4.0).
DEFAULT_MODEL = "khanhld/chunkformer-rnnt-large-vie"

# hub id -> (decoder, license), from the model cards.
KNOWN_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "khanhld/chunkformer-rnnt-large-vie": ("transducer", "CC-BY-4.0"),
    "khanhld/chunkformer-ctc-large-vie": ("ctc", "CC-BY-NC-4.0, non-commercial"),
    "khanhld/chunkformer-large-vie": ("ctc", "CC-BY-NC-4.0, non-commercial"),
}


def checkpoint_license(model: str) -> str | None:
    """The license of a known checkpoint, by hub id or by a directory named like one."""
    for hub_id, (_, license_) in KNOWN_CHECKPOINTS.items():
        if model == hub_id or PurePath(model).name == hub_id.split("/")[1]:
            return license_
    return None


def describe_known_checkpoints() -> str:
    """One line per known checkpoint, for ``--help``."""
    return "; ".join(f"{hub_id} ({kind}, {license_})" for hub_id, (kind, license_) in KNOWN_CHECKPOINTS.items())
