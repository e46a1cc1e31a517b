"""The memory policy's CUDA decisions, on a machine without a GPU: torch's CUDA queries and
allocator calls are replaced by a stand-in GPU (a recorder), everything of the policy is real."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from omoai_core.errors import ConfigError
from omoai_gpu.memory import MemoryPolicy, resolve_device, resolve_dtype
from prometheus_client import CollectorRegistry

CUDA = torch.device("cuda", 0)


@dataclass
class StandInGpu:
    """What the policy asks torch.cuda, answered as one GPU would; every call recorded."""

    count: int = 1
    bf16: bool = True
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def answer(name: str, value: Any) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                self.calls.append((name, args[0] if args else None))
                return value

            return call

        monkeypatch.setattr(torch.cuda, "is_available", answer("is_available", True))
        monkeypatch.setattr(torch.cuda, "device_count", answer("device_count", self.count))
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", answer("is_bf16_supported", self.bf16))
        monkeypatch.setattr(torch.cuda, "empty_cache", answer("empty_cache", None))
        monkeypatch.setattr(torch.cuda, "memory_allocated", answer("memory_allocated", 3 << 20))
        monkeypatch.setattr(torch.cuda, "memory_reserved", answer("memory_reserved", 8 << 20))
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", answer("max_memory_allocated", 5 << 20))

    def count_of(self, name: str) -> int:
        return sum(1 for called, _ in self.calls if called == name)


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> StandInGpu:
    stand_in = StandInGpu()
    stand_in.install(monkeypatch)
    return stand_in


def _cuda_policy(dtype: str = "auto", *, debug: bool = False) -> MemoryPolicy:
    return MemoryPolicy.from_settings("cuda", dtype, debug_empty_cache=debug, registry=CollectorRegistry())


def test_auto_device_picks_the_gpu_and_a_missing_index_is_refused(gpu: StandInGpu) -> None:
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == CUDA
    with pytest.raises(ConfigError, match=r"does not exist \(1 CUDA devices\)"):
        resolve_device("cuda:1")


@pytest.mark.parametrize(("bf16", "want"), [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_dtype_on_cuda_is_bf16_or_fp16_where_bf16_is_missing(
    monkeypatch: pytest.MonkeyPatch, bf16: bool, want: torch.dtype
) -> None:
    StandInGpu(bf16=bf16).install(monkeypatch)
    assert resolve_dtype("auto", CUDA) == want
    assert resolve_dtype("fp16", CUDA) == torch.float16  # allowed on a GPU, refused on CPU
    assert resolve_dtype("fp32", CUDA) == torch.float32


def test_cuda_policy_autocasts_on_cuda_with_its_reduced_dtype(gpu: StandInGpu, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def spy(**kwargs: Any) -> Iterator[None]:
        seen.append(kwargs)
        yield

    monkeypatch.setattr(torch, "autocast", spy)
    policy = _cuda_policy()
    assert policy.device.type == "cuda" and policy.dtype == torch.bfloat16 and policy.autocast_enabled
    with policy.inference():
        assert torch.is_inference_mode_enabled()
    with _cuda_policy("fp32").inference():
        pass
    assert seen == [
        {"device_type": "cuda", "dtype": torch.bfloat16, "enabled": True},
        {"device_type": "cuda", "dtype": torch.float32, "enabled": False},
    ]


def test_windows_empty_the_cuda_cache_only_with_the_debug_switch_each_counted(gpu: StandInGpu) -> None:
    quiet, debug = _cuda_policy(), _cuda_policy(debug=True)
    for _ in range(7):
        quiet.window_done()
    assert gpu.count_of("empty_cache") == 0 and quiet.clears("debug_per_window") == 0
    for _ in range(7):
        debug.window_done()
    assert gpu.count_of("empty_cache") == 7 and debug.clears("debug_per_window") == 7


def test_a_model_switch_empties_the_cuda_cache_once_and_counts_it(gpu: StandInGpu) -> None:
    policy = _cuda_policy()
    policy.clear_cache("model_switch")
    assert gpu.count_of("empty_cache") == 1
    assert policy.clears("model_switch") == 1 and policy.clears("debug_per_window") == 0


def test_memory_stats_read_the_policys_own_cuda_device(gpu: StandInGpu) -> None:
    policy = MemoryPolicy(CUDA, torch.bfloat16, registry=CollectorRegistry())
    assert policy.memory_stats() == {"allocated": 3 << 20, "reserved": 8 << 20, "peak": 5 << 20}
    assert {arg for name, arg in gpu.calls if name.startswith(("memory_", "max_memory_"))} == {CUDA}


def test_a_cpu_policy_never_touches_the_cuda_allocator(gpu: StandInGpu) -> None:
    policy = MemoryPolicy(torch.device("cpu"), torch.float32, debug_empty_cache=True, registry=CollectorRegistry())
    policy.window_done()
    policy.clear_cache("model_switch")
    assert policy.memory_stats() == {}
    assert gpu.count_of("empty_cache") == 0 and policy.clears("debug_per_window") == 1
