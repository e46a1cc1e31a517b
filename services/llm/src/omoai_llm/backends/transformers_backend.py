"""Hugging Face transformers generation in-process (CPU or GPU), with the model's chat template.

Concurrent ``generate`` calls are gathered into left-padded batches by one worker task (a map step
of twenty chunks becomes a few batched forward passes instead of twenty sequential ones); the
batch runs in a thread under ``policy.inference()`` so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omoai_core.errors import ConfigError, ModelLoadError, UnavailableError
from omoai_gpu.memory import MemoryPolicy

from omoai_llm.backends.base import (
    DEFAULT_SOURCE,
    ChatMessage,
    Completion,
    JsonSchema,
    ModelSource,
    check_room,
    render_prompt,
    require_model,
)
from omoai_llm.batching import gather_batch

log = logging.getLogger(__name__)


@dataclass
class _Request:
    input_ids: list[int]
    max_tokens: int
    temperature: float
    future: asyncio.Future[Completion] = field(repr=False)
    schema: JsonSchema | None = None
    #: Set when the caller has gone (its future was cancelled); read by generation's worker thread.
    abandoned: threading.Event = field(default_factory=threading.Event, repr=False)


class _StopAbandoned:
    """A transformers stopping criterion: rows whose caller has gone stop at the next token, and
    generation ends once every row has (a client that hung up costs at most one more step)."""

    def __init__(self, group: list[_Request]) -> None:
        self.group = group

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.tensor([r.abandoned.is_set() for r in self.group], dtype=torch.bool, device=input_ids.device)


class _SchemaRows:
    """A ``prefix_allowed_tokens_fn`` for a batch: rows with a schema get the tokens that keep their
    answer valid JSON of that shape (lm-format-enforcer), the other rows get every token."""

    def __init__(self, group: list[_Request], tokenizer_data: Any, vocab: int) -> None:
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer  # type: ignore[import-untyped]

        self._enforcers = [
            TokenEnforcer(tokenizer_data, JsonSchemaParser(r.schema)) if r.schema is not None else None for r in group
        ]
        self._everything = list(range(vocab))

    def __call__(self, batch_id: int, sent: Any) -> list[int]:
        enforcer = self._enforcers[batch_id]
        if enforcer is None:
            return self._everything
        found = enforcer.get_allowed_tokens(sent.tolist())
        allowed: list[int] = list(getattr(found, "allowed_tokens", found))
        return allowed or self._everything


def enforcer_tokenizer_data(tokenizer: Any, eos_ids: list[int], vocab: int) -> Any:
    """lm-format-enforcer's view of a tokenizer: each regular token's text, and whether it starts a
    word (decoded after a ``0`` token, a word-start token gains its leading space). Written here
    because the library's own transformers helper imports modules transformers 5 removed."""
    from lmformatenforcer import TokenEnforcerTokenizerData

    special = set(tokenizer.all_special_ids)
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    regular = []
    for i in range(min(vocab, len(tokenizer))):
        if i in special:
            continue
        after_zero = tokenizer.decode([zero, i])[1:]
        alone = tokenizer.decode([i])
        regular.append((i, after_zero, len(after_zero) > len(alone)))

    def decode(ids: list[int]) -> str:
        text: str = tokenizer.decode(ids)
        return text.rstrip("\ufffd")  # a cut multi-byte character is not text yet

    return TokenEnforcerTokenizerData(regular, decode, eos_ids, False, vocab)


def constrained_decoding_available() -> bool:
    """Whether lm-format-enforcer (the ``constrained`` extra) is installed."""
    try:
        import lmformatenforcer  # noqa: F401
    except ImportError:
        return False
    return True


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - the extra is installed in tests
        raise ConfigError("the transformers backend needs the extra: pip install 'omoai-llm[transformers]'") from e
    return transformers


def _load_error(model: str, offline: bool, e: Exception) -> ModelLoadError:
    looks_local = model.startswith(("/", ".", "~")) or Path(model).exists()
    if looks_local:
        hint = "check that the directory holds config.json, the weights and the tokenizer files"
    elif offline:
        hint = "offline mode is on and the model is not in the local hub cache; download it first or mount it"
    else:
        hint = (
            "check the hub id, the network (or set HF_HUB_OFFLINE=1 with a cached copy) and HF_TOKEN for gated models"
        )
    return ModelLoadError(
        f"cannot load model {model!r}: {e.__class__.__name__}: {e} ({hint})", details={"model": model}
    )


class TransformersBackend:
    def __init__(
        self,
        model_name: str,
        model: Any,
        tokenizer: Any,
        policy: MemoryPolicy,
        *,
        context_tokens: int,
        max_batch_size: int = 8,
        batch_wait_ms: float = 5.0,
    ) -> None:
        self._name = model_name
        self._model = model
        self._tok = tokenizer
        self._policy = policy
        self._context = context_tokens
        self._max_batch = max_batch_size
        self._wait_s = batch_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Request] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.batches_run = 0  # diagnostics (tests, benchmarks)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self._fast = getattr(tokenizer, "backend_tokenizer", None)
        self._enforcer_data: Any = None  # built on the first call with a schema (it walks the vocabulary)
        self.constrained = constrained_decoding_available()

    # -- loading ----------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        model: str,
        policy: MemoryPolicy,
        source: ModelSource = DEFAULT_SOURCE,
        *,
        max_batch_size: int = 8,
        batch_wait_ms: float = 5.0,
    ) -> TransformersBackend:
        """Blocking: load tokenizer and weights from a directory or hub id onto the policy's device."""
        offline, context_tokens = source.offline, source.context_tokens
        tf = _import_transformers()
        require_model(model)
        path = Path(model).expanduser()
        if model.startswith(("/", ".", "~")) and not path.is_dir():
            raise ModelLoadError(f"model directory {model!r} does not exist", details={"model": model})
        where = str(path) if path.is_dir() else model
        kwargs: dict[str, Any] = {"local_files_only": offline, "trust_remote_code": source.trust_remote_code}
        if source.revision:
            kwargs["revision"] = source.revision
        try:
            tokenizer = tf.AutoTokenizer.from_pretrained(where, **kwargs)
            weights = tf.AutoModelForCausalLM.from_pretrained(where, dtype=policy.dtype, **kwargs)
        except (OSError, ValueError, KeyError) as e:
            raise _load_error(model, offline, e) from e
        weights.to(policy.device)
        weights.eval()
        tokenizer.padding_side = "left"
        if context_tokens is None:
            context_tokens = int(getattr(weights.config, "max_position_embeddings", 0) or 2048)
        log.info("loaded %s on %s (%s, context %d tokens)", model, policy.device, policy.dtype, context_tokens)
        return cls(
            model,
            weights,
            tokenizer,
            policy,
            context_tokens=context_tokens,
            max_batch_size=max_batch_size,
            batch_wait_ms=batch_wait_ms,
        )

    # -- the Backend protocol ---------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def context_tokens(self) -> int:
        return self._context

    def count_tokens(self, text: str) -> int:
        if self._fast is not None:  # the Rust tokenizer directly: chunking counts every segment
            return len(self._fast.encode(text, add_special_tokens=False).ids)
        return len(self._tok(text, add_special_tokens=False)["input_ids"])

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text: the chat template when the tokenizer has one, else a plain format."""
        return render_prompt(self._tok, messages)

    async def generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        schema: JsonSchema | None = None,
    ) -> Completion:
        """``schema`` is enforced token by token when lm-format-enforcer is installed (the
        ``constrained`` extra); without it the answer is free text that callers parse defensively."""
        if self._closed:
            raise UnavailableError(f"model {self._name} was unloaded")
        prompt = self.render(messages)
        ids = self._tok(prompt, add_special_tokens=False)["input_ids"]
        room = check_room(len(ids), self._context, self._name)
        loop = asyncio.get_running_loop()
        req = _Request(
            list(ids),
            max(1, min(max_tokens, room)),
            temperature,
            loop.create_future(),
            schema if self.constrained else None,
        )
        req.future.add_done_callback(lambda f: req.abandoned.set() if f.cancelled() else None)
        if self._loop is not loop:  # first call, or the backend moved to another event loop
            self._loop, self._queue, self._worker = loop, asyncio.Queue(), None
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run(), name=f"generate:{self._name}")
        assert self._queue is not None
        await self._queue.put(req)
        return await req.future

    async def close(self) -> None:
        self._closed = True
        if self._worker is not None and self._loop is asyncio.get_running_loop():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # shutting down
                await self._worker
        if self._queue is not None:
            while not self._queue.empty():
                req = self._queue.get_nowait()
                if not req.future.done():
                    req.future.set_exception(UnavailableError(f"model {self._name} was unloaded"))
        # Drop the references; the model manager collects garbage and clears the cache once.
        self._model = None
        self._tok = None

    # -- batching ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = await gather_batch(self._queue, self._max_batch, self._wait_s)
            live = [r for r in batch if not r.future.done()]
            # Greedy and sampled requests cannot share one generate() call.
            groups: dict[float, list[_Request]] = {}
            for r in live:
                groups.setdefault(r.temperature, []).append(r)
            for temperature, group in groups.items():
                try:
                    results = await asyncio.to_thread(self._generate_batch, group, temperature)
                except Exception as e:
                    log.exception("generation failed on %s", self._name)
                    for r in group:
                        if not r.future.done():
                            r.future.set_exception(e)
                    continue
                for r, c in zip(group, results, strict=True):
                    if not r.future.done():
                        r.future.set_result(c)

    def _generate_batch(self, group: list[_Request], temperature: float) -> list[Completion]:
        import torch

        model, tok = self._model, self._tok
        if model is None or tok is None:
            raise UnavailableError(f"model {self._name} was unloaded")
        width = max(len(r.input_ids) for r in group)
        ids = torch.full((len(group), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for i, r in enumerate(group):  # left padding: every prompt ends at the same column
            ids[i, width - len(r.input_ids) :] = torch.tensor(r.input_ids, dtype=torch.long)
            mask[i, width - len(r.input_ids) :] = 1
        max_new = max(r.max_tokens for r in group)
        max_new = max(1, min(max_new, self._context - width))
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
            if temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        constrain: dict[str, Any] = {}
        if any(r.schema is not None for r in group):
            vocab = int(model.get_output_embeddings().weight.shape[0])
            if self._enforcer_data is None:
                self._enforcer_data = enforcer_tokenizer_data(tok, sorted(self._eos_ids), vocab)
            constrain["prefix_allowed_tokens_fn"] = _SchemaRows(group, self._enforcer_data, vocab)
        with self._policy.inference():
            out = model.generate(
                stopping_criteria=[_StopAbandoned(group)],
                **constrain,
                input_ids=ids.to(self._policy.device),
                attention_mask=mask.to(self._policy.device),
                max_new_tokens=max_new,
                pad_token_id=self._pad_id,
                eos_token_id=sorted(self._eos_ids) or None,
                **sampling,
            )
        self.batches_run += 1
        self._policy.window_done()  # clears only with OMOAI_DEBUG_EMPTY_CACHE on (troubleshooting)
        results = []
        for i, r in enumerate(group):
            new = out[i, width:].tolist()[: r.max_tokens]
            finish = "length"
            for j, t in enumerate(new):
                if t in self._eos_ids:
                    new, finish = new[:j], "stop"
                    break
            text = tok.decode(new, skip_special_tokens=True)
            results.append(Completion(text, len(r.input_ids), len(new), finish))
        return results
