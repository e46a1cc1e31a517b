"""The ``omoai`` command: ``omoai run job.yaml`` (a TranscriptionJob without a cluster) and
``omoai operator`` (the kopf operator; the same as ``kopf run -m omoai_operator.handlers``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omoai_core.errors import OmoaiError
from omoai_core.settings import configure_logging, load_settings

from omoai_operator.settings import OperatorSettings

if TYPE_CHECKING:
    from omoai_operator.spec import JobSpec

log = logging.getLogger("omoai_operator.cli")

#: The ASR checkpoint ``omoai run`` serves when none is named (the ChunkFormer release for Vietnamese).
DEFAULT_ASR_MODEL = "khanhld/chunkformer-rnnt-large-vie"  # CC-BY-4.0; the CTC checkpoints are CC-BY-NC-4.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="omoai", description="OMOAI: long recordings to transcripts, summaries, topics.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run TranscriptionJob manifest(s) locally, without a cluster")
    r.add_argument("manifest", type=Path, help="YAML file with one or more TranscriptionJobs")
    r.add_argument("--asr-url", default=None, help="use this ASR service (default: run omoai-asr in-process)")
    r.add_argument("--llm-url", default=None, help="use this LLM service (default: run omoai-llm in-process)")
    r.add_argument(
        "--asr-model",
        default=None,
        help=f"model of the in-process ASR service (env OMOAI_ASR_MODEL; default {DEFAULT_ASR_MODEL})",
    )
    r.add_argument("--llm-backend", default=None, help="backend of the in-process LLM service (env OMOAI_BACKEND)")
    r.add_argument("--llm-model", default=None, help="model of the in-process LLM service (env OMOAI_LLM_MODEL)")
    r.add_argument(
        "--punctuation-method",
        default=None,
        choices=("rewrite", "edits", "tagger"),
        help="punctuation method of jobs that name none (spec.postprocess.punctuationMethod)",
    )
    r.add_argument(
        "--tagger-model",
        default=None,
        help="tagger of the in-process LLM service, hub id or directory (env OMOAI_TAGGER_MODEL); "
        "with only tagger punctuation asked for, no LLM is loaded",
    )
    r.add_argument("--data-dir", type=Path, default=Path.cwd(), help="directory standing in for pvc claims (default .)")
    r.add_argument("--volume", action="append", default=[], metavar="CLAIM=DIR", help="map one claim to a directory")
    r.add_argument("--output-dir", "-o", type=Path, default=None, help="write outputs here instead of the spec's")
    r.add_argument("--concurrency", type=int, default=None, help="jobs per service at once (default 2)")
    r.add_argument("--log-level", default=None, choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    o = sub.add_parser("operator", help="run the Kubernetes operator")
    o.add_argument("--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)")
    o.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (default)")
    o.add_argument("--standalone", action="store_true", help="no peering (a single replica)")
    o.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority: the highest active replica acts (env OMOAI_PEERING_PRIORITY; default random per start)",
    )
    o.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="kopf liveness endpoint")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return asyncio.run(_run(args))
        return _operator(args)
    except OmoaiError as e:
        print(f"omoai: error: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace) -> int:
    from omoai_operator.runner import check_notifications, local_service, read_manifests, run_jobs
    from omoai_operator.spec import load_manifest

    volumes = {}
    for item in args.volume:
        claim, sep, directory = item.partition("=")
        if not sep or not claim or not directory:
            print(f"omoai: error: --volume expects CLAIM=DIR, got {item!r}", file=sys.stderr)
            return 2
        volumes[claim] = directory
    overrides = {"log_level": args.log_level, "asr_concurrency": args.concurrency, "llm_concurrency": args.concurrency}
    base = load_settings(OperatorSettings, **overrides)
    configure_logging(base)
    docs = read_manifests(args.manifest)
    if args.punctuation_method:
        docs = [_with_default_method(d, args.punctuation_method) for d in docs]
    for doc in docs:
        load_manifest(doc)  # a bad manifest is reported before any service starts
    await check_notifications(docs, base)
    specs = [load_manifest(d)[1] for d in docs]
    needs_llm = any(_needs_llm(spec) for spec in specs)
    async with contextlib.AsyncExitStack() as stack:
        asr_url = args.asr_url or _env("OMOAI_ASR_URL")
        if asr_url is None:
            model = args.asr_model or _env("OMOAI_ASR_MODEL") or DEFAULT_ASR_MODEL
            asr_url = await stack.enter_async_context(local_service("asr", {"model": model}))
        llm_url = args.llm_url or _env("OMOAI_LLM_URL")
        if llm_url is None:
            if needs_llm:
                tagger = args.tagger_model or _env("OMOAI_TAGGER_MODEL")
                overrides = {
                    "backend": args.llm_backend,
                    "model": args.llm_model or _env("OMOAI_LLM_MODEL"),
                    "tagger_model": tagger,
                }
                if tagger and all(_tagger_only(spec) for spec in specs):
                    overrides["model"] = ""  # no LLM to load: a tagger-only post-processing service
                llm_url = await stack.enter_async_context(
                    local_service("llm", {k: v for k, v in overrides.items() if v is not None and (v or k == "model")})
                )
            else:
                llm_url = "http://127.0.0.1:9"  # never called: no post-processing asked for
        cfg = base.model_copy(
            update={
                "asr_url": asr_url.rstrip("/"),
                "llm_url": llm_url.rstrip("/"),
                "volumes": {**base.volumes, **volumes},
                "backoff_base_s": 2.0,
            }
        )
        results = await run_jobs(docs, cfg, data_dir=args.data_dir, output_dir=args.output_dir)
    ok = True
    for res in results:
        s = res.status
        line: dict[str, object] = {
            "name": res.name,
            "phase": s.phase,
            "reason": s.reason,
            "message": s.message,
            "files": list(s.results.files) if s.results else [],
            "audioDuration": s.audio_duration,
            "realTimeFactor": s.real_time_factor,
        }
        if s.notifications:
            line["notifications"] = [
                {"event": d.event, "url": d.url, "state": d.state, "attempts": d.attempts, "message": d.message}
                for d in s.notifications
            ]
        print(json.dumps(line, ensure_ascii=False))
        ok = ok and res.ok
    return 0 if ok else 1


def _needs_llm(spec: JobSpec) -> bool:
    from omoai_operator.pipeline import Service, services_needed

    return Service.LLM in services_needed(spec)


def _with_default_method(doc: dict[str, Any], method: str) -> dict[str, Any]:
    """``doc`` with ``method`` as its punctuation method unless it names one."""
    spec = doc.get("spec") if isinstance(doc, dict) else None
    if not isinstance(spec, dict):
        return doc  # load_manifest reports what is wrong with it
    post = spec.get("postprocess") or {}
    if not isinstance(post, dict) or "punctuationMethod" in post:
        return doc
    return {**doc, "spec": {**spec, "postprocess": {**post, "punctuationMethod": method}}}


def _tagger_only(spec: JobSpec) -> bool:
    """The job asks the LLM service only for tagger punctuation (or nothing at all)."""
    p = spec.postprocess
    return p.summary == "none" and not p.topics and (not p.punctuation or p.punctuation_method == "tagger")


def _env(name: str) -> str | None:
    import os

    return os.environ.get(name) or None


def _operator(args: argparse.Namespace) -> int:
    import kopf

    from omoai_operator import handlers  # noqa: F401 - registers the handlers

    cfg = load_settings(OperatorSettings)
    configure_logging(cfg)
    namespaces = args.namespace or cfg.namespaces
    asyncio.run(
        kopf.operator(
            standalone=args.standalone or cfg.peering_standalone,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=args.liveness,
            priority=peering_priority(args.priority, cfg.peering_priority),
        )
    )
    return 0


def peering_priority(flag: int | None, setting: int | None) -> int:
    """The replica's peering priority. kopf pauses every replica when the highest priority is shared,
    so without an explicit value each start draws its own; the standby takes over when the lease lapses.
    """
    if flag is not None:
        return flag
    if setting is not None:
        return setting
    import random

    return random.SystemRandom().randint(1, 2**31 - 1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
