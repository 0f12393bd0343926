"""Reconciliation (§5.6) against the fake API server (no real cluster runs here).

The fake serves any registered group; it ignores label selectors, which also proves the
reconciler's own label check keeps users' EnvoyFilters safe.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from aeraki.control.envoyfilter import render_envoyfilters
from aeraki.control.envoyfilter.cli import add_commands
from aeraki.control.envoyfilter.mesh import E2E_MESH
from aeraki.control.envoyfilter.reconcile import reconcile
from aeraki.control.sources.kubeclient import ClusterConfig, KubeClient
from tests.control.envoyfilter.helpers import DATA, load
from tests.control.sources.fake_apiserver import FakeApiServer

GROUP, VERSION = "networking.istio.io", "v1alpha3"
API = f"{GROUP}/{VERSION}"


@pytest.fixture
async def apiserver() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    server.register(GROUP, VERSION, "EnvoyFilter", "envoyfilters")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def kube(apiserver: FakeApiServer) -> AsyncIterator[KubeClient]:
    client = KubeClient(ClusterConfig(server=apiserver.url), request_timeout=5.0)
    yield client
    await client.close()


def desired() -> list[dict[str, Any]]:
    config = load("metaprotocol/base")
    return render_envoyfilters(config, E2E_MESH, allocate_vips=True).envoyfilters


def ef(namespace: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "EnvoyFilter",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"configPatches": []},
    }


def writes(server: FakeApiServer, since: int = 0) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ in server.requests[since:] if m != "GET"]


def seed(server: FakeApiServer, wanted: list[dict[str, Any]]) -> dict[str, Any]:
    """A stale Aeraki EF, a user's EF, one desired EF out of date, one already right."""
    server.create(
        ef("istio-system", "aeraki-outbound-gone.example-10.0.0.1-20880", {"manager": "Aeraki"})
    )
    server.create(ef("istio-system", "user-filter", {"team": "a"}))
    changed = copy.deepcopy(wanted[0])
    changed["spec"]["configPatches"][0]["patch"]["operation"] = "MERGE"
    changed["metadata"]["labels"]["team"] = "mesh"
    changed["metadata"]["annotations"] = {"note": "keep"}
    server.create(changed)
    server.create(copy.deepcopy(wanted[1]))
    return changed


async def test_apply_then_idempotent(apiserver: FakeApiServer, kube: KubeClient) -> None:
    wanted = desired()
    assert len(wanted) == 4
    seed(apiserver, wanted)
    result = await reconcile(kube, wanted)
    assert result.deleted == ["istio-system/aeraki-outbound-gone.example-10.0.0.1-20880"]
    assert result.updated == [f"istio-system/{wanted[0]['metadata']['name']}"]
    assert result.unchanged == [f"istio-system/{wanted[1]['metadata']['name']}"]
    assert sorted(result.created) == sorted(
        f"istio-system/{o['metadata']['name']}" for o in wanted[2:]
    )
    assert result.errors == []
    # The user's EnvoyFilter is untouched; the stale one is gone.
    user = apiserver.get(API, "EnvoyFilter", "istio-system", "user-filter")
    assert user is not None
    assert user["metadata"]["resourceVersion"] == "102"
    assert (
        apiserver.get(
            API, "EnvoyFilter", "istio-system", "aeraki-outbound-gone.example-10.0.0.1-20880"
        )
        is None
    )
    for obj in wanted:
        stored = apiserver.get(API, "EnvoyFilter", "istio-system", obj["metadata"]["name"])
        assert stored is not None
        assert stored["spec"] == obj["spec"]
        assert stored["metadata"]["labels"]["manager"] == "Aeraki"
    updated = apiserver.get(API, "EnvoyFilter", "istio-system", wanted[0]["metadata"]["name"])
    assert updated is not None
    assert updated["metadata"]["labels"] == {"manager": "Aeraki", "team": "mesh"}
    assert updated["metadata"]["annotations"] == {"note": "keep"}
    assert all(
        q.get("fieldManager") == "Aeraki" for m, _, q in apiserver.requests if m in ("PUT", "POST")
    )
    # Second pass: nothing to do, no writes at all.
    mark = len(apiserver.requests)
    again = await reconcile(kube, desired())
    assert again.writes == 0
    assert len(again.unchanged) == 4
    assert writes(apiserver, mark) == []


async def test_failed_call_reported_others_done(apiserver: FakeApiServer, kube: KubeClient) -> None:
    wanted = desired()
    apiserver.fail_next(500, path_contains="/namespaces/istio-system/envoyfilters")
    result = await reconcile(kube, wanted)
    assert len(result.errors) == 1
    assert "create istio-system/" in result.errors[0]
    assert len(result.created) == 3
    retry = await reconcile(kube, wanted)
    assert len(retry.created) == 1
    assert retry.errors == []


async def test_conflict_and_vanished(apiserver: FakeApiServer, kube: KubeClient) -> None:
    """A concurrent writer between list and update gets a 409 reported, not overwritten; a
    stale EF deleted by someone else in between is not an error."""
    wanted = desired()
    seed(apiserver, wanted)
    target = wanted[0]["metadata"]["name"]

    def race(method: str, path: str, query: dict[str, str]) -> None:
        if method == "DELETE":
            apiserver.before_request = None
            apiserver.delete(API, "EnvoyFilter", "istio-system", path.rsplit("/", 1)[1])
            current = apiserver.get(API, "EnvoyFilter", "istio-system", target)
            assert current is not None
            apiserver.update(copy.deepcopy(current))

    apiserver.before_request = race
    result = await reconcile(kube, wanted)
    assert result.deleted == ["istio-system/aeraki-outbound-gone.example-10.0.0.1-20880"]
    assert len(result.errors) == 1
    assert "409" in result.errors[0]
    assert target in result.errors[0]


async def test_rejects_unlabelled(kube: KubeClient) -> None:
    with pytest.raises(ValueError, match="lacks label"):
        await reconcile(kube, [ef("istio-system", "x")])


async def test_cli_apply(apiserver: FakeApiServer, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "t",
                "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [{"name": "c", "cluster": {"server": apiserver.url}}],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
            }
        )
    )
    apiserver.create(ef("istio-system", "aeraki-inbound-stale-1", {"manager": "Aeraki"}))
    parser = argparse.ArgumentParser()
    handlers = add_commands(parser.add_subparsers(dest="command"))
    argv = [
        "envoyfilter",
        str(DATA / "metaprotocol/base"),
        "--allocate-vips",
        "--apply",
        "--kubeconfig",
        str(kubeconfig),
    ]
    args = parser.parse_args(argv)
    # The CLI runs its own event loop: run it in a thread so this loop keeps serving the fake.
    assert await asyncio.to_thread(handlers["envoyfilter"], args) == 0
    assert apiserver.get(API, "EnvoyFilter", "istio-system", "aeraki-inbound-stale-1") is None
    mark = len(apiserver.requests)
    assert await asyncio.to_thread(handlers["envoyfilter"], args) == 0
    assert writes(apiserver, mark) == []
    bad = parser.parse_args(
        ["envoyfilter", str(DATA / "bad"), "--apply", "--kubeconfig", str(kubeconfig)]
    )
    mark = len(apiserver.requests)
    assert await asyncio.to_thread(handlers["envoyfilter"], bad) == 1
    assert apiserver.requests[mark:] == []  # refused before any call
