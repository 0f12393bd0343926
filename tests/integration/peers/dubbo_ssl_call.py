"""dubbo-ssl-python consumer runner (a separate process, same spec/output as node/dubbo_call.js).

    python -m tests.integration.peers.dubbo_ssl_call '<json spec>'

dubbo-ssl-python keeps a process-global connection pool with background reader/heartbeat
threads and emits DeprecationWarnings, so it runs in its own process rather than in pytest.
Only sequential calls are supported ("concurrent" is accepted and ignored).
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Sequence
from typing import Any


def _run(spec: dict[str, Any]) -> list[dict[str, Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from dubbo_ssl.client import DubboClient  # type: ignore[import-untyped]

        client = DubboClient(
            spec["interface"],
            group=spec.get("group"),
            version=spec.get("version", "1.0.0"),
            dubbo_version=spec.get("dubboVersion", "2.0.2"),
            host=f"{spec['host']}:{spec['port']}",
        )
    timeout = float(spec.get("timeout", 5))
    results: list[dict[str, Any]] = []
    for call in spec["calls"]:
        try:
            value = client.call(
                call["method"],
                list(call.get("args", [])),
                context=call.get("attachments") or None,
                timeout=timeout,
            )
        except Exception as exc:  # noqa: BLE001 - every client error is reported as data
            results.append({"ok": False, "error": str(exc), "name": type(exc).__name__})
        else:
            results.append({"ok": True, "value": value, "attachments": {}})
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.disable(logging.CRITICAL)  # the library logs every exception it returns
    try:
        spec = json.loads(args[0])
    except (IndexError, ValueError) as exc:
        print(json.dumps({"fatal": f"bad spec: {exc}"}), flush=True)
        return 2
    results = _run(spec)
    print(json.dumps({"results": results}, default=repr), flush=True)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
