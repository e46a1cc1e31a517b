"""The GPU memory policy of every OMOAI inference service.

The one library allowed to import torch: the policy must be one piece of code for the ASR and LLM
services, and only those GPU deployables install this package (the operator never does).
"""

from omoai_gpu.memory import MemoryPolicy, resolve_device, resolve_dtype

__all__ = ["MemoryPolicy", "resolve_device", "resolve_dtype"]
