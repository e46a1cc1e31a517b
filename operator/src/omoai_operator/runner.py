"""``omoai run job.yaml``: one or more TranscriptionJobs executed without a cluster, through the same
driver, stages and writers as the operator. The services are reached by URL, or started locally on
loopback from the installed ``omoai-asr`` / ``omoai-llm`` packages (never imported here: the
operator package stays free of torch).

Local mapping of the spec: every ``pvc`` claim is a local directory (``--volume claim=DIR``, else
``--data-dir``, default the current directory); a ``pvc`` source is uploaded to the ASR service;
``--output-dir`` overrides the spec's output destination.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml
from omoai_core.errors import ConfigError, InvalidInputError
from prometheus_client import CollectorRegistry

from omoai_operator import transitions as tr
from omoai_operator.controller import build_notifier, build_runtime, close_runtime
from omoai_operator.driver import JobDriver, JobRef
from omoai_operator.locations import Locations
from omoai_operator.settings import OperatorSettings
from omoai_operator.spec import JobSpec, load_manifest
from omoai_operator.status import JobStatus, Phase
from omoai_operator.storage import Store

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LocalSink:
    """Status kept in memory; every transition logged (and kept for callers and tests)."""

    name: str
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    events: list[tr.Event] = dataclasses.field(default_factory=list)

    async def patch(self, patch: Mapping[str, Any]) -> None:
        self.history.append(dict(patch))

    async def event(self, event: tr.Event) -> None:
        self.events.append(event)
        level = logging.WARNING if event.type == "Warning" else logging.INFO
        log.log(level, "[%s] %s: %s", self.name, event.reason, event.message)


@dataclasses.dataclass(frozen=True)
class RunResult:
    name: str
    status: JobStatus
    sink: LocalSink

    @property
    def ok(self) -> bool:
        return self.status.phase is Phase.SUCCEEDED


class LocalLocations(Locations):
    """Claims are local directories; pvc audio is uploaded; ``output_dir`` overrides outputs."""

    def __init__(self, volumes: Mapping[str, str], default_root: Path, output_dir: Path | None) -> None:
        super().__init__(volumes, read_secret=_env_secret)
        self.default_root = default_root
        self.output_dir = output_dir

    def _mount(self, claim: str, what: str) -> Path:
        return Path(self.volumes.get(claim, self.default_root))

    def local_audio(self, spec: JobSpec) -> Path | None:
        if spec.source.pvc is None:
            return None
        return self._mount(spec.source.pvc.claim_name, "source.pvc") / spec.source.pvc.path

    async def audio_url(self, spec: JobSpec, namespace: str) -> str:
        local = self.local_audio(spec)
        return local.resolve().as_uri() if local is not None else await super().audio_url(spec, namespace)

    async def store(self, spec: JobSpec, namespace: str, uid: str) -> Store:
        if self.output_dir is not None:
            from omoai_operator.storage import LocalStore

            return LocalStore(self.output_dir, uid)
        return await super().store(spec, namespace, uid)


class EnvSecret(Mapping[str, str]):
    """A Secret of a local run: key ``K`` of Secret ``N`` is the environment variable
    ``OMOAI_SECRET_<N>_<K>`` (upper case, every other character than a letter or digit as ``_``),
    or the content of the file ``OMOAI_SECRET_<N>_<K>_FILE`` names. Used for webhook signing keys."""

    def __init__(self, name: str) -> None:
        self.name = name

    def variable(self, key: str) -> str:
        return "OMOAI_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", f"{self.name}_{key}").upper()

    def __getitem__(self, key: str) -> str:
        var = self.variable(key)
        if var in os.environ:
            return os.environ[var]
        path = os.environ.get(var + "_FILE")
        if path is None:
            raise KeyError(key)
        try:
            return Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise KeyError(key) from e

    def __iter__(self) -> Iterator[str]:  # the keys cannot be listed back from variable names
        return iter(())

    def __len__(self) -> int:
        return 0


async def env_secret(namespace: str, name: str) -> Mapping[str, str]:
    return EnvSecret(name)


async def check_notifications(docs: Sequence[dict[str, Any]], cfg: OperatorSettings) -> None:
    """Refuse, before anything runs, a manifest whose notifications cannot work (the reason names
    the job and the field): a URL the address rule forbids, a signing key not in the environment."""
    notifier = build_notifier(cfg, env_secret)
    try:
        for doc in docs:
            meta, spec = load_manifest(doc)
            try:
                await notifier.check(spec, meta.get("namespace") or "local")
            except InvalidInputError as e:
                raise InvalidInputError(f"{meta['name']}: {e.message}") from None
    finally:
        await notifier.aclose()


async def _env_secret(namespace: str, name: str) -> Mapping[str, str]:
    """Without a cluster, S3 credentials come from the usual AWS environment variables."""
    return {
        "accessKeyId": os.environ.get("AWS_ACCESS_KEY_ID", ""),
        "secretAccessKey": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "sessionToken": os.environ.get("AWS_SESSION_TOKEN", ""),
    }


def read_manifests(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidInputError(f"cannot read {path}: {e.strerror}") from e
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as e:
        raise InvalidInputError(f"{path} is not valid YAML: {e}") from e
    if not docs:
        raise InvalidInputError(f"{path} holds no TranscriptionJob")
    return docs


async def run_jobs(
    docs: Sequence[dict[str, Any]],
    cfg: OperatorSettings,
    *,
    data_dir: Path,
    output_dir: Path | None = None,
    registry: CollectorRegistry | None = None,
) -> list[RunResult]:
    """Run every job (concurrently, within the configured capacity) to its end."""
    parsed = []
    for doc in docs:
        meta, _ = load_manifest(doc)  # every manifest checked before anything runs
        parsed.append((meta, doc))
    await check_notifications(docs, cfg)
    rt = build_runtime(cfg, registry or CollectorRegistry(), env_secret)
    rt.locations = LocalLocations(cfg.volumes, data_dir, output_dir)
    try:
        results = await asyncio.gather(*(_run_one(rt, meta, doc) for meta, doc in parsed))
    finally:
        await close_runtime(rt)
    return list(results)


async def _run_one(rt: Any, meta: Mapping[str, Any], doc: Mapping[str, Any]) -> RunResult:
    name = meta["name"]
    ref = JobRef(meta.get("namespace") or "local", name, str(meta.get("uid") or uuid.uuid4()), dt.datetime.now(dt.UTC))
    sink = LocalSink(name)
    spec = dict(doc["spec"])
    spec["suspend"] = False  # nothing could resume it here
    driver = JobDriver(rt, ref, sink, read_spec=lambda: spec, status=None)
    await driver.run()
    return RunResult(name, driver.status, sink)


# -- local services ------------------------------------------------------------------------------
#: The service packages, imported only when ``omoai run`` starts them (never a hard dependency).
SERVICES = {
    "asr": ("omoai_asr.settings", "AsrSettings", "omoai_asr.app"),
    "llm": ("omoai_llm.settings", "LlmSettings", "omoai_llm.app"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def local_service(
    kind: str, overrides: Mapping[str, Any], *, ready_timeout_s: float = 900.0
) -> AsyncIterator[str]:
    """Start the ASR or LLM service in this process (uvicorn in a thread, on a free loopback port)
    with its settings from the environment plus ``overrides``; yields its URL; always stops it."""
    settings_module, settings_class, app_module = SERVICES[kind]
    if importlib.util.find_spec(settings_module.split(".")[0]) is None:
        package = f"omoai-{kind}"
        raise ConfigError(f"{package} is not installed: install it, or pass --{kind}-url to use a running service")
    import uvicorn
    from omoai_core.settings import load_settings

    port = _free_port()
    settings_cls = getattr(importlib.import_module(settings_module), settings_class)
    settings = load_settings(settings_cls, **{**overrides, "host": "127.0.0.1", "port": port})
    app = importlib.import_module(app_module).create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"omoai-{kind}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                if not thread.is_alive():
                    raise ConfigError(f"the {kind.upper()} service stopped before it was ready (see the log above)")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url + "/readyz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise ConfigError(f"the {kind.upper()} service was not ready after {ready_timeout_s:.0f}s")
                await asyncio.sleep(0.3)
        log.info("%s service ready at %s", kind.upper(), url)
        yield url
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
