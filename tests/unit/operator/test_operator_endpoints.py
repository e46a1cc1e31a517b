"""Capacity that follows the replicas: EndpointSlice parsing, least-loaded placement, endpoints that
come and go, ejection of one that refuses connections, and the capacity queue granting what appears."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from omoai_operator import transitions as tr
from omoai_operator.fairness import Ticket
from omoai_operator.kube import DiscoveryUnavailable
from omoai_operator.pipeline import ASR, PUNCTUATE
from omoai_operator.placement import EndpointAddress, EndpointPool
from omoai_operator.probing import SlotBook
from omoai_operator.queue import CapacityQueue, Position
from omoai_operator.slices import ServiceRef, SliceWatcher, parse_slices, service_ref
from omoai_operator.spec import JobSpec

from tests.support.capacity import static_queue

SPEC = {
    "source": {"url": "https://audio.example/a.wav"},
    "output": {"pvc": {"claimName": "c", "path": "o"}, "formats": ["json"]},
}


def endpoint(ip: str, *, ready: bool | None = True, terminating: bool | None = None, pod: str = "") -> dict[str, Any]:
    cond: dict[str, Any] = {}
    if ready is not None:
        cond["ready"] = ready
    if terminating is not None:
        cond["terminating"] = terminating
    out: dict[str, Any] = {"addresses": [ip], "conditions": cond}
    if pod:
        out["targetRef"] = {"kind": "Pod", "name": pod}
    return out


def eps(name: str, *endpoints: dict[str, Any], port: int = 8000, port_name: str = "http") -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "addressType": "IPv4",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "omoai-asr"}},
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": list(endpoints),
    }


# -- parsing ----------------------------------------------------------------------------------------
def test_only_ready_endpoints_that_are_not_terminating_take_work() -> None:
    s = eps(
        "a",
        endpoint("10.0.0.1", pod="asr-1"),
        endpoint("10.0.0.2", ready=False),
        endpoint("10.0.0.3", ready=True, terminating=True),
        endpoint("10.0.0.4", ready=None),
    )
    assert parse_slices([s]) == [
        EndpointAddress("http://10.0.0.1:8000", "asr-1"),
        EndpointAddress("http://10.0.0.4:8000"),
    ]


def test_endpoints_of_several_slices_with_their_own_ports_are_merged_without_duplicates() -> None:
    a = eps("a", endpoint("127.0.0.1"), port=9001)
    b = eps("b", endpoint("127.0.0.1"), port=9002)
    dup = eps("c", endpoint("127.0.0.1"), port=9001)
    assert [e.url for e in parse_slices([a, b, dup], scheme="https")] == [
        "https://127.0.0.1:9001",
        "https://127.0.0.1:9002",
    ]


def test_the_named_port_is_used_and_ipv6_addresses_are_bracketed() -> None:
    s = eps("a", endpoint("fd00::5"))
    s["ports"] = [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8000}]
    assert [e.url for e in parse_slices([s])] == ["http://[fd00::5]:8000"]
    s["ports"] = [{"name": "metrics", "port": 9090}, {"name": "grpc", "port": 8000}]
    assert parse_slices([s]) == []  # two ports, none named http: nothing to call


def test_service_is_named_by_setting_or_by_the_cluster_host_of_the_url() -> None:
    assert service_ref("ml/omoai-asr", "http://x:1", None) == ServiceRef("ml", "omoai-asr")
    assert service_ref("omoai-asr", "http://x:1", "default") == ServiceRef("default", "omoai-asr")
    assert service_ref("", "http://omoai-asr.ml.svc:8000", None) == ServiceRef("ml", "omoai-asr")
    assert service_ref("", "http://omoai-asr.ml.svc.cluster.local:8000", None) == ServiceRef("ml", "omoai-asr")
    assert service_ref("", "http://omoai-asr:8000", "team") == ServiceRef("team", "omoai-asr")
    assert service_ref("", "http://127.0.0.1:8000", "team") is None
    assert service_ref("", "http://localhost:8000", "team") is None
    assert service_ref("", "https://asr.example.com", "team") is None


# -- placement --------------------------------------------------------------------------------------
def _pool(slots: dict[str, int]) -> EndpointPool:
    pool = EndpointPool("asr")
    pool.update([EndpointAddress(u) for u in slots], slots, origin="endpointslices")
    return pool


def test_each_stage_goes_to_the_least_loaded_endpoint_and_never_over_its_slots() -> None:
    pool = _pool({"http://a:1": 2, "http://b:1": 2, "http://c:1": 4})
    placed = [pool.acquire() for _ in range(8)]
    assert all(p is not None for p in placed)
    assert pool.acquire() is None  # 8 slots, 8 used
    assert {u: e.busy for u, e in pool.endpoints.items()} == {"http://a:1": 2, "http://b:1": 2, "http://c:1": 4}
    # The first three spread over all three endpoints rather than filling one.
    assert {p.url for p in placed[:3]} == {"http://a:1", "http://b:1", "http://c:1"}
    pool.release("http://b:1")
    again = pool.acquire()
    assert again is not None and again.url == "http://b:1"


def test_a_new_endpoint_adds_its_slots_at_once_and_a_gone_one_removes_them_while_its_stages_finish() -> None:
    pool = _pool({"http://a:1": 1})
    changes: list[int] = []
    pool.listen(lambda: changes.append(pool.capacity()))
    a = pool.acquire()
    assert a is not None and pool.acquire() is None
    pool.update(
        [EndpointAddress("http://a:1"), EndpointAddress("http://b:1")],
        {"http://a:1": 1, "http://b:1": 3},
        origin="endpointslices",
    )
    assert pool.capacity() == 4 and pool.open_slots() == 3 and changes[-1] == 4
    pool.update([EndpointAddress("http://b:1")], {"http://b:1": 3}, origin="endpointslices")
    assert pool.capacity() == 3 and pool.ready_count() == 1
    assert pool.endpoints["http://a:1"].busy == 1  # still running there, but no capacity any more
    assert all(pool.acquire().url == "http://b:1" for _ in range(3))  # type: ignore[union-attr]
    pool.release("http://a:1")
    assert "http://a:1" not in pool.endpoints  # gone and idle: forgotten


def test_an_endpoint_that_refused_a_connection_gets_nothing_until_the_ejection_ends() -> None:
    now = [100.0]
    pool = EndpointPool("asr", eject_s=5.0, clock=lambda: now[0])
    pool.update(
        [EndpointAddress("http://a:1"), EndpointAddress("http://b:1")],
        {"http://a:1": 2, "http://b:1": 2},
        origin="endpointslices",
    )
    pool.unreachable("http://a:1")
    assert pool.open_slots() == 2
    assert {pool.acquire().url, pool.acquire().url} == {"http://b:1"}  # type: ignore[union-attr]
    assert pool.acquire() is None
    now[0] += 6
    assert pool.acquire().url == "http://a:1"  # type: ignore[union-attr]


def test_the_static_service_url_is_never_ejected() -> None:
    pool = EndpointPool("asr")
    pool.set_static("http://omoai-asr:8000", 2)
    pool.unreachable("http://omoai-asr:8000")
    assert pool.open_slots() == 2 and pool.origin == "static"


def test_a_wakeup_is_counted_when_capacity_returns_from_zero_while_stages_wait() -> None:
    pool = EndpointPool("asr")
    waiting = [0]
    pool.count_waiting_with(lambda: waiting[0])
    pool.update([EndpointAddress("http://a:1")], {"http://a:1": 1}, origin="endpointslices")
    assert pool.wakeups == 0  # nobody waited
    pool.update([], {}, origin="endpointslices")
    waiting[0] = 3
    pool.update([EndpointAddress("http://b:1")], {"http://b:1": 1}, origin="endpointslices")
    assert pool.wakeups == 1


async def test_slots_are_the_configured_number_or_what_each_endpoint_advertises() -> None:
    asked: list[str] = []

    async def probe(url: str) -> int | None:
        asked.append(url)
        return {"http://a:1": 6}.get(url)

    book = SlotBook("asr", None, fallback=2, probe=probe)
    assert await book.lookup(["http://a:1", "http://b:1"]) == {"http://a:1": 6, "http://b:1": 2}
    assert await book.lookup(["http://a:1"]) == {"http://a:1": 6}
    assert asked == ["http://a:1", "http://b:1"]  # each endpoint asked once
    assert await SlotBook("asr", 3, fallback=2, probe=probe).lookup(["http://c:1"]) == {"http://c:1": 3}


# -- the queue on a pool ----------------------------------------------------------------------------
def ticket(key: str, priority: int = 0) -> Ticket:
    return Ticket(key=key, priority=priority, created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


async def test_the_queue_grants_at_once_when_an_endpoint_appears_and_routes_each_holder_to_its_endpoint() -> None:
    pool = EndpointPool("asr")
    q = CapacityQueue({"asr": pool})
    routes: dict[str, str] = {}
    positions: list[tuple[str, int, int | None]] = []
    release = asyncio.Event()

    async def job(key: str) -> None:
        async def on_position(p: Position) -> None:
            positions.append((key, p.position, p.ready_endpoints))

        async with q.slot("asr", ticket(key), on_position) as grant:
            routes[key] = grant.url
            await release.wait()

    tasks = [asyncio.create_task(job(k)) for k in ("j1", "j2", "j3")]
    await asyncio.sleep(0.05)
    assert q.depth("asr") == 3 and q.in_flight("asr") == 0
    assert ("j1", 1, 0) in positions  # told: no replica is ready
    pool.update(
        [EndpointAddress("http://a:1"), EndpointAddress("http://b:1")],
        {"http://a:1": 1, "http://b:1": 1},
        origin="endpointslices",
    )
    await asyncio.sleep(0.05)
    assert q.in_flight("asr") == 2 and q.depth("asr") == 1
    assert sorted(routes.values()) == ["http://a:1", "http://b:1"]
    assert ("j3", 1, 2) in positions  # told again once replicas were there
    pool.update(
        [EndpointAddress("http://a:1"), EndpointAddress("http://b:1"), EndpointAddress("http://c:1")],
        {"http://a:1": 1, "http://b:1": 1, "http://c:1": 1},
        origin="endpointslices",
    )
    await asyncio.sleep(0.05)
    assert routes["j3"] == "http://c:1"
    release.set()
    await asyncio.gather(*tasks)
    assert pool.busy_slots() == 0 and q.in_flight("asr") == 0


def test_waiting_for_a_replica_is_said_in_status_and_event() -> None:
    pending = tr.initialize(JobSpec.model_validate(SPEC), dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 1).status
    t = tr.queued(pending, ASR, 3, replicas=0)
    assert t.status.phase == "Queued" and t.status.reason == "WaitingForReplica"
    assert "replica to start" in t.status.message and "position 3" in t.status.message
    assert t.event is not None and t.event.reason == "WaitingForReplica"
    back = tr.queued(t.status, ASR, 1, replicas=1)
    assert back.status.reason == "WaitingForCapacity" and "capacity (position 1)" in back.status.message
    assert tr.queued(t.status, ASR, 2, replicas=0).event is None  # said once, not per position
    # A job between stages waiting for the LLM says so too, without changing its phase.
    mid = t.status.evolve(phase="PostProcessing", reason="StageSucceeded")
    llm = tr.queued(mid, PUNCTUATE, 1, replicas=0)
    assert llm.status.phase == "PostProcessing" and llm.status.reason == "WaitingForReplica"
    assert "LLM replica to start" in llm.status.message and llm.event is not None


class _Source:
    def __init__(self, listing: dict[str, Any] | Exception, events: list[dict[str, Any]]) -> None:
        self.listing = listing
        self.events = events

    async def list(self, path: str, params: Any) -> dict[str, Any]:
        if isinstance(self.listing, Exception):
            raise self.listing
        return self.listing

    async def watch(self, path: str, params: Any) -> Any:
        for e in self.events:
            yield e
        await asyncio.sleep(3600)


async def test_the_watcher_follows_added_modified_and_deleted_slices() -> None:
    pool = EndpointPool("asr")
    first = eps("s1", endpoint("10.0.0.1"))
    events = [
        {
            "type": "ADDED",
            "object": eps("s2", endpoint("10.0.0.2")) | {"metadata": {"name": "s2", "resourceVersion": "5"}},
        },
        {
            "type": "MODIFIED",
            "object": eps("s1", endpoint("10.0.0.1", ready=False))
            | {"metadata": {"name": "s1", "resourceVersion": "6"}},
        },
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}},
    ]
    src = _Source({"metadata": {"resourceVersion": "4"}, "items": [first]}, events)
    w = SliceWatcher(
        pool,
        ServiceRef("default", "omoai-asr"),
        lambda: src,
        SlotBook("asr", 2, fallback=1),
        fallback_url="http://omoai-asr:8000",
        fallback_slots=1,
    )
    task = asyncio.create_task(w.run())
    async with asyncio.timeout(10):
        while [e.url for e in pool.ready_endpoints()] != ["http://10.0.0.2:8000"]:
            await asyncio.sleep(0.005)
    assert pool.capacity() == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_watcher_falls_back_to_the_service_url_when_discovery_is_forbidden(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = EndpointPool("asr")
    src = _Source(DiscoveryUnavailable("listing answered 403: forbidden"), [])
    w = SliceWatcher(
        pool,
        ServiceRef("default", "omoai-asr"),
        lambda: src,
        SlotBook("asr", None, fallback=3),
        fallback_url="http://omoai-asr:8000",
        fallback_slots=3,
    )
    with caplog.at_level("WARNING"):
        await asyncio.wait_for(w.run(), 5)
    assert pool.origin == "static" and [e.url for e in pool.ready_endpoints()] == ["http://omoai-asr:8000"]
    assert pool.capacity() == 3
    assert "discovery unavailable" in caplog.text and "403" in caplog.text


async def test_a_granted_slot_never_waits_for_a_rate_limited_position_update() -> None:
    q = static_queue({"asr": 1})
    calls: list[int] = []

    async def on_position(p: Position) -> None:
        calls.append(p.position)

    holder_release = asyncio.Event()

    async def holder() -> None:
        async with q.slot("asr", ticket("h")):
            await holder_release.wait()

    h = asyncio.create_task(holder())
    await asyncio.sleep(0.01)

    async def waiter() -> float:
        t0 = asyncio.get_running_loop().time()
        async with q.slot("asr", ticket("w"), on_position, min_interval_s=30.0) as grant:
            assert abs(grant.waited_s - (asyncio.get_running_loop().time() - t0)) < 0.5
            return asyncio.get_running_loop().time() - t0

    w = asyncio.create_task(waiter())
    await asyncio.sleep(0.01)
    assert calls == [1]
    # Someone jumps ahead: w's position changes, but the next write is 30 s away...
    vip = asyncio.create_task(q.slot("asr", ticket("vip", 9)).__aenter__())
    await asyncio.sleep(0.01)
    assert calls == [1]
    vip.cancel()
    await asyncio.sleep(0.01)
    holder_release.set()
    await h
    # ...and the slot, when it comes, is taken at once, not after the interval.
    waited = await asyncio.wait_for(w, 2)
    assert waited < 1.0


async def test_a_slow_capacity_probe_never_stops_the_watch_from_being_read() -> None:
    pool = EndpointPool("asr")
    answer = asyncio.Event()

    async def slow_probe(url: str) -> int | None:
        await answer.wait()  # a replica that takes its time to answer /v1/capacity
        return 4

    events = [
        {"type": "ADDED", "object": eps(f"s{i}", endpoint(f"10.0.0.{i}")) | {"metadata": {"name": f"s{i}"}}}
        for i in range(2, 6)
    ]
    src = _Source({"metadata": {"resourceVersion": "1"}, "items": [eps("s1", endpoint("10.0.0.1"))]}, events)
    w = SliceWatcher(
        pool,
        ServiceRef("default", "omoai-asr"),
        lambda: src,
        SlotBook("asr", None, fallback=1, probe=slow_probe),
        fallback_url="http://omoai-asr:8000",
        fallback_slots=1,
    )
    task = asyncio.create_task(w.run())
    async with asyncio.timeout(10):
        while len(w.informer.objects) < 5:
            await asyncio.sleep(0.005)
    assert pool.capacity() == 0  # every event read while the first probe still hangs
    answer.set()
    async with asyncio.timeout(10):
        while pool.capacity() != 20:
            await asyncio.sleep(0.005)
    assert pool.ready_count() == 5
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
