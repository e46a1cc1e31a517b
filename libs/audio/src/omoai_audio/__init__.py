"""Audio I/O: decode anything ffmpeg reads into 16 kHz mono int16 samples, with clear errors."""

from omoai_audio.decode import SAMPLE_RATE, Audio, decode_audio

__all__ = ["SAMPLE_RATE", "Audio", "decode_audio"]
