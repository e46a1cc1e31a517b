"""Where a job keeps its intermediate results and its outputs: a directory on a shared volume or an
S3 prefix. Everything is staged under ``.omoai-staging/<job uid>/`` first and committed by rename
(or copy+delete on S3), so a cancelled job leaves nothing behind and a restarted one redoes nothing.

Commit protocol (idempotent, restart-safe): stage every output; write ``commit.json`` listing the
final names; move each staged output to its final name; after the status says Succeeded, drop the
staging area. A restart before ``commit.json`` re-stages; after it, finishes the moves. Discarding a
job that never succeeded removes the staging area and whatever the manifest says was moved.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

STAGING = ".omoai-staging"
MANIFEST = "commit.json"


class Store(Protocol):
    location: str

    async def get(self, name: str) -> bytes | None: ...
    async def put(self, name: str, data: bytes) -> None: ...
    async def commit(self, outputs: Mapping[str, bytes]) -> list[str]: ...
    async def finalize(self) -> None: ...
    async def discard(self) -> None: ...


class LocalStore:
    """A directory (a PVC mounted by the operator, or a local folder for ``omoai run``).

    File system calls (fsync included) run in worker threads: a slow volume must not stall the
    operator's event loop, which drives every other job too.
    """

    def __init__(self, final_dir: str | os.PathLike[str], uid: str, location: str | None = None) -> None:
        self.final_dir = Path(final_dir)
        self.staging = self.final_dir / STAGING / uid
        self.location = location or str(self.final_dir)

    async def get(self, name: str) -> bytes | None:
        return await _blocking(self._get, name)

    def _get(self, name: str) -> bytes | None:
        try:
            return (self.staging / name).read_bytes()
        except FileNotFoundError:
            return None

    async def put(self, name: str, data: bytes) -> None:
        await _blocking(self._put, name, data)

    def _put(self, name: str, data: bytes) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.staging / name, data)

    async def commit(self, outputs: Mapping[str, bytes]) -> list[str]:
        names = await _blocking(self._commit, outputs)
        return [f"{self.location.rstrip('/')}/{n}" for n in names]

    def _commit(self, outputs: Mapping[str, bytes]) -> list[str]:
        manifest = self.staging / MANIFEST
        names = sorted(outputs)
        if not manifest.exists():
            out_dir = self.staging / "out"
            out_dir.mkdir(parents=True, exist_ok=True)
            for name in names:
                _atomic_write(out_dir / name, outputs[name])
            _atomic_write(manifest, json.dumps({"files": names}).encode())
        else:
            names = json.loads(manifest.read_text())["files"]
        self.final_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            staged = self.staging / "out" / name
            if staged.exists():  # else: moved before a restart
                os.replace(staged, self.final_dir / name)
        _fsync_dir(self.final_dir)
        return names

    async def finalize(self) -> None:
        await _blocking(self._finalize)

    def _finalize(self) -> None:
        if self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)
            _rmdir_if_empty(self.staging.parent)

    async def discard(self) -> None:
        await _blocking(self._discard)

    def _discard(self) -> None:
        manifest = self.staging / MANIFEST
        if manifest.exists():
            for name in json.loads(manifest.read_text())["files"]:
                if not (self.staging / "out" / name).exists():
                    (self.final_dir / name).unlink(missing_ok=True)
        self._finalize()


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a file-system call in a worker thread. A cancelled caller still waits for the call to
    end (a thread cannot be interrupted), so nothing is written after the job's cleanup ran."""
    fut = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        await asyncio.wait({fut})
        raise


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


class S3Store:
    """An S3 prefix. ``client`` is a boto3 S3 client (the seam; calls run in a thread)."""

    def __init__(self, client: Any, bucket: str, prefix: str, uid: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.staging = f"{self.prefix}/{STAGING}/{uid}/"
        self.location = f"s3://{bucket}/{self.prefix}/"

    async def _call(self, fn: str, **kwargs: Any) -> Any:
        return await _blocking(functools.partial(getattr(self.client, fn), Bucket=self.bucket, **kwargs))

    async def _exists(self, key: str) -> bool:
        try:
            await self._call("head_object", Key=key)
            return True
        except Exception as e:  # botocore ClientError 404; anything else propagates on the next call
            if _is_not_found(e):
                return False
            raise

    async def get(self, name: str) -> bytes | None:
        try:
            resp = await self._call("get_object", Key=self.staging + name)
        except Exception as e:
            if _is_not_found(e):
                return None
            raise
        return await _blocking(resp["Body"].read)

    async def put(self, name: str, data: bytes) -> None:
        await self._call("put_object", Key=self.staging + name, Body=data)

    async def commit(self, outputs: Mapping[str, bytes]) -> list[str]:
        names = sorted(outputs)
        manifest = await self.get(MANIFEST)
        if manifest is None:
            for name in names:
                await self.put(f"out/{name}", outputs[name])
            await self.put(MANIFEST, json.dumps({"files": names}).encode())
        else:
            names = json.loads(manifest)["files"]
        for name in names:
            staged = f"{self.staging}out/{name}"
            if await self._exists(staged):
                await self._call(
                    "copy_object", Key=f"{self.prefix}/{name}", CopySource={"Bucket": self.bucket, "Key": staged}
                )
                await self._call("delete_object", Key=staged)
        return [f"s3://{self.bucket}/{self.prefix}/{n}" for n in names]

    async def finalize(self) -> None:
        resp = await self._call("list_objects_v2", Prefix=self.staging)
        for obj in resp.get("Contents", []) or []:
            await self._call("delete_object", Key=obj["Key"])

    async def discard(self) -> None:
        manifest = await self.get(MANIFEST)
        if manifest is not None:
            for name in json.loads(manifest)["files"]:
                if not await self._exists(f"{self.staging}out/{name}"):
                    await self._call("delete_object", Key=f"{self.prefix}/{name}")
        await self.finalize()


def _is_not_found(e: Exception) -> bool:
    resp = getattr(e, "response", None)
    if isinstance(resp, dict):
        code = str(resp.get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")
    return False
