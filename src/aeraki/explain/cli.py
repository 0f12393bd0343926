"""``aeraki explain``: its arguments and the command.

Only :mod:`argparse` is imported here (the ``aeraki`` parser is built for every command); the
control plane's translator, the codecs and the proxy's config code load when the command runs.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "cmd_explain"]

DESCRIPTION = """\
Follow one request through a proxy's configuration and explain every decision: the metadata
the codec extracts, what each filter before the router would do (local rate limit: the bucket
that applies; global rate limit: the descriptors it would send, never sent; telemetry), each
route in order with each matcher's verdict until the first match,
the mutations, the traffic policy (timeout, retries, fault), the cluster (weighted pick) and
the host the load balancer picks (hash key included).

The configuration: a bootstrap (-c), a manifest directory translated by the control plane for
one node (--manifests), or what a running proxy holds (--admin HOST:PORT). The request: a
captured frame (--frame FILE of raw bytes, or --frame-hex), decoded by each listener's codec,
and/or attributes as KEY=VALUE (e.g. method=sayHello)."""

EPILOG = """\
examples:
  aeraki explain -c bootstrap.yaml interface=org.example.DemoService method=sayHello
  aeraki explain --manifests examples/mesh --frame call.bin
  aeraki explain --admin 127.0.0.1:15000 --frame-hex 'da bb c2 00 ...' --json"""


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _u64(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value < 1 << 64:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**64): {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``explain`` on the ``aeraki`` subcommands."""
    parser = sub.add_parser(
        "explain",
        help="show which route, cluster and host a request would take, and why",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("-c", "--config", help="bootstrap file (YAML or JSON)")
    where.add_argument(
        "--manifests", action="append", metavar="PATH", help="manifests (file or dir; repeatable)"
    )
    where.add_argument("--admin", metavar="HOST:PORT", help="a running proxy's admin address")
    parser.add_argument(
        "--node-id", default="aeraki-explain", help="--manifests: node to translate for"
    )
    parser.add_argument(
        "--node-meta",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="--manifests: node metadata, e.g. SERVICES=host1,host2 (repeatable)",
    )
    parser.add_argument(
        "--istio-telemetry",
        action="store_true",
        help="--manifests: translate as 'aeraki control --istio-telemetry' does "
        "(metadata_exchange + istio_stats filters)",
    )
    parser.add_argument("--listener", help="only this listener (default: every listener)")
    frame = parser.add_mutually_exclusive_group()
    frame.add_argument("--frame", metavar="FILE", help="a captured request frame (raw bytes)")
    frame.add_argument("--frame-hex", metavar="HEX", help="a captured request frame in hex")
    parser.add_argument(
        "--random",
        type=_u64,
        help="the request's 64-bit random draw (weighted clusters, mirrors; default: random)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of per-pick random balancers")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "metadata", nargs="*", type=_key_value, help="request metadata as KEY=VALUE"
    )
    return parser


def cmd_explain(args: argparse.Namespace) -> int:
    """Run ``aeraki explain``; 0 when some listener took the request, 1 when none could
    (e.g. the frame is no listener's protocol), 2 for a bad ``--listener``."""
    from aeraki.errors import ConfigError
    from aeraki.explain import view as views
    from aeraki.explain.render import render_json, render_text
    from aeraki.explain.request import RequestSpec, read_frame
    from aeraki.explain.trace import explain

    frame = read_frame(args.frame_hex, args.frame)
    if args.config:
        view = views.from_bootstrap(args.config)
    elif args.manifests:
        from aeraki.control.translate import TranslateOptions

        options = TranslateOptions(istio_telemetry=args.istio_telemetry)
        view = views.from_manifests(
            list(args.manifests), args.node_id, dict(args.node_meta), options
        )
    else:
        from aeraki.explain.dump import fetch_admin

        view = fetch_admin(args.admin)
    try:
        view = view.only(args.listener)
    except ConfigError as exc:
        print(f"aeraki explain: {exc.message}", file=sys.stderr)
        return 2
    spec = RequestSpec(frame, tuple(args.metadata))
    result = explain(view, spec, random_value=args.random, seed=args.seed)
    print(render_json(result) if args.json else render_text(result), end="")
    if result.listeners and all(t.skipped for t in result.listeners):
        print("aeraki explain: no listener could decode the request", file=sys.stderr)
        return 1
    return 0
