#!/usr/bin/env bash
# `make demo`: Thrift and Dubbo traffic through `aeraki run` (control plane + proxy) on
# 127.0.0.1 while the demo edits a MetaRouter: all to v1 -> 20/80 -> all to v2, with zero
# failed calls (see examples/demo/README.md). `make demo` runs `make setup` first.
#
#   DEMO_SECONDS=60 make demo     run longer (default 30 s, at least 6; Ctrl-C ends it early)
#   DEMO_RATE=300 make demo       calls per second on each listener (default 100)
#   DEMO_PORTS=auto make demo     free ports instead of the fixed ones in the manifests
#
# The Python launcher owns every process it starts and stops them by PID on exit, on Ctrl-C
# and on SIGTERM; `exec` hands it this shell's PID so signals reach it directly.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
if [[ ! -x "$PY" ]]; then
    echo "demo: $PY is missing; run \`make setup\` first" >&2
    exit 1
fi
export PYTHONUNBUFFERED=1
exec "$PY" -m examples.demo "$@"
