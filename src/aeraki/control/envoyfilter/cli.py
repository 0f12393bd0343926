"""``aeraki envoyfilter PATH…``: print (or ``--apply``) the EnvoyFilters Aeraki would write.

Output is ``kubectl apply -f -`` ready: multi-document YAML (default) or a JSON ``List``.
Problems go to stderr, one per line with file, line, resource and field; the exit status is 1
when any is an error. ``--apply`` reconciles the API server (§5.6) instead of printing, and
refuses to when the manifests have errors: a resource dropped for an error would otherwise have
its EnvoyFilters deleted from the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from aeraki.control.envoyfilter.mesh import MeshConfig, MeshConfigError, parse_mesh_config
from aeraki.control.envoyfilter.reconcile import ReconcileResult, reconcile
from aeraki.control.envoyfilter.render import render_envoyfilters
from aeraki.control.sources.kubeclient import ApiError, ConfigError, KubeClient, load_config
from aeraki.control.validation import format_problems
from aeraki.control.validation import load_config as load_manifests

__all__ = ["add_commands", "dump_yaml", "main_envoyfilter"]


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line strings (access log formats) as ``|`` literals."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(objects: Sequence[dict[str, Any]]) -> str:
    """Multi-document YAML, keys in object order (apiVersion, kind, metadata, spec)."""
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, width=100)


def add_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Register ``envoyfilter``; returns ``{command: handler}`` for the caller to dispatch."""
    p = subparsers.add_parser(
        "envoyfilter",
        help="render the EnvoyFilters Aeraki would apply to Istio sidecars (or --apply them)",
        description=__doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None,
    )
    p.add_argument("paths", nargs="+", help="manifest files or directories")
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    p.add_argument(
        "--namespace-root",
        default=None,
        help="Istio root namespace, where EnvoyFilters go by default "
        "(default: the mesh config's rootNamespace, else istio-system)",
    )
    p.add_argument(
        "--mesh",
        help="Istio mesh config (YAML, or the istio ConfigMap) for "
        "access log and tracing settings (default: Istio's defaults)",
    )
    p.add_argument(
        "--namespace-scope",
        action="store_true",
        help="put a service's EnvoyFilters in its ServiceEntry's namespace "
        "(Aeraki's --enable-envoy-filter-namespace-scope)",
    )
    p.add_argument(
        "--allocate-vips",
        action="store_true",
        help="assume the VIPs Aeraki allocates (240.240.x.y) for ServiceEntries without "
        "addresses instead of skipping their outbound EnvoyFilters",
    )
    p.add_argument("--apply", action="store_true", help="reconcile the API server")
    p.add_argument(
        "--kubeconfig",
        help="kubeconfig for --apply (default: in-cluster, then $KUBECONFIG / ~/.kube/config)",
    )
    return {"envoyfilter": main_envoyfilter}


def _mesh(args: argparse.Namespace) -> MeshConfig:
    mesh = MeshConfig()
    if args.mesh:
        mesh = parse_mesh_config(Path(args.mesh).read_text(encoding="utf-8"))
    if args.namespace_root:
        mesh = dataclasses.replace(mesh, root_namespace=args.namespace_root)
    return mesh


async def _apply(kubeconfig: str | None, objects: list[dict[str, Any]]) -> ReconcileResult:
    client = KubeClient(load_config(kubeconfig))
    try:
        return await reconcile(client, objects)
    finally:
        await client.close()


def main_envoyfilter(args: argparse.Namespace) -> int:
    """Handler of ``aeraki envoyfilter``; returns the exit status."""
    try:
        mesh = _mesh(args)
    except (OSError, MeshConfigError) as exc:
        print(f"error: --mesh: {exc}", file=sys.stderr)
        return 1
    config = load_manifests(args.paths)
    result = render_envoyfilters(
        config, mesh, namespace_scope=args.namespace_scope, allocate_vips=args.allocate_vips
    )
    problems = [*config.problems, *result.problems]
    if problems:
        print(format_problems(problems), file=sys.stderr)
    failed = bool(config.errors or result.errors)
    if not args.apply:
        if args.output == "json":
            doc = {"apiVersion": "v1", "kind": "List", "items": result.envoyfilters}
            print(json.dumps(doc, indent=2))
        else:
            sys.stdout.write(dump_yaml(result.envoyfilters))
        return 1 if failed else 0
    if config.errors:
        print(
            "error: not applied: the manifests have errors, and the EnvoyFilters of the "
            "resources left out would be deleted; fix them first",
            file=sys.stderr,
        )
        return 1
    try:
        done = asyncio.run(_apply(args.kubeconfig, result.envoyfilters))
    except (ApiError, ConfigError, OSError, aiohttp.ClientError) as exc:
        print(f"error: --apply: {exc}", file=sys.stderr)
        return 1
    for verb, keys in (("created", done.created), ("updated", done.updated)):
        for key in keys:
            print(f"envoyfilter {key} {verb}")
    for key in done.deleted:
        print(f"envoyfilter {key} deleted")
    for error in done.errors:
        print(f"error: {error}", file=sys.stderr)
    print(done.summary(), file=sys.stderr)
    return 1 if failed or done.errors else 0
