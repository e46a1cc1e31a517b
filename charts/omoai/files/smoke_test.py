"""`helm test` smoke test of one OMOAI service (standard library only: it runs in any python image).

    python smoke_test.py asr http://omoai-asr.omoai.svc:8000
    python smoke_test.py llm http://omoai-llm.omoai.svc:8000

Waits for /readyz (OMOAI_READY_TIMEOUT_S, default 300), then does real work: the ASR service
transcribes a generated one-second 16 kHz clip (OpenAI-compatible endpoint); the LLM service
punctuates a one-segment transcript. A bearer token is read from OMOAI_API_TOKEN_FILE when set.
Exits 0 on success, 1 with the reason on stderr otherwise.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
import wave


def _headers() -> dict[str, str]:
    path = os.environ.get("OMOAI_API_TOKEN_FILE")
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        return {"Authorization": f"Bearer {f.read().strip()}"}


def wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
                if r.status == 200:
                    return
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except OSError as e:
            last = str(e)
        time.sleep(2)
    raise SystemExit(f"{url}/readyz not ready after {timeout_s:.0f} s: {last}")


def one_second_clip() -> bytes:
    """A 440 Hz tone, 16 kHz mono 16-bit PCM WAV: real audio the decoder must accept."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        frames = bytearray()
        for i in range(16000):
            v = int(8000 * math.sin(2 * math.pi * 440 * i / 16000))
            frames += v.to_bytes(2, "little", signed=True)
        w.writeframes(bytes(frames))
    return buf.getvalue()


def _post(url: str, body: bytes, content_type: str) -> dict:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type, **_headers()})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise SystemExit(f"POST {url}: HTTP {e.code}: {e.read()[:500]!r}") from e


def _get(url: str) -> dict:
    req = urllib.request.Request(url, headers=_headers())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise SystemExit(f"GET {url}: HTTP {e.code}: {e.read()[:500]!r}") from e


def check_asr(url: str) -> None:
    model = _get(url + "/v1/models")["data"][0]["id"]
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="response_format"\r\n\r\njson\r\n'.encode(),
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="smoke.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + one_second_clip()
        + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    out = _post(url + "/v1/audio/transcriptions", b"".join(parts), f"multipart/form-data; boundary={boundary}")
    if not isinstance(out.get("text"), str):
        raise SystemExit(f"ASR answer has no text: {out}")
    print(f"asr ok: transcribed 1 s of audio ({out['text']!r})")


def check_llm(url: str) -> None:
    body = {"segments": [{"text": "xin chao cac ban", "start": 0.0, "end": 1.0}]}
    out = _post(url + "/v1/punctuate", json.dumps(body).encode(), "application/json")
    if not out.get("segments"):
        raise SystemExit(f"LLM answer has no segments: {out}")
    print(f"llm ok: punctuated one segment ({out['segments'][0].get('text')!r})")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("asr", "llm"):
        print(__doc__, file=sys.stderr)
        return 2
    service, url = argv[1], argv[2].rstrip("/")
    wait_ready(url, float(os.environ.get("OMOAI_READY_TIMEOUT_S", "300")))
    (check_asr if service == "asr" else check_llm)(url)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
