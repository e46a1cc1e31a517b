"""Which model is resident: the ModelManager hands out backends per task and enforces the memory
rule.

Punctuation and summaries may use different models, and punctuation by the tagger method uses the
tagger (a model like the others here: loaded, switched and counted the same way). When both fit, both stay loaded. When only
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
from typing import Protocol

from omoai_core.errors import InvalidInputError
from omoai_gpu.memory import MemoryPolicy

log = logging.getLogger(__name__)


class Resident(Protocol):
    """What the manager holds: an LLM backend or a tagger."""

    @property
    def model_name(self) -> str: ...

    async def close(self) -> None: ...


Loader = Callable[[str], Awaitable[Resident]]


class ModelManager:
    def __init__(
        self,
        loader: Loader,
        policy: MemoryPolicy,
        *,
        punctuation_model: str,
        summary_model: str | None = None,
        tagger_model: str | None = None,
        tagger_first: bool = False,
        single_resident: bool = False,
        on_switch: Callable[[str], None] | None = None,
    ) -> None:
        self._loader = loader
        self._policy = policy
        self.punctuation_model = punctuation_model
        self.summary_model = summary_model or punctuation_model
        self.tagger_model = tagger_model or None
        self._tagger_first = tagger_first and self.tagger_model is not None
        self._single = single_resident and len(self.models) > 1
        self._on_switch = on_switch
        self._loaded: dict[str, Resident] = {}
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

    @property
    def loaded(self) -> dict[str, Resident]:
        return dict(self._loaded)

    @property
    def models(self) -> list[str]:
        """Every configured model, the default punctuation model first."""
        ordered = [self.tagger_model, self.punctuation_model] if self._tagger_first else [self.punctuation_model]
        ordered += [self.summary_model, self.tagger_model]
        return [m for m in dict.fromkeys(ordered) if m]

    def model_for(self, task: str, method: str = "rewrite") -> str:
        """The model of ``task`` (``punctuate`` by ``method``); a clear 400 when it is not configured."""
        if task == "punctuate" and method == "tagger":
            if not self.tagger_model:
                raise InvalidInputError("this service has no tagger: set OMOAI_TAGGER_MODEL to use method tagger")
            return self.tagger_model
        name = self.punctuation_model if task == "punctuate" else self.summary_model
        if not name:
            raise InvalidInputError(
                f"this service runs the tagger only (no LLM configured): {task} by "
                f"{'method ' + method if task == 'punctuate' else 'an LLM'} is not available; set OMOAI_MODEL"
            )
        return name

    async def start(self) -> None:
        """Load the default punctuation model (and every other one when all may stay resident)."""
        models = self.models[:1] if self._single else self.models
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
    async def use(self, model: str) -> AsyncIterator[Resident]:
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

    async def _acquire(self, model: str) -> Resident:
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
