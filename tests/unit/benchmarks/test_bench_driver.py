"""The benchmark driver reads each benchmark's own output into rows with a target and a verdict."""

from __future__ import annotations

from benchmarks import run_all

ASR = """engine.transcribe direct: p50 1693 ms per 60 s input (RTF 0.028)

| clients | requests | req/s | audio s/s | p50 latency | p99 latency |
|--:|--:|--:|--:|--:|--:|
| 1 | 8 | 0.56 | 33.7 | 1717 ms | 2096 ms |
| 4 | 8 | 0.35 | 21.0 | 11450 ms | 12363 ms |

HTTP path overhead at 1 client: 116 ms per request = 16.3 % of engine compute (target < 5 %)
"""

OPERATOR = """| stages | jobs | slots/service | creating them took | time to all Succeeded | jobs/s | create→1st ASR request p50 | p90 | max |
|---|--:|--:|--:|--:|--:|--:|--:|--:|
| asr, write | 1 | 64 | 0.01 s | 0.21 s | — | 22 ms | 22 ms | 22 ms |
| asr, write | 50 | 64 | 0.14 s | 0.77 s | 64.8 | 181 ms | 335 ms | 353 ms |
"""

ENGINE = (
    "- 60 s [chunk 64]: RTF ours/ref 1.90x (target >= 1.5x: met); peak RSS ours/ref 0.52 (target <= 0.5: NOT met)\n"
)


def test_asr_service_overhead_above_five_percent_is_not_met() -> None:
    rows = run_all.judge_asr_service(ASR)
    assert rows[0] == ("ASR service: HTTP path overhead at 1 client", "16.3 %", "< 5 % of engine compute", False)
    assert [r[0] for r in rows[1:]] == ["ASR service: 1 client(s)", "ASR service: 4 client(s)"]


def test_operator_rows_judge_throughput_and_first_request_latency_of_the_fifty_job_burst() -> None:
    rows = run_all.judge_operator(OPERATOR)
    assert rows == [
        ("operator: 50 jobs [asr, write], jobs/s", "64.8", ">= 50 jobs/s", True),
        ("operator: 50 jobs [asr, write], create->1st ASR request p90", "335 ms", "< 1 s (50 jobs)", True),
    ]


def test_verdict_lines_become_one_row_per_clause() -> None:
    assert run_all.judge_verdicts(ENGINE) == [
        ("60 s [chunk 64]: RTF ours/ref", "1.90x", ">= 1.5x", True),
        ("60 s [chunk 64]: peak RSS ours/ref", "0.52", "<= 0.5", False),
    ]


def test_a_missing_number_gives_no_verdict() -> None:
    assert run_all.judge_asr_service("it crashed")[0][3] is None
    assert run_all.judge_operator("") == []


def test_bench_command_is_shared_arguments_then_the_chosen_forms_own() -> None:
    bench = run_all.Bench("b", "benchmarks/b.py", run_all.judge_verdicts, args=("--x", "1"), quick=("--quick",))
    assert bench.command(quick=True) == ["benchmarks/b.py", "--x", "1", "--quick"]
    assert bench.command(quick=False) == ["benchmarks/b.py", "--x", "1"]


def test_every_known_benchmark_script_exists_and_names_are_unique() -> None:
    names = [b.name for b in run_all.KNOWN]
    assert len(names) == len(set(names))
    for b in run_all.KNOWN:
        assert (run_all.ROOT / b.script).is_file(), b.script


REALTIME = """| model | streams | lag beyond algorithmic latency p50 / p95 / max | real time (max lag < 2 s) | word -> committed p50 / p95 | word -> first partial p50 / p95 | windows committed | CPU s / wall s |
|---|---|---|---|---|---|---|---|
| ctc | 1 | 0.20 / 0.40 / 0.50 s | yes | 12.00 / 13.10 s | 0.40 / 0.90 s | 3 | 9 / 20 |
| ctc | 2 | 0.90 / 2.40 / 3.00 s | NO | 12.90 / 15.00 s | 0.90 / 2.90 s | 6 | 19 / 20 |
largest N in real time (ctc): 1 (lag under 2 s beyond the algorithmic latency)
"""


def test_realtime_pacing_rows_give_the_largest_n_and_the_one_stream_latencies() -> None:
    rows = run_all.judge_streaming_realtime(REALTIME)
    assert rows == [
        ("ASR live, real-time pacing: ctc, largest N with lag < 2 s", "1", "(measured)", None),
        (
            "ASR live, real-time pacing: ctc, 1 stream, word -> committed / first partial p50 / p95",
            "12.00 / 13.10 s; 0.40 / 0.90 s",
            "(measured)",
            None,
        ),
    ]
