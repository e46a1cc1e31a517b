"""What the operator benchmarks (``operator_throughput.py``, ``replica_scaling.py``) share: the API
emulator as a child process, the child-process protocol (the child prints one line, then serves
until its stdin closes, then may print its results), a kubeconfig for the emulator, the operator's
environment and kopf run, TranscriptionJob bodies, and waiting for their phases.

Not a benchmark itself (``run_all.py`` skips files starting with ``_``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import kopf
import yaml
from kopf.testing import KopfRunner

from tests.support import operator_crd
from tests.support.emulator import Emulator, EmulatorThread, Kind

ROOT = Path(__file__).resolve().parents[1]
NS = "default"
JOBS = f"/apis/omoai.io/v1alpha1/namespaces/{NS}/transcriptionjobs"
#: Only the transcription stage: what the throughput of placement is measured on.
ASR_ONLY = {"punctuation": False, "summary": "none", "topics": False}


def serve_emulator(*extra: Kind) -> int:
    """Child-process mode: the API emulator (TranscriptionJobs with the real CRD, events,
    namespaces, secrets and the ``extra`` kinds) on its own CPU and interpreter lock, as an API
    server would be. Prints its URL, serves until stdin closes."""
    crd = operator_crd.load_crd()
    emu = Emulator()
    emu.add_kind(
        Kind(
            "omoai.io",
            "v1alpha1",
            "transcriptionjobs",
            "TranscriptionJob",
            status_subresource=True,
            validate=operator_crd.validate,
            defaults=operator_crd.apply_defaults,
        ),
        shortnames=tuple(crd["spec"]["names"]["shortNames"]),
    )
    for kind in (
        Kind("", "v1", "events", "Event"),
        Kind("", "v1", "namespaces", "Namespace", namespaced=False),
        Kind("", "v1", "secrets", "Secret"),
        *extra,
    ):
        emu.add_kind(kind)
    thread = EmulatorThread(emu).start()
    httpx.post(f"{thread.url}/api/v1/namespaces", json={"metadata": {"name": NS}}).raise_for_status()
    print(thread.url, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    thread.stop()
    return 0


class Child:
    """A child-process mode of a benchmark module (``python -m <module> <args>``): ``first`` is the
    line it printed when ready; :meth:`stop` closes its stdin and returns what it printed after."""

    def __init__(self, module: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert self.proc.stdout is not None
        self.first = self.proc.stdout.readline().strip()
        if not self.first:
            raise RuntimeError(f"{module} {args[0] if args else ''} did not start")

    def stop(self) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        rest = self.proc.stdout.read()
        self.proc.wait(30)
        return rest


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "e",
                "clusters": [{"name": "e", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "e", "context": {"cluster": "e", "user": "u"}}],
            }
        )
    )
    return path


def run_operator(kubeconfig: Path, data: Path, **env: str) -> KopfRunner:
    """The operator's handlers under kopf in this process (``with run_operator(...):``), standalone
    in ``NS``, against ``kubeconfig``, writing to ``data``; ``env`` adds ``OMOAI_*`` settings."""
    os.environ.update(
        {
            "KUBECONFIG": str(kubeconfig),
            "OMOAI_VOLUMES": json.dumps({"omoai-data": str(data)}),
            "OMOAI_PEERING_STANDALONE": "true",
            "OMOAI_METRICS_PORT": "0",
            "OMOAI_LOG_LEVEL": "WARNING",
            **env,
        }
    )
    settings = kopf.OperatorSettings()
    settings.queueing.exit_timeout = 1
    settings.background.cancellation_polling = 0.2
    settings.background.instant_exit_timeout = 0.1
    return KopfRunner(
        ["run", "-m", "omoai_operator.handlers", "--standalone", "--namespace", NS, "--quiet"],
        settings=settings,
        timeout=60,
    )


def job(name: str, url: str, postprocess: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "omoai.io/v1alpha1",
        "kind": "TranscriptionJob",
        "metadata": {"name": name},
        "spec": {
            "source": {"url": url},
            "postprocess": postprocess,
            "output": {"pvc": {"claimName": "omoai-data", "path": "out"}, "formats": ["json"]},
        },
    }


def wait_until_finished(http: httpx.Client, n_jobs: int, timeout_s: float, poll_s: float) -> list[dict[str, Any]]:
    """The jobs once all ``n_jobs`` are Succeeded or Failed; RuntimeError past ``timeout_s`` or when
    any failed."""
    t0 = time.monotonic()
    while True:
        items: list[dict[str, Any]] = http.get(JOBS).json()["items"]
        done = sum(1 for o in items if (o.get("status") or {}).get("phase") in ("Succeeded", "Failed"))
        if done == n_jobs:
            break
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"only {done}/{n_jobs} finished in {timeout_s:g} s")
        time.sleep(poll_s)
    failed = [o["metadata"]["name"] for o in items if o["status"]["phase"] != "Succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs failed, e.g. {failed[0]}")
    return items
