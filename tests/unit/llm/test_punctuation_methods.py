"""Choosing the punctuation method through the API: edits mode over a fake LLM (the schema is sent,
bad answers fall back and are counted), the tagger method, a tagger-only service, and clear errors
for a method the service cannot serve."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from omoai_core.errors import ConfigError
from omoai_core.settings import load_settings
from omoai_llm.app import create_app
from omoai_llm.settings import LlmSettings
from omoai_llm.testing import write_tiny_seq2labels
from prometheus_client import CollectorRegistry

from .fakes import FakeBackend

SEGS = [
    {"text": "hôm nay đài vtv", "start": 0.0, "end": 1.5},
    {"text": "đưa tin về đà nẵng", "start": 1.5, "end": 3.0},
]


def _settings(**kw) -> LlmSettings:
    kw.setdefault("model", "P")
    kw.setdefault("device", "cpu")
    return load_settings(LlmSettings, **kw)


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _edits_answer(system: str, user: str) -> str:
    words = user.split()
    return json.dumps({"period": [2, len(words)], "upper": [4], "capital": [len(words) - 1, len(words)]})


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_seq2labels(tmp_path_factory.mktemp("tagger") / "capu")


async def test_edits_mode_sends_the_schema_and_applies_marks_and_casing():
    backends: list[FakeBackend] = []

    async def load(model: str) -> FakeBackend:
        backends.append(FakeBackend(_edits_answer, name=model))
        return backends[-1]

    registry = CollectorRegistry()
    app = create_app(_settings(punctuation_method="edits"), registry=registry, loader=load)
    async with app.router.lifespan_context(app), _client(app) as c:
        r = await c.post("/v1/punctuate", json={"segments": SEGS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "edits"
    assert [s["text"] for s in body["segments"]] == ["Hôm nay. Đài VTV", "đưa tin về Đà Nẵng."]
    assert [(s["start"], s["end"]) for s in body["segments"]] == [(0.0, 1.5), (1.5, 3.0)]
    schema = backends[0].schemas[0]
    assert schema is not None and set(schema["properties"]) >= {"period", "comma", "capital", "upper"}
    assert backends[0].calls[0][1].startswith("1:hôm 2:nay 3:đài 4:vtv")
    assert registry.get_sample_value("omoai_llm_edit_answers_total", {"outcome": "ok"}) == 1


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ("Hôm nay, đài VTV đưa tin về Đà Nẵng.", "malformed"),  # the model rewrote instead
        ('{"period": [1, 99, "boom"], "comma": {"a": 1}}', "partial"),
        ('[{"period": 1}]', "malformed"),
        ("\x00\ufffd\u202e<b>ok</b>", "malformed"),
        ("\x00{\u202e}", "ok"),  # cleaned to {}: nothing to edit
    ],
)
async def test_bad_edits_answers_fall_back_to_the_words_and_are_counted(answer, outcome):
    registry = CollectorRegistry()

    async def load(model: str) -> FakeBackend:
        return FakeBackend(lambda s, u: answer, name=model)

    app = create_app(_settings(), registry=registry, loader=load)
    async with app.router.lifespan_context(app), _client(app) as c:
        r = await c.post("/v1/punctuate", json={"segments": SEGS, "method": "edits"})
    assert r.status_code == 200, r.text
    words = " ".join(s["text"] for s in r.json()["segments"]).split()
    assert [w.strip(".").lower() for w in words] == "hôm nay đài vtv đưa tin về đà nẵng".split()
    assert words[0].startswith("Hôm")  # the sentence-start rule still applies
    assert registry.get_sample_value("omoai_llm_edit_answers_total", {"outcome": outcome}) == 1
    if outcome == "malformed":
        assert r.json()["quality"]["fallback_segments"] == 2 and r.json()["alignment"]["restored"] == 9


async def test_the_rewrite_method_stays_the_default_and_hygiene_cleans_its_answer():
    registry = CollectorRegistry()

    async def load(model: str) -> FakeBackend:
        return FakeBackend(lambda s, u: "\x1b" + u.capitalize() + "\ufffd.", name=model)

    app = create_app(_settings(), registry=registry, loader=load)
    async with app.router.lifespan_context(app), _client(app) as c:
        r = await c.post("/v1/postprocess", json={"segments": SEGS, "tasks": ["punctuate", "summarize"]})
    assert r.status_code == 200, r.text
    out = json.dumps(r.json(), ensure_ascii=False)
    assert "\\u001b" not in out and "\ufffd" not in out
    assert registry.get_sample_value("omoai_llm_cleaned_characters_total", {"task": "punctuate"}) >= 2
    assert registry.get_sample_value("omoai_llm_cleaned_characters_total", {"task": "summarize"}) >= 2


async def test_a_tagger_only_service_punctuates_and_refuses_llm_tasks_clearly(tagger_dir):
    registry = CollectorRegistry()
    app = create_app(_settings(model="", tagger_model=str(tagger_dir)), registry=registry)
    async with app.router.lifespan_context(app), _client(app) as c:
        r = await c.post("/v1/punctuate", json={"segments": SEGS})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["method"] == "tagger" and body["usage"]["model"] == str(tagger_dir)
        got = " ".join(s["text"] for s in body["segments"]).split()
        assert [w.strip(".,:?").lower() for w in got] == "hôm nay đài vtv đưa tin về đà nẵng".split()
        r = await c.post("/v1/postprocess", json={"segments": SEGS, "tasks": ["punctuate"]})
        assert r.status_code == 200 and r.json()["segments"][0]["end"] == 1.5
        for path, payload in (
            ("/v1/summarize", {"text": "một hai"}),
            ("/v1/punctuate", {"segments": SEGS, "method": "edits"}),
        ):
            r = await c.post(path, json=payload)
            assert r.status_code == 400 and "tagger only" in r.json()["error"]["message"], r.text
        models = (await c.get("/v1/models")).json()["data"]
    assert models == [{"id": str(tagger_dir), "kind": "tagger", "license": "cc-by-sa-4.0", "resident": True}]


async def test_method_tagger_without_a_tagger_is_a_clear_400():
    async def load(model: str) -> FakeBackend:
        return FakeBackend(name=model)

    app = create_app(_settings(), loader=load)
    async with app.router.lifespan_context(app), _client(app) as c:
        r = await c.post("/v1/punctuate", json={"segments": SEGS, "method": "tagger"})
        assert r.status_code == 400 and "OMOAI_TAGGER_MODEL" in r.json()["error"]["message"]
        r = await c.post("/v1/punctuate", json={"segments": SEGS, "method": "magic"})
        assert r.status_code == 400 and "method" in r.json()["error"]["message"]


def test_settings_refuse_the_tagger_method_without_a_tagger(monkeypatch):
    with pytest.raises(ConfigError, match="OMOAI_TAGGER_MODEL"):
        _settings(punctuation_method="tagger")
    monkeypatch.setenv("OMOAI_PUNCTUATION_METHOD", "edits")
    monkeypatch.setenv("OMOAI_TAGGER_MODEL", "dragonSwing/vibert-capu")
    s = load_settings(LlmSettings, model="P")
    assert s.punctuation_method == "edits" and s.tagger_model == "dragonSwing/vibert-capu"
