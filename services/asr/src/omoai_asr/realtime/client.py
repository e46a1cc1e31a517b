"""The ``omoai-asr listen`` client: streams audio to ``/v1/realtime`` and prints the text as it
comes. A file is decoded with ffmpeg to 16 kHz (our protocol extension: no resampling on either
side) and sent in 100 ms pieces, at real-time pace or as fast as the server takes it; ``-`` reads
raw 16 kHz mono s16le PCM from stdin (``arecord -f S16_LE -r 16000 -c 1 | omoai-asr listen ... -``).

Committed text is printed as it arrives, one line per item; with ``--partials`` the revisable
tail is shown after it on a terminal (rewritten in place) and never mixed into the committed text.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from omoai_core.errors import OmoaiError

PIECE_SAMPLES = 1600  # 100 ms at 16 kHz


class ListenError(OmoaiError):
    code = "listen_failed"


@dataclass(frozen=True)
class ListenOptions:
    url: str  # http(s)://host:port of the ASR service
    source: str  # a file, or "-" for raw PCM on stdin
    token: str | None = None
    realtime: bool = True  # pace the audio at real time (files); stdin is paced by its producer
    partials: bool = False
    server_vad: bool = False  # let the server split turns; default: one item, committed at the end
    timeout_s: float = 600.0


def realtime_url(base: str) -> str:
    scheme, sep, rest = base.rstrip("/").partition("://")
    if not sep:
        raise ListenError(f"--url must start with http:// or https://, got {base!r}")
    ws = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(scheme)
    if ws is None:
        raise ListenError(f"--url must start with http:// or https://, got {base!r}")
    return f"{ws}://{rest}/v1/realtime?intent=transcription"


async def _pieces(source: str, realtime: bool) -> AsyncIterator[bytes]:
    if source == "-":
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
        while chunk := await reader.read(PIECE_SAMPLES * 2):
            yield chunk
        return
    if not Path(source).is_file():
        raise ListenError(f"{source}: no such file")
    proc = await asyncio.create_subprocess_exec(
        *("ffmpeg", "-nostdin", "-v", "error", "-i", source, "-f", "s16le", "-ac", "1", "-ar", "16000", "-"),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    started, sent = time.monotonic(), 0
    try:
        while chunk := await proc.stdout.read(PIECE_SAMPLES * 2):
            if realtime:
                await asyncio.sleep(max(0.0, started + sent / 32000 - time.monotonic()))
            sent += len(chunk)
            yield chunk
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()


async def listen(options: ListenOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Stream, print, and return the number of completed items."""
    import websockets

    headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
    session: dict[str, Any] = {
        "type": "transcription",
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
        "include": ["omoai.partials"] if options.partials else [],
    }
    if not options.server_vad:
        session["audio"]["input"]["turn_detection"] = None
    tty = out.isatty()
    completed = 0
    try:
        async with websockets.connect(realtime_url(options.url), additional_headers=headers, max_size=None) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": session}))

            async def send_audio() -> None:
                carry = b""
                async for chunk in _pieces(options.source, options.realtime):
                    data = carry + chunk
                    even = len(data) // 2 * 2  # whole 16-bit samples only
                    data, carry = data[:even], data[even:]
                    audio = base64.b64encode(data).decode()
                    await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
                await ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "listen-end"}))
                # Answered after everything above: then only the pending items' texts are awaited.
                await ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription"}}))

            sender = asyncio.create_task(send_audio())
            pending: set[str] = set()
            line, updates = "", 0
            try:
                async with asyncio.timeout(options.timeout_s):
                    while updates < 2 or pending:
                        event = json.loads(await ws.recv())
                        kind = event["type"]
                        if kind == "session.updated":
                            updates += 1
                        elif kind == "input_audio_buffer.committed":
                            pending.add(event["item_id"])
                        elif kind == "conversation.item.input_audio_transcription.delta":
                            line += event["delta"]
                            out.write(f"\r\x1b[K{line}" if tty else event["delta"])
                        elif kind == "omoai.input_audio_transcription.partial" and tty:
                            out.write(f"\r\x1b[K{line}\x1b[2m {event['text']}\x1b[0m")
                        elif kind == "conversation.item.input_audio_transcription.completed":
                            out.write((f"\r\x1b[K{event['transcript']}" if tty else "") + "\n")
                            line, completed = "", completed + 1
                            pending.discard(event["item_id"])
                        elif kind == "conversation.item.input_audio_transcription.failed":
                            err.write(f"omoai-asr listen: item failed: {event['error']['message']}\n")
                            pending.discard(event["item_id"])
                        elif kind == "error" and event["error"].get("event_id") != "listen-end":
                            err.write(f"omoai-asr listen: {event['error']['code']}: {event['error']['message']}\n")
                        out.flush()
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
    except websockets.InvalidStatus as e:
        raise ListenError(f"the server refused the session: HTTP {e.response.status_code}") from None
    except websockets.ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd is not None else 1006
        if code != 1000:
            raise ListenError(f"the server closed the session: {code} {e.rcvd.reason if e.rcvd else ''}") from None
    except (OSError, TimeoutError) as e:
        raise ListenError(f"cannot stream to {options.url}: {e}") from None
    return completed
