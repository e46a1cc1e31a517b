"""One realtime transcription session as a state machine apart from the transport: text frames in
(:meth:`RealtimeSession.handle_text`), server events out through ``emit``; the route only moves
frames. Unit tests drive it without a socket.

The input buffer holds 16 kHz int16 audio (already converted from the session's format). A commit
(by the client, or by server VAD at the end of a turn, or at the maximum turn length) turns the
buffer into an item; items are transcribed in order by :meth:`run_decoder` through an
:class:`ItemDecoder` (the batch path: each item's transcript is what the batch endpoint gives for
that item's audio). The text of an item is sent as an append-only delta, then ``completed``.

Memory is bounded: the buffer by ``max_buffer_s`` (turn detection off) or ``max_item_s`` (server
VAD), the audio waiting for the decoder by ``max_pending_s`` (the route stops reading the socket
until it drains: backpressure), the events waiting for a client by the outbox's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from omoai_core.errors import OmoaiError
from omoai_core.schemas import Transcript
from pydantic import ValidationError

from omoai_asr.diarization.vad import SileroVad
from omoai_asr.geometry import SAMPLE_RATE, DecodeOptions
from omoai_asr.realtime import events as ev
from omoai_asr.realtime.audio import PCM16K, PCM24, PCMA, PCMU, AudioFormatError, InputFormat, Resampler, decode_payload
from omoai_asr.realtime.endpointing import Boundary, Endpointer, StreamingVad, VadParams
from omoai_asr.realtime.metrics import RealtimeMetrics

log = logging.getLogger(__name__)

_LEGACY_FORMATS = {"pcm16": PCM24, "g711_ulaw": PCMU, "g711_alaw": PCMA}
_LEGACY_NAMES = {PCM24: "pcm16", PCM16K: "pcm16", PCMU: "g711_ulaw", PCMA: "g711_alaw"}


class ItemDecoder(Protocol):
    """The seam to the engine: one item's 16 kHz int16 audio to its transcript."""

    async def transcribe(self, samples: np.ndarray, options: DecodeOptions) -> Transcript: ...


class OutboxFullError(Exception):
    """The client does not read its events: the session must end (bounded memory)."""


@dataclass(frozen=True)
class SessionLimits:
    max_append_bytes: int = 1024 * 1024
    max_buffer_s: float = 600.0
    max_pending_s: float = 30.0
    partial_interval_s: float = 1.0
    min_item_s: float = 0.1
    vad: VadParams = VadParams()


@dataclass
class _Item:
    id: str
    start: int  # session sample of its first sample
    samples: np.ndarray
    committed_at: float


@dataclass
class _Config:
    fmt: InputFormat = PCM24
    vad: VadParams | None = None
    prompt: str = ""
    include: list[str] = field(default_factory=list)


class ClientMistake(Exception):
    """A client event that cannot be applied; becomes one ``error`` event, the session stays usable."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


class RealtimeSession:
    def __init__(
        self,
        *,
        decoder: ItemDecoder,
        options: DecodeOptions,
        emit: Callable[[ev.ServerEvent], None],
        model_name: str,
        language: str,
        limits: SessionLimits = SessionLimits(),
        vad_model: SileroVad | None = None,
        metrics: RealtimeMetrics | None = None,
        default_turn_detection: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = ev.new_id("sess")
        self.decoder = decoder
        self.options = options
        self.emit = emit
        self.model_name = model_name
        self.language = language
        self.limits = limits
        self.vad_model = vad_model
        self.metrics = metrics
        self.clock = clock
        self.config = _Config(vad=limits.vad if default_turn_detection and vad_model is not None else None)
        self._resampler = Resampler(self.config.fmt.rate)
        self._buffer: list[np.ndarray] = []
        self._buffer_start = 0  # session sample of the buffer's first sample
        self._buffered = 0
        self.received = 0  # 16 kHz samples of the session so far (its audio clock)
        self._items: asyncio.Queue[_Item | None] = asyncio.Queue()
        self.pending = 0  # committed samples not yet transcribed
        self._room = asyncio.Event()
        self._room.set()
        self._previous_item: str | None = None
        self._turn_item: str | None = None  # the id announced by speech_started
        self._vad: StreamingVad | None = None
        self._endpointer: Endpointer | None = None
        self._partial_task: asyncio.Task[None] | None = None
        self._partial_mark = 0  # buffer size at the last partial
        self._reset_vad()

    # -- configuration -----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The effective configuration (current shape), with the decode settings used."""
        return {
            "type": "transcription",
            "id": self.id,
            "object": "realtime.transcription_session",
            "audio": {
                "input": {
                    "format": self.config.fmt.describe(),
                    "transcription": {
                        "model": self.model_name,
                        "language": self.language,
                        "prompt": self.config.prompt,
                    },
                    "turn_detection": self.config.vad.describe() if self.config.vad else None,
                    "noise_reduction": None,
                }
            },
            "include": list(self.config.include),
            "omoai": self._extension(),
        }

    def describe_legacy(self) -> dict[str, Any]:
        """The same in the older ``transcription_session`` shape."""
        return {
            "id": self.id,
            "object": "realtime.transcription_session",
            "input_audio_format": _LEGACY_NAMES[self.config.fmt],
            "input_audio_transcription": {
                "model": self.model_name,
                "language": self.language,
                "prompt": self.config.prompt,
            },
            "turn_detection": self.config.vad.describe() if self.config.vad else None,
            "input_audio_noise_reduction": None,
            "include": list(self.config.include),
            "omoai": self._extension(),
        }

    def _extension(self) -> dict[str, Any]:
        o = self.options
        return {
            "decode": {
                "chunk_size": o.chunk_size,
                "left_context": o.left_context,
                "right_context": o.right_context,
                "total_batch_duration": o.total_batch_duration,
                "word_timestamps": self._words(),
            },
            "noise_reduction_applied": False,
            "prompt_applied": False,
            "server_vad_available": self.vad_model is not None,
            "partials": ev.INCLUDE_PARTIALS in self.config.include,
            "max_item_ms": self.limits.vad.max_item_ms,
        }

    def _words(self) -> bool:
        return self.options.word_timestamps or ev.INCLUDE_WORDS in self.config.include

    def created(self) -> ev.SessionCreated:
        return ev.SessionCreated(session=self.describe())

    def _set_format(self, fmt: InputFormat) -> None:
        if fmt == self.config.fmt:
            return
        if self._buffered:
            raise ClientMistake(
                "input_audio_buffer_not_empty",
                "the input format cannot change while the buffer holds audio: commit or clear it first",
                "session.audio.input.format",
            )
        self.config.fmt = fmt
        self._resampler = Resampler(fmt.rate)

    def _set_turn_detection(self, kind: str | None, given: dict[str, Any]) -> None:
        if kind is None:
            self.config.vad = None
        elif kind == "server_vad":
            if self.vad_model is None:
                raise ClientMistake(
                    "server_vad_unavailable",
                    "server_vad needs the Silero VAD model, which this server does not have; use turn_detection "
                    "null and commit yourself",
                    "session.audio.input.turn_detection",
                )
            d = self.limits.vad

            def pick(name: str, default: Any) -> Any:
                return default if given.get(name) is None else given[name]

            self.config.vad = VadParams(
                threshold=pick("threshold", d.threshold),
                prefix_padding_ms=pick("prefix_padding_ms", d.prefix_padding_ms),
                silence_duration_ms=pick("silence_duration_ms", d.silence_duration_ms),
                max_item_ms=d.max_item_ms,
            )
        else:
            raise ClientMistake(
                "unsupported_turn_detection",
                f"turn_detection {kind!r} is not supported; use server_vad or null",
                "session.audio.input.turn_detection",
            )
        self._reset_vad()

    def _reset_vad(self) -> None:
        if self.config.vad is None or self.vad_model is None:
            self._vad, self._endpointer = None, None
            return
        self._vad = StreamingVad(self.vad_model)
        self._endpointer = Endpointer(self.config.vad, first_frame_at=self.received, floor=self._buffer_start)

    def _apply_update(self, update: ev.SessionUpdate) -> None:
        session = update.session
        if isinstance(session, ev.RealtimeSessionRequest):
            raise ClientMistake(
                "unsupported_session_type",
                'this server runs transcription sessions only: session.type must be "transcription"',
                "session.type",
            )
        audio_in = session.audio.input if session.audio is not None else None
        if audio_in is not None:
            given = audio_in.model_fields_set
            if "format" in given and audio_in.format is not None:
                f = audio_in.format
                fmt = (PCM24 if f.rate == 24000 else PCM16K) if isinstance(f, ev.PcmFormat) else None
                self._set_format(fmt or (PCMU if isinstance(f, ev.PcmuFormat) else PCMA))
            if audio_in.transcription is not None and audio_in.transcription.prompt is not None:
                self.config.prompt = audio_in.transcription.prompt
            if "turn_detection" in given:
                td = audio_in.turn_detection
                self._set_turn_detection(td.type if td is not None else None, td.model_dump() if td else {})
        if session.include is not None:
            self.config.include = list(dict.fromkeys(session.include))

    def _apply_legacy(self, update: ev.TranscriptionSessionUpdate) -> None:
        s = update.session
        given = s.model_fields_set
        if s.input_audio_format is not None:
            self._set_format(_LEGACY_FORMATS[s.input_audio_format])
        if s.input_audio_transcription is not None and s.input_audio_transcription.prompt is not None:
            self.config.prompt = s.input_audio_transcription.prompt
        if "turn_detection" in given:
            td = s.turn_detection
            kind = None if td is None else (td.type or "server_vad")
            self._set_turn_detection(kind, td.model_dump() if td else {})
        if s.include is not None:
            self.config.include = list(dict.fromkeys(s.include))

    # -- client events -----------------------------------------------------------------------------

    def handle_text(self, text: str) -> None:
        """One text frame: parsed, validated, applied; a client mistake becomes one ``error`` event."""
        event_id: str | None = None
        try:
            try:
                data = json.loads(text)
            except ValueError as e:
                raise ClientMistake("invalid_json", f"the frame is not JSON: {e}") from None
            if not isinstance(data, dict):
                raise ClientMistake("invalid_event", "an event is a JSON object with a `type`")
            event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
            try:
                event = ev.CLIENT_EVENT.validate_python(data)
            except ValidationError as e:
                raise _validation_mistake(e, data) from None
            self._dispatch(event)
        except ClientMistake as m:
            self.emit(
                ev.ErrorEvent(error=ev.ErrorDetail(code=m.code, message=m.message, param=m.param, event_id=event_id))
            )

    def handle_binary(self) -> None:
        self.emit(
            ev.ErrorEvent(
                error=ev.ErrorDetail(
                    code="binary_frame",
                    message="binary frames are not part of the protocol: send JSON text events "
                    "(audio base64-encoded in input_audio_buffer.append)",
                )
            )
        )

    def _dispatch(self, event: ev.ClientEvent) -> None:
        if isinstance(event, ev.SessionUpdate):
            self._apply_update(event)
            self.emit(ev.SessionUpdated(session=self.describe()))
        elif isinstance(event, ev.TranscriptionSessionUpdate):
            self._apply_legacy(event)
            self.emit(ev.TranscriptionSessionUpdated(session=self.describe_legacy()))
        elif isinstance(event, ev.InputAudioBufferAppend):
            self._append(event.audio)
        elif isinstance(event, ev.InputAudioBufferCommit):
            self._commit_by_client()
        else:
            self._clear()

    def _append(self, audio_b64: str) -> None:
        try:
            native = decode_payload(audio_b64, self.config.fmt, max_bytes=self.limits.max_append_bytes)
        except AudioFormatError as e:
            raise ClientMistake("invalid_audio", str(e), "audio") from None
        if self.config.vad is None:
            room = int(self.limits.max_buffer_s * SAMPLE_RATE) - self._buffered
            if len(native) * SAMPLE_RATE // self.config.fmt.rate > room:
                raise ClientMistake(
                    "input_audio_buffer_full",
                    f"the buffer holds at most {self.limits.max_buffer_s:.0f} s of audio; this append was dropped: "
                    "commit, then send it again",
                    "audio",
                )
        samples = self._resampler.feed(native)
        self._add(samples)
        if self.metrics is not None:
            self.metrics.audio_seconds.inc(len(native) / self.config.fmt.rate)

    def _add(self, samples: np.ndarray) -> None:
        start = self.received
        self._buffer.append(samples)
        self._buffered += len(samples)
        self.received += len(samples)
        if self._vad is not None and self._endpointer is not None:
            for b in self._endpointer.feed(self._vad.feed(samples)):
                self._boundary(b)
            if not self._endpointer.in_speech:
                # Between turns only the prefix padding can still become part of an item.
                padding = self._endpointer.params.prefix_padding_ms * 16
                self._drop_before(max(self._endpointer.floor, self.received - padding))
        self._maybe_partial(start)

    def _boundary(self, b: Boundary) -> None:
        if b.kind == "start":
            self._drop_before(b.at)
            self._turn_item = ev.new_id("item")
            self.emit(ev.SpeechStarted(audio_start_ms=b.at // 16, item_id=self._turn_item))
            return
        item_id = self._turn_item or ev.new_id("item")
        if b.kind == "stop":
            self.emit(ev.SpeechStopped(audio_end_ms=b.at // 16, item_id=item_id))
        self._commit(item_id, until=b.at)
        self._turn_item = None
        if b.kind == "cut":
            self._turn_item = ev.new_id("item")
            self.emit(ev.SpeechStarted(audio_start_ms=b.at // 16, item_id=self._turn_item))

    def _commit_by_client(self) -> None:
        if self.config.vad is None:
            self._add_tail()
        if self._buffered < self.limits.min_item_s * SAMPLE_RATE:
            raise ClientMistake(
                "input_audio_buffer_commit_empty",
                f"the buffer holds {self._buffered / 16:.0f} ms of audio; a commit needs at least "
                f"{self.limits.min_item_s * 1000:.0f} ms",
            )
        item_id = self._turn_item or ev.new_id("item")
        self._turn_item = None
        self._commit(item_id, until=self.received)
        if self._endpointer is not None:
            self._endpointer.restart(self.received)

    def _add_tail(self) -> None:
        """Turn detection off: the buffer ends here, so the resampler's look-ahead is flushed."""
        tail = self._resampler.flush()
        if len(tail):
            self._add(tail)

    def _clear(self) -> None:
        self._resampler.reset()
        self._drop_before(self.received)
        self._turn_item = None
        if self._endpointer is not None:
            self._endpointer.restart(self.received)
        self.emit(ev.Cleared())

    def _drop_before(self, at: int) -> None:
        """Forget buffered audio before session sample ``at``."""
        cut = min(max(0, at - self._buffer_start), self._buffered)
        if cut == 0:
            return
        audio = np.concatenate(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        rest = audio[cut:]
        self._buffer = [rest] if len(rest) else []
        self._buffered = len(rest)
        self._buffer_start += cut
        self._partial_mark = max(0, self._partial_mark - cut)

    def _commit(self, item_id: str, *, until: int) -> None:
        n = min(max(0, until - self._buffer_start), self._buffered)
        audio = np.concatenate(self._buffer) if self._buffer else np.zeros(0, dtype=np.int16)
        item = _Item(item_id, self._buffer_start, audio[:n].copy(), self.clock())
        rest = audio[n:]
        self._buffer = [rest] if len(rest) else []
        self._buffered = len(rest)
        self._buffer_start += n
        self._partial_mark = 0
        self.emit(ev.Committed(item_id=item_id, previous_item_id=self._previous_item))
        self._previous_item = item_id
        self.pending += len(item.samples)
        if self.pending > self.limits.max_pending_s * SAMPLE_RATE:
            self._room.clear()
        self._items.put_nowait(item)

    # -- decoding ----------------------------------------------------------------------------------

    async def wait_for_room(self) -> None:
        """Backpressure: returns once the audio waiting for the decoder is under ``max_pending_s``."""
        await self._room.wait()

    @property
    def lag_s(self) -> float:
        return self.pending / SAMPLE_RATE

    async def run_decoder(self) -> None:
        """Transcribe committed items in order until :meth:`finish` puts the end marker."""
        while (item := await self._items.get()) is not None:
            try:
                await self._transcribe(item)
            finally:
                self.pending -= len(item.samples)
                if self.pending <= self.limits.max_pending_s * SAMPLE_RATE:
                    self._room.set()

    async def _transcribe(self, item: _Item) -> None:
        options = self.options
        if self._words() and not options.word_timestamps:
            from dataclasses import replace

            options = replace(options, word_timestamps=True)
        try:
            transcript = await self.decoder.transcribe(item.samples, options)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            code = e.code if isinstance(e, OmoaiError) else "internal_error"
            message = e.message if isinstance(e, OmoaiError) else "the transcription failed"
            if not isinstance(e, OmoaiError):
                log.exception("realtime item %s failed", item.id)
            self.emit(ev.TranscriptionFailed(item_id=item.id, error=ev.FailureDetail(code=code, message=message)))
            return
        if transcript.text:
            self.emit(ev.TranscriptionDelta(item_id=item.id, delta=transcript.text))
        offset = item.start / SAMPLE_RATE
        self.emit(
            ev.TranscriptionCompleted(
                item_id=item.id,
                transcript=transcript.text,
                usage=ev.DurationUsage(seconds=round(len(item.samples) / SAMPLE_RATE, 3)),
                omoai={
                    "audio_start_ms": item.start // 16,
                    "audio_end_ms": (item.start + len(item.samples)) // 16,
                    "segments": [_shifted(s.model_dump(exclude_none=True), offset) for s in transcript.segments],
                },
            )
        )
        if self.metrics is not None:
            self.metrics.commit_latency.observe(self.clock() - item.committed_at)
            self.metrics.item_duration.observe(len(item.samples) / SAMPLE_RATE)

    # -- partial transcripts (opt-in extension) ----------------------------------------------------

    def _maybe_partial(self, arrived_from: int) -> None:
        if ev.INCLUDE_PARTIALS not in self.config.include or not self._buffered:
            return
        if self._partial_task is not None and not self._partial_task.done():
            return
        if self._buffered - self._partial_mark < self.limits.partial_interval_s * SAMPLE_RATE:
            return
        if self._endpointer is not None and not self._endpointer.in_speech:
            return
        self._partial_mark = self._buffered
        item_id = self._turn_item or "pending"
        audio = np.concatenate(self._buffer)[-int(self.limits.max_buffer_s * SAMPLE_RATE) :]
        end_ms = (self._buffer_start + self._buffered) // 16
        self._partial_task = asyncio.ensure_future(self._partial(item_id, audio, end_ms, self.clock()))

    async def _partial(self, item_id: str, audio: np.ndarray, end_ms: int, arrived_at: float) -> None:
        with contextlib.suppress(OmoaiError):
            transcript = await self.decoder.transcribe(audio, self.options)
            self.emit(ev.PartialTranscript(item_id=item_id, text=transcript.text, audio_end_ms=end_ms))
            if self.metrics is not None:
                self.metrics.partial_latency.observe(self.clock() - arrived_at)

    # -- the end -----------------------------------------------------------------------------------

    async def finish(self) -> None:
        """The session ends (drain, expiry, idle): what the buffer holds is committed and every item
        is transcribed before this returns, so no audio the client sent is lost."""
        if self._partial_task is not None:
            self._partial_task.cancel()
        if self.config.vad is None:
            self._add_tail()
        if self._buffered >= self.limits.min_item_s * SAMPLE_RATE and (
            self.config.vad is None or (self._endpointer is not None and self._endpointer.in_speech)
        ):
            self._commit(self._turn_item or ev.new_id("item"), until=self.received)
        self._items.put_nowait(None)

    def abandon(self) -> None:
        if self._partial_task is not None:
            self._partial_task.cancel()


def _shifted(segment: dict[str, Any], offset: float) -> dict[str, Any]:
    """A segment (and its words) moved from the item's clock to the session's."""
    out = dict(segment)
    out["start"] = round(segment["start"] + offset, 3)
    out["end"] = round(segment["end"] + offset, 3)
    if "words" in segment:
        out["words"] = [
            {**w, "start": round(w["start"] + offset, 3), "end": round(w["end"] + offset, 3)} for w in segment["words"]
        ]
    return out


def _validation_mistake(e: ValidationError, data: dict[str, Any]) -> ClientMistake:
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in ev.CLIENT_EVENT_TYPES:
        return ClientMistake(
            "unknown_event_type",
            f"unknown event type {kind!r}; this server takes " + ", ".join(ev.CLIENT_EVENT_TYPES),
            "type",
        )
    problems = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if not str(p).startswith(("function-", "tagged-union")))
        problems.append(f"{loc or kind}: {err.get('msg', 'invalid')}")
    return ClientMistake(
        "invalid_event", f"invalid {kind} event: " + "; ".join(problems[:5]), problems[0].split(":")[0]
    )
