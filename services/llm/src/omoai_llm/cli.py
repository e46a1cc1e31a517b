"""``omoai-llm``: ``serve`` the HTTP API, or run one task offline on a transcript file
(``punctuate``, ``summarize``, ``topics``, ``postprocess``) with the same settings and backends.

Every flag also comes from the environment (``OMOAI_BACKEND``, ``OMOAI_MODEL``, ...); flags win.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from omoai_core.contracts.llm import PUNCTUATION_METHODS
from omoai_core.errors import InvalidInputError, OmoaiError
from omoai_core.schemas import Segment
from omoai_core.settings import configure_logging, load_settings
from prometheus_client import CollectorRegistry

from omoai_llm.settings import LlmSettings

_TASKS = ("punctuate", "summarize", "topics", "postprocess")


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["vllm", "transformers", "openai"], help="OMOAI_BACKEND")
    p.add_argument("--model", help="hub id or local directory (openai: served model name); OMOAI_MODEL")
    p.add_argument("--summary-model", help="a different model for summaries and topics; OMOAI_SUMMARY_MODEL")
    p.add_argument("--tagger-model", help="tagger hub id or directory (method tagger); OMOAI_TAGGER_MODEL")
    p.add_argument(
        "--punctuation-method",
        choices=list(PUNCTUATION_METHODS),
        help="default punctuation method: rewrite, edits or tagger; OMOAI_PUNCTUATION_METHOD",
    )
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N; OMOAI_DEVICE")
    p.add_argument("--dtype", choices=["auto", "fp32", "fp16", "bf16"], help="OMOAI_DTYPE")
    p.add_argument("--openai-base-url", help="OMOAI_OPENAI_BASE_URL")
    p.add_argument("--offline", action="store_const", const=True, help="never download; OMOAI_OFFLINE")
    p.add_argument("--single-model-resident", action="store_const", const=True, help="OMOAI_SINGLE_MODEL_RESIDENT")
    p.add_argument("--log-level", help="OMOAI_LOG_LEVEL")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omoai-llm", description="OMOAI LLM service: punctuation, summaries and topics of transcripts."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the HTTP API")
    _model_flags(serve)
    serve.add_argument("--host", help="OMOAI_HOST (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="OMOAI_PORT (default 8000)")
    for task in _TASKS:
        p = sub.add_parser(task, help=f"{task} a transcript file offline and print JSON")
        _model_flags(p)
        p.add_argument("file", help="transcript JSON ({segments: [...]}, or a list of segments) or text; - = stdin")
        p.add_argument("--language", help="vi or en")
        p.add_argument("-o", "--output", type=Path, help="write the JSON here instead of stdout")
    return parser


def read_segments(source: str) -> list[Segment]:
    """Segments from a transcript JSON, a JSON list of segments, or plain text (one line each)."""
    raw = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    try:
        data: Any = json.loads(raw)
    except ValueError:
        return [Segment(text=line.strip(), start=0.0, end=0.0) for line in raw.splitlines() if line.strip()]
    items = data.get("segments") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InvalidInputError(f"{source}: expected a JSON object with 'segments' or a list of segments")
    try:
        return [
            Segment.model_validate({k: v for k, v in s.items() if k in ("text", "start", "end", "words")})
            for s in items
        ]
    except (ValueError, AttributeError) as e:
        raise InvalidInputError(f"{source}: invalid segments: {e}") from e


async def _offline(task: str, settings: LlmSettings, segments: list[Segment], language: str | None) -> dict[str, Any]:
    from omoai_llm.app import llm_runtime
    from omoai_llm.protocol import PostprocessRequest, PunctuateRequest, SummarizeRequest, TopicsRequest

    async with llm_runtime(settings, CollectorRegistry()) as rt:
        svc = rt.service
        if task == "punctuate":
            result: Any = await svc.punctuate(PunctuateRequest(segments=segments, language=language))
        elif task == "summarize":
            result = await svc.summarize(SummarizeRequest(segments=segments, language=language))
        elif task == "topics":
            result = await svc.topics(TopicsRequest(segments=segments, language=language))
        else:
            result = await svc.postprocess(PostprocessRequest(segments=segments, language=language))
        answer: dict[str, Any] = result.model_dump(mode="json")
        return answer


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {
        k: getattr(args, k, None)
        for k in (
            "backend",
            "model",
            "summary_model",
            "tagger_model",
            "punctuation_method",
            "device",
            "dtype",
            "openai_base_url",
            "offline",
            "single_model_resident",
            "log_level",
            "host",
            "port",
        )
    }
    try:
        settings = load_settings(LlmSettings, **overrides)
        configure_logging(settings)
        if not settings.model and not settings.tagger_model:
            raise InvalidInputError("no model: pass --model (or --tagger-model) or set OMOAI_MODEL")
        if args.command == "serve":
            return _serve(settings)
        segments = read_segments(args.file)
        out = asyncio.run(_offline(args.command, settings, segments, args.language))
    except OmoaiError as e:
        print(f"omoai-llm: error: {e.message}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"omoai-llm: error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(out, ensure_ascii=False, indent=2)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


def _serve(settings: LlmSettings) -> int:
    from omoai_http.shutdown import serve

    from omoai_llm.app import create_app

    # One bind; SIGTERM drains: in-flight requests finish (up to shutdown_timeout_s), new ones get 503.
    app = serve(create_app, settings, access_log=False)
    # The failure was logged as one line ("cannot start: ..."); 2 is the documented start-up code.
    return 2 if app.state.load_error is not None else 0
