#!/usr/bin/env bash
# `make demo`: Thrift and Dubbo traffic through one Aeraki proxy on 127.0.0.1, with live
# routing results (see examples/demo/launcher.py). `make demo` runs `make setup` first.
#
#   DEMO_SECONDS=60 make demo     run the client longer (default 20 s; Ctrl-C ends it early)
#   DEMO_RATE=300 make demo       calls per second on each listener (default 100)
#   DEMO_PORTS=auto make demo     free ports instead of the fixed ones in the bootstrap
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
