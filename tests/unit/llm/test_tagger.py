"""The tagger backend: label meanings, both official layouts built small and random by the tests,
word preservation whatever the labels (property-tested), windows and their edges, batching across
requests, cancellation, licences."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omoai_core.errors import ModelLoadError
from omoai_gpu.memory import MemoryPolicy
from omoai_llm.alignment import split_token
from omoai_llm.tagger.engine import TaggerEngine, TaggerOptions
from omoai_llm.tagger.labels import Action, action_of, apply_action
from omoai_llm.testing import SEQ2LABELS_LABELS, TOKEN_LABELS, write_tiny_seq2labels, write_tiny_token_tagger
from prometheus_client import CollectorRegistry

TEXT = (
    "xin chào các bạn hôm nay chúng ta nói về trí tuệ nhân tạo và học máy cuộc họp bắt đầu lúc chín giờ sáng "
    "mọi người đã có mặt đầy đủ dự án hoàn thành đúng hạn chi phí giảm chất lượng tăng"
).split()


def _keys(words: list[str]) -> list[str]:
    return [split_token(w).key for w in words]


def _policy() -> MemoryPolicy:
    return MemoryPolicy.from_settings("cpu", "fp32", debug_empty_cache=False, registry=CollectorRegistry())


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("taggers")
    return {
        "seq2labels": write_tiny_seq2labels(root / "seq2labels"),
        "token_classification": write_tiny_token_tagger(root / "token"),
    }


def test_published_seq2labels_labels_mean_marks_and_casing_and_word_changes_are_refused():
    actions = {label: action_of(label) for label in SEQ2LABELS_LABELS}
    assert actions["$KEEP"].noop and actions["@@PADDING@@"].noop and actions["@@UNKNOWN@@"].noop
    assert actions["$APPEND_,"] == Action(mark=",") and actions["$APPEND_?"] == Action(mark="?")
    assert actions["$TRANSFORM_CASE_CAPITAL"] == Action(case="capital")
    refused = {label for label, a in actions.items() if a.refused}
    assert refused == {"$TRANSFORM_VERB_VB_VBN", "$TRANSFORM_VERB_VB_VBC", "$MERGE_SPACE"}
    for label in ("$DELETE", "$REPLACE_hai", "$APPEND_và", "$MERGE_HYPHEN", "B-PER", "CAPITAL|xyz"):
        assert action_of(label).refused, label


def test_token_classification_labels_follow_the_case_mark_convention():
    assert action_of("CAPITAL|.") == Action("capital", ".") and action_of("O") == Action()
    assert action_of("upper|COMMA") == Action("upper", ",") and action_of("QUESTION") == Action(mark="?")
    assert action_of("$TRANSFORM_CASE_UPPER|$APPEND_:") == Action("upper", ":")


def test_case_labels_on_vietnamese_words():
    assert apply_action("đà", Action("capital", ".")) == "Đà."
    assert apply_action("vtv", Action("upper")) == "VTV"
    assert apply_action("iphone", Action("capital_1")) == "iPhone"
    assert apply_action("ĐHQG", Action("lower")) == "đhqg"
    assert apply_action("abcd", Action("upper_-1")) == "ABCd"
    assert apply_action("xong.", Action(mark=",")) == "xong."  # its own mark stays


@settings(max_examples=300, deadline=None)
@given(
    word=st.text(alphabet="aăâđeêioôơuưyàáạảãĐÀfßﬁİ.,«»%-9", min_size=1, max_size=6).filter(str.strip),
    label=st.sampled_from([*SEQ2LABELS_LABELS, *TOKEN_LABELS, "$REPLACE_x", "UPPER|?"]),
)
def test_no_label_changes_the_letters_of_a_word(word, label):
    assert split_token(apply_action(word, action_of(label))).key == split_token(word).key


@pytest.mark.parametrize("layout", ["seq2labels", "token_classification"])
async def test_both_layouts_load_and_keep_every_word(checkpoints, layout):
    engine = TaggerEngine.load(str(checkpoints[layout]), _policy(), options=TaggerOptions(window_words=12))
    assert engine.layout == layout
    result = await engine.tag(TEXT)
    assert _keys(result.words) == _keys(TEXT)
    assert result.words != TEXT  # a random model labels something
    assert result.windows == -(-len(TEXT) // 12)
    await engine.close()


async def test_seq2labels_word_changing_labels_are_counted_and_never_applied(checkpoints):
    engine = TaggerEngine.load(str(checkpoints["seq2labels"]), _policy(), options=TaggerOptions(iterations=1))
    result = await engine.tag(TEXT * 3)
    assert result.refused > 0 and _keys(result.words) == _keys(TEXT * 3)
    assert engine.license == "cc-by-sa-4.0"


async def test_a_full_confidence_bias_keeps_every_word_as_it_came(checkpoints):
    engine = TaggerEngine.load(str(checkpoints["seq2labels"]), _policy(), options=TaggerOptions(confidence_bias=1.0))
    assert (await engine.tag(TEXT)).words == TEXT


@pytest.fixture(scope="module")
def seq2labels(checkpoints) -> TaggerEngine:
    return TaggerEngine.load(str(checkpoints["seq2labels"]), _policy())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.lists(st.sampled_from([*TEXT, "Đà", "VTV", "3,5%", "«ơi»", "x" * 40]), min_size=0, max_size=60),
    window=st.integers(8, 20),
    margin=st.integers(0, 6),
)
def test_windows_cover_every_word_once_with_margins_and_keep_the_words(seq2labels, words, window, margin):
    seq2labels.options = TaggerOptions(window_words=window, margin_words=margin)
    plan = seq2labels.windows(words)
    assert [i for own, _ in plan for i in own] == list(range(len(words)))
    for own, shown in plan:
        assert len(own) <= window and shown.start == max(0, own.start - margin)
        assert shown.stop == min(len(words), own.stop + margin)
    assert _keys(asyncio.run(seq2labels.tag(words)).words) == _keys(words)


async def test_a_window_is_bounded_by_the_encoders_positions(tmp_path):
    engine = TaggerEngine.load(str(write_tiny_seq2labels(tmp_path / "short", context=40)), _policy())
    words = ["trí", "tuệ", "nhân", "tạo"] * 40
    plan = engine.windows(words)
    assert len(plan) > 1 and all(len(own) < 40 for own, _ in plan)
    assert _keys((await engine.tag(words)).words) == _keys(words)


async def test_concurrent_requests_share_batches(checkpoints):
    engine = TaggerEngine.load(
        str(checkpoints["token_classification"]),
        _policy(),
        options=TaggerOptions(window_words=8, max_batch_size=64, batch_wait_ms=50),
    )
    results = await asyncio.gather(*(engine.tag(TEXT) for _ in range(4)))
    assert all(r.words == results[0].words for r in results)  # batching changes nothing
    assert engine.windows_run == 4 * results[0].windows and engine.batches_run < engine.windows_run


async def test_a_cancelled_request_stops_its_remaining_windows(checkpoints):
    engine = TaggerEngine.load(
        str(checkpoints["seq2labels"]),
        _policy(),
        options=TaggerOptions(window_words=8, max_batch_size=1, batch_wait_ms=0, iterations=3),
    )
    task = asyncio.create_task(engine.tag(TEXT * 10))
    while engine.windows_run == 0:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ran = engine.windows_run
    await asyncio.sleep(0.3)
    assert engine.windows_run <= ran + 1  # at most the batch in flight finishes
    assert ran < len(engine.windows(TEXT * 10))


def test_a_directory_without_the_layout_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        TaggerEngine.load(str(tmp_path / "missing"), _policy())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        TaggerEngine.load(str(tmp_path / "empty"), _policy())
