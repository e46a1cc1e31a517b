"""Audio I/O: decode anything ffmpeg reads into 16 kHz mono int16 samples, with clear errors."""

from omoai_audio.decode import INT16_SCALE, SAMPLE_RATE, Audio, DecodeControl, decode_audio, decode_audio_async

__all__ = ["INT16_SCALE", "SAMPLE_RATE", "Audio", "DecodeControl", "decode_audio", "decode_audio_async"]
