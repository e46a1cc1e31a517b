"""``omoai run`` with a punctuation method: a job that asks only for tagger punctuation runs against
an in-process tagger-only LLM service (no LLM loaded); a job's own method wins over the flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from operator_harness import HERE, RealServices
from test_operator_run_locally import omoai

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLE = HERE.parents[2] / "examples" / "transcriptionjob-pvc.yaml"
SAMPLE = HERE.parents[2] / "samples" / "xin-chao.wav"


def test_omoai_run_punctuates_with_a_tagger_only_llm_service(real_services: RealServices, tmp_path: Path) -> None:
    from omoai_llm.testing import write_tiny_seq2labels

    tagger = write_tiny_seq2labels(tmp_path / "tagger")
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / SAMPLE.name).write_bytes(SAMPLE.read_bytes())
    job = yaml.safe_load(EXAMPLE.read_text())
    job["spec"]["postprocess"] = {"summary": "none", "topics": False}  # an old manifest: no method named
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    res = omoai(
        "run",
        "job.yaml",
        "--asr-url",
        real_services.asr_url,
        "--punctuation-method",
        "tagger",
        "--tagger-model",
        str(tagger),
        cwd=tmp_path,
        env={"OMOAI_TORCH_THREADS": "1", "OMOAI_LOG_LEVEL": "INFO"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    line = json.loads(res.stdout.strip().splitlines()[-1])
    assert line["phase"] == "Succeeded", line
    assert f"LLM service ready (transformers: {tagger})" in res.stderr  # the tagger only, no LLM
    out = json.loads((tmp_path / "out" / "xin-chao.json").read_text())
    words = [w["word"] for s in out["transcript"]["segments"] for w in s["words"]]
    text = out["transcript"]["text"]
    assert text != " ".join(words)  # punctuated or cased by the tagger
    assert [t.strip(".,:?").casefold() for t in text.split()] == [w.casefold() for w in words]
    assert out.get("summary") is None
