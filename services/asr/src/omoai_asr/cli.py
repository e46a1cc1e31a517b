"""The ``omoai-asr`` command: ``transcribe`` files from the shell, or ``serve`` the HTTP API.

Results go to stdout (or ``--output-dir``); diagnostics, the progress bar (only on a terminal) and
errors go to stderr. Exit status: 0 all inputs transcribed, 1 some input failed (the others are
still written), 2 bad usage, configuration or model, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self, TextIO

from omoai_core.contracts import FORMATS
from omoai_core.contracts.asr import DECODE_DEFAULTS as DEFAULTS
from omoai_core.errors import OmoaiError

from omoai_asr.checkpoints import DEFAULT_MODEL, describe_known_checkpoints

log = logging.getLogger("omoai_asr")

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omoai-asr",
        description="ChunkFormer speech recognition: transcribe files, serve the HTTP API, or listen (stream "
        "audio to a server and print the text as it comes).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser(
        "transcribe",
        help="transcribe audio/video files",
        description="Transcribe audio or video files (anything ffmpeg reads; '-' is stdin). Results go to "
        "stdout unless --output-dir is given: one document per input, a JSON array for several inputs in "
        "json, '==> FILE <==' headers for several inputs in the text formats.",
    )
    t.epilog = "known checkpoints: " + describe_known_checkpoints()
    t.usage = "%(prog)s [MODEL] AUDIO [AUDIO ...] [options]"
    t.add_argument(
        "inputs",
        nargs="+",
        metavar="[MODEL] AUDIO",
        help=f"MODEL (optional): checkpoint directory or hub id, default {DEFAULT_MODEL} (env OMOAI_MODEL); "
        "it is taken as the model when it is not a file and audio follows. AUDIO: audio or video files; "
        "'-' reads stdin",
    )
    _decode_flags(t)
    t.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: auto; env OMOAI_DEVICE)")
    t.add_argument(
        "--dtype",
        default=None,
        choices=("auto", "fp32", "fp16", "bf16"),
        help="compute dtype (default: auto = bf16/fp16 on CUDA, fp32 on CPU; env OMOAI_DTYPE)",
    )
    t.add_argument("--format", "-f", default="json", choices=FORMATS, help="output format (default: json)")
    t.add_argument("--output-dir", "-o", type=Path, default=None, help="write FILE_STEM.FORMAT files here")
    t.add_argument("--include-frames", action="store_true", help="add the per-frame token ids (json)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--verbose", "-v", action="store_true", help="log progress details on stderr")
    t.add_argument("--diarize", action="store_true", help="label segments and words with speakers (S1, S2...)")
    t.add_argument("--num-speakers", type=int, default=None, help="speakers in the recording (with --diarize)")
    t.add_argument("--min-speakers", type=int, default=None, help="fewest speakers to find (default 1)")
    t.add_argument("--max-speakers", type=int, default=None, help="most speakers to find (default 8)")

    s = sub.add_parser(
        "serve",
        help="serve the HTTP API",
        description="Serve the HTTP API (FastAPI + uvicorn). Every flag is also an environment variable "
        "(OMOAI_MODEL, OMOAI_HOST, OMOAI_PORT, ...; see docs/asr-service.md); flags win.",
    )
    s.add_argument(
        "--model", default=None, help=f"checkpoint directory or hub id (default {DEFAULT_MODEL}; env OMOAI_MODEL)"
    )
    s.add_argument("--host", default=None, help="bind address (default 127.0.0.1; env OMOAI_HOST)")
    s.add_argument("--port", type=int, default=None, help="port (default 8000; env OMOAI_PORT)")
    s.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (env OMOAI_DEVICE)")
    s.add_argument("--dtype", default=None, choices=("auto", "fp32", "fp16", "bf16"), help="env OMOAI_DTYPE")
    s.add_argument("--served-model-name", default=None, help="name in /v1/models (env OMOAI_SERVED_MODEL_NAME)")
    s.add_argument("--max-batch-size", type=int, default=None, help="requests per masked batch (default 8)")
    s.add_argument("--batch-window-ms", type=float, default=None, help="wait for a batch to fill (default 10)")
    s.add_argument("--max-concurrency", type=int, default=None, help="requests worked on at once (default 16)")
    s.add_argument("--max-queue", type=int, default=None, help="requests waiting before 429 (default 64)")
    s.add_argument(
        "--max-audio-duration",
        type=float,
        default=None,
        dest="max_audio_duration_s",
        help="longest audio in seconds (default 14400)",
    )
    s.add_argument(
        "--request-timeout",
        type=float,
        default=None,
        dest="request_timeout_s",
        help="seconds before a request is stopped with 504 (default 3600)",
    )
    s.add_argument("--file-root", type=Path, default=None, help="directory file:// URLs may read (default: off)")
    s.add_argument("--api-token-file", type=Path, default=None, help="file holding the bearer token")
    s.add_argument("--threads", type=int, default=None, dest="torch_threads", help="torch CPU threads")
    s.add_argument("--log-level", default=None, choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    s.add_argument("--log-format", default=None, choices=("text", "json"))

    w = sub.add_parser(
        "listen",
        help="stream audio to a server's /v1/realtime and print the text as it comes",
        description="Stream a file (anything ffmpeg reads) or raw 16 kHz mono s16le PCM on stdin ('-') to "
        "a running server's realtime WebSocket and print committed text as it arrives, one line per item "
        "(with --partials, the revisable tail too, on a terminal).",
    )
    w.add_argument("audio", help="audio or video file, or '-' for raw 16 kHz mono s16le PCM on stdin")
    w.add_argument("--url", default="http://127.0.0.1:8000", help="the ASR service (default http://127.0.0.1:8000)")
    w.add_argument(
        "--api-token-file", type=Path, default=None, help="file holding the bearer token (or OMOAI_API_TOKEN)"
    )
    w.add_argument(
        "--fast", action="store_true", help="send a file as fast as the server takes it (default: real time)"
    )
    w.add_argument("--partials", action="store_true", help="show the revisable partial text as well")
    w.add_argument("--server-vad", action="store_true", help="let the server split turns (default: one item)")
    return parser


def _decode_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULTS.chunk_size,
        help=f"encoder frames per chunk, 80 ms each (default {DEFAULTS.chunk_size})",
    )
    p.add_argument(
        "--left-context",
        type=int,
        default=DEFAULTS.left_context,
        help=f"left context in encoder frames (default {DEFAULTS.left_context})",
    )
    p.add_argument(
        "--right-context",
        type=int,
        default=DEFAULTS.right_context,
        help=f"right context in encoder frames (default {DEFAULTS.right_context})",
    )
    p.add_argument(
        "--total-batch-duration",
        type=float,
        default=DEFAULTS.total_batch_duration,
        help=f"seconds of audio per forward pass; lower it to save memory (default {DEFAULTS.total_batch_duration:g})",
    )
    p.add_argument(
        "--no-word-timestamps", dest="word_timestamps", action="store_false", help="leave out word timestamps"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "transcribe":
            return _transcribe(args)
        if args.command == "listen":
            return _listen(args)
        return _serve(args)
    except KeyboardInterrupt:
        print("omoai-asr: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OmoaiError as e:
        print(f"omoai-asr: error: {e.message}", file=sys.stderr)
        return EXIT_USAGE


# -- listen ----------------------------------------------------------------------------------------


def _listen(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from omoai_asr.realtime.client import ListenOptions, listen

    token = os.environ.get("OMOAI_API_TOKEN") or None
    if args.api_token_file is not None:
        token = args.api_token_file.read_text().strip()
    options = ListenOptions(
        url=args.url,
        source=args.audio,
        token=token,
        realtime=not args.fast,
        partials=args.partials,
        server_vad=args.server_vad,
    )
    asyncio.run(listen(options))
    return EXIT_OK


# -- transcribe ------------------------------------------------------------------------------------


def split_model(inputs: Sequence[str]) -> tuple[str | None, list[str]]:
    """``[MODEL] AUDIO...`` -> (model or None for the default, audio inputs).

    The first input is the model when audio follows it and it is not a file: a checkpoint
    directory or a hub id (audio inputs are files or '-').
    """
    first = inputs[0]
    if len(inputs) > 1 and first != "-" and not Path(first).is_file():
        return first, list(inputs[1:])
    return None, list(inputs)


def _transcribe(args: argparse.Namespace) -> int:
    from omoai_core.settings import load_settings

    from omoai_asr.engine.options import DecodeOptions
    from omoai_asr.settings import AsrSettings

    model, args.audio = split_model(args.inputs)
    settings = load_settings(AsrSettings, model=model, device=args.device, dtype=args.dtype)
    _setup_logging(settings, logging.INFO if args.verbose else logging.WARNING)
    options = DecodeOptions(  # invalid combinations fail here, before the model loads
        chunk_size=args.chunk_size,
        left_context=args.left_context,
        right_context=args.right_context,
        total_batch_duration=args.total_batch_duration,
        include_frames=args.include_frames,
        word_timestamps=args.word_timestamps,
    )
    speakers = _speaker_options(args)
    if speakers is not None:
        import dataclasses

        options = dataclasses.replace(options, word_timestamps=True)  # words carry the speakers
    if args.audio.count("-") > 1:
        raise _usage("'-' (stdin) can be given once")
    missing = [a for a in args.audio if a != "-" and not Path(a).exists()]
    if missing and len(missing) == len(args.audio):
        raise _usage("no such file: " + ", ".join(missing))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from omoai_audio import decode_audio
    from omoai_gpu.memory import MemoryPolicy
    from prometheus_client import CollectorRegistry

    from omoai_asr.engine import ChunkFormerEngine

    policy = MemoryPolicy.from_settings(
        settings.device, settings.dtype, debug_empty_cache=settings.debug_empty_cache, registry=CollectorRegistry()
    )
    engine = ChunkFormerEngine.load(settings.model, policy)
    diarizer = _load_diarizer(settings, policy) if speakers is not None else None

    failed = 0
    results: list[tuple[str, Any]] = []
    stems: set[str] = set()
    for source in args.audio:
        try:
            data: Any = sys.stdin.buffer.read() if source == "-" else source
            audio = decode_audio(data, max_duration_s=settings.max_audio_duration_s)
            with _progress(source) as bar:
                transcript = engine.transcribe(audio.samples, options, progress=bar)
            if diarizer is not None and speakers is not None:
                transcript = _with_speakers(transcript, diarizer.diarize(audio.samples, speakers), args.word_timestamps)
        except OmoaiError as e:
            failed += 1
            print(f"omoai-asr: error: {source}: {e.message}", file=sys.stderr)
            continue
        if args.output_dir is not None:
            from omoai_formats import write

            stem = _unique_stem("stdin" if source == "-" else Path(source).stem, stems)
            path = write(transcript, args.format, args.output_dir, stem)
            print(f"{source} -> {path}", file=sys.stderr)
        else:
            results.append((source, transcript))
    if args.output_dir is None and results:
        _print_results(results, args.format, len(args.audio) > 1, sys.stdout)
    return EXIT_INPUT if failed else EXIT_OK


def _speaker_options(args: argparse.Namespace) -> Any:
    """DiarizationOptions for --diarize (None without it); inconsistent counts are a usage error."""
    counts = {"num_speakers": args.num_speakers, "min_speakers": args.min_speakers, "max_speakers": args.max_speakers}
    if not args.diarize:
        if any(v is not None for v in counts.values()):
            raise _usage("--num-speakers/--min-speakers/--max-speakers need --diarize")
        return None
    from omoai_asr.diarization.types import DiarizationOptions

    try:
        return DiarizationOptions.from_counts(args.num_speakers, args.min_speakers, args.max_speakers)
    except ValueError as e:
        raise _usage(str(e)) from None


def _load_diarizer(settings: Any, policy: Any) -> Any:
    from omoai_asr.diarization.loading import load_backend

    backend = load_backend(settings, policy)
    if backend is None:
        raise _usage("--diarize: no diarization backend (OMOAI_DIARIZATION_BACKEND=off or its weights are missing)")
    return backend


def _with_speakers(transcript: Any, diarization: Any, keep_words: bool) -> Any:
    from omoai_asr.diarization.alignment import assign_speakers

    out = assign_speakers(transcript, diarization)
    if not keep_words:
        out = out.model_copy(update={"segments": [s.model_copy(update={"words": []}) for s in out.segments]})
    return out


def _print_results(results: list[tuple[str, Any]], fmt: str, several: bool, out: TextIO) -> None:
    from omoai_formats import render

    if fmt == "json":
        docs = [t.model_dump(exclude_none=True) for _, t in results]
        out.write(json.dumps(docs if several else docs[0], ensure_ascii=False, indent=2) + "\n")
        return
    for i, (source, transcript) in enumerate(results):
        if several:
            out.write(("\n" if i else "") + f"==> {source} <==\n")
        out.write(render(transcript, fmt))
    out.flush()


def _unique_stem(stem: str, seen: set[str]) -> str:
    candidate, n = stem, 1
    while candidate in seen:
        n += 1
        candidate = f"{stem}-{n}"
    seen.add(candidate)
    return candidate


class _progress:
    """A tqdm bar on stderr when it is a terminal; a no-op callback otherwise."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bar: Any = None

    def __enter__(self) -> Self:
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=100,
                desc=Path(self.name).name,
                unit="%",
                file=sys.stderr,
                leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
            )
        return self

    def __call__(self, fraction: float) -> None:
        if self.bar is not None:
            self.bar.n = round(100 * fraction)
            self.bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


class _UsageError(OmoaiError):
    code = "usage"


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


def _setup_logging(settings: Any, level: int) -> None:
    from omoai_core.settings import configure_logging

    configure_logging(settings)  # stderr; the transcripts own stdout
    logging.getLogger().setLevel(level)


# -- serve -----------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from omoai_core.errors import ConfigError
    from omoai_core.settings import configure_logging, load_settings
    from pydantic_settings.exceptions import SettingsError

    from omoai_asr.settings import AsrSettings

    overrides = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        settings = load_settings(AsrSettings, **overrides)
    except SettingsError as e:
        raise ConfigError(f"invalid configuration: {e}") from e
    if not settings.model:
        raise _usage("no model: pass --model or set OMOAI_MODEL")
    configure_logging(settings)

    from omoai_http.shutdown import serve

    from omoai_asr.app import create_app
    from omoai_asr.realtime.route import max_frame_bytes

    app = serve(create_app, settings, ws_max_size=max_frame_bytes(settings))  # one bind; SIGTERM: drain, then stop
    if app.state.load_error is not None:
        return EXIT_USAGE
    return EXIT_OK
