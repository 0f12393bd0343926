#!/usr/bin/env bash
# `make bench`: Thrift and Dubbo echo through direct / HAProxy / Envoy / Aeraki in Python, side by
# side, on this machine; prints the table and rewrites benchmarks/RESULTS.md (method in there).
# Knobs: BENCH_SECONDS, BENCH_WARMUP, BENCH_CONNECTIONS, BENCH_ROUNDS, BENCH_TARGETS,
# BENCH_PROXY_CPU, BENCH_LOAD_CPU, BENCH_NO_WRITE=1 (see benchmarks/run.py).
# `BENCH_PROFILE=1 make bench` also samples our proxy under Thrift load with py-spy
# (benchmarks/profile.py → benchmarks/PROFILE.md).
# Then the control-plane case (benchmarks/control_plane.py: 1,000 services, 100 ADS clients; its
# BENCH_CP_* knobs are listed there). BENCH_ONLY=data|control runs only one of the two.
set -euo pipefail
ONLY="${BENCH_ONLY:-all}"
case "$ONLY" in all|data|control) ;; *) echo "bench: BENCH_ONLY must be data or control" >&2; exit 2;; esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || { echo "bench: $PY missing; run make setup" >&2; exit 1; }
if [[ "$ONLY" != control ]] && ! command -v haproxy >/dev/null; then
    echo "bench: haproxy not installed; its rows will be n/a (apt-get install -y haproxy)" >&2
fi
if [[ "$(nproc)" -lt 2 ]]; then
    echo "bench: needs 2 CPUs (proxy on cpu0, load on cpu1)" >&2
    exit 1
fi

if [[ "$ONLY" != control ]]; then
    "$PY" -m benchmarks.run
    if [[ "${BENCH_PROFILE:-0}" == 1 ]]; then
        "$PY" -m benchmarks.profile
    fi
fi
[[ "$ONLY" == data ]] || "$PY" -m benchmarks.control_plane
