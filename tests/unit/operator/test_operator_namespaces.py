"""Namespace shares: settings refused when unsafe, Namespace annotation overrides, and the bounded
per-namespace queue metrics."""

from __future__ import annotations

import pytest
from omoai_core.errors import ConfigError
from omoai_core.settings import load_settings
from omoai_operator.metrics import OTHER_NAMESPACES, OperatorMetrics
from omoai_operator.namespaces import CAP_ANNOTATION, WEIGHT_ANNOTATION, NamespaceShares, Override, parse_override
from omoai_operator.settings import OperatorSettings
from prometheus_client import CollectorRegistry


def test_annotations_override_weight_and_cap_and_bad_values_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    assert parse_override("a", {WEIGHT_ANNOTATION: "2.5", CAP_ANNOTATION: "3"}) == Override(2.5, 3)
    assert parse_override("a", {CAP_ANNOTATION: "none"}) == Override()
    with caplog.at_level("WARNING"):
        assert parse_override("a", {WEIGHT_ANNOTATION: "-1", CAP_ANNOTATION: "two"}) == Override()
        assert parse_override("a", {WEIGHT_ANNOTATION: "nan", CAP_ANNOTATION: "0"}) == Override()
    assert "omoai.io/queue-weight='-1'" in caplog.text and "omoai.io/max-running='two'" in caplog.text


def test_an_override_wins_over_the_settings_and_its_removal_restores_them() -> None:
    shares = NamespaceShares({"a": 4.0}, default_cap=5)
    heard: list[int] = []
    shares.listen(lambda: heard.append(1))
    assert (shares.weight("a"), shares.cap("a"), shares.weight("b"), shares.cap("b")) == (4.0, 5, 1.0, 5)
    shares.set_overrides({"a": Override(weight=1.5, cap=2), "b": Override()})
    assert (shares.weight("a"), shares.cap("a"), shares.cap("b")) == (1.5, 2, 5)
    shares.set_overrides({"a": Override(weight=1.5, cap=2)})  # no change: nobody is told
    shares.set_overrides({})
    assert (shares.weight("a"), shares.cap("a")) == (4.0, 5) and heard == [1, 1]


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"OMOAI_NAMESPACE_WEIGHTS": '{"a": 0}'}, "weight of namespace 'a'"),
        ({"OMOAI_NAMESPACE_WEIGHTS": '{"a": 1e9}'}, "weight of namespace 'a'"),
        ({"OMOAI_NAMESPACE_MAX_RUNNING": "0"}, "OMOAI_NAMESPACE_MAX_RUNNING: Input should be greater"),
    ],
)
def test_unsafe_fairness_settings_are_refused(env: dict[str, str], match: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=match):
        load_settings(OperatorSettings)


def _series(registry: CollectorRegistry, name: str) -> dict[str, float]:
    return {
        s.labels["namespace"]: s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == name and s.labels.get("service") == "asr"
    }


def test_per_namespace_queue_metrics_keep_the_busiest_and_sum_the_rest() -> None:
    registry = CollectorRegistry()
    m = OperatorMetrics.create(registry, top_namespaces=2)
    by_ns = {f"team-{i}": (i, 1) for i in range(10)}  # team-9 is the busiest
    m.observe_queue("asr", 45, 10, None, by_ns)
    depth = _series(registry, "omoai_operator_namespace_queue_depth")
    assert depth == {"team-9": 9, "team-8": 8, OTHER_NAMESPACES: sum(range(8))}
    assert _series(registry, "omoai_operator_namespace_in_flight")[OTHER_NAMESPACES] == 8
    m.observe_queue("asr", 3, 1, None, {"team-1": (3, 1)})  # the others left: their series go
    assert _series(registry, "omoai_operator_namespace_queue_depth") == {"team-1": 3, OTHER_NAMESPACES: 0}
