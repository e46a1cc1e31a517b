"""One realtime transcription session as a state machine apart from the transport: text frames in
(:meth:`RealtimeSession.handle_text`), server events out through ``emit``; the route only moves
frames. Unit tests drive it without a socket (the decoder seam, :class:`Stream`, faked).

Audio is converted to 16 kHz int16 (the session's audio clock counts those samples) and fed to a
live stream of the engine (:mod:`omoai_asr.live`), which commits text as soon as the decode
settings allow: each :class:`~omoai_asr.live.Committed` becomes an append-only ``delta`` of the
current item, each :class:`~omoai_asr.live.Partial` our opt-in partial event. A commit (by the
client, by server VAD at the end of a turn, or at the maximum turn length) ends the item; its
``completed`` transcript is exactly the batch transcript of the item's audio. With server VAD only
the turns' audio (from ``prefix_padding_ms`` before the speech) is fed; the silence between turns
is never decoded.

Memory is bounded: the stream holds at most ``OMOAI_LIVE_MAX_BUFFERED_S`` of undecoded audio
(:meth:`handle_text` waits meanwhile, so the route stops reading the socket: backpressure), the
ring between turns the prefix padding, the events waiting for a client the outbox's size.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from omoai_core.errors import InvalidInputError, OmoaiError
from omoai_core.schemas import Transcript
from pydantic import ValidationError

from omoai_asr.diarization.vad import SileroVad
from omoai_asr.geometry import FRAME_SECONDS, SAMPLE_RATE, DecodeOptions, window_keep_frames
from omoai_asr.live import Committed, Failed, LiveEvent, Partial, StreamClosedError, shift_segment
from omoai_asr.realtime import events as ev
from omoai_asr.realtime.audio import PCM16K, PCM24, PCMA, PCMU, AudioFormatError, InputFormat, Resampler, decode_payload
from omoai_asr.realtime.endpointing import Boundary, Endpointer, StreamingVad, VadParams
from omoai_asr.realtime.metrics import RealtimeMetrics

log = logging.getLogger(__name__)

_LEGACY_FORMATS = {"pcm16": PCM24, "g711_ulaw": PCMU, "g711_alaw": PCMA}
_LEGACY_NAMES = {PCM24: "pcm16", PCM16K: "pcm16", PCMU: "g711_ulaw", PCMA: "g711_alaw"}


class Stream(Protocol):
    """The seam to the engine (:class:`omoai_asr.live.LiveStream`): audio in, events out."""

    @property
    def buffered_seconds(self) -> float: ...

    async def feed(self, pcm: np.ndarray) -> None: ...

    async def commit(self) -> Transcript: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...

    async def next_event(self) -> LiveEvent: ...  # StreamClosedError once closed and drained


#: Opens a stream with these decode options, with partial hypotheses or not.
StreamOpener = Callable[[DecodeOptions, bool], Stream]


class OutboxFullError(Exception):
    """The client does not read its events: the session must end (bounded memory)."""


@dataclass(frozen=True)
class SessionLimits:
    max_append_bytes: int = 1024 * 1024
    min_item_s: float = 0.1
    vad: VadParams = VadParams()


@dataclass
class _Item:
    """An item whose events are still flowing: its id, its first sample in the session clock and in
    the stream's clock, and when it was committed."""

    id: str
    start: int
    fed_start: int
    committed_at: float | None = None


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
        open_stream: StreamOpener,
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
        self.open_stream = open_stream
        self.options = options
        self.emit = emit
        self.model_name = model_name
        self.language = language
        self.limits = limits
        self.vad_model = vad_model
        self.metrics = metrics
        self.clock = clock
        self.config = _Config(vad=limits.vad if default_turn_detection and vad_model is not None else None)
        self._resampler, self._resampler_rate = Resampler(self.config.fmt.rate), self.config.fmt.rate
        self.received = 0  # 16 kHz samples of the session so far (its audio clock)
        # The item being spoken: its id, its first sample, the samples fed to the stream for it.
        self._item_id = ev.new_id("item")
        self._item_start = 0
        self._item_samples = 0
        self._in_turn = self.config.vad is None  # server VAD: audio goes to the stream only in a turn
        # Between turns (server VAD) the last ``prefix_padding_ms`` of audio wait here.
        self._ring = np.zeros(0, dtype=np.int16)
        self._ring_start = 0
        # Items whose events are still flowing, oldest first: (id, first sample, commit time).
        self._flowing: collections.deque[_Item] = collections.deque()
        self._previous_item: str | None = None
        self._fed = 0  # samples fed to the stream (its clock)
        self._arrivals: collections.deque[tuple[int, float]] = collections.deque()  # (stream clock, time)
        self._vad: StreamingVad | None = None
        self._endpointer: Endpointer | None = None
        self._reset_vad()
        self.stream = self._open()

    def _open(self) -> Stream:
        self.stream_options = self._decode_options()
        self._fed = 0
        self._arrivals.clear()
        self._flowing.append(_Item(self._item_id, self._item_start, 0))
        return self.open_stream(self.stream_options, ev.INCLUDE_PARTIALS in self.config.include)

    def _decode_options(self) -> DecodeOptions:
        if self._words() and not self.options.word_timestamps:
            return dataclasses.replace(self.options, word_timestamps=True)
        return self.options

    def _stream_settings(self) -> tuple[bool, DecodeOptions]:
        return ev.INCLUDE_PARTIALS in self.config.include, self._decode_options()

    def _reopen(self) -> None:
        """The stream's settings (decode options, partials) are fixed when it opens: a change reopens
        it, which only an idle stream may do (no audio in the item, no item still decoding)."""
        self.stream.close()
        self._flowing.clear()
        self.stream = self._open()

    @property
    def _idle(self) -> bool:
        return self._item_samples == 0 and len(self._flowing) == 1

    def _apply_decode(self, overrides: ev.DecodeOverrides | None) -> None:
        if overrides is None:
            return
        given = {k: v for k, v in overrides.model_dump().items() if v is not None}
        try:
            self.options = dataclasses.replace(self.options, **given)
        except InvalidInputError as e:
            raise ClientMistake("invalid_decode_settings", e.message, "session.omoai.decode") from None

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
        if self._item_samples or len(self._ring):
            raise ClientMistake(
                "input_audio_buffer_not_empty",
                "the input format cannot change while the buffer holds audio: commit or clear it first",
                "session.audio.input.format",
            )
        self.config.fmt = fmt
        self._resampler, self._resampler_rate = Resampler(fmt.rate), fmt.rate

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
            self._in_turn = True
            return
        self._vad = StreamingVad(self.vad_model)
        self._endpointer = Endpointer(self.config.vad, first_frame_at=self.received, floor=self.received)
        self._in_turn = False

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
        if session.omoai is not None:
            self._apply_decode(session.omoai.decode)

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
        if s.omoai is not None:
            self._apply_decode(s.omoai.decode)

    # -- client events -----------------------------------------------------------------------------

    async def handle_text(self, text: str) -> None:
        """One text frame: parsed, validated, applied; a client mistake becomes one ``error`` event.
        Feeding audio may wait for the decoder (backpressure: the route reads no further meanwhile)."""
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
            await self._dispatch(event)
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

    async def _dispatch(self, event: ev.ClientEvent) -> None:
        if isinstance(event, ev.SessionUpdate | ev.TranscriptionSessionUpdate):
            before = self._stream_settings()
            saved = (dataclasses.replace(self.config, include=list(self.config.include)), self.options)
            try:
                if isinstance(event, ev.SessionUpdate):
                    self._apply_update(event)
                else:
                    self._apply_legacy(event)
                if self._stream_settings() != before:
                    if not self._idle:
                        raise ClientMistake(
                            "session_busy",
                            "decode settings, partials and word timestamps change only between items: commit or "
                            "clear the buffer and wait for the last transcript first",
                            "session",
                        )
                    self._reopen()
            except ClientMistake:
                self.config, self.options = saved
                if self._resampler_rate != self.config.fmt.rate:
                    self._resampler, self._resampler_rate = Resampler(self.config.fmt.rate), self.config.fmt.rate
                raise
            if isinstance(event, ev.SessionUpdate):
                self.emit(ev.SessionUpdated(session=self.describe()))
            else:
                self.emit(ev.TranscriptionSessionUpdated(session=self.describe_legacy()))
        elif isinstance(event, ev.InputAudioBufferAppend):
            await self._append(event.audio)
        elif isinstance(event, ev.InputAudioBufferCommit):
            await self._commit_by_client()
        else:
            self._clear()

    async def _append(self, audio_b64: str) -> None:
        try:
            native = decode_payload(audio_b64, self.config.fmt, max_bytes=self.limits.max_append_bytes)
        except AudioFormatError as e:
            raise ClientMistake("invalid_audio", str(e), "audio") from None
        if self.metrics is not None:
            self.metrics.audio_seconds.inc(len(native) / self.config.fmt.rate)
        await self._add(self._resampler.feed(native))

    async def _add(self, samples: np.ndarray) -> None:
        """16 kHz samples of the session clock: to the stream (in a turn), else to the ring; server
        VAD's boundaries inside them split them exactly where the turns start and end."""
        start = self.received
        self.received += len(samples)
        if self._vad is None or self._endpointer is None:
            await self._feed(samples)
            return
        pos = start
        for b in self._endpointer.feed(self._vad.feed(samples)):
            if b.at > pos:
                await self._route(samples[pos - start : b.at - start])
                pos = b.at
            await self._boundary(b)
        await self._route(samples[pos - start :])
        if not self._in_turn:
            keep = self._endpointer.params.prefix_padding_ms * 16
            cut = max(0, len(self._ring) - keep)
            self._ring, self._ring_start = self._ring[cut:], self._ring_start + cut

    async def _route(self, samples: np.ndarray) -> None:
        if self._in_turn:
            await self._feed(samples)
        elif len(samples):
            if not len(self._ring):
                self._ring_start = self.received - len(samples)  # never used before a turn's start
            self._ring = np.concatenate([self._ring, samples])

    async def _feed(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        await self.stream.feed(samples)
        self._item_samples += len(samples)
        self._fed += len(samples)
        self._arrivals.append((self._fed, self.clock()))

    async def _boundary(self, b: Boundary) -> None:
        if b.kind == "start":
            self._in_turn = True
            self._item_start = b.at
            self._flowing[-1] = _Item(self._item_id, b.at, self._fed)
            self.emit(ev.SpeechStarted(audio_start_ms=b.at // 16, item_id=self._item_id))
            padding = self._ring[max(0, b.at - self._ring_start) :]
            self._ring = np.zeros(0, dtype=np.int16)
            await self._feed(padding)
            return
        if b.kind == "stop":
            self.emit(ev.SpeechStopped(audio_end_ms=b.at // 16, item_id=self._item_id))
            self._in_turn = False
            self._ring, self._ring_start = np.zeros(0, dtype=np.int16), b.at
        await self._commit(next_start=b.at)
        if b.kind == "cut":
            self.emit(ev.SpeechStarted(audio_start_ms=b.at // 16, item_id=self._item_id))

    async def _commit_by_client(self) -> None:
        if self.config.vad is None:
            await self._feed_tail()
        if self._item_samples < self.limits.min_item_s * SAMPLE_RATE:
            raise ClientMistake(
                "input_audio_buffer_commit_empty",
                f"the buffer holds {self._item_samples / 16:.0f} ms of audio; a commit needs at least "
                f"{self.limits.min_item_s * 1000:.0f} ms",
            )
        await self._commit(next_start=self.received)
        if self._endpointer is not None:
            self._endpointer.restart(self.received)
            self._in_turn = False
            self._ring, self._ring_start = np.zeros(0, dtype=np.int16), self.received

    async def _feed_tail(self) -> None:
        """Turn detection off: the buffer ends here, so the resampler's look-ahead is flushed."""
        tail = self._resampler.flush()
        self.received += len(tail)
        await self._feed(tail)

    async def _commit(self, *, next_start: int) -> None:
        """The current item ends: ``committed`` now, ``completed`` when the stream's final arrives."""
        item_id = self._item_id
        self.emit(ev.Committed(item_id=item_id, previous_item_id=self._previous_item))
        self._previous_item = item_id
        self._flowing[-1].committed_at = self.clock()
        self._item_id, self._item_start, self._item_samples = ev.new_id("item"), next_start, 0
        self._flowing.append(_Item(self._item_id, self._item_start, self._fed))
        with contextlib.suppress(OmoaiError):  # a failure arrives as the stream's Failed event
            await self.stream.commit()

    def _clear(self) -> None:
        self._resampler.reset()
        self.stream.clear()
        self._flowing.pop()
        self._item_id, self._item_start, self._item_samples = ev.new_id("item"), self.received, 0
        self._flowing.append(_Item(self._item_id, self._item_start, self._fed))
        if self._endpointer is not None:
            self._endpointer.restart(self.received)
            self._in_turn = False
            self._ring, self._ring_start = np.zeros(0, dtype=np.int16), self.received
        self.emit(ev.Cleared())

    # -- the stream's events -----------------------------------------------------------------------

    @property
    def lag_s(self) -> float:
        """Seconds of audio fed to the decoder and not yet decoded, beyond what the decode settings
        hold back anyway (a window and its right context): 0 while the replica keeps up."""
        o = self.stream_options
        held = (window_keep_frames(o) + o.right_context) * FRAME_SECONDS
        return max(0.0, self.stream.buffered_seconds - held)

    async def run_events(self) -> None:
        """The stream's events as server events, until the stream is closed (by :meth:`finish`) or
        fails. A reopened stream (new settings) is followed at once."""
        while True:
            stream = self.stream
            try:
                event = await stream.next_event()
            except StreamClosedError:
                if stream is not self.stream:
                    continue
                return
            self._handle(event)

    def _handle(self, event: LiveEvent) -> None:
        if isinstance(event, Failed):
            detail = ev.FailureDetail(code=event.error.code, message=event.error.message)
            for pending in self._flowing:
                self.emit(ev.TranscriptionFailed(item_id=pending.id, error=detail))
            self._flowing.clear()
            raise StreamFailedError(event.error)
        if not self._flowing:
            return
        item = self._flowing[0]
        if isinstance(event, Committed):
            if event.text:
                self.emit(ev.TranscriptionDelta(item_id=item.id, delta=event.text))
            self._observe(event.audio_seconds_done, "commit")
        elif isinstance(event, Partial):
            if ev.INCLUDE_PARTIALS in self.config.include:
                end = item.start + round(event.audio_seconds * SAMPLE_RATE) - item.fed_start
                self.emit(ev.PartialTranscript(item_id=item.id, text=event.text, audio_end_ms=end // 16))
                self._observe(event.audio_seconds, "partial")
        else:
            self._flowing.popleft()
            self._completed(item.id, item.start, event.transcript, item.committed_at)

    def _completed(self, item_id: str, start: int, transcript: Transcript, committed_at: float | None) -> None:
        offset = start / SAMPLE_RATE
        self.emit(
            ev.TranscriptionCompleted(
                item_id=item_id,
                transcript=transcript.text,
                usage=ev.DurationUsage(seconds=round(transcript.duration, 3)),
                omoai={
                    "audio_start_ms": start // 16,
                    "audio_end_ms": (start + round(transcript.duration * SAMPLE_RATE)) // 16,
                    "segments": [shift_segment(s, offset).model_dump(exclude_none=True) for s in transcript.segments],
                },
            )
        )
        if self.metrics is not None:
            if committed_at is not None:
                self.metrics.final_latency.observe(self.clock() - committed_at)
            self.metrics.item_duration.observe(transcript.duration)

    def _observe(self, stream_seconds: float, kind: str) -> None:
        """Latency from the arrival of the audio an event covers up to (stream clock) to now."""
        target = round(stream_seconds * SAMPLE_RATE)
        while len(self._arrivals) > 1 and self._arrivals[1][0] <= target:
            self._arrivals.popleft()
        if self.metrics is None or not self._arrivals or self._arrivals[0][0] > target + SAMPLE_RATE:
            return
        seconds = self.clock() - self._arrivals[0][1]
        (self.metrics.commit_latency if kind == "commit" else self.metrics.partial_latency).observe(seconds)

    # -- the end -----------------------------------------------------------------------------------

    async def finish(self) -> None:
        """The session ends (drain, expiry, idle): what the buffer holds is committed and decoded
        before this returns, so no audio the client sent is lost; then the stream closes."""
        if self.config.vad is None:
            await self._feed_tail()
        if self._item_samples >= self.limits.min_item_s * SAMPLE_RATE:
            await self._commit(next_start=self.received)
        self.stream.close()

    def abandon(self) -> None:
        self.stream.close()


class StreamFailedError(Exception):
    """The decoder failed the stream (engine error, or the runtime stopping)."""

    def __init__(self, error: OmoaiError) -> None:
        super().__init__(error.message)
        self.error = error


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
