"""The tasks over a fake backend: chunking by the token budget, concurrency, alignment back into
segments with their times, single pass versus map-reduce, topics at real segment times."""

from __future__ import annotations

import json
import random
import re

import pytest
from omoai_core.errors import UpstreamError
from omoai_core.schemas import Segment
from omoai_llm.serving.common import CallContext
from omoai_llm.serving.punctuation import punctuate
from omoai_llm.serving.summary import SummaryPrompts, summarize
from omoai_llm.serving.topics import find_topics

from .fakes import FakeBackend

PROMPTS = SummaryPrompts(single="SINGLE", map="MAP", reduce="REDUCE")


def _segments(n: int, words: int = 8) -> list[Segment]:
    rng = random.Random(n)
    vocab = ["một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín", "mười", "anh", "em", "chúng", "ta"]
    return [
        Segment(text=" ".join(rng.choice(vocab) for _ in range(words)), start=i * 2.0, end=i * 2.0 + 1.9)
        for i in range(n)
    ]


def _adversarial(system: str, user: str) -> str:
    """Capitalise and punctuate, but also drop, invent, rewrite and truncate, by chunk."""
    words = user.split()
    kind = len(user) % 5
    if kind == 0:
        return (
            "Here you go:\n" + " ".join(w.capitalize() + ("," if i % 4 == 3 else "") for i, w in enumerate(words)) + "."
        )
    if kind == 1:
        return " ".join(words[::2]).capitalize() + "."  # dropped every second word
    if kind == 2:
        return "Ồ " + " ".join(words + ["thêm", "từ", "bịa."])  # invented words
    if kind == 3:
        return " ".join(words[: len(words) // 3])  # truncated
    return ""  # nothing at all


async def test_punctuation_keeps_every_word_and_time_whatever_the_model_returns():
    segs = _segments(60)
    backend = FakeBackend(_adversarial, context_tokens=300, delay_s=0.01)
    ctx = CallContext(backend, concurrency=4)
    result = await punctuate(segs, ctx, system_prompt="punctuate please", chunk_tokens=40)
    assert result.chunks > 5 and len(backend.calls) == result.chunks
    assert backend.max_active > 1  # chunks went concurrently
    assert backend.max_active <= 4  # ... but bounded
    assert len(result.segments) == len(segs)
    for before, after in zip(segs, result.segments, strict=True):
        assert (after.start, after.end) == (before.start, before.end)
        plain = [re.sub(r"[^\w]", "", w).lower() for w in after.text.split()]
        assert plain == before.text.split()
    s = result.stats
    assert s.words_in == s.words_out == sum(len(x.text.split()) for x in segs)
    assert s.output_word_errors == 0 and s.restored > 0 and s.invented > 0


async def test_punctuation_chunks_respect_the_token_budget_and_the_context():
    segs = _segments(40, words=10)
    backend = FakeBackend(context_tokens=200)
    await punctuate(segs, CallContext(backend), system_prompt="p", chunk_tokens=1000)
    for _system, user, max_tokens in backend.calls:
        assert len(user.split()) + max_tokens + 64 + 1 <= 200
    assert sum(len(u.split()) for _, u, _ in backend.calls) == 400


async def test_a_segment_longer_than_a_chunk_is_split_and_reassembled():
    long = Segment(text=" ".join(f"w{i}" for i in range(100)), start=5.0, end=65.0)
    backend = FakeBackend(lambda s, u: u.upper() + ".")
    result = await punctuate([long], CallContext(backend), system_prompt="p", chunk_tokens=30)
    assert len(backend.calls) == 4
    assert result.segments[0].text.split()[0] == "W0"
    assert len(result.segments[0].text.split()) == 100
    assert (result.segments[0].start, result.segments[0].end) == (5.0, 65.0)


async def test_empty_segments_stay_and_keep_their_times():
    segs = [
        Segment(text="", start=0, end=1),
        Segment(text="xin chào", start=1, end=2),
        Segment(text=" ", start=2, end=3),
    ]
    result = await punctuate(segs, CallContext(FakeBackend(lambda s, u: "Xin chào!")), system_prompt="p")
    assert [s.text for s in result.segments] == ["", "Xin chào!", ""]
    assert [(s.start, s.end) for s in result.segments] == [(0, 1), (1, 2), (2, 3)]


async def test_words_with_timestamps_are_kept_with_the_segment():
    seg = Segment.model_validate(
        {
            "text": "xin chào",
            "start": 0,
            "end": 1,
            "words": [{"word": "xin", "start": 0, "end": 0.4}, {"word": "chào", "start": 0.5, "end": 1}],
        }
    )
    result = await punctuate([seg], CallContext(FakeBackend(lambda s, u: "Xin chào.")), system_prompt="p")
    assert result.segments[0].words == seg.words


SUMMARY = json.dumps({"title": "T", "abstract": "A", "bullets": ["b"]})


async def test_a_short_text_is_summarised_in_one_call():
    backend = FakeBackend(lambda s, u: SUMMARY, context_tokens=2048)
    result = await summarize(["một hai ba"] * 10, CallContext(backend), prompts=PROMPTS, max_tokens=100)
    assert result.strategy == "single" and len(backend.calls) == 1 and result.structured
    assert result.summary.title == "T"


async def test_a_long_text_is_map_reduced_with_parallel_map_calls():
    def answer(system: str, user: str) -> str:
        if system == "MAP":
            return json.dumps({"abstract": f"part with {len(user.split())} words", "bullets": ["p"]})
        assert system == "REDUCE"
        assert user.count("part with") >= 2
        return SUMMARY

    backend = FakeBackend(answer, context_tokens=400, delay_s=0.02)
    texts = [" ".join(["từ"] * 50)] * 30  # 1500 tokens: does not fit 400
    result = await summarize(texts, CallContext(backend, concurrency=8), prompts=PROMPTS, max_tokens=100)
    assert result.strategy == "map_reduce" and result.chunks > 3
    maps = [c for c in backend.calls if c[0] == "MAP"]
    assert len(maps) == result.chunks and sum(len(u.split()) for _, u, _ in maps) == 1500
    assert backend.max_active > 1
    assert backend.calls[-1][0] == "REDUCE"
    assert result.summary.abstract == "A"


async def test_reduce_goes_level_by_level_when_partials_do_not_fit():
    def answer(system: str, user: str) -> str:
        if system == "MAP":
            return json.dumps({"abstract": " ".join(["ý"] * 60)})
        return SUMMARY

    backend = FakeBackend(answer, context_tokens=400)
    result = await summarize([" ".join(["từ"] * 100)] * 20, CallContext(backend), prompts=PROMPTS, max_tokens=100)
    assert result.strategy == "map_reduce" and result.levels >= 2


async def test_a_plain_text_summary_is_still_a_summary_and_says_so():
    backend = FakeBackend(lambda s, u: "Họp dự án\nDự án đúng hạn và chi phí giảm.\n- chi phí giảm")
    result = await summarize(["x"], CallContext(backend), prompts=PROMPTS)
    assert not result.structured
    assert result.summary.title == "Họp dự án" and result.summary.bullets == ["chi phí giảm"]


async def test_an_empty_summary_answer_is_a_retryable_upstream_error():
    with pytest.raises(UpstreamError) as err:
        await summarize(["x y z"], CallContext(FakeBackend(lambda s, u: "")), prompts=PROMPTS)
    assert err.value.retryable


async def test_topics_start_at_real_segment_times():
    segs = _segments(20)

    def answer(system: str, user: str) -> str:
        numbers = [int(n) for n in re.findall(r"^\[(\d+)\]", user, re.MULTILINE)]
        return json.dumps(
            [
                {"segment": numbers[0], "title": "first"},
                {"start": "00:13", "title": "by time"},  # 13 s falls in segment 7 (starts at 12 s)
                {"segment": 999, "title": "made up"},
            ]
        )

    result = await find_topics(segs, CallContext(FakeBackend(answer)), prompt="topics up to {max_topics}")
    assert [(t.title, t.start) for t in result.topics] == [("first", 0.0), ("by time", 12.0)]
    assert result.topics[0].end == 12.0 and result.topics[-1].end == segs[-1].end
    assert not result.warnings


async def test_long_transcripts_get_topics_from_every_part_within_the_limit():
    segs = _segments(200, words=10)

    def answer(system: str, user: str) -> str:
        numbers = [int(n) for n in re.findall(r"^\[(\d+)\]", user, re.MULTILINE)]
        return "\n".join(f"[{n}] topic {n}" for n in numbers[::3])

    backend = FakeBackend(answer, context_tokens=500)
    result = await find_topics(
        segs, CallContext(backend, concurrency=4), prompt="p {max_topics}", max_topics=10, max_tokens=100
    )
    assert result.chunks > 3
    assert len(result.topics) == 10
    starts = [t.start for t in result.topics]
    assert starts == sorted(starts) and starts[0] == 0.0 and starts[-1] > 300
    assert all(s in {x.start for x in segs} for s in starts)


async def test_unreadable_topics_give_a_warning_not_invented_times():
    result = await find_topics(_segments(5), CallContext(FakeBackend(lambda s, u: "ev ev ev")), prompt="p")
    assert result.topics == [] and result.warnings


async def test_an_unusable_answer_is_asked_again_once_with_sampling():
    answers = iter(["\n\n\n", SUMMARY])
    backend = FakeBackend(lambda s, u: next(answers))
    temps: list[float] = []
    real = backend.generate

    async def spy(messages, *, max_tokens, temperature=0.0):
        temps.append(temperature)
        return await real(messages, max_tokens=max_tokens, temperature=temperature)

    backend.generate = spy  # type: ignore[method-assign]
    result = await summarize(["x y z"], CallContext(backend), prompts=PROMPTS)
    assert result.summary.title == "T" and temps == [0.0, 0.7]


async def test_map_parts_without_a_usable_answer_fall_back_to_their_opening_words():
    def answer(system: str, user: str) -> str:
        if system == "MAP":
            return "" if "bốn" in user else json.dumps({"abstract": "phần tốt"})
        assert "bốn" in user  # the silent part still reaches the reduce step
        return SUMMARY

    texts = [" ".join(["một"] * 100), " ".join(["bốn"] * 100), " ".join(["một"] * 100)]
    backend = FakeBackend(answer, context_tokens=300)
    result = await summarize(texts, CallContext(backend), prompts=PROMPTS, max_tokens=64)
    assert result.strategy == "map_reduce" and result.extractive_parts >= 1


async def test_chunks_see_their_neighbours_but_only_their_own_words_are_taken():
    segs = [Segment(text=" ".join(f"w{i * 10 + k}" for k in range(10)), start=i, end=i + 1) for i in range(60)]

    def answer(system: str, user: str) -> str:
        words = user.split()
        # A model that ends every answer with a full stop and capitalises its first word.
        return " ".join([words[0].capitalize(), *words[1:]]) + "."

    backend = FakeBackend(answer)
    result = await punctuate(segs, CallContext(backend), system_prompt="p", chunk_tokens=300, context_words=8)
    chunks = [u.split() for _, u, _ in backend.calls]
    assert result.chunks == len(chunks) == 3
    assert chunks[1][:16] == chunks[0][-16:]  # 8 words of each side of the edge in both calls
    assert chunks[0][0] == "w0" and chunks[2][-1] == "w599"
    assert all(len(c) <= 300 for c in chunks)
    out = " ".join(s.text for s in result.segments).split()
    assert out == ["W0"] + [f"w{i}" for i in range(1, 599)] + ["w599."]  # nothing at chunk edges
    s = result.stats
    assert s.words_in == s.words_out == 600 and s.matched == 600 and s.invented == 0
    assert s.model_word_errors == 0


async def test_context_words_do_not_disturb_the_counts_of_a_sloppy_model():
    segs = _segments(60)
    backend = FakeBackend(_adversarial, context_tokens=2000)
    result = await punctuate(segs, CallContext(backend), system_prompt="p", chunk_tokens=200, context_words=8)
    assert result.chunks > 2
    for before, after in zip(segs, result.segments, strict=True):
        assert [re.sub(r"[^\w]", "", w).lower() for w in after.text.split()] == before.text.split()
    s = result.stats
    assert s.words_in == s.words_out == sum(len(x.text.split()) for x in segs)
    assert s.matched + s.replaced + s.restored == s.words_in
