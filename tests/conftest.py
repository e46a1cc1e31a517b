"""Suite-wide test environment, set before any test module imports torch.

The ChunkFormer reference fixtures were generated with torch's AVX2 CPU kernels; float32 Kaldi
fbank's low mel bins sit near the FFT's rounding floor, so AVX512 kernels move a few of them by
about 1e-3 (see tests/unit/asr/conftest.py). Pinning the kernel set here, in the root conftest
that pytest loads first, makes the whole suite compare features bit for bit.
"""

from __future__ import annotations

import os

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
