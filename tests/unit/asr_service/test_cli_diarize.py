"""``omoai-asr transcribe --diarize``: a committed two-voice conversation, the tiny ASR model and the
default diarization backend with its real weights; speakers in json and vtt; bad counts refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omoai_asr.cli import main

pytestmark = pytest.mark.timeout(120)

CONV = Path(__file__).resolve().parents[2] / "data" / "diarization" / "quick-2spk-100.flac"


def test_diarize_puts_speakers_on_segments_and_words(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transcribe", str(tiny_model), str(CONV), "--diarize", "--threads", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["speakers"] == ["S1", "S2"]
    assert all(w["speaker"] == s["speaker"] for s in doc["segments"] for w in s["words"])


def test_diarize_with_a_given_count_renders_voice_spans(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "transcribe",
            str(tiny_model),
            str(CONV),
            "--diarize",
            "--num-speakers",
            "2",
            "-f",
            "vtt",
            "--no-word-timestamps",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "<v S1>" in out and "<v S2>" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num-speakers", "2"], "need --diarize"),
        (["--diarize", "--min-speakers", "3", "--max-speakers", "2"], "exceeds"),
    ],
)
def test_bad_speaker_flags_are_usage_errors(
    tiny_model: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transcribe", str(tiny_model), str(CONV), *flags]) == 2
    assert message in capsys.readouterr().err
