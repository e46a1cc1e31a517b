"""Model switching: the CUDA cache is cleared exactly once per switch (counted), never otherwise."""

from __future__ import annotations

import asyncio

import pytest
from omoai_core.errors import ModelLoadError
from omoai_gpu.memory import MemoryPolicy
from omoai_llm.models import ModelManager
from prometheus_client import CollectorRegistry

from .fakes import FakeBackend


def _policy(debug: bool = False) -> MemoryPolicy:
    return MemoryPolicy.from_settings("cpu", "fp32", debug_empty_cache=debug, registry=CollectorRegistry())


class Loader:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.loaded: list[str] = []
        self.backends: list[FakeBackend] = []
        self.fail = fail or set()

    async def __call__(self, model: str) -> FakeBackend:
        await asyncio.sleep(0.01)
        if model in self.fail:
            raise ModelLoadError(f"cannot load {model}")
        self.loaded.append(model)
        b = FakeBackend(name=model, delay_s=0.005)
        self.backends.append(b)
        return b


async def _work(manager: ModelManager, model: str) -> str:
    async with manager.use(model) as backend:
        assert backend.model_name == model
        assert not backend.closed
        await asyncio.sleep(0.005)
        return backend.model_name


async def test_each_switch_clears_the_cache_exactly_once():
    policy, loader, switched = _policy(), Loader(), []
    m = ModelManager(
        loader, policy, punctuation_model="P", summary_model="S", single_resident=True, on_switch=switched.append
    )
    await m.start()
    assert m.resident == ["P"] and policy.clears("model_switch") == 0
    await _work(m, "P")
    await _work(m, "S")  # switch 1
    await _work(m, "S")
    await _work(m, "P")  # switch 2
    assert policy.clears("model_switch") == 2 == m.switches
    assert switched == ["S", "P"]
    assert [b.closed for b in loader.backends] == [True, True, False]  # unloaded before the next loads
    await m.close()
    assert policy.clears("model_switch") == 2  # shutdown is not a switch
    assert sum(policy.clears(r) for r in ("debug_per_window", "oom_recovery", "shutdown")) == 0


async def test_concurrent_tasks_for_both_models_alternate_without_losing_any():
    policy, loader = _policy(), Loader()
    m = ModelManager(loader, policy, punctuation_model="P", summary_model="S", single_resident=True)
    await m.start()
    jobs = [_work(m, "P" if i % 3 else "S") for i in range(30)]
    results = await asyncio.wait_for(asyncio.gather(*jobs), 30)
    assert results == ["P" if i % 3 else "S" for i in range(30)]
    # Every resident model was used by all the tasks waiting for it: few switches, one clear each.
    assert policy.clears("model_switch") == m.switches
    assert 1 <= m.switches <= 4
    assert len(loader.loaded) == m.switches + 1
    await m.close()


async def test_no_switch_and_no_clear_when_both_models_stay_resident():
    policy, loader = _policy(), Loader()
    m = ModelManager(loader, policy, punctuation_model="P", summary_model="S", single_resident=False)
    await m.start()
    await asyncio.gather(*(_work(m, "P" if i % 2 else "S") for i in range(10)))
    assert sorted(m.resident) == ["P", "S"] and loader.loaded == ["P", "S"]
    assert policy.clears("model_switch") == 0 and m.switches == 0
    await m.close()


async def test_one_model_for_both_tasks_never_switches():
    policy, loader = _policy(), Loader()
    m = ModelManager(loader, policy, punctuation_model="P", summary_model=None, single_resident=True)
    await m.start()
    await asyncio.gather(_work(m, m.model_for("punctuate")), _work(m, m.model_for("summarize")))
    assert loader.loaded == ["P"] and policy.clears("model_switch") == 0
    await m.close()


async def test_a_failed_load_reports_to_its_waiter_and_the_next_request_recovers():
    policy, loader = _policy(), Loader(fail={"S"})
    m = ModelManager(loader, policy, punctuation_model="P", summary_model="S", single_resident=True)
    await m.start()
    with pytest.raises(ModelLoadError):
        await _work(m, "S")
    assert policy.clears("model_switch") == 1  # P was unloaded for the attempt
    assert await _work(m, "P") == "P"  # reloaded, nothing left to unload: no clear
    assert policy.clears("model_switch") == 1
    await m.close()


async def test_debug_switch_does_not_add_clears_to_model_switching():
    policy, loader = _policy(debug=True), Loader()
    m = ModelManager(loader, policy, punctuation_model="P", summary_model="S", single_resident=True)
    await m.start()
    await _work(m, "S")
    assert policy.clears("model_switch") == 1
    assert policy.clears("debug_per_window") == 0
    await m.close()


async def test_a_request_cancelled_during_a_switch_leaves_a_consistent_state():
    policy = _policy()

    class SlowLoader(Loader):
        async def __call__(self, model: str) -> FakeBackend:
            await asyncio.sleep(0.2)
            return await super().__call__(model)

    loader = SlowLoader()
    m = ModelManager(loader, policy, punctuation_model="P", summary_model="S", single_resident=True)
    await m.start()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_work(m, "S"), 0.05)  # the deadline hits while S loads
    assert await _work(m, "S") == "S"  # the switch finished on its own; no second switch
    assert m.switches == 1 and policy.clears("model_switch") == 1
    assert loader.loaded == ["P", "S"]
    await m.close()
