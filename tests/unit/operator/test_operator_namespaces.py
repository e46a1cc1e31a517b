"""Namespace shares: settings refused when unsafe, Namespace annotation overrides, and the bounded
per-namespace queue metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from omoai_core.errors import ConfigError
from omoai_core.settings import load_settings
from omoai_operator.kube import DiscoveryUnavailable
from omoai_operator.metrics import OTHER_NAMESPACES, OperatorMetrics
from omoai_operator.namespaces import (
    CAP_ANNOTATION,
    WEIGHT_ANNOTATION,
    NamespaceShares,
    NamespaceWatcher,
    Override,
    parse_override,
)
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


class _Namespaces:
    """A Kubernetes client's list and watch of Namespaces (the informer's seam)."""

    def __init__(self, listing: dict[str, Any] | Exception, events: list[dict[str, Any]]) -> None:
        self.listing = listing
        self.events = events

    async def list(self, path: str, params: Any) -> dict[str, Any]:
        assert path == "/api/v1/namespaces"
        if isinstance(self.listing, Exception):
            raise self.listing
        return self.listing

    async def watch(self, path: str, params: Any) -> AsyncIterator[dict[str, Any]]:
        for e in self.events:
            yield e
        await asyncio.sleep(3600)


def _ns(name: str, **annotations: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": "2", "annotations": annotations}}


async def test_the_watcher_follows_namespace_annotations_as_they_change() -> None:
    shares = NamespaceShares(default_cap=4)
    events = [{"type": "MODIFIED", "object": _ns("a", **{CAP_ANNOTATION: "1", WEIGHT_ANNOTATION: "3"})}]
    client = _Namespaces({"metadata": {"resourceVersion": "1"}, "items": [_ns("a", **{CAP_ANNOTATION: "2"})]}, events)
    task = asyncio.create_task(NamespaceWatcher(shares, lambda: client).run())
    async with asyncio.timeout(10):
        while shares.cap("a") != 1:
            await asyncio.sleep(0.005)
    assert shares.weight("a") == 3.0 and shares.cap("b") == 4
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_without_access_to_namespaces_the_settings_apply(caplog: pytest.LogCaptureFixture) -> None:
    shares = NamespaceShares(default_cap=4)
    client = _Namespaces(DiscoveryUnavailable("listing /api/v1/namespaces answered 403: forbidden"), [])
    with caplog.at_level("WARNING"):
        await asyncio.wait_for(NamespaceWatcher(shares, lambda: client).run(), 5)
    assert shares.cap("a") == 4 and "namespace overrides unavailable" in caplog.text and "403" in caplog.text
