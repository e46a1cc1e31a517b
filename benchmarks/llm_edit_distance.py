"""Edit distances in the LLM service's alignment: the difflib upper bound it used before vs
rapidfuzz (what it uses now), on the quality text set, side by side in one run. Prints per-call
microseconds, the speed-up and how often the two agree (rapidfuzz is exact; difflib can only count
more).

    .venv/bin/python -m benchmarks.llm_edit_distance
"""

from __future__ import annotations

import argparse
import difflib
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from rapidfuzz.distance import Indel, Levenshtein

from benchmarks.punctuation_quality import read_set


def difflib_edit_errors(ref: Sequence[Any], hyp: Sequence[Any]) -> int:
    """The replaced implementation: substitutions + deletions + insertions of difflib's opcodes."""
    if list(ref) == list(hyp):
        return 0
    return sum(
        max(i2 - i1, j2 - j1)
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ref, hyp, autojunk=False).get_opcodes()
        if op != "equal"
    )


def _mutate(words: list[str], rng: random.Random) -> list[str]:
    out = list(words)
    for _ in range(max(1, len(words) // 20)):  # about 5% of the words dropped, reversed or invented
        i, op = rng.randrange(len(out)), rng.random()
        if op < 0.3:
            out[i] = out[i][::-1]
        elif op < 0.6:
            del out[i]
        else:
            out.insert(i, "thêm")
    return out


def _best(fn: Callable[[Any, Any], Any], pairs: list[tuple[Any, Any]], reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        for a, b in pairs:
            fn(a, b)
        best = min(best, time.perf_counter() - started)
    return best / len(pairs) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer chunks (seconds)")
    args = ap.parse_args(argv)
    rng = random.Random(0)
    words = [w.lower().strip(".,?:!") for p in read_set() for w in p.words]
    chunks = []
    for _ in range(20 if args.quick else 200):
        i = rng.randrange(len(words) - 200)
        chunks.append((words[i : i + 200], _mutate(words[i : i + 200], rng)))
    word_pairs = [
        (a, a[:-1] + "x" if k % 3 else b) for k, (a, b) in enumerate(zip(words, _mutate(words, rng), strict=False))
    ]
    print("| what | pairs | difflib µs/call | rapidfuzz µs/call | speed-up | agreement |")
    print("|---|---|---|---|---|---|")
    for name, pairs in (
        ("distance, word lists (200 words, ~5% changed)", chunks),
        ("distance, words (characters)", word_pairs),
    ):
        d, r = _best(difflib_edit_errors, pairs), _best(Levenshtein.distance, pairs)
        same = sum(difflib_edit_errors(a, b) == Levenshtein.distance(a, b) for a, b in pairs)
        print(f"| {name} | {len(pairs)} | {d:.1f} | {r:.2f} | {d / r:.0f}x | {same}/{len(pairs)} equal |")

    def ratio(a: str, b: str) -> float:
        return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()

    d, r = _best(ratio, word_pairs), _best(Indel.normalized_similarity, word_pairs)
    same = sum((ratio(a, b) >= 0.8) == (Indel.normalized_similarity(a, b) >= 0.8) for a, b in word_pairs)
    print(
        f"| spelling-fix similarity >= 0.8 | {len(word_pairs)} | {d:.1f} | {r:.2f} | {d / r:.0f}x | {same}/{len(word_pairs)} same decision |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
