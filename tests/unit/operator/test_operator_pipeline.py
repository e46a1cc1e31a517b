"""Stages and storage: staged results are reused, outputs committed once, discarded jobs leave
nothing; the driver end to end with an in-memory sink and the service transport as the seam."""

from __future__ import annotations

import asyncio
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from omoai_operator import transitions as tr
from omoai_operator.clients import AsrClient, LlmClient, ServiceClient
from omoai_operator.driver import JobDriver, JobRef, Runtime
from omoai_operator.fairness import Ticket
from omoai_operator.locations import Locations
from omoai_operator.metrics import OperatorMetrics
from omoai_operator.pipeline import JobContext, Pipeline
from omoai_operator.runner import LocalSink
from omoai_operator.spec import parse_spec
from omoai_operator.storage import STAGING, LocalStore, S3Store
from prometheus_client import CollectorRegistry

from tests.support.capacity import static_queue

TRANSCRIPT = {
    "text": "xin chào các bạn",
    "duration": 3.0,
    "model": "m",
    "segments": [
        {
            "text": "xin chào",
            "start": 0.0,
            "end": 1.5,
            "words": [{"word": "xin", "start": 0.0, "end": 0.5}, {"word": "chào", "start": 0.6, "end": 1.4}],
        },
        {"text": "các bạn", "start": 1.5, "end": 3.0, "words": []},
    ],
}


class Services:
    """The HTTP seam: answers like the ASR and LLM services; counts calls; can fail on demand."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, list[int]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls[path] += 1
        if self.fail.get(path):
            return httpx.Response(self.fail[path].pop(0), json={"error": {"code": "x", "message": "injected"}})
        if path == "/v1/transcriptions":
            return httpx.Response(200, json=TRANSCRIPT)
        body = json.loads(request.content)
        if path == "/v1/punctuate":
            segs = [{**s, "text": s["text"].capitalize() + "."} for s in body["segments"]]
            return httpx.Response(
                200, json={"segments": segs, "quality": {"wer": 0, "cer": 0, "words_in": 4, "words_out": 4}}
            )
        if path == "/v1/summarize":
            return httpx.Response(200, json={"summary": {"title": "Chào", "abstract": "Lời chào.", "bullets": ["a"]}})
        return httpx.Response(200, json={"topics": [{"title": "Mở đầu", "start": 0.0}]})


def runtime(services: Services, root: Path, **kw: Any) -> Runtime:
    transport = httpx.MockTransport(services)
    pipeline = Pipeline(
        AsrClient(ServiceClient("ASR", "http://asr", transport=transport)),
        LlmClient(ServiceClient("LLM", "http://llm", transport=transport)),
    )
    return Runtime(
        pipeline=pipeline,
        queue=static_queue({"asr": 1, "llm": 1}),
        locations=Locations({"data": str(root)}, None),
        metrics=OperatorMetrics.create(CollectorRegistry()),
        backoff=tr.Backoff(0.01, 0.02),
        suspend_poll_s=0.01,
        **kw,
    )


def job_spec(**kw: Any) -> dict[str, Any]:
    return {
        "source": {"url": "https://a.example/x.wav"},
        "output": {"pvc": {"claimName": "data", "path": "out"}, "formats": ["json", "srt", "md"]},
    } | kw


async def run_job(
    rt: Runtime, spec: dict[str, Any], status: dict[str, Any] | None = None, uid: str = "u1"
) -> tuple[dict, LocalSink]:
    sink = LocalSink("j")
    driver = JobDriver(rt, JobRef("ns", "j", uid), sink, read_spec=lambda: spec, status=status)
    await asyncio.wait_for(driver.run(), 10)
    return driver.status.wire(), sink


async def test_a_job_runs_every_stage_once_and_commits_its_outputs(tmp_path: Path) -> None:
    services = Services()
    status, sink = await run_job(runtime(services, tmp_path), job_spec())
    assert status["phase"] == "Succeeded"
    assert services.calls == Counter({"/v1/transcriptions": 1, "/v1/punctuate": 1, "/v1/summarize": 1, "/v1/topics": 1})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["j.json", "j.md", "j.srt"]
    doc = json.loads((tmp_path / "out" / "j.json").read_text())
    assert doc["transcript"]["text"] == "Xin chào. Các bạn."
    assert doc["transcript"]["segments"][0]["words"][1]["word"] == "chào"  # word times kept from ASR
    assert doc["quality"]["words_in"] == 4 and doc["summary"]["title"] == "Chào"
    phases = [p["phase"] for p in sink.history if "phase" in p]
    phases = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert phases == ["Pending", "Transcribing", "PostProcessing", "Succeeded"]
    assert [e.reason for e in sink.events][-1] == "Completed"


async def test_a_restart_reuses_staged_results_and_does_not_call_the_services_again(tmp_path: Path) -> None:
    services = Services()
    rt = runtime(services, tmp_path)
    spec = job_spec()
    store = LocalStore(tmp_path / "out", "u1")
    await store.put("asr.json", json.dumps(TRANSCRIPT).encode())  # stored before the operator died
    status = {
        "phase": "Transcribing",
        "startTime": "2026-01-01T00:00:00Z",
        "stages": {"asr": {"state": "Running", "attempts": 1}},
    }
    status, _ = await run_job(rt, spec, status)
    assert status["phase"] == "Succeeded" and services.calls["/v1/transcriptions"] == 0
    assert status["stages"]["asr"]["attempts"] == 1
    assert not (tmp_path / "out" / STAGING).exists()


async def test_retryable_errors_are_retried_and_permanent_ones_fail_at_once(tmp_path: Path) -> None:
    services = Services()
    services.fail["/v1/summarize"] = [503, 429]
    status, sink = await run_job(runtime(services, tmp_path), job_spec(backoffLimit=3))
    assert status["phase"] == "Succeeded" and status["retries"] == 2 and services.calls["/v1/summarize"] == 3
    assert [e.reason for e in sink.events].count("Retrying") == 2

    services = Services()
    services.fail["/v1/transcriptions"] = [422]
    status, _ = await run_job(runtime(services, tmp_path / "b"), job_spec(backoffLimit=3), uid="u2")
    assert (
        status["phase"] == "Failed" and status["reason"] == "InvalidAudio" and services.calls["/v1/transcriptions"] == 1
    )
    assert not (tmp_path / "b" / "out").exists() or list((tmp_path / "b" / "out").rglob("*")) == []


async def test_an_invalid_spec_fails_with_the_fields_to_fix(tmp_path: Path) -> None:
    status, _ = await run_job(runtime(Services(), tmp_path), job_spec(backoffLimit=-2))
    assert status["phase"] == "Failed" and status["reason"] == "InvalidSpec"
    assert "spec.backoffLimit" in status["message"]


async def test_an_unshared_claim_fails_permanently_and_names_the_mounted_ones(tmp_path: Path) -> None:
    spec = job_spec(source={"pvc": {"claimName": "other", "path": "a.wav"}})
    status, _ = await run_job(runtime(Services(), tmp_path), spec)
    assert status["reason"] == "VolumeNotShared" and "mounted claims: data" in status["message"]


async def test_local_commit_is_idempotent_and_discard_removes_half_committed_outputs(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, "u")
    outputs = {"a.json": b"{}", "a.txt": b"hi"}
    await store.commit(outputs)
    await store.commit(outputs)  # a restart after the moves: nothing duplicated, nothing lost
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["a.json", "a.txt"]
    await store.discard()  # the job never reached Succeeded: its outputs go too
    assert [p.name for p in tmp_path.iterdir()] == []

    other = LocalStore(tmp_path, "v")
    await other.put("asr.json", b"x")
    (tmp_path / "unrelated.txt").write_text("keep me")
    await other.discard()
    assert [p.name for p in tmp_path.iterdir()] == ["unrelated.txt"]


class FakeS3:
    """The boto3 client seam: an in-memory bucket."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def _missing(self) -> Exception:
        e = Exception("not found")
        e.response = {"Error": {"Code": "404"}}  # type: ignore[attr-defined]
        return e

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        self.objects[Key] = Body

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.objects:
            raise self._missing()
        return {"Body": io.BytesIO(self.objects[Key])}

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.objects:
            raise self._missing()
        return {}

    def copy_object(self, Bucket: str, Key: str, CopySource: dict[str, str]) -> None:
        self.objects[Key] = self.objects[CopySource["Key"]]

    def delete_object(self, Bucket: str, Key: str) -> None:
        self.objects.pop(Key, None)

    def list_objects_v2(self, Bucket: str, Prefix: str) -> dict[str, Any]:
        return {"Contents": [{"Key": k} for k in sorted(self.objects) if k.startswith(Prefix)]}


async def test_s3_store_stages_commits_and_cleans_up() -> None:
    s3 = FakeS3()
    store = S3Store(s3, "bkt", "/transcripts/2026/", "uid-1")
    await store.put("asr.json", b"t")
    assert await store.get("asr.json") == b"t" and await store.get("nope") is None
    files = await store.commit({"m.json": b"{}", "m.md": b"# m"})
    assert files == ["s3://bkt/transcripts/2026/m.json", "s3://bkt/transcripts/2026/m.md"]
    await store.finalize()
    assert sorted(s3.objects) == ["transcripts/2026/m.json", "transcripts/2026/m.md"]

    half = S3Store(s3, "bkt", "other", "uid-2")
    await half.put("asr.json", b"t")
    await half.commit({"x.json": b"{}"})
    await half.discard()
    assert sorted(s3.objects) == ["transcripts/2026/m.json", "transcripts/2026/m.md"]


async def test_pipeline_context_builds_the_file_url_of_a_shared_claim(tmp_path: Path) -> None:
    loc = Locations({"data": str(tmp_path)}, None)
    spec = parse_spec(job_spec(source={"pvc": {"claimName": "data", "path": "a b/x.wav"}}))
    url = await loc.audio_url(spec, "ns")
    assert url == (tmp_path / "a b" / "x.wav").as_uri()
    ctx = JobContext("ns/j", "j", "u", spec, await loc.store(spec, "ns", "u"), url)
    assert ctx.stem == "j" and ctx.store.location == "pvc://data/out/"


async def test_s3_source_without_credentials_in_the_secret_fails_clearly(tmp_path: Path) -> None:
    pytest.importorskip("boto3")

    async def read_secret(ns: str, name: str) -> dict[str, str]:
        return {"accessKeyId": "AKIA"}

    loc = Locations({}, read_secret)
    spec = parse_spec(job_spec(source={"s3": {"bucket": "bkt", "key": "a.wav", "secretRef": {"name": "creds"}}}))
    from omoai_operator.clients import StageError

    with pytest.raises(StageError) as e:
        await loc.audio_url(spec, "ns")
    assert e.value.failure.reason == "InvalidSecret" and "secretAccessKey" in e.value.failure.message


async def test_s3_source_is_handed_to_the_asr_service_as_a_presigned_url(tmp_path: Path) -> None:
    pytest.importorskip("boto3")

    async def read_secret(ns: str, name: str) -> dict[str, str]:
        return {"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "secret"}

    loc = Locations({}, read_secret)
    spec = parse_spec(
        job_spec(
            source={
                "s3": {
                    "bucket": "bkt",
                    "key": "dir/a.wav",
                    "endpoint": "http://minio:9000",
                    "secretRef": {"name": "creds"},
                }
            }
        )
    )
    url = await loc.audio_url(spec, "ns")
    assert url.startswith("http://minio:9000/bkt/dir/a.wav?") and "Signature" in url


async def test_waiting_for_capacity_past_the_deadline_fails_the_job(tmp_path: Path) -> None:
    services = Services()
    rt = runtime(services, tmp_path)
    hold = asyncio.Event()

    async def other_job() -> None:  # holds the only LLM slot
        async with rt.queue.slot("llm", Ticket(key="ns/other", priority=100)):
            await hold.wait()

    other = asyncio.create_task(other_job())
    await asyncio.sleep(0)
    try:
        status, _ = await run_job(rt, job_spec(activeDeadlineSeconds=1))
    finally:
        hold.set()
        await other
    assert status["phase"] == "Failed" and status["reason"] == "DeadlineExceeded"
    assert services.calls == Counter({"/v1/transcriptions": 1})  # never got to the LLM
    assert rt.queue.depth("llm") == 0  # it left the line
