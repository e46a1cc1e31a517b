"""The operator process: builds the shared runtime from settings and gives each TranscriptionJob
its driver (a kopf daemon), its status writer, its TTL and its cleanup on delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import kopf
from omoai_core.errors import InvalidInputError
from prometheus_client import CollectorRegistry

from omoai_operator import transitions as tr
from omoai_operator.clients import AsrClient, LlmClient, ServiceClient
from omoai_operator.deliveries import RetryPolicy
from omoai_operator.driver import JobDriver, JobGone, JobRef, Runtime, drive_until_stopped
from omoai_operator.failures import StageError
from omoai_operator.kube import KubeClient, KubeError
from omoai_operator.locations import Locations, SecretReader
from omoai_operator.metrics import OperatorMetrics
from omoai_operator.namespaces import NamespaceShares, NamespaceWatcher
from omoai_operator.notifier import AddressGuard, Notifier
from omoai_operator.pipeline import Pipeline, Service
from omoai_operator.placement import EndpointPool, use_service_url
from omoai_operator.probing import SlotBook
from omoai_operator.queue import CapacityQueue
from omoai_operator.reconcile import DecisionKind
from omoai_operator.settings import OperatorSettings
from omoai_operator.slices import SliceWatcher, service_ref
from omoai_operator.spec import parse_spec
from omoai_operator.status import JobStatus, Phase, parse_time

log = logging.getLogger(__name__)


SERVICES = tuple(Service)


def build_runtime(
    cfg: OperatorSettings,
    registry: CollectorRegistry,
    read_secret: SecretReader | None = None,
    *,
    discovery: bool = False,
) -> Runtime:
    """The pieces every job shares; used by the operator and by ``omoai run``.

    Each service's capacity is an :class:`~omoai_operator.placement.EndpointPool`. Without ``discovery`` (``omoai run``) it is
    the Service URL with the configured concurrency from the start; with it, the pools stay empty
    until :meth:`Controller.start_discovery` has listed the EndpointSlices (or fallen back).
    """
    metrics = OperatorMetrics.create(registry, top_namespaces=cfg.queue_metrics_namespaces)
    pools: dict[str, EndpointPool] = {s: EndpointPool(s, eject_s=cfg.endpoint_eject_s) for s in SERVICES}
    for pool in pools.values():
        pool.listen(functools.partial(metrics.observe_capacity, pool))
    if not discovery:
        for svc, pool in pools.items():
            url, slots = getattr(cfg, f"{svc}_url"), getattr(cfg, f"{svc}_concurrency")
            use_service_url(pool, url, slots, "no Kubernetes API: a local run")

    def client(svc: str, url: str, slots: int) -> ServiceClient:
        return ServiceClient(
            svc.upper(),
            url,
            token=cfg.token(svc),
            timeout_s=cfg.request_timeout_s,
            connect_timeout_s=cfg.connect_timeout_s,
            # With discovery the queue bounds the calls over any number of endpoints.
            max_connections=None if discovery else slots,
        )

    return Runtime(
        pipeline=Pipeline(
            AsrClient(client("asr", cfg.asr_url, cfg.asr_concurrency)),
            LlmClient(client("llm", cfg.llm_url, cfg.llm_concurrency)),
        ),
        queue=CapacityQueue(
            pools,
            shares=NamespaceShares(cfg.namespace_weights, cfg.namespace_max_running),
            observer=metrics.observe_queue,
        ),
        locations=Locations(cfg.volumes, read_secret),
        metrics=metrics,
        backoff=tr.Backoff(cfg.backoff_base_s, cfg.backoff_max_s),
        notifier=build_notifier(cfg, read_secret),
        suspend_poll_s=cfg.suspend_poll_s,
        progress_interval_s=cfg.progress_interval_s,
    )


def build_notifier(cfg: OperatorSettings, read_secret: SecretReader | None) -> Notifier:
    return Notifier(
        RetryPolicy(
            cfg.notify_backoff_base_s, cfg.notify_backoff_max_s, cfg.notify_retry_window_s, cfg.notify_timeout_s
        ),
        AddressGuard(cfg.notify_allow_http, cfg.allow_private_addresses, tuple(cfg.url_allowed_networks)),
        read_secret,
    )


async def close_runtime(rt: Runtime) -> None:
    await rt.pipeline.asr.client.aclose()
    await rt.pipeline.llm.client.aclose()
    if rt.notifier is not None:
        await rt.notifier.aclose()


class KubeSink:
    """Writes transitions to the job's ``/status`` and posts them as Kubernetes events."""

    def __init__(self, kube: Callable[[], KubeClient], ref: JobRef, body: kopf.Body) -> None:
        self._kube = kube  # looked up per call: a re-login replaces the client
        self.ref = ref
        self.body = body

    async def patch(self, patch: Mapping[str, Any]) -> None:
        delay = 0.2
        for attempt in range(6):
            try:
                await self._kube().patch_status(self.ref.namespace, self.ref.name, patch)
                return
            except KubeError as e:
                if e.status == 404:
                    raise JobGone(self.ref.key) from e
                if e.status < 500 and e.status not in (409, 429):
                    raise
                err: Exception = e
            except Exception as e:  # noqa: BLE001 - connection errors: the API server restarts too
                err = e
            log.warning("status patch of %s failed (%s), attempt %d", self.ref.key, err, attempt + 1)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise RuntimeError(f"cannot write the status of {self.ref.key}")

    async def event(self, event: tr.Event) -> None:
        kopf.event(self.body, type=event.type, reason=event.reason, message=event.message[:1000])


class Controller:
    def __init__(self, cfg: OperatorSettings, registry: CollectorRegistry) -> None:
        self.cfg = cfg
        self.registry = registry
        self._kube: KubeClient | None = None
        self.runtime = build_runtime(cfg, registry, self._read_secret, discovery=True)
        self._driving: dict[str, asyncio.Event] = {}  # job uid -> set when its driver has exited
        self._logged_in = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._discovery: list[asyncio.Task[None]] = []
        self.watchers: dict[str, SliceWatcher] = {}

    def connect(self, info: kopf.ConnectionInfo) -> None:
        self._kube = KubeClient(info)
        if self._loop is not None:  # login may run in a worker thread
            self._loop.call_soon_threadsafe(self._logged_in.set)

    def start_discovery(self) -> None:
        """Start following the services' endpoints and the Namespace overrides (once logged in); called
        from the startup handler."""
        self._loop = asyncio.get_running_loop()
        if self._kube is not None:
            self._logged_in.set()
        for svc in SERVICES:
            pool = self.runtime.queue.pool(svc)
            url, slots = getattr(self.cfg, f"{svc}_url"), getattr(self.cfg, f"{svc}_concurrency")
            ref = service_ref(getattr(self.cfg, f"{svc}_service"), url, self.cfg.own_namespace())
            if not self.cfg.endpoint_discovery or ref is None:
                why = (
                    "OMOAI_ENDPOINT_DISCOVERY is off"
                    if not self.cfg.endpoint_discovery
                    else (f"{url} names no cluster Service; set OMOAI_{svc.upper()}_SERVICE")
                )
                use_service_url(pool, url, slots, why)
                continue
            watcher = SliceWatcher(
                pool,
                ref,
                lambda: self.kube,
                SlotBook(svc, getattr(self.cfg, f"{svc}_slots_per_endpoint"), fallback=slots),
                scheme=urlsplit(url).scheme or "http",
                port_name=getattr(self.cfg, f"{svc}_port_name") or None,
                fallback_url=url,
                fallback_slots=slots,
                watch_timeout_s=self.cfg.watch_server_timeout_s,
            )
            self.watchers[svc] = watcher
            self._discovery.append(asyncio.create_task(self._after_login(watcher.run), name=f"omoai-endpoints-{svc}"))
        if self.cfg.namespace_overrides:
            ns_watcher = NamespaceWatcher(
                self.runtime.queue.shares, lambda: self.kube, watch_timeout_s=self.cfg.watch_server_timeout_s
            )
            self._discovery.append(asyncio.create_task(self._after_login(ns_watcher.run), name="omoai-namespaces"))

    async def _after_login(self, run: Callable[[], Awaitable[None]]) -> None:
        await self._logged_in.wait()
        await run()

    @property
    def kube(self) -> KubeClient:
        if self._kube is None:
            raise RuntimeError("not logged in to Kubernetes yet")
        return self._kube

    async def _read_secret(self, namespace: str, name: str) -> Mapping[str, str]:
        return await self.kube.read_secret(namespace, name)

    async def close(self) -> None:
        for task in self._discovery:
            task.cancel()
        for task in self._discovery:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await close_runtime(self.runtime)
        if self._kube is not None:
            await self._kube.aclose()

    @staticmethod
    def ref(body: kopf.Body) -> JobRef:
        meta = body.get("metadata", {})
        return JobRef(
            meta["namespace"], meta["name"], meta.get("uid") or meta["name"], parse_time(meta.get("creationTimestamp"))
        )

    async def drive(self, body: kopf.Body, stopped: kopf.DaemonStopped) -> None:
        ref = self.ref(body)
        driver = JobDriver(
            self.runtime,
            ref,
            KubeSink(lambda: self.kube, ref, body),
            read_spec=lambda: body.get("spec"),
            status=body.get("status"),
            generation=lambda: body.get("metadata", {}).get("generation"),
        )
        exited = self._driving[ref.uid] = asyncio.Event()
        try:
            decision = await drive_until_stopped(driver, stopped)
        except JobGone:
            return
        except Exception:
            self.runtime.metrics.reconcile_errors.labels(kind="driver").inc()
            raise
        finally:
            exited.set()
            if self._driving.get(ref.uid) is exited:
                del self._driving[ref.uid]
        if decision is not None and decision.kind is DecisionKind.EXPIRE and decision.at is not None:
            left = (decision.at - self.runtime.now()).total_seconds()
            if left > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stopped.wait(), timeout=left)
            if not stopped:
                log.info("%s: ttlSecondsAfterFinished passed, deleting", ref.key)
                kopf.event(body, type="Normal", reason="Expired", message="ttlSecondsAfterFinished passed; deleting")
                await self.kube.delete_job(ref.namespace, ref.name, ref.uid)

    async def cleanup(self, body: kopf.Body) -> None:
        """On delete (idempotent: kopf may call it twice): drop staged and half-committed outputs."""
        ref = self.ref(body)
        self.runtime.phases.set(ref.key, None)
        exited = self._driving.get(ref.uid)
        if exited is not None:
            # kopf may call this while the job's daemon is still winding down: let it finish its
            # last write first, so that nothing lands after the cleanup.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(exited.wait(), timeout=30)
        try:
            spec = parse_spec(dict(body.get("spec") or {}))
        except InvalidInputError:
            return
        try:
            store = await self.runtime.locations.store(spec, ref.namespace, ref.uid)
        except StageError as e:
            log.info("%s: no store to clean (%s)", ref.key, e)
            return
        if JobStatus.from_wire(body.get("status")).phase is Phase.SUCCEEDED:
            await store.finalize()  # the outputs are the result: they stay
        else:
            await store.discard()
