"""``omoai run job.yaml``: the same pipeline without a cluster, with the services reached by URL or
started in-process, writing the outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from operator_harness import HERE, RealServices

from tests.support.operator_services import FakeOpenAI

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLE = HERE.parents[2] / "examples" / "transcriptionjob-pvc.yaml"
SAMPLE = HERE.parents[2] / "samples" / "xin-chao.wav"


def omoai(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMOAI_")}
    return subprocess.run(
        [sys.executable, "-m", "omoai_operator.cli", *args],
        cwd=cwd,
        capture_output=True,
        check=False,
        text=True,
        timeout=240,
        env={**clean, **(env or {})},
    )


def test_omoai_run_executes_the_pvc_example_against_running_services(
    real_services: RealServices, tmp_path: Path
) -> None:
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / SAMPLE.name).write_bytes(SAMPLE.read_bytes())
    res = omoai(
        "run", str(EXAMPLE), "--asr-url", real_services.asr_url, "--llm-url", real_services.llm_url, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr[-3000:]
    line = json.loads(res.stdout.strip().splitlines()[-1])
    assert line["phase"] == "Succeeded" and line["audioDuration"] == "0:00:07"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"xin-chao.{f}" for f in ("json", "md", "srt", "txt", "vtt")
    ]
    assert json.loads((tmp_path / "out" / "xin-chao.json").read_text())["summary"]["title"] == "Lời chào"
    assert "Completed" in res.stderr  # transitions are logged as they happen


@pytest.mark.parametrize("dims", ["TINY", "TINY_RNNT"])  # a CTC and a transducer (the default's kind) checkpoint
def test_omoai_run_starts_the_services_in_process_and_honours_output_dir(tmp_path: Path, dims: str) -> None:
    model = tmp_path / "asr-model"
    script = (
        "import sys; from omoai_asr.engine import testing; "
        "testing.write_random_checkpoint(sys.argv[1], getattr(testing, sys.argv[2]))"
    )
    subprocess.run([sys.executable, "-c", script, str(model), dims], check=True, timeout=180)
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / SAMPLE.name).write_bytes(SAMPLE.read_bytes())
    fake = FakeOpenAI()
    try:
        res = omoai(
            "run",
            str(EXAMPLE),
            "--asr-model",
            str(model),
            "--llm-backend",
            "openai",
            "--llm-model",
            FakeOpenAI.MODEL,
            "-o",
            "results",
            cwd=tmp_path,
            env={"OMOAI_OPENAI_BASE_URL": fake.url, "OMOAI_TORCH_THREADS": "1"},
        )
    finally:
        fake.close()
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["phase"] == "Succeeded"
    assert len(list((tmp_path / "results").glob("xin-chao.*"))) == 5
    assert not (tmp_path / "out").exists()
    transcript = json.loads((tmp_path / "results" / "xin-chao.json").read_text())["transcript"]
    assert transcript["model"] == "asr-model" and transcript["duration"] == pytest.approx(7.2, abs=0.01)
    assert transcript["segments"] and transcript["text"]


def test_omoai_run_reports_a_bad_manifest_and_a_failed_job_with_exit_codes(
    real_services: RealServices, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: omoai.io/v1alpha1\nkind: TranscriptionJob\nmetadata: {name: x}\n"
        "spec: {source: {url: 'ftp://x'}, output: {pvc: {claimName: c, path: o}, formats: [json]}}\n"
    )
    res = omoai("run", str(bad), "--asr-url", real_services.asr_url, cwd=tmp_path)
    assert res.returncode == 2 and "spec.source.url" in res.stderr
    missing = tmp_path / "missing.yaml"
    missing.write_text(EXAMPLE.read_text())
    res = omoai(
        "run", str(missing), "--asr-url", real_services.asr_url, "--llm-url", real_services.llm_url, cwd=tmp_path
    )  # no samples/ here: the upload fails permanently
    assert res.returncode == 1
    line = json.loads(res.stdout.strip().splitlines()[-1])
    assert line["phase"] == "Failed" and line["reason"] == "AudioNotFound" and "xin-chao.wav" in line["message"]
