"""Timestamped topics: the model sees numbered segments and names where each topic starts; the
time of a topic is always the start time of a real segment, never a time the model made up.

Long transcripts are split by the token budget; each part proposes topics in proportion to its
length (calls run concurrently), and the merged list keeps at most ``max_topics`` spread evenly.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from omoai_core.durations import clock
from omoai_core.schemas import Segment, Topic

from omoai_llm.chunking import pack, split_words
from omoai_llm.parsing import ParsedTopic, parse_topics
from omoai_llm.serving.common import RETRY_TEMPERATURE, CallContext, map_concurrently


@dataclass(frozen=True)
class TopicsResult:
    topics: list[Topic]
    chunks: int
    warnings: list[str]


MAX_TITLE_CHARS = 200


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _resolve(t: ParsedTopic, ids: Sequence[int], segments: Sequence[Segment]) -> int | None:
    """The segment index a topic starts at: the number the model wrote, else the time it wrote."""
    if t.segment is not None and (t.segment - 1) in ids:
        return t.segment - 1
    if t.time is not None and ids:
        starts = [segments[i].start for i in ids]
        k = bisect.bisect_right(starts, t.time + 1e-6) - 1
        return ids[max(0, k)]
    return None


def _spread(items: list[int], n: int) -> list[int]:
    if len(items) <= n:
        return items
    return [items[round(k * (len(items) - 1) / (n - 1))] for k in range(n)] if n > 1 else items[:1]


async def find_topics(
    segments: Sequence[Segment], ctx: CallContext, *, prompt: str, max_topics: int = 12, max_tokens: int = 768
) -> TopicsResult:
    count = ctx.backend.count_tokens
    ids = [i for i, s in enumerate(segments) if s.text.strip()]
    if not ids:
        return TopicsResult([], 0, [])
    lines: list[tuple[int, str]] = []  # (segment index, numbered line); long segments split
    room = ctx.room(prompt.replace("{max_topics}", str(max_topics)), max_tokens)
    for i in ids:
        s = segments[i]
        head = f"[{i + 1}] ({clock(s.start)}) "
        words = s.text.split()
        if count(head + s.text) <= room:
            lines.append((i, head + " ".join(words)))
        else:
            for r in split_words(words, count, max(8, room - count(head))):
                lines.append((i, head + " ".join(words[r.start : r.stop])))
    counts = [count(text) for _, text in lines]
    groups = pack(counts, room)
    total = sum(counts) or 1

    async def one(g: range) -> tuple[list[int], list[ParsedTopic]]:
        share = max(1, round(max_topics * sum(counts[g.start : g.stop]) / total))
        share = min(share, max_topics)
        system = prompt.replace("{max_topics}", str(share))
        text = "\n".join(t for _, t in lines[g.start : g.stop])
        parsed = parse_topics((await ctx.chat(system, text, max_tokens)).text)
        if not parsed:  # once more, sampled: greedy decoding would repeat the same answer
            retry = await ctx.chat(system, text, max_tokens, temperature=max(ctx.temperature, RETRY_TEMPERATURE))
            parsed = parse_topics(retry.text)
        return sorted({lines[k][0] for k in g}), parsed

    results = await map_concurrently(one, groups)
    chosen: dict[int, ParsedTopic] = {}
    warnings: list[str] = []
    for part, (group_ids, parsed) in enumerate(results, start=1):
        found = 0
        for t in parsed:
            idx = _resolve(t, group_ids, segments)
            if idx is not None and idx not in chosen:
                chosen[idx] = t
                found += 1
        if not found:
            warnings.append(f"part {part} of {len(results)}: no topics could be read from the model's answer")
    starts = _spread(sorted(chosen), max_topics)
    last_end = max(segments[i].end for i in ids)
    topics = []
    for k, idx in enumerate(starts):
        end = segments[starts[k + 1]].start if k + 1 < len(starts) else last_end
        t = chosen[idx]
        topics.append(
            Topic(
                title=_clip(t.title, MAX_TITLE_CHARS),
                start=segments[idx].start,
                end=max(end, segments[idx].start),
                summary=_clip(t.summary, 4 * MAX_TITLE_CHARS) if t.summary else None,
            )
        )
    return TopicsResult(topics, len(groups), warnings)
