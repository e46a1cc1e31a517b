"""Every inference path runs under the memory policy: inference mode, the policy's autocast,
and a counted cache clear per long-form window only with the debug switch on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from omoai_asr.engine import ChunkFormerEngine, DecodeOptions
from omoai_asr.engine.testing import TINY, synthetic_speech, write_random_checkpoint
from omoai_gpu.memory import MemoryPolicy
from prometheus_client import CollectorRegistry

CLIP = synthetic_speech(12.0, seed=2)
WINDOWED = DecodeOptions(16, 32, 16, 2.0)  # 16-frame windows: 12 s of audio -> many windows


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("policy"), TINY)


def _engine(model_dir: Path, dtype: torch.dtype = torch.float32, *, debug: bool = False) -> ChunkFormerEngine:
    policy = MemoryPolicy(torch.device("cpu"), dtype, debug_empty_cache=debug, registry=CollectorRegistry())
    return ChunkFormerEngine.load(model_dir, policy)


@pytest.fixture
def forward_states(model_dir: Path) -> Iterator[tuple[ChunkFormerEngine, list[dict[str, Any]]]]:
    engine = _engine(model_dir, torch.bfloat16)
    seen: list[dict[str, Any]] = []

    def record(module: torch.nn.Module, args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        seen.append(
            {
                "inference": torch.is_inference_mode_enabled(),
                "autocast": torch.is_autocast_enabled("cpu"),
                "dtype": torch.get_autocast_dtype("cpu"),
                "out_is_inference": out.is_inference(),
            }
        )

    hooks = [engine.model.encoder.register_forward_hook(record), engine.model.ctc.register_forward_hook(record)]
    yield engine, seen
    for h in hooks:
        h.remove()


def test_long_form_runs_in_inference_mode_with_the_policy_autocast(forward_states: Any) -> None:
    engine, seen = forward_states
    transcript = engine.transcribe(CLIP, WINDOWED)
    assert transcript.duration == pytest.approx(12.0)
    assert len(seen) > 4
    assert all(s["inference"] and s["out_is_inference"] for s in seen)
    assert all(s["autocast"] and s["dtype"] == torch.bfloat16 for s in seen)


def test_batch_runs_in_inference_mode_with_the_policy_autocast(forward_states: Any) -> None:
    engine, seen = forward_states
    engine.transcribe_batch([CLIP[:16000], CLIP[16000:40000]], DecodeOptions(16, 32, 16))
    assert seen and all(s["inference"] and s["autocast"] and s["dtype"] == torch.bfloat16 for s in seen)


def test_fp32_policy_keeps_autocast_off(model_dir: Path) -> None:
    engine = _engine(model_dir)
    seen: list[bool] = []
    engine.model.encoder.register_forward_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    engine.transcribe(CLIP, WINDOWED)
    assert seen and not any(seen)


def test_bf16_autocast_stays_close_to_fp32(model_dir: Path) -> None:
    fp32 = _engine(model_dir).decode_frames(CLIP, WINDOWED, keep_logprobs=True)
    bf16 = _engine(model_dir, torch.bfloat16).decode_frames(CLIP, WINDOWED, keep_logprobs=True)
    assert fp32.logprobs is not None and bf16.logprobs is not None
    assert fp32.logprobs.shape == bf16.logprobs.shape
    assert (fp32.frame_tokens == bf16.frame_tokens).mean() > 0.8


def test_cache_clears_counted_once_per_window_with_debug_switch(model_dir: Path) -> None:
    engine = _engine(model_dir, debug=True)
    result = engine.decode_frames(CLIP, WINDOWED)
    assert len(result.windows) > 4
    assert engine.policy.clears("debug_per_window") == len(result.windows)
    engine.transcribe_batch([CLIP[:16000], CLIP[16000:32000]], DecodeOptions(16, 32, 16))
    assert engine.policy.clears("debug_per_window") == len(result.windows) + 1  # one masked batch


def test_no_cache_clears_without_debug_switch(model_dir: Path) -> None:
    engine = _engine(model_dir)
    engine.transcribe(CLIP, WINDOWED)
    engine.transcribe_batch([CLIP[:16000]], WINDOWED)
    registry = engine.policy.registry
    total = sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "omoai_gpu_cache_clears"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
    assert total == 0
