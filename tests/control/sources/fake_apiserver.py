"""A faithful-enough fake Kubernetes API server (aiohttp, 127.0.0.1 only) for source tests.

No kube-apiserver can run here, so list/watch, 410 and Lease paths are tested against this. It
reproduces what clients depend on:
- a global ``resourceVersion`` bumped by every write; ``uid``, ``creationTimestamp`` and
  ``generation`` (bumped when ``spec`` changes) set by the server;
- list with ``limit``/``continue`` served from a snapshot taken at the first page (etcd MVCC),
  ``remainingItemCount``; core-group list items without ``kind``/``apiVersion``, as the real one;
- watch: chunked JSON lines ``ADDED``/``MODIFIED``/``DELETED``/``BOOKMARK``/``ERROR``; no
  ``resourceVersion`` (or ``"0"``) = synthetic ADDED of current objects first, else a replay of
  the log after it; ``timeoutSeconds``; bookmarks only with ``allowWatchBookmarks=true``
  (every ``bookmark_interval``, or on ``send_bookmarks()``);
- a compaction window (``compaction_window`` events, or ``compact()``): a watch from an older
  version gets an ``ERROR`` event with a 410 ``Expired`` Status (as the real server does), or
  HTTP 410 with ``gone_as="status"``; an expired ``continue`` token gets HTTP 410;
- GET/POST/PUT/DELETE of one object with ``Status`` errors: 404 NotFound, 409 AlreadyExists,
  409 Conflict on PUT with a stale ``metadata.resourceVersion`` (what leader election needs).
Hooks: create/update/delete/get, compact, drop_watches (cut mid-stream), send_bookmarks,
fail_next/clear_failures, before_request; ``requests`` and ``auth_headers`` record traffic.

NOT implemented (it is a fake): authentication/authorization (the header is only recorded),
label/field selectors, ``resourceVersionMatch`` and lists at a given version, PATCH and
server-side apply, subresources (``/status``), admission, schema validation and defaulting,
finalizers and graceful deletion, discovery (``/apis``), protobuf/table output, watch-list
(``sendInitialEvents``), HTTP/2, several versions of one group as distinct storage.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

JsonDict = dict[str, Any]
_DROP: JsonDict = {"type": "__drop__"}
_MAX_WATCH_SECONDS = 1800


@dataclass(frozen=True, slots=True)
class _Kind:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(slots=True, eq=False)
class _Watcher:
    kind: _Kind
    namespace: str | None
    bookmarks: bool
    queue: asyncio.Queue[JsonDict] = field(default_factory=asyncio.Queue)


def _status(code: int, reason: str, message: str) -> JsonDict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _probe(api_version: str, kind: str, namespace: str, name: str) -> JsonDict:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"namespace": namespace, "name": name},
    }


def _error(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(_status(code, reason, message), status=code)


class FakeApiServer:
    def __init__(
        self,
        *,
        compaction_window: int = 1000,
        bookmark_interval: float | None = None,
        gone_as: str = "event",
    ) -> None:
        self.compaction_window = compaction_window
        self.bookmark_interval = bookmark_interval
        self.gone_as = gone_as
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.auth_headers: list[str] = []
        self._kinds: dict[tuple[str, str], _Kind] = {}  # (group, plural)
        self._objects: dict[_Kind, dict[tuple[str, str], JsonDict]] = {}
        self._rv = 100  # real servers start far from 0; clients must not assume small numbers
        self._log: list[tuple[int, _Kind, str, JsonDict]] = []
        self._oldest_rv = self._rv  # a watch may start from this version or later
        self._watchers: set[_Watcher] = set()
        self._snapshots: dict[str, tuple[int, list[JsonDict]]] = {}
        self._failures: list[tuple[int, str]] = []  # (status, path substring)
        # Called with (method, path, query) before a request is served: lets a test change the
        # world at an exact point of a client's protocol (e.g. between two list pages).
        self.before_request: Callable[[str, str, dict[str, str]], None] | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.register("coordination.k8s.io", "v1", "Lease", "leases")

    def register(
        self, group: str, version: str, kind: str, plural: str, namespaced: bool = True
    ) -> None:
        k = _Kind(group, version, kind, plural, namespaced)
        self._kinds[(group, plural)] = k
        self._objects.setdefault(k, {})

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        """Listen on 127.0.0.1, a free port; HTTPS when given a context (to test client TLS)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        server: Any = site._server  # aiohttp exposes no public way to read the bound port
        port = server.sockets[0].getsockname()[1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def watch_count(self) -> int:
        return len(self._watchers)

    def create(self, obj: JsonDict) -> JsonDict:
        kind, ns, name = self._locate(obj)
        if (ns, name) in self._objects[kind]:
            raise KeyError(f"{kind.kind} {ns}/{name} exists")
        return self._write(kind, "ADDED", obj)

    def update(self, obj: JsonDict) -> JsonDict:
        kind, ns, name = self._locate(obj)
        if (ns, name) not in self._objects[kind]:
            raise KeyError(f"{kind.kind} {ns}/{name} not found")
        return self._write(kind, "MODIFIED", obj)

    def delete(self, api_version: str, kind_name: str, namespace: str, name: str) -> JsonDict:
        kind, ns, name = self._locate(_probe(api_version, kind_name, namespace, name))
        return self._write(kind, "DELETED", self._objects[kind][(ns, name)])

    def get(self, api_version: str, kind_name: str, namespace: str, name: str) -> JsonDict | None:
        kind, ns, name = self._locate(_probe(api_version, kind_name, namespace, name))
        return self._objects[kind].get((ns, name))

    def compact(self) -> None:
        """Forget all history: every older watch version or continue token now gets 410."""
        self._log.clear()
        self._oldest_rv = self._rv

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream (no terminating chunk)."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(_DROP)

    def send_bookmarks(self) -> None:
        for watcher in self._watchers:
            if watcher.bookmarks:
                watcher.queue.put_nowait(self._bookmark(watcher.kind))

    def fail_next(self, status: int, count: int = 1, path_contains: str = "") -> None:
        """The next ``count`` requests whose path contains ``path_contains`` get ``status``."""
        self._failures.extend([(status, path_contains)] * count)

    def clear_failures(self) -> None:
        self._failures.clear()

    def _locate(self, obj: JsonDict) -> tuple[_Kind, str, str]:
        group, _, _version = str(obj["apiVersion"]).rpartition("/")
        matches = [k for k in self._kinds.values() if k.group == group and k.kind == obj["kind"]]
        if not matches:
            raise KeyError(f"kind {obj['kind']} of {group!r} not registered")
        kind = matches[0]
        meta = obj["metadata"]
        return kind, meta.get("namespace", "") if kind.namespaced else "", meta["name"]

    def _write(self, kind: _Kind, event_type: str, obj: JsonDict) -> JsonDict:
        self._rv += 1
        obj = json.loads(json.dumps(obj))  # deep copy: callers keep their dict
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        meta = obj.setdefault("metadata", {})
        key = (meta.get("namespace", "") if kind.namespaced else "", meta["name"])
        old = self._objects[kind].get(key)
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            meta["generation"] = 1
        else:
            for field_name in ("uid", "creationTimestamp"):
                meta[field_name] = old["metadata"][field_name]
            changed = obj.get("spec") != old.get("spec")
            meta["generation"] = old["metadata"]["generation"] + (1 if changed else 0)
        meta["resourceVersion"] = str(self._rv)
        if event_type == "DELETED":
            self._objects[kind].pop(key, None)
        else:
            self._objects[kind][key] = obj
        self._log.append((self._rv, kind, event_type, obj))
        if len(self._log) > self.compaction_window:
            dropped = self._log[: len(self._log) - self.compaction_window]
            del self._log[: len(dropped)]
            self._oldest_rv = dropped[-1][0]
        for watcher in self._watchers:
            if watcher.kind == kind and watcher.namespace in (None, key[0]):
                watcher.queue.put_nowait({"type": event_type, "object": obj})
        return obj

    def _bookmark(self, kind: _Kind) -> JsonDict:
        meta = {"resourceVersion": str(self._rv)}
        return {
            "type": "BOOKMARK",
            "object": {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": meta},
        }

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append((request.method, request.path, query))
        self.auth_headers.append(request.headers.get("Authorization", ""))
        if self.before_request is not None:
            self.before_request(request.method, request.path, query)
        for i, (status, needle) in enumerate(self._failures):
            if needle in request.path:
                del self._failures[i]
                return _error(status, "InternalError" if status >= 500 else "Failure", "injected")
        parts = [p for p in request.path.split("/") if p]
        if len(parts) < 3 or parts[0] not in ("api", "apis"):
            return _error(404, "NotFound", f"no route {request.path}")
        group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
        ns: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest or (group, rest[0]) not in self._kinds:
            return _error(404, "NotFound", f"the server could not find {request.path}")
        kind = self._kinds[(group, rest[0])]
        name = rest[1] if len(rest) > 1 else None
        if name is None and request.method == "GET":
            if query.get("watch", "").lower() in ("true", "1"):
                return await self._watch(request, kind, ns, query)
            return self._list(kind, ns, query)
        return await self._single(request, kind, ns or "", name)

    def _list(self, kind: _Kind, ns: str | None, query: dict[str, str]) -> web.Response:
        token = query.get("continue")
        state: JsonDict
        items: list[JsonDict]
        if token:
            try:
                state = json.loads(base64.b64decode(token))
                rv, items = self._snapshots[state["id"]]
                offset = int(state["offset"])
            except (ValueError, KeyError):
                return _error(400, "BadRequest", "invalid continue token")
            if rv < self._oldest_rv:
                return _error(410, "Expired", "The provided continue parameter is too old")
        else:
            rv, offset = self._rv, 0
            selected = sorted(
                (k, o) for k, o in self._objects[kind].items() if ns is None or k[0] == ns
            )
            items = [o for _, o in selected]
            if not kind.group:  # the core API omits kind/apiVersion on list items
                items = [
                    {k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items
                ]
            state = {"id": uuid.uuid4().hex}
            self._snapshots[state["id"]] = (rv, items)
        limit = int(query.get("limit", "0") or 0)
        end = len(items) if limit <= 0 else min(len(items), offset + limit)
        meta: JsonDict = {"resourceVersion": str(rv)}
        if end < len(items):
            state["offset"] = end
            meta["continue"] = base64.b64encode(json.dumps(state).encode()).decode()
            meta["remainingItemCount"] = len(items) - end
        body: JsonDict = {"kind": f"{kind.kind}List", "apiVersion": kind.api_version}
        body["metadata"] = meta
        body["items"] = items[offset:end]
        return web.json_response(body)

    async def _watch(
        self, request: web.Request, kind: _Kind, ns: str | None, query: dict[str, str]
    ) -> web.StreamResponse:
        since = query.get("resourceVersion", "")
        timeout = min(float(query.get("timeoutSeconds", _MAX_WATCH_SECONDS)), _MAX_WATCH_SECONDS)
        gone = since not in ("", "0") and int(since) < self._oldest_rv
        if gone and self.gone_as == "status":
            return _error(410, "Expired", f"too old resource version: {since} ({self._oldest_rv})")
        watcher = _Watcher(kind, ns, query.get("allowWatchBookmarks", "") in ("true", "1"))
        if gone:
            message = f"too old resource version: {since} ({self._oldest_rv})"
            watcher.queue.put_nowait({"type": "ERROR", "object": _status(410, "Expired", message)})
            watcher.queue.put_nowait({"type": "__close__"})
        elif since in ("", "0"):
            for (obj_ns, _), obj in sorted(self._objects[kind].items()):
                if ns is None or obj_ns == ns:
                    watcher.queue.put_nowait({"type": "ADDED", "object": obj})
        else:
            for rv, k, event_type, obj in self._log:
                obj_ns = obj["metadata"].get("namespace", "")
                if rv > int(since) and k == kind and (ns is None or obj_ns == ns):
                    watcher.queue.put_nowait({"type": event_type, "object": obj})
        self._watchers.add(watcher)  # no await since the replay: no event can slip between
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(request)
            await self._pump(request, response, watcher, timeout)
        finally:
            self._watchers.discard(watcher)
        return response

    async def _pump(
        self, request: web.Request, response: web.StreamResponse, watcher: _Watcher, seconds: float
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:  # ends on timeout, drop or close
            wait = deadline - loop.time()
            if wait <= 0:
                return
            if watcher.bookmarks and self.bookmark_interval is not None:
                wait = min(wait, self.bookmark_interval)
            try:
                event = await asyncio.wait_for(watcher.queue.get(), wait)
            except TimeoutError:
                if loop.time() >= deadline:
                    return
                event = self._bookmark(watcher.kind)
            if event is _DROP:
                if request.transport is not None:
                    request.transport.abort()
                return
            if event["type"] == "__close__":
                return
            with contextlib.suppress(ConnectionError):
                await response.write(json.dumps(event).encode() + b"\n")

    async def _single(
        self, request: web.Request, kind: _Kind, ns: str, name: str | None
    ) -> web.Response:
        objects = self._objects[kind]
        if request.method == "POST" and name is None:
            body = await request.json()
            body.setdefault("metadata", {})["namespace"] = ns
            if (ns, body["metadata"].get("name")) in objects:
                return _error(
                    409,
                    "AlreadyExists",
                    f'{kind.plural} "{body["metadata"]["name"]}" already exists',
                )
            return web.json_response(self._write(kind, "ADDED", body), status=201)
        if name is None:
            return _error(405, "MethodNotAllowed", f"{request.method} on a collection")
        current = objects.get((ns, name))
        if current is None:
            return _error(404, "NotFound", f'{kind.plural} "{name}" not found')
        if request.method == "GET":
            return web.json_response(current)
        if request.method == "DELETE":
            return web.json_response(self._write(kind, "DELETED", current))
        if request.method == "PUT":
            body = await request.json()
            wanted = body.get("metadata", {}).get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                message = (
                    f'Operation cannot be fulfilled on {kind.plural} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try again"
                )
                return _error(409, "Conflict", message)
            body["metadata"]["namespace"], body["metadata"]["name"] = ns, name
            return web.json_response(self._write(kind, "MODIFIED", body))
        return _error(405, "MethodNotAllowed", request.method)
