"""Manifests for the control-plane benchmark: N MetaProtocol Thrift services with MetaRouters.

Per service ``i`` (0-based):

- ``svc-NNNN.yaml``: a STATIC ServiceEntry ``svc-NNNN.bench.svc.cluster.local`` with one
  ``tcp-metaprotocol-thrift-server`` port (``20000 + i``), its own loopback VIP in ``addresses``
  (``127.10.x.y``: the translator binds an outbound listener on a loopback SE address, so no two
  listeners collide even before the ports differ), two endpoints labelled ``version: v1``/``v2``;
  and a DestinationRule with subsets v1 and v2 (consistent hash on ``method``).
- ``route-NNNN.yaml``: a MetaRouter with two routes — ``method`` exact ``echo`` → 80 % v1 /
  20 % v2, and a catch-all to one subset. Its route names carry a *tag*; the benchmark rewrites
  one file with a fresh tag and the other subset, then looks for the tag in the RDS responses.

Per proxy that sees every service, the translation yields 1 listener, 3 clusters (the port's
plus one per subset), 3 ClusterLoadAssignments and 1 route configuration per service.

Every write is atomic (temp file in the same directory, ``os.replace``), as an editor or a
ConfigMap update does it: the file source never sees a half-written file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

NAMESPACE = "bench"
PORT_NAME = "tcp-metaprotocol-thrift-server"
BASE_PORT = 20000
ENDPOINT_BASE_PORT = 40000
#: Resources per service per proxy: listeners, clusters, endpoints, routes.
PER_SERVICE = {"lds": 1, "cds": 3, "eds": 3, "rds": 1}


@dataclass(frozen=True, slots=True)
class Service:
    index: int

    @property
    def name(self) -> str:
        return f"svc-{self.index:04d}"

    @property
    def host(self) -> str:
        return f"{self.name}.{NAMESPACE}.svc.cluster.local"

    @property
    def port(self) -> int:
        return BASE_PORT + self.index

    @property
    def vip(self) -> str:
        return f"127.10.{self.index // 250}.{self.index % 250 + 1}"

    @property
    def route_name(self) -> str:
        """The RDS resource name (``<host>_<port>``, reference §6.8)."""
        return f"{self.host}_{self.port}"

    def cluster(self, subset: str) -> str:
        return f"outbound|{self.port}|{subset}|{self.host}"

    @property
    def service_file(self) -> str:
        return f"{self.name}.yaml"

    @property
    def router_file(self) -> str:
        return f"route-{self.name}.yaml"


def services(count: int) -> list[Service]:
    if not 0 < count <= 250 * 250:
        raise ValueError(f"service count out of range: {count}")
    return [Service(i) for i in range(count)]


def service_yaml(s: Service) -> str:
    v1, v2 = (
        ENDPOINT_BASE_PORT + 2 * (s.index % 10000),
        ENDPOINT_BASE_PORT + 2 * (s.index % 10000) + 1,
    )
    return f"""\
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {{name: {s.name}, namespace: {NAMESPACE}}}
spec:
  hosts: [{s.host}]
  addresses: [{s.vip}]
  ports: [{{number: {s.port}, name: {PORT_NAME}, protocol: TCP}}]
  resolution: STATIC
  endpoints:
    - {{address: 127.0.0.1, ports: {{{PORT_NAME}: {v1}}}, labels: {{version: v1, app: {s.name}}}}}
    - {{address: 127.0.0.1, ports: {{{PORT_NAME}: {v2}}}, labels: {{version: v2, app: {s.name}}}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: {s.name}, namespace: {NAMESPACE}}}
spec:
  host: {s.host}
  trafficPolicy:
    loadBalancer: {{consistentHash: {{httpHeaderName: method}}}}
  subsets:
    - {{name: v1, labels: {{version: v1}}}}
    - {{name: v2, labels: {{version: v2}}}}
"""


def router_yaml(s: Service, tag: str, subset: str) -> str:
    """The MetaRouter of ``s``: route names carry ``tag``; the catch-all goes to ``subset``."""
    return f"""\
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata: {{name: {s.name}, namespace: {NAMESPACE}}}
spec:
  hosts: [{s.host}]
  routes:
    - name: echo-{tag}
      match: {{attributes: {{method: {{exact: echo}}}}}}
      route:
        - destination: {{host: {s.host}, subset: v1}}
          weight: 80
        - destination: {{host: {s.host}, subset: v2}}
          weight: 20
    - name: all-{tag}
      route:
        - destination: {{host: {s.host}, subset: {subset}}}
"""


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file and ``os.replace`` (hidden: not scanned)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_mesh(root: Path, count: int, tag: str = "initial") -> list[Service]:
    """Write ``count`` services and their MetaRouters (catch-all → v1) into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    out = services(count)
    for s in out:
        (root / s.service_file).write_text(service_yaml(s))
        (root / s.router_file).write_text(router_yaml(s, tag, "v1"))
    return out
