"""The LLM service's Prometheus metrics, all on one injected registry.

``omoai_inference_duration_seconds{task,model}``, ``omoai_llm_tokens_total{direction,model,task}``,
``omoai_llm_model_switches_total{model}``, ``omoai_llm_alignment_words_total{outcome}``,
``omoai_llm_requests_total{task,outcome}``, ``omoai_llm_edit_answers_total{outcome}`` (edits mode:
ok, partial, malformed, truncated), ``omoai_llm_cleaned_characters_total{task}`` (control characters
and broken sequences removed from model output), ``omoai_llm_tagger_refused_labels_total`` (labels
that would change a word, not applied); cache clears and in-flight requests come from
``omoai_gpu`` and ``omoai_http``. With the vLLM backend, vLLM's own ``vllm:*`` metrics (which
it registers on the global registry) are exposed through :class:`ForeignMetrics`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from omoai_core.metrics import inference_duration_histogram
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric

from omoai_llm.alignment import AlignmentStats
from omoai_llm.backends.base import Completion
from omoai_llm.edits import OUTCOMES

#: Outcomes of ``omoai_llm_requests_total`` (service.py counts each finished task call as one).
REQUEST_OUTCOMES = ("ok", "error")


@dataclass
class LlmMetrics:
    duration: Histogram
    tokens: Counter
    switches: Counter
    alignment_words: Counter
    requests: Counter
    edit_answers: Counter
    cleaned_chars: Counter
    tagger_refused: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> LlmMetrics:
        return cls(
            duration=inference_duration_histogram(registry),
            tokens=Counter(
                "omoai_llm_tokens",
                "Tokens processed by the model, by task.",
                ["direction", "model", "task"],
                registry=registry,
            ),
            switches=Counter(
                "omoai_llm_model_switches",
                "Resident model switches, by the model switched to.",
                ["model"],
                registry=registry,
            ),
            alignment_words=Counter(
                "omoai_llm_alignment_words",
                "Input words by what the alignment did with the model's version of them.",
                ["outcome"],
                registry=registry,
            ),
            requests=Counter(
                "omoai_llm_requests", "Finished requests by task and outcome.", ["task", "outcome"], registry=registry
            ),
            edit_answers=Counter(
                "omoai_llm_edit_answers",
                "Edits-mode answers by outcome; malformed and truncated ones fell back to the words as they came.",
                ["outcome"],
                registry=registry,
            ),
            cleaned_chars=Counter(
                "omoai_llm_cleaned_characters",
                "Control characters and broken sequences (U+FFFD) removed from model output, by task.",
                ["task"],
                registry=registry,
            ),
            tagger_refused=Counter(
                "omoai_llm_tagger_refused_labels",
                "Tagger labels that would change a word (number words to digits, merges), never applied.",
                registry=registry,
            ),
        )

    def initialise(self, tasks: Iterable[str], models: Iterable[str]) -> LlmMetrics:
        """Create the series alerts and panels read at 0 (every task's ok/error outcome, every
        model's switches and latency), so that ``increase()`` and ``rate()`` count the first event."""
        for task in tasks:
            self.cleaned_chars.labels(task=task)
            for outcome in REQUEST_OUTCOMES:
                self.requests.labels(task=task, outcome=outcome)
        for answer in OUTCOMES:
            self.edit_answers.labels(outcome=answer)
        for model in models:
            self.switches.labels(model=model)
            for task in tasks:
                self.duration.labels(task=task, model=model)
        return self

    def completion(self, model: str, c: Completion, *, task: str = "unknown") -> None:
        self.tokens.labels(direction="prompt", model=model, task=task).inc(c.prompt_tokens)
        self.tokens.labels(direction="completion", model=model, task=task).inc(c.completion_tokens)

    def alignment(self, s: AlignmentStats) -> None:
        for outcome, n in (
            ("matched", s.matched),
            ("replaced", s.replaced),
            ("spelling_fix", s.spelling_fixes),
            ("restored", s.restored),
            ("invented", s.invented),
        ):
            self.alignment_words.labels(outcome=outcome).inc(n)


class ForeignMetrics:
    """A collector that re-exposes the metrics of another registry whose names start with ``prefix``."""

    def __init__(self, prefix: str = "vllm:", source: CollectorRegistry = REGISTRY) -> None:
        self._prefix = prefix
        self._source = source

    def describe(self) -> Iterable[Metric]:
        return []  # names are not known until vLLM has started

    def collect(self) -> Iterable[Metric]:
        for metric in self._source.collect():
            if metric.name.startswith(self._prefix):
                yield metric
