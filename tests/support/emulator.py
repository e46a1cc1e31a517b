"""A Kubernetes API emulator for the operator tests: kmock 0.8's ``KubernetesEmulator`` with the gaps
listed in ``shared/notes/kubernetes-testing.md`` fixed for the resources registered here.

Fixed: uid/resourceVersion/generation/creationTimestamp assigned, 201 on create, ``resourceVersion``
and ``uid`` preconditions (409), ``/status`` isolated from the main resource (and vice versa),
generation bumped on spec changes only, merge and JSON patches (a failed ``test`` op answers 422),
PUT, label/field selectors, lists with ``kind``, watches that resume from ``resourceVersion`` and
honour ``timeoutSeconds``, finalizers and deletionTimestamp, the core group's discovery, and the
namespace list. Custom resources are defaulted and validated against the CRD schema (and our CEL
rules) like a real API server, answering 422 with the reasons; built-in kinds registered with
:func:`builtin_validator` (EndpointSlices) against Kubernetes' own schemas (kubernetes-validate). Every stored version is kept, so
tests assert on an object's whole status history.

It runs in a thread with its own event loop (:class:`EmulatorThread`) so that KopfRunner, kubectl
subprocesses and the test itself can all talk to it over HTTP.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import datetime as dt
import json
import re
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import kmock
from kmock._internal import k8s as kmock_k8s  # the scaffold's discovery handlers
from kmock._internal import rendering

# kmock parses /api/v1/namespaces[/NAME] as a namespace prefix (and crashes on the bare list).
_NAMESPACES = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+))?(?:/(?P<sub>status|finalize))?/?$")

Validator = Callable[[dict[str, Any], dict[str, Any] | None], list[str]]
Defaulter = Callable[[dict[str, Any]], Any]


def builtin_validator(k8s_version: str = "1.30") -> Validator:
    """Validate a built-in kind (e.g. ``discovery.k8s.io/v1`` EndpointSlice) against the published
    schema of that Kubernetes version, as the API server would."""
    import kubernetes_validate

    def validate(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
        body = copy.deepcopy(obj)
        meta = body.get("metadata") or {}
        for k in ("uid", "resourceVersion", "generation", "creationTimestamp"):
            meta.pop(k, None)
        try:
            kubernetes_validate.validate(body, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            return [f"{'.'.join(str(p) for p in e.path) or '<root>'}: {e.message}"]
        return []

    return validate


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@dataclass
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False
    validate: Validator | None = None
    defaults: Defaulter | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass
class Change:
    rv: int
    kind: Kind
    type: str
    obj: dict[str, Any]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")] if path else []


def json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent: Any = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1] if parts else ""
        kind = op["op"]
        if kind == "test":
            try:
                current = parent[int(last)] if isinstance(parent, list) else parent[last]
            except (KeyError, IndexError, ValueError):
                current = object()
            if current != op.get("value"):
                raise ApiError(422, "Invalid", f"the test operation on {op['path']} failed")
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                idx = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(idx, op["value"])
                else:
                    parent[idx] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            try:
                if isinstance(parent, list):
                    parent.pop(int(last))
                else:
                    del parent[last]
            except (KeyError, IndexError) as e:
                raise ApiError(422, "Invalid", f"cannot remove {op['path']}: absent") from e
        else:
            raise ApiError(422, "Invalid", f"unsupported JSON patch op {kind!r}")
    return doc


def _labels_match(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in selector.split(","):
        term = term.strip()
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _fields_match(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        k, _, v = term.partition("=")
        node: Any = obj
        for p in k.strip().split("."):
            node = node.get(p) if isinstance(node, dict) else None
        if str(node) != v.strip().lstrip("="):
            return False
    return True


@dataclass
class _State:
    objects: dict[tuple[str, str, str | None, str], dict[str, Any]] = field(default_factory=dict)
    history: dict[tuple[str, str, str | None, str], list[dict[str, Any]]] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    rv: int = 0


class Emulator(kmock.KubernetesEmulator):
    """Register kinds with :meth:`add_kind`; everything else falls back to kmock's scaffold."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: dict[tuple[str, str, str], Kind] = {}
        self.state = _State()
        # Set (and replaced) on every change; watchers wait on the one they saw before reading.
        self._changed = asyncio.Event()
        self.request_log: list[tuple[str, str]] = []
        self.forbidden: set[str] = set()  # plurals answered 403, as without an RBAC rule for them

    # -- registration ------------------------------------------------------------------------------
    def add_kind(
        self,
        kind: Kind,
        *,
        verbs: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch"),
        shortnames: tuple[str, ...] = (),
        subresources: tuple[str, ...] = (),
    ) -> None:
        self.kinds[(kind.group, kind.version, kind.plural)] = kind
        self.resources[kmock.resource(kind.group, kind.version, kind.plural)] = kmock.ResourceInfo(
            kind=kind.kind,
            singular=kind.kind.lower(),
            namespaced=kind.namespaced,
            verbs=set(verbs),
            shortnames=set(shortnames),
            subresources=set(subresources) | ({"status"} if kind.status_subresource else set()),
        )

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        m = _NAMESPACES.match(raw_request.path)
        if m is None or ("", "v1", "namespaces") not in self.kinds:
            return await super().__call__(raw_request)
        body = await raw_request.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        request = rendering.Request(
            method=raw_request.method,
            url=raw_request.url,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            data=data,
            body=body,
            text=body.decode(errors="replace"),
            resource=kmock.resource("", "v1", "namespaces"),
            namespace=None,
            name=m.group("name"),
            subresource=m.group("sub"),
            raw_request=raw_request,
        )
        return await self._handle(request)

    # -- discovery fix: the core group is "v1", not "/v1" ------------------------------------------
    async def _serve_version(self, request: Any) -> Any:
        payload = await super()._serve_version(request)
        if request.resource is not None and request.resource.group == "":
            payload["groupVersion"] = request.resource.version
        return payload

    # -- request handling --------------------------------------------------------------------------
    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        res = request.resource
        kind = self.kinds.get((res.group, res.version, res.plural)) if res is not None and res.plural else None
        if kind is None:
            # Discovery and anything unregistered: kmock's stateless scaffold (no object tracking).
            return await kmock_k8s.KubernetesScaffold._handle(self, request)
        self.request_log.append(
            (request.method.value if hasattr(request.method, "value") else str(request.method), str(request.url.path))
        )
        try:
            if kind.plural in self.forbidden:
                raise ApiError(
                    403,
                    "Forbidden",
                    f"{kind.plural}.{kind.group or 'core'} is forbidden: the service account has no rule for it",
                )
            return await self._dispatch(kind, request)
        except ApiError as e:
            return aiohttp.web.json_response(
                {
                    "apiVersion": "v1",
                    "kind": "Status",
                    "metadata": {},
                    "status": "Failure",
                    "code": e.code,
                    "reason": e.reason,
                    "message": e.message,
                },
                status=e.code,
            )

    async def _dispatch(self, kind: Kind, request: Any) -> aiohttp.web.StreamResponse:
        method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
        ns = request.namespace if kind.namespaced else None
        name = request.name
        sub = request.subresource
        params = request.params
        if method == "GET" and name is None:
            if params.get("watch") in ("true", "1"):
                return await self._watch(kind, ns, request)
            return aiohttp.web.json_response(self._list(kind, ns, params))
        if method == "GET":
            obj = self.state.objects.get(self._key(kind, ns, name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{kind.plural} "{name}" not found')
            return aiohttp.web.json_response(obj)
        if method == "POST" and name is None:
            obj = await self._create(kind, ns, request.data)
            return aiohttp.web.json_response(obj, status=201)
        if method == "PATCH" and name:
            ctype = request.headers.get("Content-Type", "application/merge-patch+json").split(";")[0]
            obj = await self._patch(kind, ns, name, sub, request.data, ctype)
            return aiohttp.web.json_response(obj)
        if method == "PUT" and name:
            obj = await self._put(kind, ns, name, sub, request.data)
            return aiohttp.web.json_response(obj)
        if method == "DELETE" and name:
            obj = await self._delete(kind, ns, name, request.data if isinstance(request.data, dict) else {})
            return aiohttp.web.json_response(obj)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    # -- store -------------------------------------------------------------------------------------
    def _key(self, kind: Kind, ns: str | None, name: str) -> tuple[str, str, str | None, str]:
        return (kind.group, kind.plural, ns, name)

    def _get(self, kind: Kind, ns: str | None, name: str) -> dict[str, Any]:
        obj = self.state.objects.get(self._key(kind, ns, name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{kind.plural} "{name}" not found')
        return copy.deepcopy(obj)

    def _list(self, kind: Kind, ns: str | None, params: dict[str, str]) -> dict[str, Any]:
        items = [  # serialised as they are (json_response copies nothing and changes nothing)
            o
            for (g, p, n, _), o in sorted(
                self.state.objects.items(), key=lambda kv: kv[0][2:] if kv[0][2] else ("", kv[0][3])
            )
            if g == kind.group
            and p == kind.plural
            and (ns is None or n == ns)
            and _labels_match(o, params.get("labelSelector"))
            and _fields_match(o, params.get("fieldSelector"))
        ]
        return {
            "apiVersion": kind.api_version,
            "kind": f"{kind.kind}List",
            "metadata": {"resourceVersion": str(self.state.rv)},
            "items": items,
        }

    async def _record(self, kind: Kind, type_: str, obj: dict[str, Any]) -> None:
        # Synchronous from the store to the notification (no await): a write is seen whole, and the
        # change log stays in resourceVersion order, which watchers rely on to resume. (Notifying
        # through a Condition awaited its lock, which a watcher holds across a loop turn while it
        # re-arms; a write waiting there let others get ahead of its change, and a watcher already
        # past that resourceVersion never sent it: kubectl delete then waited for a DELETED event
        # that never came.)
        key = self._key(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        rv = int(obj["metadata"]["resourceVersion"])
        if self.state.changes and self.state.changes[-1].rv >= rv:
            raise AssertionError(f"change log out of order: {rv} after {self.state.changes[-1].rv}")
        if type_ == "DELETED":
            self.state.objects.pop(key, None)
        else:
            self.state.objects[key] = obj
        self.state.history.setdefault(key, []).append(copy.deepcopy(obj) | {"_event": type_})
        self.state.changes.append(Change(rv, kind, type_, copy.deepcopy(obj)))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _bump(self, obj: dict[str, Any]) -> None:
        self.state.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.state.rv)

    def _admit(self, kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if kind.defaults is not None:
            kind.defaults(obj)
        if kind.validate is not None:
            errors = kind.validate(obj, old)
            if errors:
                name = obj.get("metadata", {}).get("name")
                raise ApiError(422, "Invalid", f'{kind.kind}.{kind.group} "{name}" is invalid: ' + "; ".join(errors))

    async def _create(self, kind: Kind, ns: str | None, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ApiError(400, "BadRequest", "the body must be a JSON object")
        obj = copy.deepcopy(data)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            else:
                raise ApiError(422, "Invalid", "metadata.name: Required value")
        if kind.namespaced:
            meta["namespace"] = ns or meta.get("namespace") or "default"
        if self._key(kind, meta.get("namespace"), meta["name"]) in self.state.objects:
            raise ApiError(409, "AlreadyExists", f'{kind.plural} "{meta["name"]}" already exists')
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        if kind.status_subresource:
            obj.pop("status", None)
        self._admit(kind, obj, None)
        meta.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=_now())
        self._bump(obj)
        await self._record(kind, "ADDED", obj)
        return copy.deepcopy(obj)

    def _precondition(self, current: dict[str, Any], wanted: dict[str, Any]) -> None:
        rv = (wanted.get("metadata") or {}).get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409, "Conflict", "the object has been modified; please apply your changes to the latest version"
            )

    async def _store_update(
        self, kind: Kind, current: dict[str, Any], new: dict[str, Any], sub: str | None
    ) -> dict[str, Any]:
        if kind.status_subresource:
            if sub == "status":
                new = copy.deepcopy(current) | {"status": new.get("status")}
                if new["status"] is None:
                    new.pop("status")
            else:
                new = copy.deepcopy(new)
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
        meta, old_meta = new.setdefault("metadata", {}), current["metadata"]
        for k in ("uid", "creationTimestamp", "namespace", "name", "generation", "deletionTimestamp"):
            if k in old_meta:
                meta[k] = old_meta[k]
        if old_meta.get("deletionTimestamp"):
            # Finalizers may only be removed once deletion started.
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise ApiError(422, "Forbidden", "no new finalizers can be added if the object is being deleted")
        if new.get("spec") != current.get("spec"):
            self._admit(kind, new, current)
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        self._bump(new)
        # Like the API server: an update that empties the finalizers of an object being deleted
        # deletes it, and watchers see one DELETED event (with its own resourceVersion).
        await self._record(
            kind, "DELETED" if meta.get("deletionTimestamp") and not meta.get("finalizers") else "MODIFIED", new
        )
        return copy.deepcopy(new)

    async def _patch(
        self, kind: Kind, ns: str | None, name: str, sub: str | None, data: Any, ctype: str
    ) -> dict[str, Any]:
        current = self._get(kind, ns, name)
        if ctype == "application/json-patch+json":
            if not isinstance(data, list):
                raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
            new = json_patch(current, data)
        elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json", "application/json"):
            if not isinstance(data, dict):
                raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
            self._precondition(current, data)
            new = merge_patch(current, data)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {ctype}")
        return await self._store_update(kind, current, new, sub)

    async def _put(self, kind: Kind, ns: str | None, name: str, sub: str | None, data: Any) -> dict[str, Any]:
        current = self._get(kind, ns, name)
        if not isinstance(data, dict):
            raise ApiError(400, "BadRequest", "the body must be a JSON object")
        self._precondition(current, data)
        return await self._store_update(kind, current, data, sub)

    async def _delete(self, kind: Kind, ns: str | None, name: str, options: dict[str, Any]) -> dict[str, Any]:
        current = self._get(kind, ns, name)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != current["metadata"]["uid"]:
            raise ApiError(409, "Conflict", "Precondition failed: UID in precondition does not match")
        if pre.get("resourceVersion") and pre["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "Precondition failed: resourceVersion does not match")
        if current["metadata"].get("finalizers"):
            if not current["metadata"].get("deletionTimestamp"):
                current["metadata"]["deletionTimestamp"] = _now()
                current["metadata"]["deletionGracePeriodSeconds"] = 0
                self._bump(current)
                await self._record(kind, "MODIFIED", current)
            return copy.deepcopy(current)
        self._bump(current)
        await self._record(kind, "DELETED", current)
        return copy.deepcopy(current)

    async def _watch(self, kind: Kind, ns: str | None, request: Any) -> aiohttp.web.StreamResponse:
        params = request.params
        raw = request._raw_request
        resp = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await resp.prepare(raw)
        since = params.get("resourceVersion")
        timeout = float(params.get("timeoutSeconds") or 1800)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout

        def wanted(obj: dict[str, Any]) -> bool:
            return (
                (ns is None or obj["metadata"].get("namespace") == ns)
                and _labels_match(obj, params.get("labelSelector"))
                and _fields_match(obj, params.get("fieldSelector"))
            )

        async def send(type_: str, obj: dict[str, Any]) -> None:
            await resp.write(json.dumps({"type": type_, "object": obj}).encode() + b"\n")

        # The cursor is the resourceVersion of the last change delivered, never "now": a send may
        # yield, and changes made meanwhile must still go out.
        if since in (None, "", "0"):
            snapshot = self._list(kind, ns, params)  # the items and their resourceVersion, taken together
            cursor = int(snapshot["metadata"]["resourceVersion"])
            for o in copy.deepcopy(snapshot["items"]):
                await send("ADDED", o)
        else:
            cursor = int(since)
        # A client that hangs up cancels this handler; nothing needs cleaning up.
        while True:
            changed = self._changed  # taken before reading: a change from here on sets it
            start = bisect.bisect_right(self.state.changes, cursor, key=lambda c: c.rv)
            for ch in self.state.changes[start:]:
                if ch.kind is kind and wanted(ch.obj):
                    await send(ch.type, ch.obj)
                cursor = ch.rv
            left = end - loop.time()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=left)
        await resp.write_eof()
        return resp

    # -- direct access (from the emulator's own loop) --------------------------------------------
    def history(self, kind: Kind, ns: str | None, name: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.state.history.get(self._key(kind, ns, name), []))

    async def put_object(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        return await self._create(kind, obj.get("metadata", {}).get("namespace"), obj)


class EmulatorThread:
    """Runs an :class:`Emulator` behind a real HTTP server on 127.0.0.1 in its own thread and loop."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="k8s-emulator", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.url = ""
        self.error: BaseException | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with self.emulator, kmock.Server(self.emulator) as server:
                self.url = str(server.url).rstrip("/")
                self._ready.set()
                await self._stop.wait()
        except BaseException as e:  # noqa: BLE001 - surfaced by start()
            self.error = e
            self._ready.set()

    def start(self) -> EmulatorThread:
        self._thread.start()
        self._ready.wait(30)
        if self.error is not None:
            raise RuntimeError("the emulator failed to start") from self.error
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (sync or returning a coroutine) on the emulator's loop and return its result."""

        async def run() -> Any:
            out = fn()
            return await out if asyncio.iscoroutine(out) else out

        fut: Future[Any] = asyncio.run_coroutine_threadsafe(run(), self.loop)
        return fut.result(30)

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
