# ruff: noqa: F811  (pytest fixtures imported from the Kubernetes e2e module are parameters here)
"""DestinationRule subsets of a Kubernetes Service select Pods by label, end to end.

Endpoints carry no labels: the control plane watches Pods too and labels each endpoint with the
labels of the Pod its address names (``targetRef``). Against the fake API server (no real
cluster runs here), with ``aeraki control --kubernetes`` as its own process, our proxy as its
ADS client, and two real thriftpy2 servers behind one Service: the Pod labelled ``version: v1``
gets the subset-v1 traffic, and relabelling the Pods moves it — a Pod edit is a push.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.control.sources.fake_cluster import FakeCluster
from tests.integration.peers.procs import LOOPBACK, free_ports
from tests.integration.test_control_kubernetes import (
    NAMESPACE,
    PORT_NAME,
    KubeMesh,
    mesh,  # noqa: F401  (the fixture)
    thrift_pair,  # noqa: F401  (a fixture ``mesh`` uses)
)

SERVICE = "thrift-pods"
HOST = f"{SERVICE}.{NAMESPACE}.svc.cluster.local"
JsonDict = dict[str, Any]


def pod(name: str, version: str) -> JsonDict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app": SERVICE, "version": version},
        },
        "spec": {"containers": [{"name": "thrift", "image": "thrift-echo"}]},
        "status": {"phase": "Running", "podIP": LOOPBACK},
    }


def seed(cluster: FakeCluster, port: int, endpoint_ports: tuple[int, int]) -> None:
    """A Service whose Endpoints name pod-a (first server) and pod-b (second), a
    DestinationRule with subsets by ``version``, and a MetaRouter to subset v1."""
    meta = {"name": SERVICE, "namespace": NAMESPACE}
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "clusterIP": "10.96.0.43",
                "selector": {"app": SERVICE},
                "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
            },
        }
    )
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": meta,
            "subsets": [
                {
                    "addresses": [
                        {
                            "ip": LOOPBACK,
                            "targetRef": {"kind": "Pod", "name": name, "namespace": NAMESPACE},
                        }
                    ],
                    "ports": [{"name": PORT_NAME, "port": p, "protocol": "TCP"}],
                }
                for name, p in zip(("pod-a", "pod-b"), endpoint_ports, strict=True)
            ],
        }
    )
    cluster.apply(
        {
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "DestinationRule",
            "metadata": meta,
            "spec": {
                "host": HOST,
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}},
                ],
            },
        }
    )
    cluster.apply(
        {
            "apiVersion": "metaprotocol.aeraki.io/v1alpha1",
            "kind": "MetaRouter",
            "metadata": meta,
            "spec": {
                "hosts": [HOST],
                "routes": [
                    {"name": "v1", "route": [{"destination": {"host": HOST, "subset": "v1"}}]}
                ],
            },
        }
    )


def subset_ports(mesh: KubeMesh, port: int, subset: str) -> list[int]:
    """Ports of the hosts our proxy holds for the subset's cluster (from EDS)."""
    cluster = mesh.proxy.clusters.get(f"outbound|{port}|{subset}|{HOST}")
    return [] if cluster is None else sorted(h.address.port for h in cluster.hosts)


async def test_subsets_select_pods_by_label_and_follow_relabelling(mesh: KubeMesh) -> None:
    (port,) = free_ports(1)
    first, second = mesh.endpoint_ports  # thriftpy2 servers answering "v1" and "v2"
    cluster = mesh.cluster
    cluster.apply(pod("pod-a", "v1"))
    cluster.apply(pod("pod-b", "v2"))
    seed(cluster, port, (first, second))
    mesh.port = port
    await mesh.until(
        lambda: mesh.targets() == {f"outbound|{port}|v1|{HOST}"}, "the route to subset v1"
    )
    await mesh.until(lambda: subset_ports(mesh, port, "v1") == [first], "subset v1 = pod-a")
    assert subset_ports(mesh, port, "v2") == [second]
    assert await asyncio.to_thread(mesh.labels, 20) == {"v1": 20}

    # Swap the labels: subset v1 is now pod-b, the second server. Only Pods changed.
    cluster.apply(pod("pod-a", "v2"))
    cluster.apply(pod("pod-b", "v1"))
    await mesh.until(lambda: subset_ports(mesh, port, "v1") == [second], "subset v1 = pod-b")
    assert subset_ports(mesh, port, "v2") == [first]
    assert await asyncio.to_thread(mesh.labels, 20) == {"v2": 20}

    # A Pod update that changes no label (status) pushes nothing.
    acked = mesh.acked()
    status_only = pod("pod-b", "v1")
    status_only["status"]["phase"] = "Succeeded"
    cluster.apply(status_only)
    await mesh.stays(mesh.acked, "the proxy's ACKed xDS state")
    assert mesh.acked() == acked
