"""``omoai run`` of a job with ``spec.diarization``: the real ASR service (tiny random checkpoint,
the default diarization backend with its real weights) and the real LLM service; speakers reach
every output format and the LLM stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from operator_harness import HERE, RealServices

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CONV = HERE.parents[1] / "data" / "diarization" / "quick-2spk-100.flac"

MANIFEST = """\
apiVersion: omoai.io/v1alpha1
kind: TranscriptionJob
metadata:
  name: meeting
spec:
  source:
    pvc: {claimName: omoai-data, path: rec/meeting.flac}
  language: en
  diarization: {enabled: true, maxSpeakers: 4}
  output:
    pvc: {claimName: omoai-data, path: out}
    formats: [json, txt, vtt, srt, md]
"""


def test_a_diarized_job_writes_speakers_into_every_format(real_services: RealServices, tmp_path: Path) -> None:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "meeting.flac").write_bytes(CONV.read_bytes())
    (tmp_path / "job.yaml").write_text(MANIFEST)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMOAI_")}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "omoai_operator.cli",
            "run",
            "job.yaml",
            "--asr-url",
            real_services.asr_url,
            "--llm-url",
            real_services.llm_url,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env=clean,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:] + real_services.tail()
    assert json.loads(res.stdout.strip().splitlines()[-1])["phase"] == "Succeeded"
    out = tmp_path / "out"
    doc = json.loads((out / "meeting.json").read_text())
    transcript = doc.get("transcript", doc)
    assert transcript["speakers"] == ["S1", "S2"]
    assert all(s["speaker"] in ("S1", "S2") for s in transcript["segments"])
    assert all(w["speaker"] == s["speaker"] for s in transcript["segments"] for w in s["words"])
    assert "summary" in doc  # the LLM stages ran on the speaker-tagged transcript
    vtt = (out / "meeting.vtt").read_text()
    assert "<v S1>" in vtt and "<v S2>" in vtt
    assert "S1: " in (out / "meeting.srt").read_text()
    txt = (out / "meeting.txt").read_text().splitlines()
    assert txt and all(line.startswith(("S1: ", "S2: ")) for line in txt)
    assert "*Speakers:* S1, S2" in (out / "meeting.md").read_text()


def test_a_bad_diarization_spec_is_refused_before_any_work(real_services: RealServices, tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(
        MANIFEST.replace("{enabled: true, maxSpeakers: 4}", "{enabled: true, numSpeakers: 5, maxSpeakers: 4}")
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMOAI_")}
    res = subprocess.run(
        [sys.executable, "-m", "omoai_operator.cli", "run", "job.yaml", "--asr-url", real_services.asr_url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean,
        check=False,
    )
    assert res.returncode == 2 and "numSpeakers must lie within" in res.stderr
