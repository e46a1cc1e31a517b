"""OMOAI ASR service: the ChunkFormer engine (``omoai_asr.engine``), its HTTP app and CLI."""
