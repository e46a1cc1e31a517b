"""One request lifecycle for both services: admission before the body is read, a deadline over
the whole request, bounded body reading, and cancellation when the client hangs up.

:meth:`RequestLifecycle.run` takes an admission slot (429 at once when the queue is full, before
a byte of the body is read), then runs the handler in a task with a :class:`Body` to read from:
every read has a time-out (a stalled or slowloris upload gets 408), the whole body has one too,
and uploads stream to a temporary file. Once the body is complete, a watcher waits for the ASGI
``http.disconnect`` message (no polling) and cancels the handler when it comes; the deadline
cancels it with 504. The slot is released only after the cancelled handler has finished its
cleanup (an ffmpeg killed, a model call stopped), so work never escapes the concurrency limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from omoai_core.errors import (
    InvalidInputError,
    OmoaiError,
    PayloadTooLargeError,
    RequestTimeoutError,
    TimeoutError_,
)
from omoai_core.settings import ServerSettings
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from omoai_http.admission import Admission
from omoai_http.jsonbody import parse_json

log = logging.getLogger(__name__)

T = TypeVar("T")


class ClientClosedError(OmoaiError):
    """The client went away before the answer (nginx's 499); nobody receives this response."""

    code = "client_closed_request"
    http_status = 499


@dataclass(frozen=True)
class BodyLimits:
    """How slowly a client may send: ``read_timeout_s`` per receive, ``timeout_s`` in all. (How much
    it may send, ``max_request_bytes``, is :class:`omoai_http.limits.BodyLimitMiddleware`'s, in front
    of every route.)"""

    read_timeout_s: float = 60.0
    timeout_s: float = 900.0

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> BodyLimits:
        return cls(settings.body_read_timeout_s, settings.body_timeout_s)


class Body:
    """The request body, read at most once, through time-outs (its size limit is the middleware's)."""

    def __init__(self, request: Request, limits: BodyLimits) -> None:
        self._raw_receive = request.receive
        self.limits = limits
        self.complete = asyncio.Event()
        self._deadline: float | None = None
        self._files: list[Path] = []
        #: The same request over the guarded receive (``request.form()`` reads through it).
        self.request = Request(request.scope, self._receive)

    async def _receive(self) -> Message:
        if self.complete.is_set():  # the body is read; only the disconnect watcher listens now
            await asyncio.Future()
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self.limits.timeout_s
        wait = min(self.limits.read_timeout_s, self._deadline - now)
        try:
            async with asyncio.timeout(max(wait, 0.0)):
                message = await self._raw_receive()
        except TimeoutError:
            total = time.monotonic() >= self._deadline
            raise RequestTimeoutError(
                f"the request body did not arrive within {self.limits.timeout_s:g} s"
                if total
                else f"the client sent no request data for {self.limits.read_timeout_s:g} s",
                details={"body_read_timeout_s": self.limits.read_timeout_s, "body_timeout_s": self.limits.timeout_s},
            ) from None
        if message["type"] == "http.disconnect":
            raise ClientClosedError("the client closed the connection while sending its request")
        if message["type"] == "http.request" and not message.get("more_body", False):
            self.complete.set()
        return message

    async def read(self, max_bytes: int | None = None) -> bytes:
        """The whole body in memory (JSON bodies), at most ``max_bytes`` when given (the request
        limit itself is enforced in front of every route)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in self._chunks():
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise PayloadTooLargeError(
                    f"the request body is over the limit of {max_bytes} bytes", details={"max_bytes": max_bytes}
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def json(self, max_bytes: int | None = None) -> Any:
        return parse_json(await self.read(max_bytes))

    async def to_file(self, suffix: str = ".upload") -> Path:
        """Stream the body to a temporary file (removed when the request ends) and return its path."""
        return await self._spool(self._chunks(), suffix)

    async def form(self, *, max_files: int = 1, max_fields: int = 32) -> FormData:
        """A multipart form; file parts spool to temporary files (closed when the request ends)."""
        try:
            form = await self.request.form(max_files=max_files, max_fields=max_fields)
        except MultiPartException as e:
            raise InvalidInputError(f"invalid multipart form: {e.message}") from None
        except ClientDisconnect:
            raise ClientClosedError("the client closed the connection while sending its request") from None
        self._form = form
        return form

    async def upload_to_file(self, upload: UploadFile, suffix: str = ".upload") -> Path:
        """Copy a form's file part to a named temporary file (ffmpeg needs a path), chunk by chunk."""

        async def parts() -> AsyncIterator[bytes]:
            while chunk := await upload.read(1 << 20):
                yield chunk

        try:
            return await self._spool(parts(), suffix)
        finally:
            await upload.close()

    async def _spool(self, chunks: AsyncIterator[bytes], suffix: str) -> Path:
        """Write ``chunks`` to a new temporary file that is removed when the request ends."""
        fd, name = tempfile.mkstemp(prefix="omoai-upload-", suffix=suffix)
        path = Path(name)
        self._files.append(path)
        with os.fdopen(fd, "wb") as fh:
            async for chunk in chunks:
                fh.write(chunk)
        return path

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._receive()
            if message["type"] != "http.request":
                continue
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def wait_disconnect(self) -> None:
        """Return when the client hangs up; listens only once the body has been read."""
        await self.complete.wait()
        while True:
            message = await self._raw_receive()
            if message["type"] == "http.disconnect":
                return

    async def close(self) -> None:
        form = getattr(self, "_form", None)
        if form is not None:
            with contextlib.suppress(Exception):
                await form.close()
        for path in self._files:
            path.unlink(missing_ok=True)


class RequestLifecycle:
    """Admission, deadline, bounded body and disconnect handling around one request handler."""

    def __init__(self, admission: Admission, *, deadline_s: float, limits: BodyLimits) -> None:
        self.admission = admission
        self.deadline_s = deadline_s
        self.limits = limits

    async def run(self, request: Request, handler: Callable[[Body], Awaitable[T]]) -> T:
        """``handler(body)``'s result; OverloadedError (429) before any body is read, TimeoutError_
        (504) past the deadline, ClientClosedError (499) once the client has gone."""
        async with self.admission.slot():
            body = Body(request, self.limits)
            task = asyncio.ensure_future(handler(body))
            watcher = asyncio.ensure_future(body.wait_disconnect())
            try:
                done, _ = await asyncio.wait(
                    {task, watcher}, timeout=self.deadline_s, return_when=asyncio.FIRST_COMPLETED
                )
                if task in done:
                    return task.result()
                if watcher in done:
                    log.debug("client disconnected; its work was stopped")
                    raise ClientClosedError("the client closed the connection")
                raise TimeoutError_(
                    f"the request took longer than {self.deadline_s:g} s and was stopped",
                    details={"request_timeout_s": self.deadline_s},
                )
            finally:
                for t in (task, watcher):
                    if not t.done():
                        t.cancel()
                # Uninterruptible: the slot is free only once the handler's cleanup has run.
                interrupted = False
                while not (task.done() and watcher.done()):
                    try:
                        await asyncio.wait({task, watcher})
                    except asyncio.CancelledError:
                        interrupted = True
                for t in (task, watcher):
                    if not t.cancelled():
                        t.exception()
                await body.close()
                if interrupted:
                    raise asyncio.CancelledError
