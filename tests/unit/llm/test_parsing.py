"""Structured answers recovered from chatter, fences, trailing commas and cut-off output."""

from __future__ import annotations

import pytest
from omoai_llm.parsing import clean_answer, extract_json, parse_summary, parse_time, parse_topics


@pytest.mark.parametrize(
    "text",
    [
        '{"title": "T", "abstract": "A", "bullets": ["x", "y"]}',
        'Sure! Here is the summary:\n```json\n{"title": "T", "abstract": "A", "bullets": ["x", "y"]}\n```\nHope it helps.',
        '<think>the user wants json {"no": 1}</think>{"title": "T", "abstract": "A", "bullets": ["x", "y",],}',
        "{“title”: “T”, “abstract”: “A”, “bullets”: [“x”, “y”]}",
        'Result: {"summary": {"title": "T", "abstract": "A", "bullets": ["x", "y"]}} done',
        '{"tiêu đề": "T", "tóm tắt": "A", "ý chính": ["x", "y"]}',
    ],
)
def test_summary_json_is_found_whatever_surrounds_it(text):
    s = parse_summary(text)
    assert s is not None and s.structured
    assert (s.title, s.abstract, s.bullets) == ("T", "A", ["x", "y"])


def test_a_truncated_json_answer_keeps_what_was_complete():
    s = parse_summary('{"title": "Cuộc họp", "abstract": "Bàn về ngân sách", "bullets": ["chi phí giảm", "chất lư')
    assert s is not None and s.title == "Cuộc họp" and s.abstract == "Bàn về ngân sách"
    assert s.bullets[0] == "chi phí giảm"


def test_plain_text_summary_falls_back_to_headings_and_bullets():
    text = "# Weekly sync\nThe team reviewed the budget and the release plan.\n- costs are down\n* release on Friday\n1. hire two people"
    s = parse_summary(text)
    assert s is not None and not s.structured
    assert s.title == "Weekly sync"
    assert s.abstract == "The team reviewed the budget and the release plan."
    assert s.bullets == ["costs are down", "release on Friday", "hire two people"]


def test_labelled_plain_text_summary_in_vietnamese():
    s = parse_summary("Tiêu đề: Họp dự án\nTóm tắt: Dự án đúng hạn.\nÝ chính:\n- chi phí giảm\n- chất lượng tăng")
    assert s is not None
    assert (s.title, s.abstract, s.bullets) == ("Họp dự án", "Dự án đúng hạn.", ["chi phí giảm", "chất lượng tăng"])


@pytest.mark.parametrize("text", ["", "   ", "```\n```", "<think>hmm</think>"])
def test_an_empty_answer_is_no_summary(text):
    assert parse_summary(text) is None


def test_bullets_given_as_objects_or_one_string():
    s = parse_summary('{"title": "T", "abstract": "A", "bullets": [{"text": "x"}, {"point": "y"}]}')
    assert s is not None and s.bullets == ["x", "y"]
    s = parse_summary('{"title": "T", "abstract": "A", "bullets": "- x\\n- y"}')
    assert s is not None and s.bullets == ["x", "y"]


def test_topics_from_json_with_segment_numbers_or_times():
    text = 'Topics:\n[{"segment": 1, "title": "Mở đầu"}, {"start": "01:05", "title": "Ngân sách", "summary": "s"}, {"title": ""}]'
    topics = parse_topics(text)
    assert [(t.title, t.segment, t.time, t.summary) for t in topics] == [
        ("Mở đầu", 1, None, None),
        ("Ngân sách", None, 65.0, "s"),
    ]


def test_topics_from_plain_lines():
    topics = parse_topics("1. [3] Introduction\n- [01:02:03] Budget review\nrandom chatter")
    assert [(t.title, t.segment, t.time) for t in topics] == [
        ("Introduction", 3, None),
        ("Budget review", None, 3723.0),
    ]


def test_topics_json_wrapped_in_an_object():
    topics = parse_topics('{"topics": [{"id": "[4]", "topic": "X"}]}')
    assert topics[0].segment == 4 and topics[0].title == "X"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (83, 83.0),
        ("83.5", 83.5),
        ("01:23", 83.0),
        ("1:01:23", 3683.0),
        ("12s", 12.0),
        ("x", None),
        (-1, None),
        (True, None),
    ],
)
def test_parse_time(value, seconds):
    assert parse_time(value) == seconds


def test_clean_answer_strips_fences_preamble_quotes_and_reasoning():
    assert clean_answer('Here is the punctuated text:\n"Xin chào."') == "Xin chào."
    assert clean_answer("```text\nXin chào.\n```") == "Xin chào."
    assert clean_answer("<think>let me think</think>Xin chào.") == "Xin chào."
    assert clean_answer("Xin chào.<think>unfinished reasoning") == "Xin chào."


def test_extract_json_returns_none_for_prose():
    assert extract_json("no json here, only {braces that are not json") is None
