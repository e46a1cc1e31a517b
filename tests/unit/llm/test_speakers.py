"""Speakers through the LLM stages (over the HTTP layer and a fake backend): punctuation keeps every
word with its speaker; summaries and topics see speaker-tagged lines and may attribute, but a
speaker the transcript does not have never reaches the answer."""

from __future__ import annotations

import json

import httpx
from omoai_core.schemas import Summary, Topic
from omoai_core.settings import load_settings
from omoai_llm.app import create_app
from omoai_llm.settings import LlmSettings
from omoai_llm.speakers import clean_summary, clean_topics, speakers_of, tagged

from .fakes import FakeBackend

SEGS = [
    {
        "text": "we should ship in june",
        "start": 0.0,
        "end": 2.0,
        "speaker": "S1",
        "words": [
            {"word": w, "start": 0.4 * i, "end": 0.4 * i + 0.3, "speaker": "S1"}
            for i, w in enumerate(["we", "should", "ship", "in", "june"])
        ],
    },
    {
        "text": "i think july is safer",
        "start": 2.5,
        "end": 4.5,
        "speaker": "S2",
        "words": [
            {"word": w, "start": 2.5 + 0.4 * i, "end": 2.8 + 0.4 * i, "speaker": "S2"}
            for i, w in enumerate(["i", "think", "july", "is", "safer"])
        ],
    },
    {"text": "fine july then", "start": 5.0, "end": 6.0, "speaker": "S1"},
]


def _app(answer):
    settings = load_settings(LlmSettings, model="P", device="cpu")

    async def load(model: str) -> FakeBackend:
        return FakeBackend(answer, name=model)

    return create_app(settings, loader=load)


async def _post(app, path: str, body: dict) -> dict:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c,
    ):
        r = await c.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def test_punctuation_keeps_every_word_with_its_speaker():
    body = await _post(_app(lambda s, u: u.capitalize() + "."), "/v1/punctuate", {"segments": SEGS, "language": "en"})
    segs = body["segments"]
    assert [s["speaker"] for s in segs] == ["S1", "S2", "S1"]
    assert [w["speaker"] for w in segs[1]["words"]] == ["S2"] * 5
    assert (
        " ".join(s["text"] for s in segs).lower().replace(".", "").split() == " ".join(s["text"] for s in SEGS).split()
    )


async def test_summary_prompt_has_speaker_tagged_lines_and_invented_speakers_are_dropped():
    seen = {}

    def answer(system: str, user: str) -> str:
        seen["system"], seen["user"] = system, user
        return json.dumps(
            {
                "title": "Release date",
                "abstract": "S1 proposed June. Speaker 2 preferred July. S7 objected loudly.",
                "bullets": ["S2 argued July is safer", "S9 wanted August", "They agreed on July"],
            }
        )

    body = await _post(_app(answer), "/v1/summarize", {"segments": SEGS, "language": "en"})
    assert "S1: we should ship in june" in seen["user"] and "S2: i think july is safer" in seen["user"]
    assert "S1, S2" in seen["system"]
    summary = body["summary"]
    assert summary["abstract"] == "S1 proposed June. S2 preferred July."
    assert summary["bullets"] == ["S2 argued July is safer", "They agreed on July"]


async def test_topics_see_speakers_and_keep_only_real_ones():
    def answer(system: str, user: str) -> str:
        assert "[1]" in user and "S1: we should ship" in user
        return json.dumps(
            [
                {"segment": 1, "title": "S1 proposes June", "summary": "S1 wants June. S4 disagrees."},
                {"segment": 2, "title": "S3 and the July plan", "summary": "S2 prefers July."},
            ]
        )

    body = await _post(_app(answer), "/v1/topics", {"segments": SEGS, "language": "en"})
    assert [(t["title"], t["summary"]) for t in body["topics"]] == [
        ("S1 proposes June", "S1 wants June."),
        ("and the July plan", "S2 prefers July."),
    ]


def test_without_speakers_nothing_is_tagged_or_cleaned():
    from omoai_core.schemas import Segment

    plain = [Segment(text="a b", start=0, end=1)]
    assert speakers_of(plain) == [] and tagged(plain) == plain
    s, dropped = clean_summary(Summary(title="t", abstract="S2 said x.", bullets=[]), ["S2"])
    assert dropped == 0 and s.abstract == "S2 said x."
    topics, dropped = clean_topics([Topic(title="Named speaker", start=0.0)], ["Lan", "S1"])
    assert dropped == 0 and topics[0].title == "Named speaker"
