"""The ``aeraki`` command line.

``aeraki proxy -c bootstrap.yaml`` runs the data plane; ``aeraki validate -c FILE`` checks
a bootstrap and prints every problem with its field path. Bad arguments exit with status 2
and a message naming the argument; configuration problems exit with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from aeraki import __version__
from aeraki.errors import AerakiError, ConfigError

__all__ = ["main"]

log = logging.getLogger("aeraki")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aeraki", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"aeraki {__version__}")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging verbosity (default: info)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    proxy = sub.add_parser("proxy", help="run the MetaProtocol proxy from an Envoy bootstrap")
    proxy.add_argument("-c", "--config", required=True, help="bootstrap file (YAML or JSON)")
    proxy.add_argument(
        "--drain-timeout",
        type=_positive_float,
        default=None,
        help="seconds requests in flight may take to finish after SIGTERM (default: 20)",
    )
    proxy.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="event loop implementation (default: uvloop when installed)",
    )
    validate = sub.add_parser("validate", help="check a bootstrap and list every problem")
    validate.add_argument("-c", "--config", required=True, help="bootstrap file (YAML or JSON)")
    return parser


def _run_loop(main: object, loop_name: str) -> None:
    coro = main
    if loop_name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop_name == "uvloop":
                raise SystemExit("aeraki: --loop uvloop: uvloop is not installed") from None
        else:
            uvloop.run(coro)  # type: ignore[arg-type]
            return
    asyncio.run(coro)  # type: ignore[arg-type]


def _cmd_proxy(args: argparse.Namespace) -> int:
    from aeraki.proxy.bootstrap import load_bootstrap
    from aeraki.proxy.server import DEFAULT_DRAIN_TIMEOUT, ProxyServer

    config = load_bootstrap(args.config)
    drain = args.drain_timeout or DEFAULT_DRAIN_TIMEOUT

    async def main() -> None:
        server = ProxyServer(config, drain_timeout=drain)
        await server.run_until_signalled()

    _run_loop(main(), args.loop)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from aeraki.proxy.bootstrap import load_bootstrap

    config = load_bootstrap(args.config)
    print(
        f"{args.config}: OK ({len(config.listeners)} listener(s), "
        f"{len(config.clusters)} cluster(s))"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aeraki`` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    commands = {"proxy": _cmd_proxy, "validate": _cmd_validate}
    try:
        return commands[args.command](args)
    except ConfigError as exc:
        print(f"aeraki: invalid configuration: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"aeraki: {exc}", file=sys.stderr)
        return 1
    except AerakiError as exc:
        print(f"aeraki: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
