"""The transformers backend for real: a tiny random model saved with save_pretrained, served by
``omoai-llm serve`` on loopback and driven through the HTTP API. Its output is gibberish, which
is exactly what the alignment must survive."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TOKEN = "integration-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VI = [
    "xin chào các bạn hôm nay chúng ta nói về trí tuệ nhân tạo",
    "cuộc họp bắt đầu lúc chín giờ sáng mọi người đã có mặt đầy đủ",
    "dự án hoàn thành đúng hạn chi phí giảm chất lượng tăng",
    "cảm ơn các bạn đã lắng nghe",
]


def _segments(texts: list[str], step: float = 3.0) -> list[dict]:
    return [{"text": t, "start": i * step, "end": i * step + step - 0.1} for i, t in enumerate(texts)]


def _root(client: httpx.Client) -> str:
    return str(client.base_url).rstrip("/")


def _plain(text: str) -> list[str]:
    return [re.sub(r"^\W+|\W+$", "", w).casefold() for w in text.split()]


@pytest.fixture(scope="module")
def server(tiny_model: Path, servers):
    env = {
        "OMOAI_API_TOKEN": TOKEN,
        "OMOAI_CONTEXT_TOKENS": "768",
        "OMOAI_SUMMARY_MAX_TOKENS": "48",
        "OMOAI_TOPICS_MAX_TOKENS": "48",
        "OMOAI_MAX_REQUEST_BYTES": "200000",
        "OMOAI_LANGUAGE": "vi",
    }
    args = ["--backend", "transformers", "--model", str(tiny_model), "--device", "cpu"]
    with servers.process(args, env) as url, httpx.Client(base_url=url, headers=AUTH, timeout=300) as client:
        yield client


def test_punctuate_returns_every_word_in_its_segment_with_its_times(server: httpx.Client):
    segs = _segments(VI)
    r = server.post("/v1/punctuate", json={"segments": segs, "language": "vi"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["segments"]) == len(segs)
    for before, after in zip(segs, body["segments"], strict=True):
        assert (after["start"], after["end"]) == (before["start"], before["end"])
        assert _plain(after["text"]) == before["text"].split()
    q = body["quality"]
    words = sum(len(t.split()) for t in VI)
    assert q["words_in"] == q["words_out"] == words and q["wer"] == 0 and q["cer"] == 0
    assert body["alignment"]["policy"] == "strict" and body["alignment"]["model_wer"] > 0  # gibberish model
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["calls"] == body["chunks"] >= 1


def test_a_long_transcript_is_punctuated_in_several_concurrent_chunks(server: httpx.Client):
    texts = [f"{t} phần {i}" for i in range(12) for t in VI]
    r = server.post("/v1/punctuate", json={"segments": _segments(texts, 2.0)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["chunks"] > 1
    assert [_plain(s["text"]) for s in body["segments"]] == [t.split() for t in texts]


def test_summarize_single_pass_and_map_reduce(server: httpx.Client):
    r = server.post("/v1/summarize", json={"segments": _segments(VI)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["strategy"] == "single" and body["chunks"] == 0
    assert set(body["summary"]) == {"title", "abstract", "bullets"}
    long = " ".join(VI * 40)
    r = server.post("/v1/summarize", json={"text": long, "language": "en"})
    assert r.status_code == 200, r.text
    assert r.json()["strategy"] == "map_reduce" and r.json()["chunks"] > 1


def test_topics_start_at_segment_times(server: httpx.Client):
    segs = _segments(VI)
    r = server.post("/v1/topics", json={"segments": segs, "max_topics": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    starts = {s["start"] for s in segs}
    assert all(t["start"] in starts for t in body["topics"]) and len(body["topics"]) <= 3
    assert body["topics"] or body["warnings"]  # gibberish may name no topic: then it says so


def test_postprocess_does_all_three(server: httpx.Client):
    segs = _segments(VI)
    r = server.post("/v1/postprocess", json={"segments": segs})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [_plain(s["text"]) for s in body["segments"]] == [t.split() for t in VI]
    assert body["summary"] is not None and body["topics"] is not None
    assert set(body["usage"]) == {"punctuate", "summarize", "topics"}


def test_auth_is_required_on_the_api_but_not_on_probes(server: httpx.Client):
    r = httpx.post(f"{_root(server)}/v1/punctuate", json={"segments": []})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["code"] == "unauthorized"
    bad = httpx.post(f"{_root(server)}/v1/punctuate", json={"segments": []}, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert httpx.get(f"{_root(server)}/healthz").status_code == 200
    assert httpx.get(f"{_root(server)}/readyz").json() == {"status": "ready"}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"segments": [{"text": "a", "start": 2, "end": 1}]}, "invalid_input"),
        ({"segments": [{"text": "a", "start": 0, "end": 1}], "language": "klingon"}, "invalid_input"),
        ({"segments": [{"text": "a", "start": 3, "end": 4}, {"text": "b", "start": 1, "end": 2}]}, "invalid_input"),
        ({"segments": "nope"}, "invalid_input"),
        ({"text": "a", "segments": []}, "invalid_input"),
    ],
)
def test_bad_requests_get_one_error_shape(server: httpx.Client, payload: dict, code: str):
    path = "/v1/summarize" if "text" in payload else "/v1/punctuate"
    r = server.post(path, json=payload)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and err["retryable"] is False


def test_oversized_bodies_are_refused_with_413(server: httpx.Client):
    huge = [{"text": "xin chào " * 2000, "start": 0, "end": 1}] * 20
    r = server.post("/v1/punctuate", json={"segments": huge})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_metrics_count_inference_tokens_and_no_cache_clears(server: httpx.Client):
    server.post("/v1/punctuate", json={"segments": _segments(VI[:1])})
    text = httpx.get(f"{_root(server)}/metrics").text
    assert re.search(r'omoai_inference_duration_seconds_count\{model="[^"]+",task="punctuate"\} [1-9]', text)
    assert re.search(r'omoai_llm_tokens_total\{direction="prompt",model="[^"]+",task="[a-z]+"\} [1-9]', text)
    assert re.search(r'omoai_llm_tokens_total\{direction="completion",model="[^"]+",task="[a-z]+"\} [1-9]', text)
    assert "omoai_llm_requests_in_flight" in text
    assert 'omoai_llm_alignment_words_total{outcome="restored"}' in text
    # Every reason's series exists from the start; no switch, no clear.
    assert re.findall(r"omoai_gpu_cache_clears_total\{[^}]*\} (\S+)", text) == ["0.0"] * 4


def test_model_switching_over_http_clears_once_per_switch(tiny_model: Path, tiny_model_b: Path, servers):
    args = [
        "--backend",
        "transformers",
        "--model",
        str(tiny_model),
        "--summary-model",
        str(tiny_model_b),
        "--single-model-resident",
        "--device",
        "cpu",
    ]
    env = {"OMOAI_SUMMARY_MAX_TOKENS": "24", "OMOAI_TOPICS_MAX_TOKENS": "24"}
    with servers.process(args, env) as url:
        for _ in range(2):
            r = httpx.post(f"{url}/v1/postprocess", json={"segments": _segments(VI)}, timeout=300)
            assert r.status_code == 200, r.text
            assert [_plain(s["text"]) for s in r.json()["segments"]] == [t.split() for t in VI]
        text = httpx.get(f"{url}/metrics").text
    clears = re.search(r'omoai_gpu_cache_clears_total\{reason="model_switch"\} (\S+)', text)
    switches = re.findall(r"omoai_llm_model_switches_total\{[^}]*\} (\S+)", text)
    # P -> S (summary, topics), S -> P (punctuation), P -> S again: three switches, three clears.
    assert clears is not None and float(clears.group(1)) == 3.0
    assert sum(float(s) for s in switches) == 3.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/nonexistent/model-dir"], "does not exist"),
        (["--model", "omoai-test/no-such-model", "--offline"], "offline"),
    ],
)
def test_missing_weights_give_a_clear_error(tmp_path: Path, args: list[str], message: str):
    f = tmp_path / "t.txt"
    f.write_text("xin chào\n")
    exe = Path(sys.executable).with_name("omoai-llm")
    proc = subprocess.run(
        [str(exe), "punctuate", str(f), "--backend", "transformers", "--device", "cpu", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 2
    assert "error:" in proc.stderr and message in proc.stderr


def test_serve_with_the_vllm_backend_but_no_vllm_exits_with_a_clear_error(servers, tmp_path: Path):
    exe = Path(sys.executable).with_name("omoai-llm")
    port = servers.free_port()
    proc = subprocess.run(
        [str(exe), "serve", "--backend", "vllm", "--model", "org/model", "--device", "cpu", "--port", str(port)],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode != 0
    assert "cannot start: the vllm backend needs vLLM" in proc.stderr


def test_the_offline_cli_punctuates_a_transcript_file(tiny_model: Path, tmp_path: Path):
    src = tmp_path / "transcript.json"
    src.write_text(json.dumps({"segments": _segments(VI)}), encoding="utf-8")
    out = tmp_path / "out.json"
    exe = Path(sys.executable).with_name("omoai-llm")
    proc = subprocess.run(
        [str(exe), "punctuate", str(src), "--model", str(tiny_model), "--device", "cpu", "-o", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1", "OMOAI_LOG_LEVEL": "WARNING"},
    )
    assert proc.returncode == 0, proc.stderr
    body = json.loads(out.read_text(encoding="utf-8"))
    assert [_plain(s["text"]) for s in body["segments"]] == [t.split() for t in VI]
    assert body["quality"]["words_in"] == body["quality"]["words_out"]
