"""Server-sent events, read incrementally (the WHATWG ``text/event-stream`` rules the operator needs):
lines end with LF, CRLF or CR; ``event:`` names the event (default ``message``); ``data:`` lines join
with newlines; a blank line dispatches; ``:`` comments (keep-alives), ``id:`` and ``retry:`` are
ignored; one space after the colon is dropped. A line longer than ``max_line`` is an error, so a
broken stream cannot grow memory without bound.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerEvent:
    event: str
    data: str


class EventStreamError(ValueError):
    """The stream broke the format (a line too long)."""


class EventParser:
    def __init__(self, max_line: int = 16 * 1024 * 1024) -> None:
        self._buf = ""
        self._event = ""
        self._data: list[str] = []
        self._max_line = max_line
        self._cr = False  # the last chunk ended with CR: a following LF belongs to it

    def feed(self, text: str) -> list[ServerEvent]:
        """The events completed by ``text``."""
        if self._cr and text.startswith("\n"):
            text = text[1:]
        self._cr = text.endswith("\r")
        self._buf += text
        out: list[ServerEvent] = []
        lines = self._buf.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._buf = lines.pop()
        if len(self._buf) > self._max_line:
            raise EventStreamError(f"an event-stream line is longer than {self._max_line} characters")
        for line in lines:
            event = self._line(line)
            if event is not None:
                out.append(event)
        return out

    def _line(self, line: str) -> ServerEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = ServerEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None
