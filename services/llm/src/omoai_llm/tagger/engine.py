"""Loading a tagger from its official layout and running it: windows, iterations, batching.

Layouts (a directory, or a hub id fetched with ``snapshot_download``):

- **Seq2Labels** (``config.json`` naming ``Seq2LabelsModel``; ``vocabulary/labels.txt`` and
  ``vocabulary/d_tags.txt``; ``pytorch_model.bin`` or ``model.safetensors`` holding ``bert.*`` (the
  encoder), ``classifier.*`` (one logit per label) and ``detector.*`` (correct/incorrect per word);
  the encoder's tokenizer files). The encoder is a BERT or an XLM-RoBERTa (``pretrained_name_or_path``
  naming a RoBERTa picks the latter), built from the hyper-parameters in ``config.json`` with its
  vocabulary size read from the weights. Each word list starts with the ``$START`` token (a token the
  checkpoint adds to its tokenizer, the last embedding row), a word is read at its first sub-word.
  Decoding follows the checkpoint card's GECToR procedure: ``confidence_bias`` is added to the
  probability of ``$KEEP``; when no word's error probability reaches ``min_error_probability`` the
  window is left alone, and a label weaker than it is not applied; the labels applied are fed back and
  the model runs again, up to ``iterations`` rounds or until nothing changes.
- **Token classification** (``AutoModelForTokenClassification``; labels in ``id2label`` following the
  convention of :mod:`omoai_llm.tagger.labels`): one round, a label applied when its probability is at
  least ``min_error_probability``.

Long texts are cut into windows of ``window_words`` words plus ``margin_words`` of context on each
side (also bounded by the encoder's positions); only a window's own words take its labels. Windows of
all concurrent requests are batched together by one worker; a request whose caller has gone is
dropped from the queue, so a client that hangs up stops its work at the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from omoai_core.errors import ConfigError, ModelLoadError, UnavailableError
from omoai_gpu.memory import MemoryPolicy

from omoai_llm.batching import gather_batch
from omoai_llm.tagger import TagResult
from omoai_llm.tagger.labels import KEEP, MARKS, Action, action_of, apply_action

log = logging.getLogger(__name__)

Layout = Literal["seq2labels", "token_classification"]
START_TOKEN = "$START"


@dataclass(frozen=True)
class TaggerOptions:
    iterations: int = 3
    confidence_bias: float = 0.0
    min_error_probability: float = 0.0
    window_words: int = 128
    margin_words: int = 16
    max_batch_size: int = 16
    batch_wait_ms: float = 5.0


# -- the network ------------------------------------------------------------------------------------


def _encoder_config(config: dict[str, Any], vocab_size: int) -> Any:
    from transformers import BertConfig, XLMRobertaConfig

    name = str(config.get("pretrained_name_or_path", "")).lower()
    cls = XLMRobertaConfig if "roberta" in name or config.get("encoder_model_type") == "xlm-roberta" else BertConfig
    keys = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "type_vocab_size",
        "layer_norm_eps",
        "hidden_act",
        "pad_token_id",
    )
    kwargs = {k: config[k] for k in keys if k in config}
    if "hidden_size" not in kwargs:
        raise ModelLoadError(
            "the Seq2Labels config.json does not hold the encoder's sizes (hidden_size, num_hidden_layers, ...); "
            "add them from the encoder's own config.json"
        )
    return cls(vocab_size=vocab_size, **kwargs)


def _seq2labels_module(config: dict[str, Any], state: dict[str, Any], labels: int, detect: int) -> Any:
    import torch
    from transformers import AutoModel

    class Seq2Labels(torch.nn.Module):
        """Encoder -> per-token label logits (``classifier``) and detection logits (``detector``)."""

        def __init__(self) -> None:
            super().__init__()
            vocab = int(state["bert.embeddings.word_embeddings.weight"].shape[0])
            self.bert = AutoModel.from_config(  # type: ignore[no-untyped-call]
                _encoder_config(config, vocab), add_pooling_layer=False
            )
            hidden = self.bert.config.hidden_size
            self.classifier = torch.nn.Linear(hidden, labels)
            self.detector = torch.nn.Linear(hidden, detect)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
            return self.classifier(h), self.detector(h)  # (B, T, labels), (B, T, detect)

    module = Seq2Labels()
    state = {k: v for k, v in state.items() if not k.startswith("bert.pooler.")}
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelLoadError(
            f"the Seq2Labels weights do not match the layout: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return module


def _read_lines(path: Path) -> list[str]:
    try:
        return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as e:
        raise ModelLoadError(f"cannot read {path}: {e}") from e


def _load_state(directory: Path) -> dict[str, Any]:
    import torch

    st = directory / "model.safetensors"
    if st.is_file():
        from safetensors.torch import load_file

        return dict(load_file(str(st)))
    pt = directory / "pytorch_model.bin"
    if pt.is_file():
        return dict(torch.load(pt, map_location="cpu", weights_only=True))
    raise ModelLoadError(f"{directory} holds neither model.safetensors nor pytorch_model.bin")


def resolve_directory(model: str, *, offline: bool, revision: str | None) -> Path:
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if model.startswith(("/", ".", "~")):
        raise ModelLoadError(f"tagger directory {model!r} does not exist", details={"model": model})
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=model, revision=revision, local_files_only=offline))
    except Exception as e:  # hub errors have many types; the message says which
        hint = "it is not in the local hub cache (offline)" if offline else "check the hub id and the network"
        raise ModelLoadError(f"cannot fetch tagger {model!r}: {e} ({hint})", details={"model": model}) from e


@dataclass
class _Window:
    tokens: list[str]  # words (current forms) and inserted marks, in order
    future: asyncio.Future[list[tuple[int, float, float]]] = field(repr=False)


class TaggerEngine:
    """One loaded tagger: ``tag(words)`` returns the same words with marks and casing."""

    def __init__(
        self,
        name: str,
        module: Any,
        tokenizer: Any,
        labels: list[str],
        policy: MemoryPolicy,
        *,
        layout: Layout,
        options: TaggerOptions,
        incorrect_index: int | None = None,
        max_tokens: int = 512,
        license: str | None = None,
    ) -> None:
        self._name = name
        self._module = module
        self._tok = tokenizer
        self._labels = labels
        self._actions = [action_of(label) for label in labels]
        self._keep = next((i for i, label in enumerate(labels) if label in ("$KEEP", "O", "KEEP")), None)
        self._policy = policy
        self.layout: Layout = layout
        self.options = options
        self._incorrect = incorrect_index
        self._max_tokens = max_tokens
        self.license = license
        self._start_id: int | None = None
        if layout == "seq2labels":
            ids = tokenizer.convert_tokens_to_ids([START_TOKEN])
            self._start_id = int(ids[0]) if ids and ids[0] is not None else None
        self._queue: asyncio.Queue[_Window] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.batches_run = 0
        self.windows_run = 0

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        model: str,
        policy: MemoryPolicy,
        *,
        options: TaggerOptions | None = None,
        offline: bool = False,
        revision: str | None = None,
    ) -> TaggerEngine:
        """Blocking: read the layout, build the network, load the weights onto the policy's device."""
        try:
            from transformers import AutoModelForTokenClassification, AutoTokenizer
        except ImportError as e:  # pragma: no cover - the extra is installed in tests
            raise ConfigError("the tagger needs the transformers extra: pip install 'omoai-llm[transformers]'") from e
        options = options or TaggerOptions()
        directory = resolve_directory(model, offline=offline, revision=revision)
        try:
            config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot read {directory / 'config.json'}: {e}", details={"model": model}) from e
        architectures = [str(a) for a in config.get("architectures") or []]
        license = _license_of(directory)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot load the tagger's tokenizer from {directory}: {e}") from e
        if "Seq2LabelsModel" in architectures:
            labels = _read_lines(directory / "vocabulary" / "labels.txt")
            d_tags = _read_lines(directory / "vocabulary" / "d_tags.txt")
            state = _load_state(directory)
            module = _seq2labels_module(config, state, len(labels), len(d_tags))
            tokenizer.add_tokens([START_TOKEN])
            layout: Layout = "seq2labels"
            incorrect = d_tags.index("INCORRECT") if "INCORRECT" in d_tags else None
            max_tokens = int(config.get("max_position_embeddings", 512))
        else:
            try:
                module = AutoModelForTokenClassification.from_pretrained(str(directory), local_files_only=True)
            except (OSError, ValueError, KeyError) as e:
                raise ModelLoadError(f"cannot load token-classification tagger {model!r}: {e}") from e
            id2label = module.config.id2label
            labels = [str(id2label[i]) for i in range(len(id2label))]
            layout = "token_classification"
            incorrect = None
            max_tokens = int(getattr(module.config, "max_position_embeddings", 512))
        if "roberta" in str(config.get("pretrained_name_or_path", config.get("model_type", ""))).lower():
            max_tokens -= 2  # RoBERTa positions start after the padding index
        module.to(policy.device)
        module.eval()
        refused = [label for label in labels if action_of(label).refused]
        log.info(
            "loaded tagger %s (%s, %d labels; never applied: %s) on %s",
            model,
            layout,
            len(labels),
            ", ".join(refused) or "none",
            policy.device,
        )
        return cls(
            model,
            module,
            tokenizer,
            labels,
            policy,
            layout=layout,
            options=options,
            incorrect_index=incorrect,
            max_tokens=max(16, min(max_tokens, 512)),
            license=license,
        )

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    async def close(self) -> None:
        self._closed = True
        if self._worker is not None and self._loop is asyncio.get_running_loop():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        if self._queue is not None:
            while not self._queue.empty():
                w = self._queue.get_nowait()
                if not w.future.done():
                    w.future.set_exception(UnavailableError(f"tagger {self._name} was unloaded"))
        self._module = None
        self._tok = None

    # -- tagging -------------------------------------------------------------------------------

    def windows(self, words: Sequence[str]) -> list[tuple[range, range]]:
        """``(own, shown)`` word ranges: each window's own words and those shown with their margins.

        A window holds at most ``window_words`` words and, with its margins, room for its sub-words,
        one inserted mark per word and ``$START`` within the encoder's positions.
        """
        if not words:
            return []
        counts = self._subword_counts(words)
        limit = self._max_tokens - 2
        margin = self.options.margin_words
        out: list[tuple[range, range]] = []
        start = 0
        while start < len(words):
            stop = start
            while stop < len(words) and stop - start < self.options.window_words:
                lo, hi = max(0, start - margin), min(len(words), stop + 1 + margin)
                if stop > start and sum(counts[lo:hi]) + (hi - lo) > limit:
                    break
                stop += 1
            out.append((range(start, stop), range(max(0, start - margin), min(len(words), stop + margin))))
            start = stop
        return out

    def _subword_counts(self, words: Sequence[str]) -> list[int]:
        enc = self._tok(list(words), is_split_into_words=True, add_special_tokens=False)
        counts = [0] * len(words)
        for w in enc.word_ids():
            if w is not None:
                counts[w] += 1
        return [max(1, c) for c in counts]

    async def tag(self, words: Sequence[str]) -> TagResult:
        """The same words, with the marks and casing the model labels; concurrent calls share batches."""
        if self._closed or self._module is None:
            raise UnavailableError(f"tagger {self._name} was unloaded")
        result = TagResult(list(words))
        plan = self.windows(words)
        result.windows = len(plan)
        tallies = await asyncio.gather(*(self._tag_window(list(words), own, shown, result) for own, shown in plan))
        result.refused = sum(tallies)
        return result

    async def _tag_window(self, words: list[str], own: range, shown: range, result: TagResult) -> int:
        current = words[shown.start : shown.stop]
        marks: dict[int, str] = {}
        refused = 0
        rounds = self.options.iterations if self.layout == "seq2labels" else 1
        for _ in range(max(1, rounds)):
            tokens, word_at = _tokens(current, marks)
            predictions = await self._submit(tokens)
            changed = False
            refused = 0
            errors = [p[2] for p in predictions]
            if self._incorrect is not None and max(errors, default=0.0) < self.options.min_error_probability:
                break
            for j, (label, prob, _) in enumerate(predictions):
                i = word_at[j]
                if i is None:  # an inserted mark: its label is not an edit of a word
                    continue
                action = self._actions[label] if 0 <= label < len(self._actions) else KEEP
                if action.refused:
                    refused += 1
                    continue
                if action.noop or prob < self.options.min_error_probability:
                    continue
                if action.case:
                    new = apply_action(current[i], Action(case=action.case))
                    if new != current[i]:
                        current[i], changed = new, True
                if action.mark and i not in marks and not _ends_with_mark(current[i]):
                    marks[i], changed = action.mark, True
            result.rounds += 1
            if not changed:
                break
        for i in own:
            k = i - shown.start
            word = current[k]
            result.words[i] = apply_action(word, Action(mark=marks[k])) if k in marks else word
        return refused

    async def _submit(self, tokens: list[str]) -> list[tuple[int, float, float]]:
        loop = asyncio.get_running_loop()
        window = _Window(tokens, loop.create_future())
        if self._loop is not loop:
            self._loop, self._queue, self._worker = loop, asyncio.Queue(), None
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run(), name=f"tagger:{self._name}")
        assert self._queue is not None
        await self._queue.put(window)
        return await window.future

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = await gather_batch(self._queue, self.options.max_batch_size, self.options.batch_wait_ms / 1000.0)
            live = [w for w in batch if not w.future.done()]  # callers that hung up are skipped
            if not live:
                continue
            try:
                results = await asyncio.to_thread(self._forward, [w.tokens for w in live])
            except Exception as e:
                log.exception("tagging failed on %s", self._name)
                for w in live:
                    if not w.future.done():
                        w.future.set_exception(e)
                continue
            for w, r in zip(live, results, strict=True):
                if not w.future.done():
                    w.future.set_result(r)

    def _forward(self, batch: list[list[str]]) -> list[list[tuple[int, float, float]]]:
        """Per window, per token: (best label, its probability, the word's error probability)."""
        import torch

        module, tok = self._module, self._tok
        if module is None or tok is None:
            raise UnavailableError(f"tagger {self._name} was unloaded")
        seq2labels = self.layout == "seq2labels"
        rows = [[START_TOKEN, *tokens] if seq2labels else tokens for tokens in batch]
        enc = tok(
            rows,
            is_split_into_words=True,
            add_special_tokens=not seq2labels,
            truncation=True,
            max_length=self._max_tokens,
            padding=True,
            return_tensors="pt",
        )
        ids = enc["input_ids"]
        if seq2labels and self._start_id is not None and self._start_id >= self._vocab_rows():
            # The checkpoint has no row for $START (no special_tokens_fix): its classification token stands in.
            ids = ids.masked_fill(ids == self._start_id, int(tok.cls_token_id or 0))
        with self._policy.inference():
            ids_d = ids.to(self._policy.device)
            mask_d = enc["attention_mask"].to(self._policy.device)
            if seq2labels:
                logits, detect = module(ids_d, mask_d)  # (B, T, L), (B, T, D)
            else:
                logits, detect = module(input_ids=ids_d, attention_mask=mask_d).logits, None
            probs = torch.softmax(logits.float(), dim=-1)
            if self._keep is not None and self.options.confidence_bias:
                probs[..., self._keep] += self.options.confidence_bias
            best_p, best = probs.max(dim=-1)  # (B, T)
            if detect is not None and self._incorrect is not None:
                error = torch.softmax(detect.float(), dim=-1)[..., self._incorrect]
            else:
                error = torch.ones_like(best_p)
            best, best_p, error = best.cpu(), best_p.cpu(), error.cpu()
        self.batches_run += 1
        self.windows_run += len(batch)
        out: list[list[tuple[int, float, float]]] = []
        for b, tokens in enumerate(batch):
            firsts: dict[int, int] = {}
            for t, w in enumerate(enc.word_ids(b)):
                if w is not None and w not in firsts:
                    firsts[w] = t
            shift = 1 if seq2labels else 0
            row: list[tuple[int, float, float]] = []
            for j in range(len(tokens)):
                first = firsts.get(j + shift)
                if first is None:  # truncated away: keep the word as it is
                    row.append((self._keep if self._keep is not None else -1, 1.0, 0.0))
                else:
                    row.append((int(best[b, first]), float(best_p[b, first]), float(error[b, first])))
            out.append(row)
        return out

    def _vocab_rows(self) -> int:
        emb = self._module.bert.get_input_embeddings() if self._module is not None else None
        return int(emb.weight.shape[0]) if emb is not None else 0


def _ends_with_mark(word: str) -> bool:
    return bool(word) and word[-1] in MARKS


def _tokens(words: list[str], marks: dict[int, str]) -> tuple[list[str], list[int | None]]:
    """The token list the model sees (marks already given are tokens of their own, as GECToR
    appends them) and, per token, the word it is (None for a mark)."""
    tokens: list[str] = []
    word_at: list[int | None] = []
    for i, w in enumerate(words):
        tokens.append(w)
        word_at.append(i)
        if i in marks:
            tokens.append(marks[i])
            word_at.append(None)
    return tokens, word_at


def _license_of(directory: Path) -> str | None:
    """The licence in the model card's front matter (``license: cc-by-sa-4.0``), if any."""
    readme = directory / "README.md"
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return None
    if not text.startswith("---"):
        return None
    for line in text.split("---", 2)[1].splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "license" and value.strip():
            return value.strip()
    return None


def refused_labels(labels: Sequence[str]) -> Counter[str]:
    """The labels of a vocabulary that are never applied (for the listing of models)."""
    return Counter(label for label in labels if action_of(label).refused)
