"""Which model is resident: the ModelManager hands out backends per task and enforces the memory
rule.

Punctuation and summaries may use different models. When both fit, both stay loaded. When only
one fits (``single_model_resident``), a task that needs the other model waits until the resident
one is idle, then the old engine is unloaded (close, drop every reference, ``gc.collect()``) and
the CUDA cache is cleared exactly once, counted as ``omoai_gpu_cache_clears_total{reason=
"model_switch"}``. Waiters for the other model block newcomers for the resident one, so the two
alternate instead of one starving.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections import Counter as Tally
from collections.abc import AsyncIterator, Awaitable, Callable

from omoai_gpu.memory import MemoryPolicy

from omoai_llm.backends.base import Backend

log = logging.getLogger(__name__)

Loader = Callable[[str], Awaitable[Backend]]


class ModelManager:
    def __init__(
        self,
        loader: Loader,
        policy: MemoryPolicy,
        *,
        punctuation_model: str,
        summary_model: str | None = None,
        single_resident: bool = False,
        on_switch: Callable[[str], None] | None = None,
    ) -> None:
        self._loader = loader
        self._policy = policy
        self.punctuation_model = punctuation_model
        self.summary_model = summary_model or punctuation_model
        self._single = single_resident and self.summary_model != self.punctuation_model
        self._on_switch = on_switch
        self._loaded: dict[str, Backend] = {}
        self._users: Tally[str] = Tally()
        self._waiting: Tally[str] = Tally()
        self._grants: Tally[str] = Tally()  # waiters present when their model arrived may join
        self._cond = asyncio.Condition()
        self._switching: asyncio.Task[None] | None = None
        self._switching_to: str | None = None
        self._ready = False
        self.switches = 0

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def resident(self) -> list[str]:
        return list(self._loaded)

    def model_for(self, task: str) -> str:
        return self.punctuation_model if task == "punctuate" else self.summary_model

    async def start(self) -> None:
        """Load the punctuation model (and the summary model too when both may stay resident)."""
        models = (
            [self.punctuation_model]
            if self._single
            else list(dict.fromkeys([self.punctuation_model, self.summary_model]))
        )
        for name in models:
            self._loaded[name] = await self._loader(name)
        self._ready = True

    async def close(self) -> None:
        self._ready = False
        if self._switching is not None:
            with contextlib.suppress(BaseException):
                await self._switching
        backends, self._loaded = list(self._loaded.values()), {}
        for b in backends:
            await b.close()
        del backends
        gc.collect()

    @contextlib.asynccontextmanager
    async def use(self, model: str) -> AsyncIterator[Backend]:
        backend = await self._acquire(model)
        try:
            yield backend
        finally:
            async with self._cond:
                self._users[model] -= 1
                self._cond.notify_all()

    # -- internals --------------------------------------------------------------------------------

    def _may_join(self, model: str) -> bool:
        if not self._single or self._grants[model] > 0:
            return True
        return not any(n for m, n in self._waiting.items() if m != model)

    def _idle(self) -> bool:
        return not any(self._users.values())

    async def _acquire(self, model: str) -> Backend:
        async with self._cond:
            self._waiting[model] += 1
            try:
                while True:
                    if model in self._loaded and self._may_join(model) and self._switching is None:
                        self._users[model] += 1
                        if self._grants[model] > 0:
                            self._grants[model] -= 1
                        return self._loaded[model]
                    if self._switching is None and model not in self._loaded and (not self._single or self._idle()):
                        self._switching_to = model
                        self._switching = asyncio.ensure_future(self._switch(model))
                    if self._switching is not None:
                        task, target = self._switching, self._switching_to
                        self._cond.release()
                        try:
                            await asyncio.shield(task)
                        except asyncio.CancelledError:
                            raise
                        except Exception:
                            if target == model:
                                raise
                        finally:
                            await self._cond.acquire()
                        continue
                    await self._cond.wait()
            finally:
                self._waiting[model] -= 1

    async def _switch(self, model: str) -> None:
        """Unload the resident model (single mode) and load ``model``; runs to the end even if the
        request that started it is cancelled, so the state never stays half-switched."""
        try:
            if self._single and self._loaded:
                old_name, old = next(iter(self._loaded.items()))
                self._loaded.clear()
                log.info("switching model %s -> %s", old_name, model)
                await old.close()
                del old
                gc.collect()
                self._policy.clear_cache("model_switch")
                self.switches += 1
                if self._on_switch is not None:
                    self._on_switch(model)
            self._loaded[model] = await self._loader(model)
        finally:
            async with self._cond:
                self._grants.clear()
                if model in self._loaded:
                    self._grants[model] = self._waiting[model]
                self._switching = None
                self._switching_to = None
                self._cond.notify_all()
