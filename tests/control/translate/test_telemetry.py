"""Telemetry options of the translation (:mod:`aeraki.control.translate.telemetry`): goldens
with tracing and Istio telemetry on, proxy acceptance, and defaults that change nothing."""

from __future__ import annotations

import argparse

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2

from aeraki.control import cli
from aeraki.control.translate import NodeInfo, TranslateOptions, translate
from aeraki.control.translate.telemetry import (
    ISTIO_STATS_FILTER,
    METADATA_EXCHANGE_FILTER,
    OTLP_CLUSTER,
    otlp_cluster,
    parse_otlp_address,
)
from aeraki.proxy.xds_apply import listeners_from_resources
from tests.control.translate.helpers import assert_accepted, by_type, check_golden, load

BASE = ("translate/services.yaml", "metaprotocol/base/destinationrule.yaml")
ON = TranslateOptions(tracing_otlp="127.0.0.1:4317", tracing_sampling=25.0, istio_telemetry=True)
SERVER: dict[str, object] = {
    "LABELS": {"app": "dubbo-sample-provider", "version": "v1"},
    "INSTANCE_IPS": "127.0.0.11",
    "SERVICES": [],
}


def _listeners(options: TranslateOptions, metadata: dict[str, object]) -> list[object]:
    node = NodeInfo(id="test~telemetry", metadata=metadata)
    translation = translate(load(*BASE), node, options)
    return [r for r in translation.resources if isinstance(r, listener_pb2.Listener)]


@pytest.mark.parametrize(
    ("name", "metadata"), [("telemetry-outbound", {}), ("telemetry-inbound", SERVER)]
)
def test_golden_with_telemetry_on(name: str, metadata: dict[str, object]) -> None:
    node = NodeInfo(id=f"test~{name}", metadata=metadata)
    translation = translate(load(*BASE), node, ON)
    check_golden(name, translation)
    assert_accepted(translation)


@pytest.mark.parametrize(("metadata", "inbound"), [({}, False), (SERVER, True)])
def test_proxy_reads_direction_filters_and_tracing(
    metadata: dict[str, object], inbound: bool
) -> None:
    translation = translate(load(*BASE), NodeInfo(id="n", metadata=metadata), ON)
    packed = by_type(translation.resources)
    lds = next(u for u in packed if u.endswith("Listener"))
    configs = listeners_from_resources(packed[lds])
    assert configs
    wanted = "INBOUND" if inbound else "OUTBOUND"
    for config in configs:
        assert config.traffic_direction == wanted
        proxy = config.proxy
        names = [f.name for f in proxy.filters]
        assert names[-3:-1] == [METADATA_EXCHANGE_FILTER, ISTIO_STATS_FILTER]
        assert proxy.tracing is not None
        assert proxy.tracing.provider is not None
        assert proxy.tracing.provider.cluster == OTLP_CLUSTER
        assert proxy.tracing.random_sampling == 2500


def test_defaults_add_nothing() -> None:
    for options in (TranslateOptions(), ON):
        translation = translate(load(*BASE), NodeInfo(id="n"), options)
        names = {getattr(r, "name", "") for r in translation.resources}
        assert (OTLP_CLUSTER in names) is (options is ON)
    for lst in _listeners(TranslateOptions(), SERVER):
        assert isinstance(lst, listener_pb2.Listener)
        assert lst.traffic_direction == base_pb2.UNSPECIFIED


def test_istio_telemetry_alone_sets_direction_without_tracing() -> None:
    options = TranslateOptions(istio_telemetry=True)
    for lst in _listeners(options, {}):
        assert isinstance(lst, listener_pb2.Listener)
        assert lst.traffic_direction == base_pb2.OUTBOUND
        assert b"opentelemetry" not in lst.SerializeToString()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("4317", "expected HOST:PORT"),
        ("127.0.0.1:", "expected HOST:PORT"),
        ("127.0.0.1:70000", "expected HOST:PORT"),
        ("under_score:4317", "expected an IP address or a DNS name"),
        ("-collector:4317", "expected an IP address or a DNS name"),
        ("a..b:4317", "expected an IP address or a DNS name"),
        ("[collector]:4317", "not an IPv6 address in brackets"),
    ],
)
def test_bad_otlp_address(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_otlp_address(text)


def test_otlp_address_forms() -> None:
    assert parse_otlp_address("127.0.0.1:4317") == ("127.0.0.1", 4317)
    assert parse_otlp_address("[::1]:4317") == ("::1", 4317)
    name = "otel-collector.observability.svc.cluster.local"
    assert parse_otlp_address(f"{name}:4317") == (name, 4317)


def test_collector_cluster_is_static_for_an_ip_and_strict_dns_for_a_name() -> None:
    by_ip = otlp_cluster(TranslateOptions(tracing_otlp="127.0.0.1:4317"))
    by_name = otlp_cluster(TranslateOptions(tracing_otlp="collector.obs.svc:4317"))
    assert by_ip is not None
    assert by_name is not None
    assert by_ip.type == cluster_pb2.Cluster.STATIC
    assert by_name.type == cluster_pb2.Cluster.STRICT_DNS
    address = by_name.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (address.socket_address.address, address.socket_address.port_value) == (
        "collector.obs.svc",
        4317,
    )


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aeraki")
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_defaults_are_off_and_flags_reach_the_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for env in ("AERAKI_TRACING_OTLP", "AERAKI_TRACING_SAMPLING", "AERAKI_ISTIO_TELEMETRY"):
        monkeypatch.delenv(env, raising=False)
    args = _parse(["control", "d"])
    assert (args.tracing_otlp, args.tracing_sampling, args.istio_telemetry) == ("", 1.0, False)
    options = cli._options(
        _parse(["run", "d", "--tracing-otlp", "127.0.0.1:4317", "--tracing-sampling", "100"])
    )
    assert (options.tracing_otlp, options.tracing_sampling) == ("127.0.0.1:4317", 100.0)
    assert _parse(["run", "d", "--istio-telemetry"]).istio_telemetry is True
    assert _parse(["run", "d", "--istio-telemetry=false"]).istio_telemetry is False
    monkeypatch.setenv("AERAKI_ISTIO_TELEMETRY", "yes")
    monkeypatch.setenv("AERAKI_TRACING_SAMPLING", "0")
    args = _parse(["control", "d"])
    assert (args.istio_telemetry, args.tracing_sampling) == (True, 0.0)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--tracing-otlp", "coll_ector:4317"], {}, "--tracing-otlp: expected an IP address"),
        (["--tracing-otlp", "4317"], {}, "--tracing-otlp: expected HOST:PORT"),
        (["--tracing-sampling", "101"], {}, "--tracing-sampling: must be within [0, 100]"),
        (["--tracing-sampling", "x"], {}, "--tracing-sampling: not a number"),
        (["--istio-telemetry=maybe"], {}, "--istio-telemetry: expected true or false"),
        ([], {"AERAKI_TRACING_SAMPLING": "-1"}, "--tracing-sampling: must be within"),
        ([], {"AERAKI_TRACING_OTLP": "a:b"}, "--tracing-otlp: expected HOST:PORT"),
    ],
)
def test_cli_bad_values_exit_2_with_one_line(
    argv: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for command in ("control", "run"):
        with pytest.raises(SystemExit) as exc:
            _parse([command, "d", *argv])
        assert exc.value.code == 2
        errors = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
        assert len(errors) == 1, errors
        assert message in errors[0]
