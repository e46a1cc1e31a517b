"""Output writers for transcripts and post-processed documents: json, txt, srt, vtt and md."""

from omoai_core.contracts import FORMATS

from omoai_formats.writers import EXTENSIONS, render, write

__all__ = ["EXTENSIONS", "FORMATS", "render", "write"]
