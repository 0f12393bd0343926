"""Cluster config loading (kubeconfig, in-cluster) and TLS with client certificates."""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from aeraki.control.sources.api import DEFAULT_KINDS, WatchedKind
from aeraki.control.sources.kubeclient import (
    ApiError,
    ClusterConfig,
    ConfigError,
    KubeClient,
    collection_path,
    load_in_cluster,
    load_kubeconfig,
)
from tests.control.sources.fake_apiserver import FakeApiServer


def make_pki(tmp: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (EC keys: fast)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(
        "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=ca"
    )
    (tmp / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        sign = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1"]
        extra = ["-extfile", "ext.cnf"] if name == "server" else []
        run("x509", "-req", "-in", f"{name}.csr", *sign, "-out", f"{name}.crt", *extra)
    return {p.stem + p.suffix: p for p in tmp.iterdir()}


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig(
    tmp: Path, server: str, user: Mapping[str, object], cluster: Mapping[str, object]
) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "test",
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [
            {"name": "test", "context": {"cluster": "c", "user": "u", "namespace": "meta"}}
        ],
    }
    path = tmp / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_kubeconfig_with_ca_and_client_certificate_over_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki["server.crt"], pki["server.key"])
    server_ctx.load_verify_locations(pki["ca.crt"])
    server_ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no client cert, no handshake
    fake = FakeApiServer()
    await fake.start(server_ctx)
    fake.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "l", "namespace": "meta"},
            "spec": {},
        }
    )
    user = {
        "client-certificate-data": b64(pki["client.crt"]),
        "client-key-data": b64(pki["client.key"]),
    }
    config = load_kubeconfig(
        kubeconfig(tmp_path, fake.url, user, {"certificate-authority": "ca.crt"})
    )
    assert config.namespace == "meta"
    client = KubeClient(config, request_timeout=5)
    lease = await client.request("GET", "/apis/coordination.k8s.io/v1/namespaces/meta/leases/l")
    assert lease["metadata"]["name"] == "l"
    with pytest.raises(ApiError) as info:
        await client.request("GET", "/apis/coordination.k8s.io/v1/namespaces/meta/leases/x")
    assert (info.value.status, info.value.reason) == (404, "NotFound")
    await client.close()
    await fake.stop()


async def test_token_from_kubeconfig_and_in_cluster(tmp_path: Path) -> None:
    fake = FakeApiServer()
    await fake.start()
    config = load_kubeconfig(kubeconfig(tmp_path, fake.url, {"token": "abc"}, {}))
    client = KubeClient(config)
    await client.request("GET", "/apis/coordination.k8s.io/v1/leases")
    await client.close()
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token\n")
    (sa / "namespace").write_text("istio-system")
    (sa / "ca.crt").write_text("")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    in_cluster = load_in_cluster(sa, env)
    assert in_cluster.server == "https://10.96.0.1:443"
    assert in_cluster.namespace == "istio-system"
    # Same auth path against the fake (plain HTTP: the in-cluster CA is not usable here).
    client = KubeClient(ClusterConfig(server=fake.url, token_file=str(sa / "token")))
    await client.request("GET", "/apis/coordination.k8s.io/v1/leases")
    await client.close()
    assert fake.auth_headers == ["Bearer abc", "Bearer sa-token"]
    with pytest.raises(ConfigError):
        load_in_cluster(sa, {})
    await fake.stop()


def test_kubeconfig_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_kubeconfig(tmp_path / "missing")
    path = kubeconfig(tmp_path, "https://x", {"exec": {"command": "aws"}}, {})
    with pytest.raises(ConfigError, match="exec"):
        load_kubeconfig(path)
    with pytest.raises(ConfigError, match="no context"):
        load_kubeconfig(path, context="other")


def test_collection_paths() -> None:
    mr, svc = DEFAULT_KINDS[0], DEFAULT_KINDS[5]
    assert collection_path(mr, None) == "/apis/metaprotocol.aeraki.io/v1alpha1/metarouters"
    assert (
        collection_path(mr, "meta")
        == "/apis/metaprotocol.aeraki.io/v1alpha1/namespaces/meta/metarouters"
    )
    assert collection_path(svc, "meta") == "/api/v1/namespaces/meta/services"
    ns = WatchedKind("", "v1", "Namespace", "namespaces", namespaced=False)
    assert collection_path(ns, "meta") == "/api/v1/namespaces"
