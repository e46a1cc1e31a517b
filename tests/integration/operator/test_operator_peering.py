"""Peering: two replicas of the operator against one API, only the higher-priority one acts."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from operator_harness import (
    NAMESPACE,
    Kube,
    enable_peering,
    job,
    operator_env,
    operator_process,
    proxies_for,
    run_operator,
)

from tests.support.emulator import EmulatorThread
from tests.support.operator_services import StubServices

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_only_the_highest_priority_replica_acts(
    emulator: EmulatorThread,
    kube: Kube,
    kubeconfig: Path,
    stubs: StubServices,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    enable_peering(emulator)
    log = tmp_path / "standby.log"
    with proxies_for(stubs.url, stubs.url) as (asr, llm):
        env = operator_env(asr.url, llm.url, data_dir.parent, OMOAI_PEERING_STANDALONE="false")
        standby_cmd_env = {**env, "KUBECONFIG": str(kubeconfig)}
        with operator_process(standby_cmd_env, log, "--priority", "10") as standby:
            deadline = time.monotonic() + 60
            while "omoai operator" not in log.read_text(errors="replace") and time.monotonic() < deadline:
                time.sleep(0.2)
            with run_operator(env, monkeypatch, "--priority", "100"):
                while "Pausing operations in favour of" not in log.read_text(errors="replace"):
                    assert time.monotonic() < deadline + 60, log.read_text()[-3000:]
                    time.sleep(0.2)
                for i in range(3):
                    body = job(f"peer-{i}")
                    body["spec"]["output"]["pvc"]["path"] = f"{data_dir.name}/out"
                    kube.create(body)
                statuses = [kube.wait_phase(f"peer-{i}", "Succeeded", "Failed") for i in range(3)]
                assert standby.poll() is None  # the standby is alive, only paused
    peers = httpx.get(f"{emulator.url}/apis/kopf.dev/v1/namespaces/{NAMESPACE}/kopfpeerings/omoai").json()
    assert all(s["phase"] == "Succeeded" for s in statuses)
    assert asr.count("/v1/transcriptions") == 3  # each job once: the standby did not act
    assert len(peers.get("status", {})) >= 1  # the replicas announced themselves
