"""Punctuation quality harness: strip the marks and casing from a punctuated Vietnamese text set,
restore them with any method of the LLM service, and report F1 per mark and casing accuracy.

The text set (``benchmarks/data/punctuation_vi.txt``, 2,136 words written for the project: news,
conversation, lecture) is scored per style and overall. Restoring runs the LLM service in-process
with the settings of the environment and the flags (any backend, any method) or calls a running
service (``--url``). With random weights (the tests' tiny checkpoints, ``--random-tagger``) the
numbers say nothing about quality: they show that the harness runs end to end and that every word
survives (``words kept`` must be 100%).

    .venv/bin/python benchmarks/punctuation_quality.py --method tagger --tagger-model dragonSwing/vibert-capu
    .venv/bin/python benchmarks/punctuation_quality.py --method edits --backend openai --model Qwen/Qwen2.5-7B-Instruct
    .venv/bin/python benchmarks/punctuation_quality.py --random-tagger      # smoke run, no download
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "punctuation_vi.txt"
MARKS = (".", ",", "?", ":", "!")


@dataclass(frozen=True)
class Paragraph:
    style: str
    text: str

    @property
    def words(self) -> list[str]:
        return self.text.split()


def read_set(path: Path = DATA) -> list[Paragraph]:
    """Paragraphs with their style (``# style: news`` lines switch it)."""
    style = "unknown"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# style:"):
            style = line.split(":", 1)[1].strip()
        elif line.strip() and not line.startswith("#"):
            out.append(Paragraph(style, line.strip()))
    return out


def _split(word: str) -> tuple[str, str]:
    """(letters, the mark after them) of a word."""
    from omoai_llm.alignment import split_token

    t = split_token(word)
    mark = t.trail[-1:] if t.trail[-1:] in MARKS else ""
    return t.core, mark


def strip(words: Sequence[str]) -> list[str]:
    """What ASR gives: lower case, no marks."""
    return [_split(w)[0].lower() for w in words if _split(w)[0]]


def case_of(core: str) -> str:
    letters = [c for c in core if c.isalpha()]
    if not letters or not any(c.isupper() for c in letters):
        return "lower"
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return "upper"
    return "capital" if core[0].isupper() else "mixed"


@dataclass
class Score:
    tp: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)
    case_ok: int = 0
    words: int = 0
    kept: int = 0

    def add(self, reference: Sequence[str], predicted: Sequence[str]) -> None:
        ref = [_split(w) for w in reference if _split(w)[0]]
        hyp = [_split(w) for w in predicted if _split(w)[0]]
        self.words += len(ref)
        if [c.casefold() for c, _ in ref] != [c.casefold() for c, _ in hyp]:
            return  # words lost or changed: nothing of this paragraph counts as kept or right
        self.kept += len(ref)
        for (rc, rm), (hc, hm) in zip(ref, hyp, strict=True):
            self.case_ok += case_of(rc) == case_of(hc)
            if rm and rm == hm:
                self.tp[rm] += 1
            else:
                if rm:
                    self.fn[rm] += 1
                if hm:
                    self.fp[hm] += 1

    def f1(self, mark: str) -> float | None:
        tp, fp, fn = self.tp[mark], self.fp[mark], self.fn[mark]
        if tp + fp + fn == 0:
            return None
        return 2 * tp / (2 * tp + fp + fn)

    def row(self, name: str) -> str:
        cells = [name, str(self.words), f"{100 * self.kept / max(1, self.words):.1f}%"]
        for mark in MARKS:
            f = self.f1(mark)
            cells.append("-" if f is None else f"{f:.2f}")
        cells.append(f"{100 * self.case_ok / max(1, self.kept):.1f}%")
        return "| " + " | ".join(cells) + " |"


HEADER = "| set | words | words kept | F1 `.` | F1 `,` | F1 `?` | F1 `:` | F1 `!` | casing accuracy |"


def report(paragraphs: Sequence[Paragraph], restored: Sequence[str]) -> tuple[str, dict[str, Score]]:
    scores: dict[str, Score] = {}
    for p, text in zip(paragraphs, restored, strict=True):
        for key in (p.style, "all"):
            scores.setdefault(key, Score()).add(p.words, text.split())
    lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    lines += [scores[k].row(k) for k in sorted(scores, key=lambda k: (k == "all", k))]
    return "\n".join(lines), scores


async def restore_in_process(paragraphs: Sequence[Paragraph], overrides: dict[str, Any], method: str) -> list[str]:
    from omoai_core.schemas import Segment
    from omoai_core.settings import load_settings
    from omoai_llm.app import llm_runtime
    from omoai_llm.protocol import PunctuateRequest
    from omoai_llm.settings import LlmSettings
    from prometheus_client import CollectorRegistry

    settings = load_settings(LlmSettings, **overrides)
    segments = [Segment(text=" ".join(strip(p.words)), start=float(i), end=i + 1.0) for i, p in enumerate(paragraphs)]
    async with llm_runtime(settings, CollectorRegistry()) as rt:
        result = await rt.service.punctuate(PunctuateRequest(segments=segments, method=method))  # type: ignore[arg-type]
    return [s.text for s in result.segments]


def restore_over_http(paragraphs: Sequence[Paragraph], url: str, method: str, token: str | None) -> list[str]:
    import httpx

    segments = [{"text": " ".join(strip(p.words)), "start": float(i), "end": i + 1.0} for i, p in enumerate(paragraphs)]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(
        url.rstrip("/") + "/v1/punctuate",
        json={"segments": segments, "method": method},
        headers=headers,
        timeout=3600,
    )
    r.raise_for_status()
    return [s["text"] for s in r.json()["segments"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=("rewrite", "edits", "tagger"), default="tagger")
    ap.add_argument("--url", help="a running LLM service instead of an in-process one")
    ap.add_argument("--token", help="bearer token of the running service")
    ap.add_argument("--backend", help="in-process: vllm, transformers or openai (OMOAI_BACKEND)")
    ap.add_argument("--model", help="in-process: the LLM (OMOAI_MODEL)")
    ap.add_argument("--tagger-model", help="in-process: the tagger (OMOAI_TAGGER_MODEL)")
    ap.add_argument("--device", help="in-process: cpu, cuda, auto (OMOAI_DEVICE)")
    ap.add_argument("--random-tagger", action="store_true", help="a random Seq2Labels tagger (smoke run)")
    ap.add_argument("--quick", action="store_true", help="the random tagger on the first 10 paragraphs")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--json", type=Path, help="also write the scores here")
    args = ap.parse_args(argv)
    paragraphs = read_set(args.data)
    if args.quick:
        args.random_tagger, paragraphs = True, paragraphs[:10]
    overrides: dict[str, Any] = {
        "backend": args.backend,
        "model": args.model,
        "tagger_model": args.tagger_model,
        "device": args.device,
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.random_tagger:
            from omoai_llm.testing import write_tiny_seq2labels

            overrides.update(tagger_model=str(write_tiny_seq2labels(Path(tmp) / "tagger")), model="", device="cpu")
            args.method = "tagger"
        if args.url:
            restored = restore_over_http(paragraphs, args.url, args.method, args.token)
        else:
            clean = {k: v for k, v in overrides.items() if v is not None}
            restored = asyncio.run(restore_in_process(paragraphs, clean, args.method))
    table, scores = report(paragraphs, restored)
    what = "random Seq2Labels tagger (says nothing about quality)" if args.random_tagger else args.method
    print(f"punctuation quality: {what}; {sum(len(p.words) for p in paragraphs)} words, {len(paragraphs)} paragraphs\n")
    print(table)
    if args.json:
        out = {k: {"words": s.words, "kept": s.kept, "f1": {m: s.f1(m) for m in MARKS}} for k, s in scores.items()}
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0 if scores["all"].kept == scores["all"].words else 1


if __name__ == "__main__":
    sys.exit(main())
