"""The punctuation methods end to end on real servers on loopback: edits mode against an
OpenAI-compatible server that checks the request carries the JSON schema, a client that hangs up
stopping the upstream call, and edits mode on the transformers backend with a tiny model whose
answers are constrained to the schema."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from omoai_core.settings import load_settings
from omoai_llm.app import create_app
from omoai_llm.settings import LlmSettings
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.timeout(240)

MODEL = "upstream-model"
SEGS = [
    {"text": "hôm nay đài vtv đưa tin", "start": 0.0, "end": 2.0},
    {"text": "về thời tiết ở đà nẵng bạn có nghe không", "start": 2.0, "end": 5.0},
]
WORDS = " ".join(s["text"] for s in SEGS).split()


class EditsUpstream:
    """An OpenAI-compatible server: answers edits when asked for a JSON schema, or holds the call
    open until the caller goes away (and records that it went)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.hold = False
        self.disconnected = threading.Event()
        self.app = FastAPI()

        @self.app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

        @self.app.post("/v1/chat/completions")
        async def chat(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append(body)
            if self.hold:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if await request.is_disconnected():
                        self.disconnected.set()
                        break
                    await asyncio.sleep(0.05)
                return JSONResponse({"error": {"message": "held"}}, status_code=500)
            user = next(m["content"] for m in body["messages"] if m["role"] == "user")
            numbers = {int(n): w for n, w in re.findall(r"(\d+):(\S+)", user)}
            by_word = {w: n for n, w in numbers.items()}
            answer = {
                "period": [by_word["tin"]] if "tin" in by_word else [],
                "question": [by_word["không"]] if "không" in by_word else [],
                "upper": [by_word["vtv"]] if "vtv" in by_word else [],
                "capital": [by_word[w] for w in ("đà", "nẵng") if w in by_word],
            }
            return JSONResponse(
                {
                    "id": "c",
                    "object": "chat.completion",
                    "model": MODEL,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps(answer)}}],
                    "usage": {"prompt_tokens": 40, "completion_tokens": 12},
                }
            )


@pytest.fixture(scope="module")
def upstream(servers):
    fake = EditsUpstream()
    with servers.thread(fake.app) as url:
        fake.url = url + "/v1"
        yield fake


def _openai_settings(upstream: EditsUpstream, **kw: Any) -> LlmSettings:
    return load_settings(
        LlmSettings,
        backend="openai",
        model=MODEL,
        openai_base_url=upstream.url,
        openai_retries=0,
        device="cpu",
        **kw,
    )


def test_edits_over_an_openai_server_carry_the_schema_and_keep_every_word(upstream: EditsUpstream, servers):
    upstream.requests.clear()
    with servers.thread(create_app(_openai_settings(upstream, punctuation_method="edits"))) as url:
        r = httpx.post(f"{url}/v1/punctuate", json={"segments": SEGS}, timeout=60)
    assert r.status_code == 200, r.text
    assert [s["text"] for s in r.json()["segments"]] == [
        "Hôm nay đài VTV đưa tin.",
        "Về thời tiết ở Đà Nẵng bạn có nghe không?",
    ]
    sent = upstream.requests[0]
    fmt = sent["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate({"period": [1], "comma": [], "question": [], "colon": [], "exclamation": [],
                         "capital": [], "upper": []}, schema)  # fmt: skip
    assert re.match(r"1:hôm 2:nay 3:đài", sent["messages"][-1]["content"])


def test_a_client_that_hangs_up_stops_the_upstream_call(upstream: EditsUpstream, servers):
    upstream.hold = True
    upstream.disconnected.clear()
    try:
        with servers.thread(create_app(_openai_settings(upstream, openai_timeout_s=60))) as url:
            for method in ("edits", "rewrite"):
                upstream.disconnected.clear()
                with pytest.raises(httpx.ReadTimeout):
                    httpx.post(f"{url}/v1/punctuate", json={"segments": SEGS, "method": method}, timeout=1.0)
                assert upstream.disconnected.wait(15), f"{method}: the upstream call went on after the client left"
    finally:
        upstream.hold = False


def test_edits_on_the_transformers_backend_are_constrained_to_the_schema(tiny_model: Path, servers):
    registry = CollectorRegistry()
    settings = load_settings(
        LlmSettings, backend="transformers", model=str(tiny_model), device="cpu", punctuation_method="edits"
    )
    with servers.thread(create_app(settings, registry=registry)) as url:
        r = httpx.post(f"{url}/v1/punctuate", json={"segments": SEGS}, timeout=180)
    assert r.status_code == 200, r.text
    got = " ".join(s["text"] for s in r.json()["segments"]).split()
    assert [re.sub(r"[.,?!:]$", "", w).lower() for w in got] == WORDS
    outcomes = {
        o: registry.get_sample_value("omoai_llm_edit_answers_total", {"outcome": o})
        for o in ("ok", "partial", "malformed", "truncated")
    }
    # The random model's answer is JSON of the schema's shape (never malformed); it may run out of tokens.
    assert outcomes["malformed"] == 0 and sum(outcomes.values()) == r.json()["chunks"]


def test_a_random_models_summary_and_topics_reach_the_output_clean(tiny_model: Path, servers):
    """The demo's Markdown once held control characters and U+FFFD from the random model's summary."""
    registry = CollectorRegistry()
    settings = load_settings(LlmSettings, backend="transformers", model=str(tiny_model), device="cpu")
    with servers.thread(create_app(settings, registry=registry)) as url:
        r = httpx.post(f"{url}/v1/postprocess", json={"segments": SEGS, "tasks": ["summarize", "topics"]}, timeout=300)
    assert r.status_code == 200, r.text
    body = r.json()
    texts = [body["summary"]["title"], body["summary"]["abstract"], *body["summary"]["bullets"]]
    texts += [t["title"] for t in body["topics"]] + [t.get("summary") or "" for t in body["topics"]]
    bad = [c for t in texts for c in t if c == "\ufffd" or (unicodedata.category(c) == "Cc" and c not in "\n\t")]
    assert not bad, bad
    cleaned = sum(
        registry.get_sample_value("omoai_llm_cleaned_characters_total", {"task": task}) or 0
        for task in ("summarize", "topics")
    )
    assert cleaned > 0  # the random model's bytes were there to clean
