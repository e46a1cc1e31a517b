"""Rerun every benchmark in ``benchmarks/`` (``make bench``; ``--quick`` for a form that finishes in
under 15 minutes on the 2-core development VM) and print one row per measured number: machine,
date, commit, command, the number, its target and whether it is met.

Each benchmark runs as its own process with its output kept under ``--out`` (default
``.cache/bench/run_all/``), so its full tables can be pasted into its section of
``docs/benchmarks.md``. A script in ``benchmarks/`` that this driver does not know yet is run too:
with ``--quick`` when its ``--help`` offers it (else, in the quick form, it is listed as not run),
and its row says to read its own output for the target.

    .venv/bin/python benchmarks/run_all.py --quick
    .venv/bin/python benchmarks/run_all.py --only operator_throughput asr_service_load
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
REFERENCE_PY = ROOT / ".cache" / "refvenv" / "bin" / "python"

#: (what, number, target, met) from a benchmark's output; met None: no target or not measured.
Row = tuple[str, str, str, bool | None]


def _num(pattern: str, text: str, group: int = 1) -> float | None:
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(group)) if m else None


def _table_rows(text: str, header_start: str) -> list[list[str]]:
    """The body rows of the first markdown table whose header starts with ``header_start``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header_start):
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return rows
    return []


def _table_dicts(text: str, header_start: str) -> list[dict[str, str]]:
    """The rows of that table keyed by its column names (robust to added or moved columns)."""
    for line in text.splitlines():
        if line.startswith(header_start):
            names = [c.strip() for c in line.strip().strip("|").split("|")]
            return [dict(zip(names, r, strict=False)) for r in _table_rows(text, header_start)]
    return []


def judge_asr_service(out: str) -> list[Row]:
    pct = _num(r"HTTP path overhead at 1 client: .*?= ([0-9.]+) %", out)
    rows: list[Row] = [
        (
            "ASR service: HTTP path overhead at 1 client",
            f"{pct} %" if pct is not None else "-",
            "< 5 % of engine compute",
            None if pct is None else pct < 5,
        )
    ]
    for r in _table_rows(out, "| clients"):
        rows.append((f"ASR service: {r[0]} client(s)", f"{r[3]} audio s/s, p50 {r[4]}, p99 {r[5]}", "-", None))
    return rows


def judge_llm(out: str) -> list[Row]:
    rows: list[Row] = []
    for r in _table_rows(out, "| segments | words | model calls | bare backend"):
        m = re.search(r"\(([-+0-9.]+) %\)", r[5])
        pct = float(m.group(1)) if m else None
        rows.append(
            (
                f"LLM service overhead, {r[0]} segments",
                r[5],
                "< 5 % over the bare backend",
                None if pct is None else pct < 5,
            )
        )
    for r in _table_rows(out, "| segments | words | model calls | time per request"):
        rows.append((f"LLM service own cost, {r[0]} segments", f"{r[4]} per 1000 words", "-", None))
    for r in _table_rows(out, "| concurrency | map calls"):
        rows.append(
            (
                f"LLM map-reduce at concurrency {r[0]}",
                f"map {r[3]}, request {r[5]}",
                "> 1x at concurrency > 1" if r[0] != "1" else "-",
                None if r[0] == "1" else float(r[3].rstrip("x")) > 1.0,
            )
        )
    return rows


def judge_operator(out: str) -> list[Row]:
    rows: list[Row] = []
    for r in _table_rows(out, "| stages"):
        stages, jobs, rate, p90 = r[0], int(r[1]), r[5], r[7]
        if jobs < 50:
            continue
        rows.append(
            (
                f"operator: {jobs} jobs [{stages}], jobs/s",
                rate,
                ">= 50 jobs/s",
                None if rate in ("—", "-") else float(rate) >= 50,
            )
        )
        ms = _num(r"([0-9.]+) ms", p90)
        rows.append(
            (
                f"operator: {jobs} jobs [{stages}], create->1st ASR request p90",
                p90,
                "< 1 s (50 jobs)",
                None if ms is None or jobs > 50 else ms < 1000,
            )
        )
    return rows


_VERDICT = re.compile(
    r"^(?P<what>.*?)\s+(?P<number>[-0-9.]+x?)\s+\(target (?P<target>[^:]+):\s*(?P<met>met|NOT met)\)$"
)


def judge_verdicts(out: str) -> list[Row]:
    """Lines a benchmark prints as ``- <label>: <what> <number> (target <t>: met|NOT met); ...``."""
    rows: list[Row] = []
    for line in out.splitlines():
        if not line.startswith("- ") or "(target" not in line:
            continue
        label, _, rest = line[2:].partition(": ")
        for clause in rest.split("; "):
            m = _VERDICT.match(clause.strip())
            if m:
                rows.append((f"{label}: {m['what']}", m["number"], m["target"].strip(), m["met"] == "met"))
    return rows


def judge_replicas(out: str) -> list[Row]:
    rows: list[Row] = []
    for r in _table_dicts(out, "| replicas"):
        n, util, speedup = int(r["replicas"]), r.get("slot utilisation while queued", ""), r.get("vs 1 replica", "")
        case = f"{r.get('jobs', '?')} jobs" + (f" of {r['cost']}" if "cost" in r else "")
        pct = _num(r"([0-9.]+) %", util)
        rows.append(
            (
                f"scale-out: {n} replica(s), {case}: slot utilisation while queued",
                util,
                ">= 80 % (this driver's bar)",
                None if pct is None else pct >= 80,
            )
        )
        if n > 1:
            x = _num(r"([0-9.]+)x", speedup)
            rows.append(
                (
                    f"scale-out: {n} replicas, {case}: jobs/s vs 1 replica",
                    speedup,
                    f">= {0.8 * n:g}x (80 % of linear)",
                    None if x is None else x >= 0.8 * n,
                )
            )
    return rows


def judge_engine(out: str) -> list[Row]:
    rows = judge_verdicts(out)
    for m in re.finditer(
        r"^- ([0-9.]+) s \[([^\]]*)\]: ([0-9.]+) s \(([0-9.]+)x real time\), peak RSS (\d+) MiB", out, re.MULTILINE
    ):
        rows.append(
            (
                f"ASR engine (ours only), {m[1]} s [{m[2]}]",
                f"{m[4]}x real time, {m[5]} MiB",
                "vs the reference: run benchmarks/setup_reference.sh first",
                None,
            )
        )
    return rows


def judge_notifications(out: str) -> list[Row]:
    m = re.search(r"median throughput ratio with/without: ([0-9.]+); delivery p50 (\d+) ms, worst p95 (\d+) ms", out)
    if not m:
        return [("operator: notifications", "-", "-", None)]
    return [
        ("operator: jobs/s with / without webhook notifications", m[1], "-", None),
        ("operator: job Succeeded -> webhook delivered p50 / p95", f"{m[2]} ms / {m[3]} ms", "-", None),
    ]


def judge_system(out: str) -> list[Row]:
    lat = re.search(r"\| job latency p50 / p95 \(create to terminal\) *\| ([^|]+)\|", out)
    problems = _num(r"^\| problems +\| (\d+)", out)
    left = _num(r"^\| resources left behind +\| (\d+)", out)
    survived = re.search(r"^\| faults survived +\| ([^|]+)\|", out, re.MULTILINE)
    return [
        ("system test: job latency p50 / p95", lat.group(1).strip() if lat else "-", "-", None),
        (
            "system test: faults survived",
            survived.group(1).strip() if survived else "-",
            "all",
            None
            if not survived
            else survived.group(1).split(" of ")[0].strip() == survived.group(1).split(" of ")[1].strip(),
        ),
        (
            "system test: problems / resources left",
            f"{problems:g} / {left:g}" if problems is not None and left is not None else "-",
            "0 / 0",
            None if problems is None or left is None else problems == 0 and left == 0,
        ),
    ]


def judge_streaming(out: str) -> list[Row]:
    rows: list[Row] = []
    for r in _table_rows(out, "| streams"):
        ratio = _num(r"([0-9.]+)x", r[3])
        rows.append(
            (
                f"ASR live: {r[0]} stream(s), live / batch audio s per CPU s (finals == batch: {r[4]})",
                r[3],
                ">= 0.5x",
                None if ratio is None else ratio >= 0.5 and r[4] == "yes",
            )
        )
    first = _num(r"first committed text of .* = ([0-9.]+) \(target", out)
    rows.append(
        (
            "ASR live: first committed text / whole decode",
            f"{first}" if first is not None else "-",
            "<= 0.2",
            None if first is None else first <= 0.2,
        )
    )
    state = re.findall(r"state per open stream \(peak\): (.*) \(target", out)
    rows.append(("ASR live: state per open stream", "; ".join(state) or "-", "< 20 MiB, flat", None))
    return rows


def judge_streaming_realtime(out: str) -> list[Row]:
    """``asr_streaming.py --realtime``: the largest N in real time and the latencies at N = 1 per model."""
    rows: list[Row] = []
    for kind, best in re.findall(r"largest N in real time \((\w+)\): (\d+)", out):
        rows.append((f"ASR live, real-time pacing: {kind}, largest N with lag < 2 s", best, "(measured)", None))
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 8 and cells[1] == "1":
            rows.append(
                (
                    f"ASR live, real-time pacing: {cells[0]}, 1 stream, word -> committed / first partial p50 / p95",
                    f"{cells[4]}; {cells[5]}",
                    "(measured)",
                    None,
                )
            )
    return rows


@dataclass
class Bench:
    """One benchmark: its script, the arguments both forms share, and what each form adds."""

    name: str
    script: str
    judge: Callable[[str], list[Row]]
    args: tuple[str, ...] = ()
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    needs: Callable[[], str | None] = lambda: None  # why it cannot run here, or None
    env: dict[str, str] = field(default_factory=dict)

    def command(self, quick: bool) -> list[str]:
        return [self.script, *self.args, *(self.quick if quick else self.full)]


def _ours_only() -> tuple[str, ...]:
    """Without the reference's virtualenv (benchmarks/setup_reference.sh) only our side runs."""
    return () if REFERENCE_PY.exists() else ("--only", "ours")


def _needs(*tools: str) -> Callable[[], str | None]:
    def check() -> str | None:
        missing = [t for t in tools if shutil.which(t) is None]
        return f"missing {', '.join(missing)}" if missing else None

    return check


ONE_THREAD = {"OMP_NUM_THREADS": "1"}
LLM_RANDOM = ("--backend", "transformers", "--model", "random", "--dims", "small", "--threads", "1")
#: One entry per benchmark: a new benchmark with its own judge is one more ``Bench(...)`` here.
KNOWN = [
    Bench(
        "asr_engine_vs_reference",
        "benchmarks/asr_engine_vs_reference.py",
        judge_engine,
        full=("--durations", "60", "600", "--repeats", "3", *_ours_only()),
        quick=("--durations", "60", "--repeats", "1", *_ours_only()),
    ),
    Bench(
        "asr_engine_vs_reference_transducer",
        "benchmarks/asr_engine_vs_reference.py",
        judge_engine,
        args=("--model", "transducer"),
        full=("--durations", "60", "600", "--repeats", "3", *_ours_only()),
        quick=("--durations", "60", "--repeats", "1", *_ours_only()),
    ),
    Bench("asr_engine_search", "benchmarks/asr_engine_search.py", judge_verdicts, quick=("--quick",)),
    Bench(
        "asr_service_load",
        "benchmarks/asr_service_load.py",
        judge_asr_service,
        args=("--threads", "1"),
        full=("--requests", "8"),
        quick=("--requests", "4", "--concurrency", "1", "4"),
        env=ONE_THREAD,
    ),
    Bench("asr_streaming", "benchmarks/asr_streaming.py", judge_streaming, quick=("--quick",), env=ONE_THREAD),
    Bench(
        "asr_streaming_realtime",
        "benchmarks/asr_streaming.py",
        judge_streaming_realtime,
        args=("--realtime",),
        quick=("--kinds", "ctc", "--max-n", "8", "--refine", "0", "--rt-seconds", "16"),
        env=ONE_THREAD,
    ),
    Bench(
        "llm_service", "benchmarks/llm_service.py", judge_llm, args=LLM_RANDOM, quick=("--repeats", "1"), env=ONE_THREAD
    ),
    Bench("operator_throughput", "benchmarks/operator_throughput.py", judge_operator, quick=("--jobs", "1", "50")),
    Bench(
        "operator_notifications",
        "benchmarks/operator_notifications.py",
        judge_notifications,
        quick=("--jobs", "50", "--pairs", "1"),
    ),
    Bench(
        "replica_scaling",
        "benchmarks/replica_scaling.py",
        judge_replicas,
        quick=("--replicas", "1", "2", "--jobs", "24", "--cost", "1"),
    ),
    Bench(
        "system",
        "scripts/system.sh",
        judge_system,
        full=("--jobs", "100"),
        quick=("--jobs", "20"),
        needs=_needs("kubectl", "prometheus"),
    ),
]
#: Files in benchmarks/ that are parts of a benchmark, not benchmarks.
HELPERS = {"run_all.py", "asr_engine_worker.py"}


def discover(quick: bool) -> list[Bench]:
    known = {b.script.split("/")[-1] for b in KNOWN}
    out = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        if path.name in known or path.name in HELPERS or path.name.startswith("_"):
            continue
        try:
            help_text = subprocess.run(
                [PY, str(path), "--help"],
                check=False,
                capture_output=True,
                text=True,
                timeout=120,
                cwd=ROOT,
                env=_env({}),
            ).stdout
        except subprocess.TimeoutExpired:
            help_text = ""
        has_quick = "--quick" in help_text

        def unknown_judge(out: str, name: str = path.name) -> list[Row]:
            return judge_verdicts(out) or [(name, "see its output", "see its section in docs/benchmarks.md", None)]

        needs = (lambda: None) if has_quick or not quick else (lambda: "no --quick form; run it by hand")
        quick_args = ("--quick",) if has_quick else ()
        out.append(Bench(path.stem, f"benchmarks/{path.name}", unknown_judge, quick=quick_args, needs=needs))
    return out


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}


def machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = ""
    if shutil.which("nvidia-smi"):
        res = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, check=False
        )
        gpu = ", GPU " + res.stdout.strip().replace("\n", " + ") if res.returncode == 0 and res.stdout.strip() else ""
    load = os.getloadavg()[0]
    return f"{platform.node()}: {os.cpu_count()} x {cpu}{gpu}, load {load:.1f}"


def commit() -> str:
    res = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    return res.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the short form of every benchmark (< 15 min here)")
    ap.add_argument("--only", nargs="+", help="benchmark names to run (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "bench" / "run_all")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per benchmark (default 600 quick, 7200)")
    args = ap.parse_args(argv)
    timeout = args.timeout or (600 if args.quick else 7200)
    benches = KNOWN + discover(args.quick)
    if args.only:
        unknown = set(args.only) - {b.name for b in benches}
        if unknown:
            ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(b.name for b in benches)}")
        benches = [b for b in benches if b.name in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    where, when, rev = machine(), dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), commit()
    results: list[tuple[Bench, str, list[Row], float]] = []
    failed = False
    for b in benches:
        cmd = b.command(args.quick)
        shown = " ".join(cmd)
        why = b.needs()
        if why is not None:
            results.append((b, shown, [(b.name, "not run", why, None)], 0.0))
            continue
        print(f"== {b.name}: {shown}", flush=True)
        t0 = time.monotonic()
        exe = [str(ROOT / cmd[0])] if cmd[0].endswith(".sh") else [PY, str(ROOT / cmd[0])]
        try:
            res = subprocess.run(
                [*exe, *cmd[1:]],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=ROOT,
                env=_env(b.env),
                check=False,
            )
            out, rc = res.stdout + "\n" + res.stderr[-3000:], res.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), -1
        took = time.monotonic() - t0
        (args.out / f"{b.name}.log").write_text(out)
        print(out[-6000:], flush=True)
        rows = b.judge(out)
        if rc != 0:
            failed = True
            rows = [*rows, (b.name, f"exit {rc} after {took:.0f} s", f"log: {args.out / (b.name + '.log')}", False)]
        results.append((b, shown, rows, took))
    print(f"\n### Benchmark run{' (quick)' if args.quick else ''}: {when}, commit {rev}, {where}\n")
    print("| machine | date | commit | command | what | number | target | met |")
    print("|---|---|---|---|---|---|---|---|")
    short = f"{os.cpu_count()} CPU{', GPU' if 'GPU' in where else ''}, load {where.rsplit('load ', 1)[-1]}"
    for b, shown, rows, took in results:
        for what, number, target, met in rows or [(b.name, "no number found in its output", "-", None)]:
            verdict = "met" if met else "not met" if met is False else "-"
            print(f"| {short} | {when} | {rev} | `{shown}` ({took:.0f} s) | {what} | {number} | {target} | {verdict} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
