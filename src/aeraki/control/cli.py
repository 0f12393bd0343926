"""``aeraki control`` and ``aeraki run``: the control plane as a command (issue 3, items 2 and 9).

- ``aeraki control DIR`` (or ``--kubernetes``) serves xDS from a watched manifest directory (or
  the Kubernetes API) until SIGTERM/SIGINT. In Kubernetes mode every replica serves xDS and the
  one holding the Lease also writes the EnvoyFilters for Istio sidecars
  (:mod:`aeraki.control.leadership`; ``--no-envoyfilters`` turns that off). Directory mode is
  xDS-only: ``aeraki envoyfilter DIR [--apply]`` renders or applies them on demand.
- ``aeraki run DIR`` is the one-machine mesh: the control plane *and* our proxy in one process,
  the proxy an ordinary ADS client of the in-process xDS server (the same path a separate proxy
  takes, so what works here works split), with a live status view.

:func:`add_commands` registers both on the ``aeraki`` parser (``src/aeraki/cli.py``). Every
tunable is declared once in :data:`SETTINGS`, with its flag, environment variable, default and
help (style anchors §9 rule 11); a non-empty environment variable wins over the default, a flag
over both, and every value is logged at startup (reference §13.10).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from aeraki.control.runtime import (
    ControlPlane,
    NodeInfoFactory,
    Translator,
    translate_options,
)
from aeraki.control.sources.api import ConfigSource
from aeraki.control.status import Status, cluster_traffic, render
from aeraki.logging_setup import LOG_FORMATS, LOG_LEVELS
from aeraki.logging_setup import configure as configure_logging
from aeraki.signals import stop_on_signals

if TYPE_CHECKING:
    from aeraki.control.status_rich import RichStatus
    from aeraki.proxy.server import ProxyServer

__all__ = ["SETTINGS", "add_commands", "local_proxy_bootstrap", "run_mesh"]

log = logging.getLogger(__name__)

Command = Callable[[argparse.Namespace], int]

#: Environment variable giving ``aeraki control --admin-address`` a default.
ADMIN_ENV = "AERAKI_ADMIN_ADDRESS"

#: Node id of the proxy ``aeraki run`` starts (no metadata: it gets every service).
RUN_NODE_ID = "aeraki-run"


@dataclass(frozen=True, slots=True)
class Setting:
    """One tunable: ``--flag``, its environment variable, default and help."""

    flag: str
    env: str
    default: str
    help: str

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def value(self) -> str:
        return os.environ.get(self.env) or self.default


SETTINGS: dict[str, Setting] = {
    s.dest: s
    for s in (
        Setting("--xds-address", "AERAKI_XDS_ADDRESS", "127.0.0.1:15010", "ADS listen HOST:PORT"),
        Setting("--quiet-ms", "AERAKI_DEBOUNCE_QUIET_MS", "100", "debounce quiet period (ms)"),
        Setting("--max-delay-ms", "AERAKI_DEBOUNCE_MAX_MS", "1000", "longest a change waits (ms)"),
        Setting("--poll-ms", "AERAKI_POLL_MS", "500", "manifest polling without inotify (ms)"),
        Setting(
            "--bind-address",
            "AERAKI_BIND_ADDRESS",
            "127.0.0.1",
            "where proxies' outbound listeners bind (translation default)",
        ),
        Setting(
            "--access-log",
            "AERAKI_ACCESS_LOG",
            "",
            "access log file of every MetaProtocol listener, /dev/stdout works (Istio "
            "accessLogFile; empty: off)",
        ),
        Setting(
            "--access-log-encoding",
            "AERAKI_ACCESS_LOG_ENCODING",
            "TEXT",
            "TEXT or JSON (Istio accessLogEncoding)",
        ),
        Setting(
            "--access-log-format",
            "AERAKI_ACCESS_LOG_FORMAT",
            "",
            "Envoy format string, or a JSON object of key: operator for JSON (Istio "
            "accessLogFormat; empty: Aeraki's default)",
        ),
        Setting(
            "--tracing-otlp",
            "AERAKI_TRACING_OTLP",
            "",
            "HOST:PORT of an OTLP/gRPC collector (IP or DNS name): every MetaProtocol listener "
            "traces there (empty: off)",
        ),
        Setting(
            "--tracing-sampling",
            "AERAKI_TRACING_SAMPLING",
            "1",
            "percent of requests traced at random, 0-100 (Istio's defaultConfig.tracing.sampling)",
        ),
        Setting(
            "--istio-telemetry",
            "AERAKI_ISTIO_TELEMETRY",
            "false",
            "add Istio's metadata_exchange + istio_stats filters to every MetaProtocol listener",
        ),
    )
}


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _milliseconds(text: str) -> float:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of ms: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value / 1000.0


def _encoding(text: str) -> str:
    if text.upper() not in ("TEXT", "JSON"):
        raise argparse.ArgumentTypeError(f"expected TEXT or JSON, got {text!r}")
    return text.upper()


def _otlp(text: str) -> str:
    if not text:
        return ""
    from aeraki.control.translate.telemetry import parse_otlp_address

    try:
        parse_otlp_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 100]: {text!r}")
    return value


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes", "on")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


#: Kubernetes mode only (``aeraki control --kubernetes``): the Lease-elected EnvoyFilter writer.
#: Empty defaults are resolved by :mod:`aeraki.control.leadership` (see each help).
LEADER_SETTINGS: dict[str, Setting] = {
    s.dest: s
    for s in (
        Setting("--lease-name", "AERAKI_LEASE_NAME", "aeraki-controller", "leader-election Lease"),
        Setting(
            "--lease-namespace",
            "POD_NAMESPACE",
            "",
            "namespace of the Lease (empty: the service account's, else aeraki-system)",
        ),
        Setting(
            "--leader-identity",
            "POD_NAME",
            "",
            "holderIdentity written in the Lease (empty: <hostname>_<pid>)",
        ),
        Setting(
            "--lease-duration",
            "AERAKI_LEASE_DURATION",
            "15",
            "seconds a standby waits for an unrenewed Lease before taking it",
        ),
        Setting(
            "--renew-deadline",
            "AERAKI_RENEW_DEADLINE",
            "10",
            "seconds the leader keeps failing to renew before it stops writing",
        ),
        Setting(
            "--retry-period",
            "AERAKI_RETRY_PERIOD",
            "2",
            "seconds between election attempts and renewals",
        ),
        Setting(
            "--mesh-config",
            "AERAKI_MESH_CONFIG",
            "",
            "Istio mesh config file (YAML or the istio ConfigMap) for the EnvoyFilters' "
            "access log, tracing and root namespace (empty: Istio's defaults)",
        ),
    )
}

_TYPES: dict[str, Callable[[str], Any]] = {
    "lease_name": str,
    "lease_namespace": str,
    "leader_identity": str,
    "lease_duration": _seconds,
    "renew_deadline": _seconds,
    "retry_period": _seconds,
    "mesh_config": str,
    "xds_address": _address,
    "quiet_ms": _milliseconds,
    "max_delay_ms": _milliseconds,
    "poll_ms": _milliseconds,
    "bind_address": str,
    "access_log": str,
    "access_log_encoding": _encoding,
    "access_log_format": str,
    "tracing_otlp": _otlp,
    "tracing_sampling": _percent,
    "istio_telemetry": _flag,
}


def _add_settings(
    parser: argparse.ArgumentParser,
    xds_default: str | None = None,
    settings: dict[str, Setting] = SETTINGS,
) -> None:
    prefix = "--kubernetes only: " if settings is LEADER_SETTINGS else ""
    for dest, setting in settings.items():
        default = setting.value()
        if dest == "xds_address" and xds_default is not None and setting.env not in os.environ:
            default = xds_default
        # A flag alone means true; ``--flag=false`` too. Defaults stay strings: argparse parses
        # them with ``type`` like a flag, so a bad environment value is a usage error (exit 2).
        flag: dict[str, Any] = {"nargs": "?", "const": True} if _TYPES[dest] is _flag else {}
        parser.add_argument(
            setting.flag,
            type=_TYPES[dest],
            default=default,
            help=f"{prefix}{setting.help} (env {setting.env}; default {default})",
            **flag,
        )


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> dict[str, Command]:
    """Register ``control`` and ``run``; returns ``{name: function(args) -> exit status}``."""
    control = subparsers.add_parser(
        "control",
        help="serve xDS from a watched manifest directory or the Kubernetes API",
        description="Run the control plane: watch MetaRouter, ApplicationProtocol, "
        "ServiceEntry, DestinationRule and VirtualService resources and push per-node xDS "
        "(ADS, state of the world and delta) to every connected proxy until SIGTERM.",
    )
    control.add_argument("directory", nargs="?", help="manifest directory (watched)")
    control.add_argument(
        "--kubernetes", action="store_true", help="list+watch the Kubernetes API instead"
    )
    control.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~)")
    control.add_argument("--namespace", help="watch one namespace (default: all)")
    admin_default = os.environ.get(ADMIN_ENV, "")
    control.add_argument(
        "--admin-address",
        type=_address,
        default=_address(admin_default) if admin_default else None,
        help=f"admin HTTP HOST:PORT: /ready, /metrics, /status, /debug/syncz, /logging "
        f"(env {ADMIN_ENV}; default off)",
    )
    _add_settings(control)
    control.add_argument(
        "--no-envoyfilters",
        action="store_true",
        help="Kubernetes mode: serve xDS only; never campaign for the Lease nor write "
        "EnvoyFilters (e.g. a mesh without Istio)",
    )
    _add_settings(control, settings=LEADER_SETTINGS)
    run = subparsers.add_parser(
        "run",
        help="control plane + proxy on this machine from a manifest directory, with live status",
        description="Start the control plane on a manifest directory and our proxy as its "
        "ADS client in one process; show services, routes, clusters, proxies, the last push "
        "and problems, refreshed every second. Edit the manifests while it runs.",
    )
    run.add_argument("directory", help="manifest directory (watched)")
    run.add_argument("--duration", type=_seconds, help="stop after this many seconds")
    run.add_argument("--admin-port", type=int, help="proxy admin on 127.0.0.1:PORT")
    run.add_argument("--delta", action="store_true", help="proxy uses delta ADS")
    run.add_argument(
        "--no-status",
        action="store_true",
        help="do not print the status view (logs only); off a terminal it prints on change",
    )
    _add_settings(run, xds_default="127.0.0.1:0")
    return {"control": cmd_control, "run": cmd_run}


def _log_settings(args: argparse.Namespace) -> None:
    for name, value in sorted(vars(args).items()):
        if not callable(value):
            log.info("Aeraki parameter: %s: %s", name, value)


def _options(args: argparse.Namespace) -> Any:
    return translate_options(
        bind_address=args.bind_address,
        access_log_file=args.access_log,
        access_log_encoding=args.access_log_encoding,
        access_log_format=args.access_log_format,
        tracing_otlp=args.tracing_otlp,
        tracing_sampling=args.tracing_sampling,
        istio_telemetry=args.istio_telemetry,
    )


def _check_access_log(args: argparse.Namespace) -> str | None:
    """What is wrong with the access-log flags (checked before any proxy sees the format)."""
    if not args.access_log or not args.access_log_format:
        return None
    import json

    from aeraki.errors import ConfigError
    from aeraki.proxy.config import AccessLogConfig
    from aeraki.proxy.observe.access_log import compile_format

    config = AccessLogConfig(path=args.access_log, text_format=args.access_log_format)
    if args.access_log_encoding == "JSON":
        try:
            fields = json.loads(args.access_log_format)
        except ValueError as exc:
            return f"--access-log-format: not JSON: {exc}"
        if not isinstance(fields, dict):
            return "--access-log-format: with JSON encoding, give a JSON object"
        config = AccessLogConfig(path=args.access_log, json_format=fields)
    try:
        compile_format(config, "--access-log-format")
    except ConfigError as exc:
        return str(exc)
    return None


def cmd_control(args: argparse.Namespace) -> int:
    if bool(args.directory) == bool(args.kubernetes):
        print("aeraki control: give a manifest DIR or --kubernetes (not both)", file=sys.stderr)
        return 2
    if args.directory and not os.path.exists(args.directory):
        print(f"aeraki control: {args.directory}: no such file or directory", file=sys.stderr)
        return 2
    problem = _check_access_log(args)
    if problem is not None:
        print(f"aeraki control: {problem}", file=sys.stderr)
        return 2
    if args.kubernetes and not args.no_envoyfilters:
        try:
            _lease(args)
            _mesh(args)
        except (ValueError, OSError) as exc:
            print(f"aeraki control: {exc}", file=sys.stderr)
            return 2
    _log_settings(args)
    if not args.kubernetes:
        return asyncio.run(_control(args))
    from aeraki.control.sources.kubeclient import ConfigError as KubeConfigError

    try:
        return asyncio.run(_control(args))
    except KubeConfigError as exc:  # no usable kubeconfig / in-cluster environment
        print(f"aeraki control: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def _lease(args: argparse.Namespace) -> Any:
    """The Lease settings of ``args`` (raises ValueError on a bad timing order)."""
    from aeraki.control import leadership

    return leadership.LeaseConfig(
        name=args.lease_name,
        namespace=args.lease_namespace or leadership.default_namespace(),
        identity=args.leader_identity or leadership.default_identity(),
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
    )


def _mesh(args: argparse.Namespace) -> Any:
    """The Istio mesh config for the EnvoyFilters (raises OSError/ValueError when bad)."""
    from aeraki.control.envoyfilter.mesh import MeshConfig, parse_mesh_config

    if not args.mesh_config:
        return MeshConfig()
    with open(args.mesh_config, encoding="utf-8") as f:
        return parse_mesh_config(f.read())


async def _control(args: argparse.Namespace) -> int:
    host, port = args.xds_address
    closers: list[Callable[[], Any]] = []
    roles: list[Any] = []
    source: ConfigSource
    if args.kubernetes:
        from aeraki.control.sources.kubeclient import KubeClient, load_config
        from aeraki.control.sources.kubernetes import KubernetesSource

        client = KubeClient(load_config(args.kubeconfig))
        closers.append(client.close)
        source = KubernetesSource(client, namespace=args.namespace)
        if not args.no_envoyfilters:
            from aeraki.control.leadership import EnvoyFilterLeader

            writer = EnvoyFilterLeader(
                client,
                _lease(args),
                mesh=_mesh(args),
                quiet=args.quiet_ms,
                max_delay=args.max_delay_ms,
            )
            roles.append(writer)
    else:
        from aeraki.control.sources.files import FileSource

        source = FileSource(args.directory, interval=args.poll_ms or 0.5)
    plane = ControlPlane(
        source,
        xds_host=host,
        xds_port=port,
        options=_options(args),
        quiet=args.quiet_ms,
        max_delay=args.max_delay_ms,
        roles=roles,
    )
    if hasattr(source, "on_problem"):
        source.on_problem = plane.on_source_problem
    if args.admin_address is not None:
        from aeraki.admin_http import AdminHttpServer
        from aeraki.control.admin import admin_actions, admin_routes

        admin = AdminHttpServer(admin_routes(plane), admin_actions(plane))
        await admin.start(*args.admin_address)
        log.info("control plane: admin on %s:%d", args.admin_address[0], admin.port)
        closers.append(_async(admin.close))
    try:
        await plane.run_until_signalled()
    finally:
        for close in closers:
            await close()
    return 0


def _async(close: Callable[[], None]) -> Callable[[], Any]:
    async def closer() -> None:
        close()

    return closer


def cmd_run(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.directory):
        print(f"aeraki run: {args.directory}: not a directory", file=sys.stderr)
        return 2
    problem = _check_access_log(args)
    if problem is not None:
        print(f"aeraki run: {problem}", file=sys.stderr)
        return 2
    _log_settings(args)
    host, port = args.xds_address
    return asyncio.run(
        run_mesh(
            args.directory,
            duration=args.duration,
            xds_host=host,
            xds_port=port,
            admin_port=args.admin_port,
            delta=args.delta,
            no_status=args.no_status,
            quiet=args.quiet_ms,
            max_delay=args.max_delay_ms,
            poll=args.poll_ms or 0.5,
            options=_options(args),
        )
    )


def local_proxy_bootstrap(
    xds_port: int, *, node_id: str = RUN_NODE_ID, admin_port: int | None = None, delta: bool = False
) -> dict[str, Any]:
    """An Envoy-format bootstrap for our proxy: everything over ADS from 127.0.0.1:xds_port."""
    ads = {"ads": {}, "resource_api_version": "V3"}
    bootstrap: dict[str, Any] = {
        "node": {"id": node_id, "cluster": node_id},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "aeraki_xds"}}],
            },
            "lds_config": ads,
            "cds_config": ads,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "aeraki_xds",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "http2_protocol_options": {},
                    "load_assignment": {
                        "cluster_name": "aeraki_xds",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": xds_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
    }
    if admin_port is not None:
        bootstrap["admin"] = {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        }
    return bootstrap


async def run_mesh(
    directory: str,
    *,
    duration: float | None = None,
    xds_host: str = "127.0.0.1",
    xds_port: int = 0,
    admin_port: int | None = None,
    delta: bool = False,
    no_status: bool = False,
    quiet: float = 0.1,
    max_delay: float = 1.0,
    poll: float = 0.5,
    options: Any = None,
    out: TextIO | None = None,
    interval: float = 1.0,
    stop: asyncio.Event | None = None,
    translator: Translator | None = None,
    node_info: NodeInfoFactory | None = None,
) -> int:
    """``aeraki run``: control plane + proxy until ``duration``, ``stop`` or a signal."""
    from aeraki.control.sources.files import FileSource
    from aeraki.proxy.bootstrap import bootstrap_from_dict
    from aeraki.proxy.server import ProxyServer

    out = out or sys.stdout
    stop = stop or asyncio.Event()
    source = FileSource(directory, interval=poll)
    plane = ControlPlane(
        source,
        xds_host=xds_host,
        xds_port=xds_port,
        options=options,
        quiet=quiet,
        max_delay=max_delay,
        translator=translator,
        node_info=node_info,
    )
    source.on_problem = plane.on_source_problem
    loop = asyncio.get_running_loop()
    with stop_on_signals(stop):
        port = await plane.start()
        config = bootstrap_from_dict(
            local_proxy_bootstrap(port, admin_port=admin_port, delta=delta)
        )
        proxy = ProxyServer(config, drain_timeout=2.0)
        try:
            await proxy.start()
            deadline = None if duration is None else loop.time() + duration
            where = f"{directory}, xDS :{port}"
            view = None if no_status else _StatusView(plane, proxy, out, where)
            try:
                await _status_loop(view, interval, stop, deadline)
            finally:
                if view is not None:
                    view.close()
        finally:
            await proxy.shutdown()
            await plane.stop(grace=0.5)
    return 0


class _StatusView:
    """The status of ``aeraki run``: the control plane's view plus what the local proxy sent
    to each cluster. Redrawn in place on a terminal; elsewhere (a log, a pipe) printed as
    plain text only when something changed."""

    def __init__(self, plane: ControlPlane, proxy: ProxyServer, out: TextIO, where: str) -> None:
        self.plane = plane
        self.proxy = proxy
        self.out = out
        self.title = f"aeraki run ({where})"
        self.is_tty = out.isatty()
        self._shown: tuple[list[str], object] = ([], None)
        self._rich: RichStatus | None = None
        if self.is_tty:  # rich (~20 ms to import) only where its tables are shown
            from aeraki.control.status_rich import RichStatus

            self._rich = RichStatus(out)

    def status(self) -> Status:
        stats = {c.name: c.stats.snapshot() for c in self.proxy.clusters.clusters.values()}
        return dataclasses.replace(self.plane.status(), traffic=cluster_traffic(stats))

    def lines(self) -> list[str]:
        return render(self.status(), title=self.title)

    def draw(self) -> None:
        if self._rich is not None:  # a terminal: rich tables redrawn in place
            self._rich.update(self.status(), title=self.title)
            return
        lines = self.lines()
        # a log: only when something changed (the "ago" in the push line always does)
        current = ([ln for ln in lines if not ln.startswith("Last push:")], self.plane.last_push)
        if current != self._shown:
            self.out.write("\n".join(lines) + "\n\n")
            self.out.flush()
        self._shown = current

    def close(self) -> None:
        if self._rich is not None:
            self._rich.close()


async def _status_loop(
    view: _StatusView | None, interval: float, stop: asyncio.Event, deadline: float | None
) -> None:
    """Draw ``view`` once per ``interval`` (never when ``None``) until ``stop`` or
    ``deadline``."""
    loop = asyncio.get_running_loop()
    while True:
        if view is not None:
            view.draw()
        wait = interval
        if deadline is not None:
            wait = min(wait, deadline - loop.time())
            if wait <= 0:
                return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
        if stop.is_set():
            return


def main(argv: list[str] | None = None) -> int:
    """``python -m aeraki.control.cli control|run …`` (until ``aeraki`` itself registers them)."""
    parser = argparse.ArgumentParser(prog="aeraki")
    parser.add_argument(
        "--log-level", default="warning", choices=LOG_LEVELS, help="default: warning"
    )
    parser.add_argument("--log-format", default="text", choices=LOG_FORMATS, help="text or json")
    commands = add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
