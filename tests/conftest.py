"""Suite-wide test environment, set before any test module imports torch.

The ChunkFormer reference fixtures were generated with torch's AVX2 CPU kernels; float32 Kaldi
fbank's low mel bins sit near the FFT's rounding floor, so AVX512 kernels move a few of them by
about 1e-3 (see tests/unit/asr/conftest.py). Pinning the kernel set here, in the root conftest
that pytest loads first, makes the whole suite compare features bit for bit.

torch's FFT runs in MKL, which picks its own code path per processor whatever ATen's kernel set:
on AVX-512 Xeons its default path moves the low mel bins of near-silent frames by up to 3e-2 from
the fixtures. ``MKL_CBWR=COMPATIBLE`` (MKL's conditional numerical reproducibility) selects the
processor-independent path, which reproduces the fixtures to 2e-6 on every machine measured.
"""

from __future__ import annotations

import os

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
