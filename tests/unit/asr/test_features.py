"""Audio to features: Kaldi fbank framing and values, sample conversion, CMVN files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omoai_asr.engine.features import Cmvn, fbank, load_cmvn, num_frames, samples_to_tensor

from .conftest import audio


@pytest.mark.parametrize(("samples", "frames"), [(0, 0), (399, 0), (400, 1), (559, 1), (560, 2), (16000, 98)])
def test_frame_count_follows_kaldi_snip_edges(samples: int, frames: int) -> None:
    assert num_frames(samples) == frames
    assert fbank(torch.zeros(samples) + 1.0).shape == (frames, 80)


def test_samples_keep_their_int16_values() -> None:
    x = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
    t = samples_to_tensor(x)
    assert t.dtype == torch.float32
    assert t.tolist() == [0.0, 1.0, -1.0, 32767.0, -32768.0]


def test_samples_must_be_mono() -> None:
    with pytest.raises(ValueError, match="mono"):
        samples_to_tensor(np.zeros((2, 100), dtype=np.int16))


def test_fbank_frames_are_independent_of_the_rest_of_the_signal() -> None:
    x = samples_to_tensor(audio("small", "short"))
    full = fbank(x)
    head = fbank(x[: 400 + 160 * 99])
    assert torch.equal(full[:100], head)


def test_fbank_in_blocks_equals_one_block() -> None:
    x = samples_to_tensor(audio("small", "short"))
    assert torch.allclose(fbank(x, block_frames=100), fbank(x, block_frames=10_000), atol=1e-5)


def test_doubling_the_amplitude_adds_log_four() -> None:
    x = samples_to_tensor(audio("small", "short"))
    diff = fbank(2 * x) - fbank(x)
    assert torch.allclose(diff, torch.full_like(diff, math.log(4.0)), atol=1e-3)


def test_silence_is_floored_at_float_epsilon() -> None:
    feats = fbank(torch.zeros(4000))
    assert torch.allclose(feats, torch.full_like(feats, math.log(torch.finfo(torch.float32).eps)))


def test_json_cmvn_uses_the_reference_formula(tmp_path: Path) -> None:
    stats = {"mean_stat": [20.0, 40.0], "var_stat": [100.0, 160.0 + 1e-30], "frame_num": 10}
    (tmp_path / "global_cmvn").write_text(json.dumps(stats))
    cmvn = load_cmvn(tmp_path / "global_cmvn")
    # mean = stat / N; var = var_stat / N - mean^2, floored at 1e-20; istd = 1 / sqrt(var)
    assert cmvn.mean.tolist() == pytest.approx([2.0, 4.0])
    assert cmvn.istd.tolist() == pytest.approx([1 / math.sqrt(6.0), 1 / math.sqrt(1e-20)], rel=1e-6)


def test_kaldi_text_cmvn_is_read(tmp_path: Path) -> None:
    (tmp_path / "global_cmvn").write_text(" [ 20 40 10 \n 100 200 0 ]\n")
    cmvn = load_cmvn(tmp_path / "global_cmvn", is_json=False)
    assert cmvn.mean.tolist() == pytest.approx([2.0, 4.0])
    assert cmvn.istd.tolist() == pytest.approx([1 / math.sqrt(6.0), 1 / math.sqrt(4.0)])


def test_cmvn_subtracts_mean_and_scales() -> None:
    cmvn = Cmvn(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 2.0]))
    assert cmvn.apply(torch.tensor([[3.0, 3.0]])).tolist() == [[1.0, 2.0]]
