"""The GPU memory policy: inference mode, explicit autocast arguments, counted clears."""

from __future__ import annotations

import pytest
import torch
from omoai_core.errors import ConfigError
from omoai_gpu.memory import MemoryPolicy, resolve_device, resolve_dtype
from prometheus_client import CollectorRegistry


def _policy(debug: bool = False, dtype: str = "fp32") -> MemoryPolicy:
    return MemoryPolicy.from_settings("cpu", dtype, debug_empty_cache=debug, registry=CollectorRegistry())


def test_tensors_made_under_the_policy_are_inference_tensors():
    with _policy().inference():
        out = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.is_inference()
    assert not out.requires_grad


def test_autocast_gets_explicit_device_type_dtype_and_enabled(monkeypatch):
    seen = {}
    real = torch.autocast

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    with _policy(dtype="bf16").inference():
        pass
    assert seen == {"device_type": "cpu", "dtype": torch.bfloat16, "enabled": True}
    with _policy(dtype="fp32").inference():
        pass
    assert seen == {"device_type": "cpu", "dtype": torch.float32, "enabled": False}


def test_bf16_autocast_really_runs_matmuls_in_bf16_on_cpu():
    with _policy(dtype="bf16").inference():
        out = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16


def test_window_done_clears_only_with_the_debug_switch():
    quiet, debug = _policy(debug=False), _policy(debug=True)
    for _ in range(5):
        quiet.window_done()
        debug.window_done()
    assert quiet.clears("debug_per_window") == 0
    assert debug.clears("debug_per_window") == 5


def test_every_clear_is_counted_in_the_injected_registry():
    registry = CollectorRegistry()
    policy = MemoryPolicy.from_settings("cpu", "auto", debug_empty_cache=False, registry=registry)
    policy.clear_cache("model_switch")
    policy.clear_cache("model_switch")
    assert registry.get_sample_value("omoai_gpu_cache_clears_total", {"reason": "model_switch"}) == 2


def test_unknown_clear_reason_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown cache clear reason"):
        _policy().clear_cache("because")


def test_auto_dtype_is_fp32_on_cpu_and_fp16_on_cpu_is_refused():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 is not supported on CPU"):
        resolve_dtype("fp16", cpu)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error path")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
