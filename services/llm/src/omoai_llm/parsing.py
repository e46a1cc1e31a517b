"""Getting structured answers out of free-form model text: reasoning blocks, code fences, chatter
around the answer, trailing commas, smart quotes and outputs cut off mid-object are all handled;
when no JSON can be recovered, plain-text heuristics (a title line, bullet lines, ``[mm:ss]``
lines) take over.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE_LINE = re.compile(r"^\s*```[\w-]*\s*$", re.MULTILINE)
_FENCED = re.compile(r"```[\w-]*\s*\n(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_SMART = str.maketrans({"“": '"', "”": '"', "„": '"'})
_BULLET = re.compile(r"^\s*(?:[-*•·–—]|\d{1,2}[.)])\s+(.*\S)\s*$")
_LABEL = re.compile(
    r"^\s*(?:\*\*|#+\s*)?(title|tiêu đề|abstract|summary|tóm tắt|bullets?|key points|ý chính|điểm chính)"
    r"\s*(?:\*\*)?\s*[:：]\s*(?:\*\*)?\s*",
    re.IGNORECASE,
)
_TIME = re.compile(r"^(?:(\d{1,2}):)?(\d{1,2}):(\d{2}(?:\.\d+)?)$")


def clean_answer(text: str) -> str:
    """The answer without reasoning blocks, fence lines, a leading "Here is ...:" line or wrapping quotes."""
    text = _THINK.sub(" ", text or "")
    if "<think>" in text.lower():  # never closed: the rest is reasoning, not an answer
        text = text[: text.lower().index("<think>")]
    text = text.replace("</think>", " ")
    text = _FENCE_LINE.sub("", text).strip()
    lines = text.splitlines()
    if len(lines) > 1 and lines[0].rstrip().endswith((":", "：")) and len(lines[0].split()) <= 12:
        text = "\n".join(lines[1:]).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'" or (text[:1], text[-1:]) in (("“", "”"), ("«", "»")):
        inner = text[1:-1]
        if text[0] not in inner:
            text = inner.strip()
    return text


# -- JSON recovery ------------------------------------------------------------------------------


class _Structure:
    """Iterates ``(index, char)`` over the characters of a JSON text that lie outside strings
    (escapes honoured); afterwards ``open_string`` says whether the text ended inside one."""

    def __init__(self, s: str, start: int = 0) -> None:
        self.s, self.start, self.open_string = s, start, False

    def __iter__(self) -> Iterator[tuple[int, str]]:
        in_str = escaped = False
        for i in range(self.start, len(self.s)):
            ch = self.s[i]
            if in_str:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            else:
                yield i, ch
        self.open_string = in_str


def _close_truncated(s: str) -> str:
    """Close an unterminated string and every open bracket of a JSON text cut off mid-way."""
    stack: list[str] = []
    scan = _Structure(s)
    for _, ch in scan:
        if ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    out = s + ('"' if scan.open_string else "")
    out = re.sub(r",\s*$", "", out.rstrip())
    out = re.sub(r":\s*$", ": null", out)
    # A dangling key with no value ("{"a": 1, "b"}") is dropped.
    out = re.sub(r',\s*"[^"]*"\s*$', "", out)
    return out + "".join(reversed(stack))


def _balanced_end(s: str, start: int) -> int | None:
    depth = 0
    for i, ch in _Structure(s, start):
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _loads(s: str) -> Any:
    s = s.translate(_SMART)
    for attempt in (s, _TRAILING_COMMA.sub(r"\1", s)):
        try:
            return json.loads(attempt)
        except ValueError:
            pass
    raise ValueError("not JSON")


def extract_json(text: str) -> Any | None:
    """The first JSON object or array in ``text`` (fenced or not, chatty, or cut off), else None."""
    if not text:
        return None
    text = _THINK.sub(" ", text)
    candidates = [m.group(1) for m in _FENCED.finditer(text)] + [text]
    for cand in candidates:
        cand = cand.strip()
        try:
            return _loads(cand)
        except ValueError:
            pass
        for m in re.finditer(r"[{\[]", cand):
            start = m.start()
            end = _balanced_end(cand, start)
            chunk = cand[start:end] if end else _close_truncated(cand[start:])
            try:
                value = _loads(chunk)
            except ValueError:
                continue
            if isinstance(value, (dict, list)) and value:
                return value
    return None


# -- summaries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedSummary:
    title: str
    abstract: str
    bullets: list[str]
    structured: bool  # True when it came from JSON, False from the plain-text fallback


_TITLE_KEYS = ("title", "tiêu đề", "tieu_de", "heading", "name")
_ABSTRACT_KEYS = ("abstract", "summary", "tóm tắt", "tom_tat", "overview", "description", "text")
_BULLET_KEYS = ("bullets", "bullet_points", "points", "key_points", "highlights", "ý chính", "y_chinh", "items")


def _pick(d: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).strip().lower(): v for k, v in d.items()}
    for k in keys:
        if k in lowered and lowered[k] not in (None, "", []):
            return lowered[k]
    return None


def _as_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return " ".join(v.split())
    if isinstance(v, dict):
        inner = _pick(v, ("text", "point", "content", "title", "summary"))
        return _as_text(inner) if inner is not None else ""
    if isinstance(v, list):
        return " ".join(_as_text(x) for x in v if _as_text(x))
    return str(v)


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        items = [m.group(1) for line in v.splitlines() if (m := _BULLET.match(line))]
        return items or [s for s in (x.strip() for x in v.splitlines()) if s]
    if isinstance(v, list):
        return [t for t in (_as_text(x) for x in v) if t]
    return [_as_text(v)] if _as_text(v) else []


def parse_summary(text: str) -> ParsedSummary | None:
    """A title, an abstract and bullet points from a model answer; None when it holds nothing."""
    value = extract_json(text)
    if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
        value = value[0]
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(next(iter(value.values())), dict):
            value = next(iter(value.values()))  # {"summary": {...}}
        title = _as_text(_pick(value, _TITLE_KEYS))
        abstract = _as_text(_pick(value, _ABSTRACT_KEYS))
        bullets = _as_list(_pick(value, _BULLET_KEYS))
        if title or abstract or bullets:
            return ParsedSummary(title, abstract, bullets, True)
    return _summary_from_plain_text(clean_answer(text))


def _summary_from_plain_text(text: str) -> ParsedSummary | None:
    title = ""
    abstract_lines: list[str] = []
    bullets: list[str] = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        label = _LABEL.match(line)
        if label:
            name = label.group(1).lower()
            rest = line[label.end() :].strip().strip("*").strip()
            section = (
                "title"
                if name in ("title", "tiêu đề")
                else "abstract"
                if name in ("abstract", "summary", "tóm tắt")
                else "bullets"
            )
            if rest:
                if section == "title":
                    title = rest
                elif section == "abstract":
                    abstract_lines.append(rest)
                else:
                    bullets.append(rest)
            continue
        bullet = _BULLET.match(line)
        if bullet:
            bullets.append(bullet.group(1).strip())
        elif not title and section is None and (line.startswith("#") or len(line.split()) <= 16):
            title = line.lstrip("#").strip().strip("*").strip()
        elif section == "title" and not title:
            title = line
        else:
            abstract_lines.append(line)
    abstract = " ".join(abstract_lines)
    if not (title or abstract or bullets):
        return None
    return ParsedSummary(title, abstract, bullets, False)


# -- topics -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedTopic:
    title: str
    segment: int | None  # the [n] segment number the model pointed at
    time: float | None  # or a time in seconds it wrote
    summary: str | None


def parse_time(value: Any) -> float | None:
    """``83``, ``"83.5"``, ``"01:23"``, ``"1:01:23"`` -> seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        v = value.strip().strip("[]()")
        m = _TIME.match(v)
        if m:
            h = int(m.group(1) or 0)
            return h * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        try:
            f = float(v.rstrip("s"))
        except ValueError:
            return None
        return f if f >= 0 else None
    return None


def _parse_index(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*\[?#?(\d+)\]?\s*", value)
        if m:
            return int(m.group(1))
    return None


_TOPIC_LINE = re.compile(
    r"^\s*(?:[-*•]|\d{1,2}[.)])?\s*[\[(]?\s*(?P<ref>#?\d+|\d{1,2}:\d{2}(?::\d{2})?)\s*[\])]?\s*[-–—:.)]?\s+(?P<title>\S.*)$"
)


def parse_topics(text: str) -> list[ParsedTopic]:
    value = extract_json(text)
    if isinstance(value, dict):
        value = _pick(value, ("topics", "chủ đề", "items", "sections")) or [value]
    topics: list[ParsedTopic] = []
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, dict):
                continue
            title = _as_text(_pick(item, ("title", "topic", "name", "tiêu đề", "heading")))
            if not title:
                continue
            seg = _parse_index(_pick(item, ("segment", "start_segment", "id", "index", "seg", "line")))
            time = parse_time(_pick(item, ("start", "time", "timestamp", "start_time", "at")))
            summary = _as_text(_pick(item, ("summary", "description", "detail", "tóm tắt"))) or None
            topics.append(ParsedTopic(title, seg, time, summary))
        if topics:
            return topics
    for line in clean_answer(text).splitlines():
        m = _TOPIC_LINE.match(line)
        if not m:
            continue
        ref, title = m.group("ref"), m.group("title").strip().strip("*").strip()
        if ":" in ref:
            topics.append(ParsedTopic(title, None, parse_time(ref), None))
        else:
            topics.append(ParsedTopic(title, int(ref.lstrip("#")), None, None))
    return topics
