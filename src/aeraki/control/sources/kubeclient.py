"""Just enough of a Kubernetes REST client: config loading, JSON requests, watch streams.

Why not lightkube or kubernetes_asyncio: both work (reference/python-ecosystem.md §6), but the
sources deal in raw dicts for a handful of kinds, and the parts that matter — resourceVersion
tracking, 410 handling, bookmarks, pagination — are the caller's logic either way. A thin aiohttp
layer keeps those explicit and testable against the fake server, and aiohttp is one dependency
(also used by the fake) instead of a client plus its generated models.

Supported auth: kubeconfig (server, CA file/data, insecure-skip-tls-verify, bearer token or token
file, client certificate file/data) and in-cluster (service account token + CA, the token re-read
every minute because bound tokens rotate). Not supported: ``exec`` and ``auth-provider`` plugins.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from aeraki import errors
from aeraki.control.sources.api import JsonDict, WatchedKind

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_TOKEN_REFRESH_SECONDS = 60.0
_MAX_LINE_BYTES = 64 * 1024 * 1024  # one watch event; etcd caps objects at 1.5 MiB by default


class ConfigError(errors.ConfigError):
    """The kubeconfig or in-cluster environment cannot be used (the project's ConfigError,
    with the message saying which file or variable)."""

    def __init__(self, message: str) -> None:
        super().__init__("", message)


class ApiError(errors.AerakiError):
    """An HTTP error answer of the API server, with its ``Status`` reason when it sent one."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    server: str
    ca_data: str | None = None  # PEM
    insecure_skip_tls_verify: bool = False
    token: str | None = None
    token_file: str | None = None
    client_cert_data: bytes | None = None
    client_key_data: bytes | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    namespace: str = "default"

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.server.startswith("https://"):
            return None
        context = ssl.create_default_context(cadata=self.ca_data)
        if self.insecure_skip_tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert_file and self.client_key_file:
            context.load_cert_chain(self.client_cert_file, self.client_key_file)
        elif self.client_cert_data and self.client_key_data:
            # load_cert_chain only reads files: write them to a private directory briefly.
            with tempfile.TemporaryDirectory(prefix="aeraki-kube-") as tmp:
                cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
                cert.write_bytes(self.client_cert_data)
                key.touch(mode=0o600)
                key.write_bytes(self.client_key_data)
                context.load_cert_chain(str(cert), str(key))
        return context


def _data_or_file(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        return (base / str(entry[key])).read_bytes()
    return None


def load_kubeconfig(
    path: str | os.PathLike[str] | None = None, context: str | None = None
) -> ClusterConfig:
    """Read a kubeconfig (default: first entry of ``$KUBECONFIG``, else ``~/.kube/config``)."""
    if path is None:
        env = os.environ.get("KUBECONFIG", "")
        path = env.split(os.pathsep)[0] if env else Path.home() / ".kube" / "config"
    file = Path(path)
    try:
        doc = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read kubeconfig {file}: {exc}") from exc

    def named(section: str, name: str) -> Mapping[str, Any]:
        for item in doc.get(section) or []:
            if item.get("name") == name:
                return dict(item.get(section.rstrip("s")) or {})
        raise ConfigError(f"kubeconfig {file}: no {section.rstrip('s')} named {name!r}")

    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {file} is not a mapping")
    ctx = named("contexts", context or str(doc.get("current-context", "")))
    cluster = named("clusters", str(ctx.get("cluster", "")))
    user = named("users", str(ctx["user"])) if ctx.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise ConfigError("kubeconfig exec/auth-provider plugins are not supported; use a token")
    base = file.parent
    ca = _data_or_file(cluster, "certificate-authority", base)
    token_file = user.get("tokenFile")
    return ClusterConfig(
        server=str(cluster.get("server", "")).rstrip("/"),
        ca_data=None if ca is None else ca.decode(),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        token=user.get("token"),
        token_file=None if token_file is None else str(base / token_file),
        client_cert_data=_data_or_file(user, "client-certificate", base),
        client_key_data=_data_or_file(user, "client-key", base),
        namespace=str(ctx.get("namespace") or "default"),
    )


def load_in_cluster(
    root: Path = SERVICE_ACCOUNT_DIR, env: Mapping[str, str] | None = None
) -> ClusterConfig:
    """The pod's service account: ``KUBERNETES_SERVICE_HOST/PORT``, token, CA, namespace."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (root / "token").exists():
        raise ConfigError("not running in a cluster (no KUBERNETES_SERVICE_HOST or token)")
    host = f"[{host}]" if ":" in host else host  # IPv6 service addresses
    namespace_file = root / "namespace"
    return ClusterConfig(
        server=f"https://{host}:{port}",
        ca_data=(root / "ca.crt").read_text(),
        token_file=str(root / "token"),
        namespace=namespace_file.read_text().strip() if namespace_file.exists() else "default",
    )


def load_config(kubeconfig: str | os.PathLike[str] | None = None) -> ClusterConfig:
    """An explicit kubeconfig wins; otherwise in-cluster, then the default kubeconfig."""
    if kubeconfig is not None:
        return load_kubeconfig(kubeconfig)
    try:
        return load_in_cluster()
    except ConfigError:
        return load_kubeconfig()


def collection_path(kind: WatchedKind, namespace: str | None) -> str:
    """``/apis/<group>/<version>/[namespaces/<ns>/]<plural>``; the core group under ``/api``."""
    prefix = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    if namespace is not None and kind.namespaced:
        return f"{prefix}/namespaces/{namespace}/{kind.plural}"
    return f"{prefix}/{kind.plural}"


class KubeClient:
    """A JSON client for one API server; one aiohttp session, created lazily on the loop."""

    def __init__(self, config: ClusterConfig, *, request_timeout: float = 30.0) -> None:
        self.config = config
        self.request_timeout = request_timeout
        self._ssl = config.ssl_context()
        self._session: aiohttp.ClientSession | None = None
        self._token = config.token
        self._token_read_at = -_TOKEN_REFRESH_SECONDS

    def _headers(self) -> dict[str, str]:
        if self.config.token_file:
            now = time.monotonic()
            if now - self._token_read_at >= _TOKEN_REFRESH_SECONDS:
                self._token = Path(self.config.token_file).read_text().strip()
                self._token_read_at = now
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else False)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: JsonDict | None = None,
    ) -> JsonDict:
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        async with self._get_session().request(
            method,
            self.config.server + path,
            params=params,
            json=body,
            headers=self._headers(),
            timeout=timeout,
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise _api_error(response.status, text)
            result: JsonDict = json.loads(text)
            return result

    async def stream(
        self, path: str, params: Mapping[str, str], *, read_timeout: float
    ) -> AsyncGenerator[JsonDict]:
        """The JSON lines of a watch; ends when the server closes the stream cleanly.

        ``read_timeout`` bounds the silence between chunks: a half-open connection (a node
        gone, a NAT entry expired) must not hang the watch forever.
        """
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.request_timeout, sock_read=read_timeout
        )
        async with self._get_session().get(
            self.config.server + path, params=params, headers=self._headers(), timeout=timeout
        ) as response:
            if response.status >= 400:
                raise _api_error(response.status, await response.text())
            pending = b""
            async for chunk in response.content.iter_any():
                pending += chunk
                if len(pending) > _MAX_LINE_BYTES:
                    raise ApiError(0, "LineTooLong", f"watch line over {_MAX_LINE_BYTES} bytes")
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _api_error(status: int, text: str) -> ApiError:
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return ApiError(status, str(body.get("reason", "")), str(body.get("message", "")))
    return ApiError(status, "", text[:200])
