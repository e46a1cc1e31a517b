"""The HTTP layer over fake backends (the Backend seam): admission, deadlines, readiness,
settings, prompts files and the CLI's transcript reader."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from omoai_core.errors import ConfigError, InvalidInputError
from omoai_core.settings import load_settings
from omoai_llm.app import create_app
from omoai_llm.cli import read_segments
from omoai_llm.prompts import NEUTRAL, load_prompts
from omoai_llm.settings import LlmSettings
from prometheus_client import CollectorRegistry

from .fakes import FakeBackend

SEGS = [{"text": "xin chào các bạn", "start": 0, "end": 1.5}]


def _settings(**kw) -> LlmSettings:
    kw.setdefault("model", "P")
    kw.setdefault("device", "cpu")
    return load_settings(LlmSettings, **kw)


def _loader(delay_s: float = 0.0, answer=None):
    async def load(model: str) -> FakeBackend:
        return FakeBackend(answer or (lambda s, u: u.capitalize() + "."), name=model, delay_s=delay_s)

    return load


async def _client(app):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_requests_beyond_the_queue_get_429_with_retry_after():
    app = create_app(_settings(max_concurrency=1, max_queue=1), loader=_loader(delay_s=0.3))
    async with app.router.lifespan_context(app), await _client(app) as c:
        results = await asyncio.gather(*(c.post("/v1/punctuate", json={"segments": SEGS}) for _ in range(4)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 2 and codes.count(429) == 2
    refused = next(r for r in results if r.status_code == 429)
    assert refused.headers["retry-after"] == "1" and refused.json()["error"]["retryable"] is True


async def test_a_request_over_its_deadline_is_a_504():
    app = create_app(_settings(request_timeout_s=0.2), loader=_loader(delay_s=2.0))
    async with app.router.lifespan_context(app), await _client(app) as c:
        r = await c.post("/v1/summarize", json={"text": "một hai ba"})
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"


async def test_an_unexpected_backend_error_is_a_500_that_says_not_to_retry():
    def answer(system: str, user: str) -> str:
        raise RuntimeError("a bug in the backend")

    app = create_app(_settings(), loader=_loader(answer=answer))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # as uvicorn: answer, log, go on
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.post("/v1/punctuate", json={"segments": SEGS})
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["code"] == "internal_error" and err["retryable"] is False
    assert "a bug in the backend" not in r.text


async def test_not_ready_until_the_model_is_loaded():
    app = create_app(_settings(), loader=_loader())
    async with await _client(app) as c:
        assert (await c.get("/readyz")).status_code == 503
        async with app.router.lifespan_context(app):
            assert (await c.get("/readyz")).status_code == 200
        assert (await c.get("/readyz")).status_code == 503


async def test_postprocess_with_one_resident_model_switches_and_clears_once_each_way():
    registry = CollectorRegistry()
    summary = json.dumps({"title": "T", "abstract": "A", "bullets": []})

    def answer(system: str, user: str) -> str:
        return summary if "JSON" in system else user.capitalize() + "."

    app = create_app(
        _settings(summary_model="S", single_model_resident=True), registry=registry, loader=_loader(answer=answer)
    )
    async with app.router.lifespan_context(app), await _client(app) as c:
        r = await c.post("/v1/postprocess", json={"segments": SEGS, "tasks": ["punctuate", "summarize"]})
        assert r.status_code == 200, r.text
        assert r.json()["segments"][0]["text"] == "Xin chào các bạn." and r.json()["summary"]["title"] == "T"
        r = await c.post("/v1/punctuate", json={"segments": SEGS})
        assert r.status_code == 200
    assert registry.get_sample_value("omoai_gpu_cache_clears_total", {"reason": "model_switch"}) == 2
    assert registry.get_sample_value("omoai_llm_model_switches_total", {"model": "S"}) == 1
    assert registry.get_sample_value("omoai_llm_model_switches_total", {"model": "P"}) == 1


async def test_an_empty_transcript_is_a_clear_result_not_an_error():
    app = create_app(_settings(), loader=_loader())
    async with app.router.lifespan_context(app), await _client(app) as c:
        r = await c.post("/v1/postprocess", json={"segments": [{"text": " ", "start": 0, "end": 1}]})
        assert r.status_code == 200 and r.json()["warnings"]
        r = await c.post("/v1/summarize", json={"segments": []})
        assert r.status_code == 400 and "no text" in r.json()["error"]["message"]


async def test_languages_without_prompts_get_the_neutral_ones_and_bad_tags_a_400():
    app = create_app(_settings(), loader=_loader())
    async with app.router.lifespan_context(app), await _client(app) as c:
        r = await c.post("/v1/punctuate", json={"segments": SEGS, "language": "fr-CA"})
        assert r.status_code == 200
        r = await c.post("/v1/punctuate", json={"segments": SEGS, "language": "français"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input"


async def test_too_many_segments_or_characters_are_413():
    app = create_app(_settings(max_segments=2, max_input_chars=50), loader=_loader())
    async with app.router.lifespan_context(app), await _client(app) as c:
        r = await c.post("/v1/punctuate", json={"segments": SEGS * 3})
        assert r.status_code == 413 and r.json()["error"]["details"] == {"max_segments": 2}
        r = await c.post("/v1/summarize", json={"text": "x" * 51})
        assert r.status_code == 413


def test_settings_refuse_single_resident_with_the_openai_backend():
    with pytest.raises(ConfigError, match="SINGLE_MODEL_RESIDENT"):
        _settings(backend="openai", single_model_resident=True)


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("OMOAI_BACKEND", "openai")
    monkeypatch.setenv("OMOAI_MODEL", "m")
    monkeypatch.setenv("OMOAI_SUMMARY_MODEL", "m")
    monkeypatch.setenv("OMOAI_LANGUAGE", "EN-us")
    monkeypatch.setenv("OMOAI_OPENAI_API_KEY", "sk-secret-value")
    s = load_settings(LlmSettings)
    assert (s.backend, s.summary_model, s.resolved_summary_model, s.language) == ("openai", None, "m", "en")
    assert "sk-secret-value" not in repr(s)
    monkeypatch.setenv("OMOAI_ALIGNMENT", "loose")
    with pytest.raises(ConfigError, match="OMOAI_ALIGNMENT"):
        load_settings(LlmSettings)


def test_prompts_file_overrides_and_refuses_unknown_keys(tmp_path: Path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"vi": {"summary": "Tóm tắt ngắn."}, "fr": {"punctuate": "Ponctuez."}}))
    p = load_prompts(f)
    assert p.get("vi", "summary") == "Tóm tắt ngắn." and p.get("fr", "punctuate") == "Ponctuez."
    assert p.get("fr", "summary") == NEUTRAL["summary"]  # missing keys: the neutral prompts
    assert "language of the transcript" in p.get("de", "summary")  # no prompts at all: neutral
    assert p.get("en", "summary") != p.get("de", "summary")
    with pytest.raises(InvalidInputError):
        p.get("klingon", "summary")
    f.write_text(json.dumps({"vi": {"sumary": "typo"}}))
    with pytest.raises(ConfigError, match="unknown prompt vi.sumary"):
        load_prompts(f)


def test_cli_reads_transcripts_lists_and_plain_text(tmp_path: Path):
    t = tmp_path / "t.json"
    t.write_text(
        json.dumps({"text": "a b", "duration": 2, "model": "m", "segments": [{"text": "a b", "start": 0, "end": 2}]})
    )
    assert read_segments(str(t))[0].end == 2
    t.write_text(json.dumps([{"text": "a", "start": 0, "end": 1}]))
    assert read_segments(str(t))[0].text == "a"
    t.write_text("dòng một\n\ndòng hai\n")
    assert [s.text for s in read_segments(str(t))] == ["dòng một", "dòng hai"]
    t.write_text(json.dumps({"segments": [{"text": "a", "start": 2, "end": 1}]}))
    with pytest.raises(InvalidInputError):
        read_segments(str(t))
