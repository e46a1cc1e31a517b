"""The S3 example end to end: credentials read from the Secret the job names, the audio handed to
the ASR service as a presigned URL, the outputs staged and committed under the S3 prefix (real
boto3 against a loopback S3 endpoint)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from operator_harness import HERE, Kube, operator_env, proxies_for, run_operator

from tests.support.operator_services import FakeS3, StubServices

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

EXAMPLE = HERE.parents[2] / "examples" / "transcriptionjob-s3.yaml"
AUDIO = b"RIFF" + bytes(4000)


def test_s3_example_reads_its_secret_presigns_the_audio_and_commits_outputs_to_the_bucket(
    kube: Kube, kubeconfig: Path, stubs: StubServices, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("boto3")  # the operator's "s3" extra, installed by scripts/setup.sh
    s3 = FakeS3()
    stubs.fetch_audio = True
    manifest = yaml.safe_load(EXAMPLE.read_text())
    spec = manifest["spec"]
    spec["source"]["s3"]["endpoint"] = spec["output"]["s3"]["endpoint"] = s3.url
    name, secret = manifest["metadata"]["name"], spec["source"]["s3"]["secretRef"]["name"]
    s3.objects[f"{spec['source']['s3']['bucket']}/{spec['source']['s3']['key']}"] = AUDIO
    try:
        with (
            proxies_for(stubs.url, stubs.url) as (asr, llm),
            run_operator(operator_env(asr.url, llm.url, data_dir.parent), monkeypatch),
        ):
            kube.create(manifest)  # before its Secret exists: a retryable wait, as with Pods
            kube.wait(name, lambda o: "SecretNotFound" in (o or {}).get("status", {}).get("message", ""))
            time.sleep(0.3)
            kube.create_secret(secret, {"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "not-a-real-secret"})
            status = kube.wait_phase(name, "Succeeded", "Failed", timeout=60)
    finally:
        s3.close()
    assert status["phase"] == "Succeeded", status
    assert status["retries"] >= 1
    prefix = "meetings/transcripts/2026/03"
    assert sorted(k for k in s3.objects if k.startswith(prefix)) == [
        f"{prefix}/board-meeting.{fmt}" for fmt in ("json", "md", "txt")
    ]
    assert not [k for k in s3.objects if ".omoai-staging" in k]  # staging dropped after the commit
    assert status["results"]["files"] == [f"s3://{prefix}/board-meeting.{f}" for f in ("json", "md", "txt")]
    assert s3.presigned_gets == ["meetings/2026/03/board-meeting.wav"]
    assert list(stubs.fetched.values()) == [len(AUDIO)]
    assert b'"summary"' in s3.objects[f"{prefix}/board-meeting.json"]
