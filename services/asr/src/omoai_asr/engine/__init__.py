"""Our own ChunkFormer inference engine (no HTTP): checkpoints, features, network, decoding.

``ChunkFormerEngine.load(model, policy)`` then ``engine.transcribe(samples, DecodeOptions())``.
The layout follows openai/whisper: ``model`` (network), ``features`` (audio to fbank),
``decoding`` (CTC text, segments, words), ``transcribe`` (long-form windows and masked
batches), ``checkpoint`` (loading), ``chunkformer`` (the engine facade), ``testing`` (random
checkpoints in the official layout).
"""

from omoai_asr.engine.chunkformer import ChunkFormerEngine
from omoai_asr.engine.model import ModelDimensions
from omoai_asr.engine.options import DecodeOptions, InvalidDecodeOptionsError

__all__ = ["ChunkFormerEngine", "DecodeOptions", "InvalidDecodeOptionsError", "ModelDimensions"]
