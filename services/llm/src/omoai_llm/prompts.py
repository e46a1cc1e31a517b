"""The prompts of every task in Vietnamese and English, overridable from a JSON file.

A file given by ``OMOAI_PROMPTS_FILE`` maps a language to some of the keys below, e.g.
``{"vi": {"summary": "..."}, "en": {"punctuate": "..."}}``; keys it leaves out keep the
defaults. Other languages may be added (missing keys fall back to the language-neutral prompts);
unknown keys are refused at startup so a typo never silently does nothing. A language with no
prompts of its own gets the language-neutral set: English instructions that ask for the answer in
the transcript's own language.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from omoai_core.errors import ConfigError, InvalidInputError

KEYS = ("punctuate", "punctuate_edits", "summary", "summary_map", "summary_reduce", "topics")

_DEFAULTS: dict[str, dict[str, str]] = {
    "vi": {
        "punctuate": (
            "Bạn là biên tập viên tiếng Việt. Thêm dấu câu và viết hoa đúng chuẩn cho đoạn văn bản "
            "được nhận dạng từ giọng nói dưới đây. Giữ nguyên từng từ và thứ tự của chúng: không thêm, "
            "không bớt, không sửa, không dịch từ nào. Chỉ trả về văn bản đã thêm dấu câu, không giải thích."
        ),
        "punctuate_edits": (
            "Bạn là biên tập viên tiếng Việt. Các từ của một đoạn văn bản nhận dạng từ giọng nói được đánh số "
            "dạng số:từ. Không viết lại văn bản: chỉ trả lời một đối tượng JSON liệt kê số thứ tự của các từ "
            'cần sửa: "period", "comma", "question", "colon", "exclamation" là từ đứng ngay trước dấu đó; '
            '"capital" là tên riêng cần viết hoa chữ cái đầu; "upper" là từ viết tắt viết hoa toàn bộ. '
            "Chữ đầu câu được viết hoa tự động. Không giải thích."
        ),
        "summary": (
            "Bạn là trợ lý tóm tắt. Đọc bản ghi dưới đây và trả lời bằng tiếng Việt, chỉ một đối tượng JSON "
            'dạng {"title": "tiêu đề ngắn", "abstract": "đoạn tóm tắt 3-5 câu", "bullets": ["ý chính", ...]} '
            "với 3 đến 8 ý chính. Không thêm thông tin không có trong bản ghi."
        ),
        "summary_map": (
            "Đây là một phần của một bản ghi dài. Tóm tắt phần này bằng tiếng Việt, chỉ một đối tượng JSON "
            'dạng {"abstract": "2-3 câu", "bullets": ["ý chính", ...]}. Không thêm thông tin không có trong đoạn.'
        ),
        "summary_reduce": (
            "Dưới đây là tóm tắt của từng phần liên tiếp của một bản ghi dài. Gộp chúng thành một bản tóm tắt "
            'duy nhất bằng tiếng Việt, chỉ một đối tượng JSON dạng {"title": "tiêu đề ngắn", '
            '"abstract": "đoạn tóm tắt 3-5 câu", "bullets": ["ý chính", ...]} với 3 đến 8 ý chính.'
        ),
        "topics": (
            "Bản ghi dưới đây gồm các đoạn được đánh số [n]. Tìm tối đa {max_topics} chủ đề chính theo thứ tự "
            "xuất hiện. Trả lời bằng tiếng Việt, chỉ một mảng JSON dạng "
            '[{"segment": số đoạn bắt đầu chủ đề, "title": "tên chủ đề ngắn", "summary": "một câu"}].'
        ),
    },
    "en": {
        "punctuate": (
            "You are a copy editor. Add punctuation and correct capitalization to the speech transcript "
            "below. Keep every word and its order: do not add, remove, change or translate any word. "
            "Reply with the punctuated text only, without explanations."
        ),
        "punctuate_edits": (
            "You are a copy editor. The words of a speech transcript are numbered as number:word. Do not "
            "rewrite the text: reply with only a JSON object listing word numbers: "
            '"period", "comma", "question", "colon", "exclamation" list the words the mark follows; '
            '"capital" lists proper names to capitalize; "upper" lists acronyms to write in capitals. '
            "Sentence starts are capitalized automatically. No explanations."
        ),
        "summary": (
            "You summarize transcripts. Read the transcript below and reply in English with only a JSON "
            'object {"title": "short title", "abstract": "3-5 sentence summary", "bullets": ["key point", ...]} '
            "with 3 to 8 key points. Do not add anything that is not in the transcript."
        ),
        "summary_map": (
            "This is one part of a long transcript. Summarize this part in English with only a JSON object "
            '{"abstract": "2-3 sentences", "bullets": ["key point", ...]}. Do not add anything not in the part.'
        ),
        "summary_reduce": (
            "Below are summaries of consecutive parts of one long transcript. Merge them into one summary in "
            'English, only a JSON object {"title": "short title", "abstract": "3-5 sentence summary", '
            '"bullets": ["key point", ...]} with 3 to 8 key points.'
        ),
        "topics": (
            "The transcript below is split into numbered segments [n]. Find at most {max_topics} main topics in "
            "order of appearance. Reply in English with only a JSON array "
            '[{"segment": number of the segment where the topic starts, "title": "short topic name", '
            '"summary": "one sentence"}].'
        ),
    },
}


#: For languages without prompts of their own: English instructions, answers in the transcript's language.
NEUTRAL: dict[str, str] = {
    "punctuate": _DEFAULTS["en"]["punctuate"],
    "punctuate_edits": _DEFAULTS["en"]["punctuate_edits"],
    "summary": _DEFAULTS["en"]["summary"].replace("reply in English", "reply in the language of the transcript"),
    "summary_map": _DEFAULTS["en"]["summary_map"].replace("in English", "in the language of the transcript"),
    "summary_reduce": _DEFAULTS["en"]["summary_reduce"].replace("in English", "in the language of the summaries"),
    "topics": _DEFAULTS["en"]["topics"].replace("Reply in English", "Reply in the language of the transcript"),
}


@dataclass(frozen=True)
class Prompts:
    table: Mapping[str, Mapping[str, str]]

    @property
    def languages(self) -> list[str]:
        return sorted(self.table)

    def get(self, language: str, key: str) -> str:
        """The prompt for ``language`` (a primary subtag such as ``vi``), or the neutral one."""
        if not re.fullmatch(r"[a-z]{2,3}", language):
            raise InvalidInputError(f"invalid language {language!r}: expected a code such as vi or en")
        return self.table.get(language, {}).get(key) or NEUTRAL[key]


def load_prompts(path: Path | None = None) -> Prompts:
    table = {lang: dict(v) for lang, v in _DEFAULTS.items()}
    if path is None:
        return Prompts(table)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read OMOAI_PROMPTS_FILE {path}: {e}") from e
    except ValueError as e:
        raise ConfigError(f"OMOAI_PROMPTS_FILE {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"OMOAI_PROMPTS_FILE {path} must map languages to objects of prompts")
    for lang, prompts in data.items():
        if not isinstance(prompts, dict):
            raise ConfigError(f"OMOAI_PROMPTS_FILE {path}: {lang!r} must be an object of prompts")
        for key, text in prompts.items():
            if key not in KEYS:
                raise ConfigError(f"OMOAI_PROMPTS_FILE {path}: unknown prompt {lang}.{key}; known: {', '.join(KEYS)}")
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(f"OMOAI_PROMPTS_FILE {path}: {lang}.{key} must be a non-empty string")
        table.setdefault(str(lang).lower(), {}).update(prompts)
    return Prompts(table)
