"""kopf registrations only: startup settings, login, one daemon per TranscriptionJob, cleanup on
delete. The logic lives in :mod:`omoai_operator.controller` and below.

Run with ``omoai operator`` or ``kopf run -m omoai_operator.handlers --all-namespaces``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from omoai_core.metrics import build_info
from omoai_core.settings import load_settings
from prometheus_client import CollectorRegistry, start_http_server

from omoai_operator import __version__
from omoai_operator.controller import Controller
from omoai_operator.settings import OperatorSettings
from omoai_operator.spec import GROUP, PLURAL, VERSION

FINALIZER = f"{GROUP}/finalizer"


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    cfg = load_settings(OperatorSettings)
    # Stalled watches are the classic kopf failure: bound them on both sides.
    settings.watching.server_timeout = cfg.watch_server_timeout_s
    settings.watching.client_timeout = cfg.watch_client_timeout_s
    settings.watching.connect_timeout = 30
    # Our own API group for everything kopf stores on the objects.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # One acting replica: the others stand by until its peering lease lapses.
    settings.peering.name = cfg.peering_name
    settings.peering.standalone = cfg.peering_standalone
    settings.peering.mandatory = not cfg.peering_standalone  # clusterwide follows --namespace/-A
    # Transitions are posted as events by the driver; kopf's own log lines only from WARNING.
    settings.posting.level = logging.WARNING
    registry = CollectorRegistry()
    build_info(registry, "operator", __version__)
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port, addr=cfg.metrics_host, registry=registry)
    memo.controller = Controller(cfg, registry)
    memo.controller.start_discovery()
    # Independent of jobs: proves the operator's loop runs (the OmoaiOperatorNotReconciling alert).
    memo.heartbeat = asyncio.get_running_loop().create_task(memo.controller.runtime.metrics.beat(), name="heartbeat")
    logger.info(
        "omoai operator %s: ASR %s, LLM %s (endpoint discovery %s)",
        __version__,
        cfg.asr_url,
        cfg.llm_url,
        "on" if cfg.endpoint_discovery else "off",
    )


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is not None and getattr(memo, "controller", None) is not None:
        memo.controller.connect(info)
    return info


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    heartbeat = getattr(memo, "heartbeat", None)
    if heartbeat is not None:
        heartbeat.cancel()
    controller = getattr(memo, "controller", None)
    if controller is not None:
        await controller.close()


@kopf.daemon(GROUP, VERSION, PLURAL, id="drive", cancellation_timeout=10.0)
async def drive(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    await memo.controller.drive(body, stopped)


@kopf.on.delete(GROUP, VERSION, PLURAL, id="cleanup")
async def cleanup(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await memo.controller.cleanup(body)
