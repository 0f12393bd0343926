"""A fake cluster for control-plane end-to-end tests, built on :mod:`fake_apiserver`.

:class:`FakeCluster` is the fake API server with every kind the Kubernetes source watches
registered, a kubeconfig file pointing at it (what ``aeraki control --kubernetes --kubeconfig``
reads), object writes that create-or-update, and queries over the server's request log: which
lists and watches a client made since a mark, from which ``resourceVersion``. It is a fake: see
``fake_apiserver.py`` for what is (not) reproduced. No real Kubernetes is involved.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aeraki.control.sources.api import DEFAULT_KINDS, WatchedKind
from tests.control.sources.fake_apiserver import FakeApiServer

__all__ = ["FakeCluster", "Request", "control_argv", "kubeconfig_text"]

JsonDict = dict[str, Any]
TOKEN = "fake-cluster-token"  # recorded by the fake, never checked (it has no authn)


def kubeconfig_text(server: str, token: str = TOKEN, namespace: str = "default") -> str:
    """A one-cluster, one-user, one-context kubeconfig for ``server``."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "aeraki", "user": {"token": token}}],
        "contexts": [
            {
                "name": "fake",
                "context": {"cluster": "fake", "user": "aeraki", "namespace": namespace},
            }
        ],
        "current-context": "fake",
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass(frozen=True, slots=True)
class Request:
    """One request in the fake's log, classified."""

    method: str
    path: str
    query: dict[str, str]

    @property
    def is_watch(self) -> bool:
        return self.method == "GET" and self.query.get("watch", "").lower() in ("true", "1")

    @property
    def is_list(self) -> bool:
        return (
            self.method == "GET"
            and not self.is_watch
            and self.path.rsplit("/", 1)[-1] in {k.plural for k in DEFAULT_KINDS}
        )

    @property
    def plural(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class FakeCluster:
    """The fake API server with Aeraki's watched kinds, plus a kubeconfig for it."""

    def __init__(self, kinds: tuple[WatchedKind, ...] = DEFAULT_KINDS) -> None:
        self.kinds = kinds
        self.server = FakeApiServer()
        for k in kinds:
            self.server.register(k.group, k.version, k.kind, k.plural, k.namespaced)
        self.kubeconfig: Path | None = None
        self._bumps = 0

    async def start(self, directory: Path) -> Path:
        """Listen on 127.0.0.1 (a free port); write ``directory/kubeconfig``; return its path."""
        url = await self.server.start()
        self.kubeconfig = directory / "kubeconfig"
        self.kubeconfig.write_text(kubeconfig_text(url))
        return self.kubeconfig

    async def stop(self) -> None:
        await self.server.stop()

    # --- writes ---------------------------------------------------------------------------

    def apply(self, obj: JsonDict) -> JsonDict:
        """Create ``obj``, or replace it when it exists (``kubectl apply`` without merging)."""
        meta = obj["metadata"]
        existing = self.server.get(
            obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"]
        )
        return self.server.update(obj) if existing is not None else self.server.create(obj)

    def apply_yaml(self, text: str) -> list[JsonDict]:
        """Apply every document of a multi-document YAML text."""
        return [self.apply(doc) for doc in yaml.safe_load_all(text) if doc]

    def delete(self, obj: JsonDict) -> JsonDict:
        meta = obj["metadata"]
        return self.server.delete(
            obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"]
        )

    def bump(self, writes: int = 1) -> int:
        """Write an object of a kind nobody here watches (a Lease), as the rest of a cluster
        does: the global ``resourceVersion`` moves, no watched kind sees an event. Returns the
        new ``resourceVersion``."""
        for _ in range(writes):
            self._bumps += 1
            self.apply(
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": "unrelated", "namespace": "kube-system"},
                    "spec": {"holderIdentity": f"someone-{self._bumps}"},
                }
            )
        return self.server.resource_version

    # --- the request log ------------------------------------------------------------------

    def mark(self) -> int:
        """A position in the request log, for :meth:`since`."""
        return len(self.server.requests)

    def since(self, mark: int = 0) -> list[Request]:
        return [Request(m, p, q) for m, p, q in self.server.requests[mark:]]

    def lists(self, mark: int = 0) -> list[Request]:
        return [r for r in self.since(mark) if r.is_list]

    def watches(self, mark: int = 0) -> list[Request]:
        return [r for r in self.since(mark) if r.is_watch]

    def watched_plurals(self, mark: int = 0) -> set[str]:
        return {r.plural for r in self.watches(mark)}

    @property
    def plurals(self) -> set[str]:
        return {k.plural for k in self.kinds}

    def end_watches(self) -> None:
        """End every open watch cleanly, as the real server does at ``timeoutSeconds``: what
        was queued before (e.g. bookmarks) is sent first, then the response completes. (The
        fake's ``drop_watches`` instead aborts the connection, which can lose queued events.)"""
        for watcher in list(self.server._watchers):  # the fake has no public hook for this
            watcher.queue.put_nowait({"type": "__close__"})


def control_argv(
    kubeconfig: Path | str, xds_port: int, *, quiet_ms: int, max_delay_ms: int, extra: list[str]
) -> list[str]:
    """The command line of an ``aeraki control --kubernetes`` process against this fake."""
    return [
        sys.executable,
        "-c",
        "import sys; from aeraki.cli import main; sys.exit(main())",
        "--log-level",
        "info",
        "control",
        "--kubernetes",
        "--kubeconfig",
        str(kubeconfig),
        "--xds-address",
        f"127.0.0.1:{xds_port}",
        "--quiet-ms",
        str(quiet_ms),
        "--max-delay-ms",
        str(max_delay_ms),
        *extra,
    ]
