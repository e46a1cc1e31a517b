"""The LLM counters the alerts read exist at 0 from the start: every task's error outcome and
every configured model's switches (a series that appears at 1 is never counted by increase())."""

from __future__ import annotations

from omoai_llm.metrics import LlmMetrics
from omoai_llm.protocol import ALL_TASKS
from prometheus_client import CollectorRegistry, generate_latest


def test_error_outcomes_switches_and_latency_exist_at_zero_for_every_task_and_model():
    registry = CollectorRegistry()
    LlmMetrics.create(registry).initialise(ALL_TASKS, ["punct-model", "summary-model"])
    text = generate_latest(registry).decode()
    for task in ALL_TASKS:
        for outcome in ("ok", "error"):
            assert f'omoai_llm_requests_total{{outcome="{outcome}",task="{task}"}} 0.0' in text
        assert f'omoai_inference_duration_seconds_count{{model="punct-model",task="{task}"}} 0.0' in text
    for model in ("punct-model", "summary-model"):
        assert f'omoai_llm_model_switches_total{{model="{model}"}} 0.0' in text
