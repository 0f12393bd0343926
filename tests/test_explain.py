"""``aeraki explain`` against Aeraki's e2e routes (reference aeraki-control-plane.md §15.1),
with request frames captured from real clients: a Dubbo ``DemoService.sayHello("world")``
call sent by the Node (dubbo-js/hessian.js) consumer with attachment ``user=alice``, and a
Thrift ``whoami()`` call sent by thriftpy2 (framed, binary). Both were recorded off a socket
by ``python -m tests.test_explain_data.capture`` and are kept as raw bytes next to it.

The manifests are the e2e suite's own (``tests/control/data/metaprotocol``: its
DestinationRule with subsets v1/v2/batchjob/user and its MetaRouters); only the ServiceEntry
gets endpoints, standing in for the suite's provider pods (labelled as they are).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import xxhash

from aeraki.cli import main

REPO = Path(__file__).resolve().parents[1]
E2E = REPO / "tests" / "control" / "data" / "metaprotocol"
FRAMES = Path(__file__).resolve().parent / "test_explain_data"
DUBBO_FRAME = FRAMES / "dubbo-sayhello.bin"
THRIFT_FRAME = FRAMES / "thrift-whoami.bin"
H = "org.apache.dubbo.samples.basic.api.demoservice"
DUBBO_LISTENER = "127.0.0.1_20880"

#: The e2e suite's provider pods as ServiceEntry endpoints (same labels).
PROVIDERS = f"""\
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: dubbo-demoservice
  namespace: metaprotocol
  annotations: {{interface: org.apache.dubbo.samples.basic.api.DemoService}}
spec:
  hosts: [{H}]
  ports: [{{number: 20880, name: tcp-metaprotocol-dubbo, protocol: TCP}}]
  resolution: STATIC
  endpoints:
    - address: 127.0.0.1
      ports: {{tcp-metaprotocol-dubbo: 20881}}
      labels: {{app: dubbo-sample-provider, version: v1, service_group: user}}
    - address: 127.0.0.2
      ports: {{tcp-metaprotocol-dubbo: 20882}}
      labels: {{app: dubbo-sample-provider, version: v2, service_group: batchjob}}
"""


def e2e_mesh(tmp_path: Path, *routers: Path, destination_rule: Path | None = None) -> Path:
    root = tmp_path / "mesh"
    root.mkdir(parents=True)
    shutil.copy(E2E / "base" / "applicationprotocol.yaml", root)
    shutil.copy(destination_rule or E2E / "base" / "destinationrule.yaml", root)
    (root / "serviceentry.yaml").write_text(PROVIDERS)
    for router in routers:
        shutil.copy(router, root)
    return root


def explain_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["explain", *argv, "--json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def dubbo_trace(capsys: pytest.CaptureFixture[str], root: Path, *extra: str) -> dict[str, Any]:
    out = explain_json(
        capsys,
        "--manifests",
        str(root),
        "--frame",
        str(DUBBO_FRAME),
        "--listener",
        DUBBO_LISTENER,
        *extra,
    )
    (trace,) = out["listeners"]
    assert trace["skipped"] == ""
    return dict(trace)


def cluster(subset: str) -> str:
    return f"outbound|20880|{subset}|{H}"


def test_the_captured_dubbo_frame_shows_what_the_codec_extracts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = e2e_mesh(tmp_path, E2E / "metarouters" / "metarouter-v1.yaml")
    trace = dubbo_trace(capsys, root)
    md = trace["metadata"]
    assert md["interface"] == "org.apache.dubbo.samples.basic.api.DemoService"
    assert md["method"] == "sayHello"
    assert md["user"] == "alice"  # an attachment (deferred by the codec, loaded to explain)
    assert md["x-meta-protocol-application-protocol"] == "dubbo"
    assert trace["route"] == "v1"
    assert trace["cluster"]["cluster"] == cluster("v1")
    assert trace["host"]["host"] == "127.0.0.1:20881"
    assert trace["outcome"] == f"forwarded to 127.0.0.1:20881 in {cluster('v1')}"


@pytest.mark.parametrize("kind", ["exact", "prefix", "regex"])
def test_attribute_routes_say_why_the_first_route_missed(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TestAttributeRouting: route v1 wants sayHello01, the call is sayHello -> v2."""
    root = e2e_mesh(tmp_path, E2E / "metarouters" / f"metarouter-attribute-{kind}.yaml")
    trace = dubbo_trace(capsys, root)
    first, second = trace["routes"]
    assert (first["name"], first["matched"]) == ("v1", False)
    assert first["matchers"] == [
        {"matcher": f"method {kind} 'sayHello01'", "ok": False, "seen": "sayHello"}
    ]
    assert (second["name"], second["matched"]) == ("v2", True)
    assert second["matchers"][0]["ok"] is True
    assert trace["cluster"]["cluster"] == cluster("v2")
    assert trace["host"]["host"] == "127.0.0.2:20882"
    # the text form says the same for a terminal
    assert main(["explain", "--manifests", str(root), "--frame", str(DUBBO_FRAME)]) == 0
    text = capsys.readouterr().out
    assert f"miss  route v1 -> {cluster('v1')}" in text
    assert f"FAIL method {kind} 'sayHello01': value 'sayHello'" in text
    assert f"MATCH route v2 -> {cluster('v2')}" in text


@pytest.mark.parametrize(("draw", "subset"), [(0, "v1"), (19, "v1"), (20, "v2"), (199, "v2")])
def test_traffic_splitting_picks_by_the_requests_random_draw(
    draw: int, subset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TestPercentageRouting: v1 20, v2 80; draw % 100 below 20 is v1."""
    root = e2e_mesh(tmp_path, E2E / "metarouters" / "metarouter-traffic-splitting.yaml")
    trace = dubbo_trace(capsys, root, "--random", str(draw))
    assert trace["cluster"]["weights"] == [[cluster("v1"), 20], [cluster("v2"), 80]]
    assert trace["cluster"]["random_value"] == draw
    assert trace["cluster"]["cluster"] == cluster(subset)


def test_consistent_hash_shows_the_key_and_pins_the_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TestConsistentHashLb: hash on ``method``; the pick never depends on the seed."""
    hashed = E2E / "consistent-hash-lb"
    root = e2e_mesh(
        tmp_path,
        hashed / "metarouter-sample.yaml",
        destination_rule=hashed / "destinationrule.yaml",
    )
    picks = set()
    for seed in range(5):
        trace = dubbo_trace(capsys, root, "--seed", str(seed))
        host = trace["host"]
        assert host["lb_policy"] == "RING_HASH"
        assert host["hash_keys"] == [["method", "sayHello"]]
        assert host["hash_key"] == xxhash.xxh64_intdigest(b"sayHello", 0)
        assert (host["hosts"], host["healthy"]) == (2, 2)
        picks.add(host["host"])
    assert len(picks) == 1
    assert trace["cluster"]["cluster"] == cluster("sample")


def test_header_mutation_and_mirror_are_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routers = E2E / "metarouters"
    root = e2e_mesh(tmp_path, routers / "metarouter-header-mutation.yaml")
    trace = dubbo_trace(capsys, root)
    assert trace["request_mutation"] == {"foo": "bar", "foo1": "bar1"}
    mirrored = e2e_mesh(tmp_path / "m", routers / "traffic-mirroring.yaml")
    trace = dubbo_trace(capsys, mirrored, "--random", "7")
    ((name, percent, _),) = trace["cluster"]["mirrors"]
    assert (name, percent) == (cluster("v2"), 50.0)
    assert trace["cluster"]["cluster"] == cluster("v1")


def test_traffic_policy_timeout_retries_and_fault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    router = tmp_path / "router.yaml"
    router.write_text(
        (E2E / "metarouters" / "metarouter-v1.yaml").read_text()
        + "      timeout: 2s\n"
        + "      retries: {attempts: 3, perTryTimeout: 0.5s, retryOn: 'connect-failure,reset'}\n"
        + "      fault: {abort: {percentage: {value: 10}, errorType: OVER_LIMIT}}\n"
    )
    root = e2e_mesh(tmp_path, router)
    trace = dubbo_trace(capsys, root)
    policy = trace["policy"]
    assert policy["timeout_s"] == 2.0
    assert policy["retries"]["num_retries"] == 3
    assert policy["retries"]["per_try_timeout_s"] == 0.5
    assert policy["retries"]["retry_on"] == ["connect-failure", "reset"]
    assert policy["fault_abort"]["error_type"] == "OVER_LIMIT"
    assert policy["fault_abort"]["percent"] == 10.0


def test_the_captured_thrift_frame_matches_a_thrift_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.control.test_runtime import THRIFT, router_yaml, service_yaml

    root = tmp_path / "mesh"
    root.mkdir()
    (root / "thrift.yaml").write_text(
        service_yaml("thrift", "meta-thrift", THRIFT, "tcp-metaprotocol-thrift", 9090, 9091, 9092)
    )
    routes = (
        "    - name: hello\n      match: {attributes: {method: {exact: sayHello}}}\n"
        f"      route: [{{destination: {{host: {THRIFT}, subset: v1}}}}]\n"
        "    - name: whoami\n      match: {attributes: {method: {prefix: who}}}\n"
        f"      route: [{{destination: {{host: {THRIFT}, subset: v2}}}}]\n"
    )
    (root / "router.yaml").write_text(router_yaml("thrift", "meta-thrift", THRIFT, routes))
    out = explain_json(capsys, "--manifests", str(root), "--frame", str(THRIFT_FRAME))
    (trace,) = out["listeners"]
    assert trace["metadata"]["method"] == "whoami"
    assert [(r["name"], r["matched"]) for r in trace["routes"]] == [
        ("hello", False),
        ("whoami", True),
    ]
    assert trace["routes"][0]["matchers"][0]["seen"] == "whoami"
    assert trace["host"]["host"] == "127.0.0.1:9092"


def test_a_frame_is_only_explained_on_listeners_of_its_protocol(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["explain", "--manifests", str(REPO / "examples" / "mesh"), "--frame"]
    assert main([*argv, str(THRIFT_FRAME)]) == 0
    out = capsys.readouterr().out
    assert "listener 127.0.0.1_20880 (127.0.0.1:20880, dubbo" in out
    assert "skipped: aeraki.meta_protocol.codec.dubbo: the frame does not decode" in out
    # a frame of no listener's protocol: exit 1 and say so
    junk = "ff" * 32
    assert (
        main(["explain", "--manifests", str(REPO / "examples" / "mesh"), "--frame-hex", junk]) == 1
    )
    assert "no listener could decode the request" in capsys.readouterr().err


def test_hex_frames_are_accepted_with_separators(capsys: pytest.CaptureFixture[str]) -> None:
    spaced = " ".join(f"0x{b:02x}" for b in DUBBO_FRAME.read_bytes())
    argv = ["--manifests", str(REPO / "examples" / "mesh"), "--listener", DUBBO_LISTENER]
    out = explain_json(capsys, *argv, "--frame-hex", spaced)
    assert out["listeners"][0]["metadata"]["user"] == "alice"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--frame-hex", "da bb zz"], "--frame-hex: not hexadecimal bytes"),
        (["--frame", "/nonexistent/frame.bin"], "--frame /nonexistent/frame.bin: cannot read"),
        (["--frame-hex", "dabbc2"], "the frame is incomplete (3 bytes)"),
    ],
)
def test_bad_frames_get_one_clear_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["explain", "--manifests", str(REPO / "examples" / "mesh"), *argv])
    captured = capsys.readouterr()
    assert code == 1
    assert message in captured.out + captured.err


def test_invalid_manifests_are_listed_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(REPO / "tests" / "control" / "data" / "bad" / "broken.yaml", tmp_path)
    assert main(["explain", "--manifests", str(tmp_path), "method=x"]) == 1
    assert "broken.yaml:" in capsys.readouterr().err


def test_node_metadata_scopes_the_translation(capsys: pytest.CaptureFixture[str]) -> None:
    """``--node-meta SERVICES=…``: the node gets only that service's listener, as a proxy
    with that metadata would from the control plane."""
    from tests.control.test_runtime import THRIFT

    argv = ["--manifests", str(REPO / "examples" / "mesh"), "method=x"]
    everything = explain_json(capsys, *argv)
    assert len(everything["listeners"]) == 2
    scoped = explain_json(capsys, *argv, "--node-id", "n1", "--node-meta", f"SERVICES={THRIFT}")
    assert [t["protocol"] for t in scoped["listeners"]] == ["thrift"]
    assert "translated for node 'n1'" in scoped["source"]


def test_a_bootstrap_with_rds_says_where_its_routes_are(capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap = REPO / "examples" / "bootstraps" / "rds.yaml"
    assert main(["explain", "-c", str(bootstrap), "method=sayHello"]) == 0
    out = capsys.readouterr().out
    assert "arrive over RDS and are not in this view" in out
    assert "--admin" in out
