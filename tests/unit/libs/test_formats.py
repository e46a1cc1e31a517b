"""Output writers: json, txt, srt, vtt and md render the same document faithfully."""

from __future__ import annotations

import json

import pytest
from omoai_core.errors import InvalidInputError
from omoai_core.schemas import Document, Segment, Summary, Topic, Transcript, Word
from omoai_formats import FORMATS, render, write


@pytest.fixture
def transcript() -> Transcript:
    return Transcript(
        text="xin chào các bạn hôm nay",
        segments=[
            Segment(
                text="xin chào các bạn",
                start=0.32,
                end=1.6,
                words=[Word(word="xin", start=0.32, end=0.5), Word(word="chào", start=0.56, end=0.8)],
            ),
            Segment(text="hôm nay --> mai", start=3661.25, end=3662.0),
        ],
        duration=3663.0,
        model="tiny",
    )


def test_json_round_trips_to_the_schema(transcript):
    assert Transcript.model_validate(json.loads(render(transcript, "json"))) == transcript


def test_srt_numbers_cues_and_uses_comma_milliseconds(transcript):
    srt = render(transcript, "srt")
    assert srt.startswith("1\n00:00:00,320 --> 00:00:01,600\nxin chào các bạn\n")
    assert "2\n01:01:01,250 --> 01:01:02,000\n" in srt


def test_vtt_has_header_and_no_arrow_inside_cue_text(transcript):
    vtt = render(transcript, "vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.320 --> 00:00:01.600\n")
    cue_lines = [ln for ln in vtt.splitlines() if "-->" in ln]
    assert len(cue_lines) == 2  # the "-->" in the text was neutralised


def test_txt_is_one_line_per_segment(transcript):
    assert render(transcript, "txt") == "xin chào các bạn\nhôm nay --> mai\n"


def test_md_includes_summary_and_topics_when_present(transcript):
    doc = Document(
        transcript=transcript,
        summary=Summary(title="Chào hỏi", abstract="Một lời chào.", bullets=["chào", "hôm nay"]),
        topics=[Topic(title="Lời chào", start=0.32)],
    )
    md = render(doc, "md")
    assert md.startswith("# Chào hỏi\n")
    assert "- **[0:00]** Lời chào" in md
    assert "**[1:01:01]** hôm nay --> mai" in md


def test_unknown_format_is_invalid_input(transcript):
    with pytest.raises(InvalidInputError, match="unknown output format 'docx'"):
        render(transcript, "docx")


def test_write_creates_every_format_atomically(tmp_path, transcript):
    paths = [write(transcript, fmt, tmp_path / "out", "talk") for fmt in FORMATS]
    assert sorted(p.name for p in paths) == sorted(f"talk.{f}" for f in FORMATS)
    assert not list((tmp_path / "out").glob(".*.tmp"))


def _diarized() -> Transcript:
    segs = [
        Segment(
            text="xin chào",
            start=0.0,
            end=1.0,
            speaker="S1",
            words=[
                Word(word="xin", start=0.0, end=0.4, speaker="S1"),
                Word(word="chào", start=0.5, end=1.0, speaker="S1"),
            ],
        ),
        Segment(text="các bạn", start=1.2, end=2.0, speaker="S1"),
        Segment(text="a <b> & c", start=2.5, end=3.0, speaker="S2"),
    ]
    return Transcript(text="xin chào các bạn a <b> & c", segments=segs, duration=3.0, model="m", speakers=["S1", "S2"])


def test_srt_and_vtt_carry_speakers():
    srt = render(_diarized(), "srt")
    assert "00:00:00,000 --> 00:00:01,000\nS1: xin chào\n" in srt
    assert "S2: a <b> & c" in srt
    vtt = render(_diarized(), "vtt")
    assert "00:00:00.000 --> 00:00:01.000\n<v S1>xin chào\n" in vtt
    assert "<v S2>a &lt;b&gt; &amp; c\n" in vtt


def test_txt_and_md_show_speaker_turns():
    assert render(_diarized(), "txt") == "S1: xin chào các bạn\nS2: a <b> & c\n"
    md = render(_diarized(), "md")
    assert "*Speakers:* S1, S2" in md
    assert "**[0:00] S1:** xin chào các bạn" in md
    assert "**[0:02] S2:** a <b> & c" in md


def test_json_keeps_speakers_on_segments_and_words():
    payload = json.loads(render(_diarized(), "json"))
    assert payload["speakers"] == ["S1", "S2"]
    assert payload["segments"][0]["speaker"] == "S1"
    assert payload["segments"][0]["words"][1]["speaker"] == "S1"
