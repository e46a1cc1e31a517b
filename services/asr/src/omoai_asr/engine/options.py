"""Decoding options: chunk and context sizes, the long-form window budget, output switches. They
live with the rest of the decoding geometry in :mod:`omoai_asr.geometry` (torch-free, so that the
HTTP layer can use them without loading the network); the engine's modules import them from here.
"""

from __future__ import annotations

from omoai_asr.geometry import FRAME_SECONDS, DecodeOptions, InvalidDecodeOptionsError

__all__ = ["FRAME_SECONDS", "DecodeOptions", "InvalidDecodeOptionsError"]
