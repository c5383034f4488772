#!/usr/bin/env bash
# The single test command of the repository: `bash tests/run.sh`.
#
# Installs what is missing (Debian packages, the Python venv, npm packages), builds the workspace
# once, then runs every check: rustfmt, clippy, the Rust tests, deploy/verify.sh (when present),
# the Node end-to-end and browser suites against the real gateway binary, the python-socketio
# tests, and the compose cluster in a real Docker engine (tests/compose/run.sh). Runs
# non-interactively as root on a fresh machine (CI) or as a developer.
#
# Every stage runs even when an earlier one failed (stages that need the gateway binary are marked
# failed when the build failed). The last line is `stages: N passed, M failed`, counting STAGES
# (each stage is one command such as "clippy" or "e2e"; the per-test counts are printed by each
# runner above it). Exit status: 0 only when every stage passed.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export DEBIAN_FRONTEND=noninteractive
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$REPO/$TARGET_DIR" ;; esac
export GATEWAY_BIN="$TARGET_DIR/debug/gateway"
export CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"
VENV="$REPO/.venv"

RUN_START=$(date +%s)
# Whole-run budget: CI stops a run at 90 minutes, so stages stop being started (and are counted
# as failed) well before that, leaving time to print the summary. A normal run takes ~15 minutes.
BUDGET_SECS=${TESTS_BUDGET_SECS:-4500}
PASSED=()
FAILED=()
SUMMARY=()

log() { printf '\n=== %s\n' "$*"; }

record() {
    local name=$1 rc=$2 secs=$3 note=${4:-}
    if [ "$rc" -eq 0 ]; then
        PASSED+=("$name")
        SUMMARY+=("$(printf 'PASS  %-22s %5ss %s' "$name" "$secs" "$note")")
    else
        FAILED+=("$name")
        SUMMARY+=("$(printf 'FAIL  %-22s %5ss exit %s %s' "$name" "$secs" "$rc" "$note")")
    fi
    printf '=== stage %s: %s in %ss\n' "$name" "$([ "$rc" -eq 0 ] && echo passed || echo "FAILED (exit $rc)")" "$secs"
}

# stage NAME TIMEOUT_SECS COMMAND... : runs the command with no stdin and a time limit.
stage() {
    local name=$1 limit=$2
    shift 2
    local used=$(($(date +%s) - RUN_START))
    if [ "$used" -ge "$BUDGET_SECS" ]; then
        skip "$name" "the run already took ${used}s of its ${BUDGET_SECS}s budget"
        return
    fi
    [ "$limit" -gt $((BUDGET_SECS - used)) ] && limit=$((BUDGET_SECS - used))
    log "stage $name: $*"
    local start rc
    start=$(date +%s)
    timeout --kill-after=30 "$limit" "$@" </dev/null
    rc=$?
    [ "$rc" -eq 124 ] && echo "stage $name: timed out after ${limit}s"
    record "$name" "$rc" "$(($(date +%s) - start))"
}

# skip NAME REASON: a stage that could not run counts as failed, never as passed.
skip() {
    log "stage $1: not run: $2"
    record "$1" 1 0 "(not run: $2)"
}

# ok NAME: prints 1 when stage NAME passed, 0 otherwise.
ok() {
    local s
    for s in "${PASSED[@]}"; do [ "$s" = "$1" ] && { echo 1; return; }; done
    echo 0
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

install_system_packages() {
    local missing=()
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    [ -x "$CHROMIUM_BIN" ] || missing+=(chromium)
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then missing+=(python3-venv); fi
    if [ ${#missing[@]} -eq 0 ]; then
        echo "system packages present: redis-server nginx chromium python3-venv"
        return 0
    fi
    echo "installing missing Debian packages: ${missing[*]}"
    as_root apt-get update -q || return 1
    as_root apt-get install -y -q "${missing[@]}" || return 1
}

check_node() {
    command -v node >/dev/null 2>&1 || { echo "node is not installed: Node.js >= 20 is required (node --test)"; return 1; }
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    [ "$major" -ge 20 ] || { echo "node $(node --version) is too old: Node.js >= 20 is required"; return 1; }
    command -v npm >/dev/null 2>&1 || { echo "npm is not installed"; return 1; }
}

install_node_packages() {
    check_node || return 1
    (cd "$REPO/tests" && npm ci --no-audit --no-fund) || return 1
    # The socket.io client bundle the gateway serves at /socket.io/socket.io.js (README, quick start).
    npm ci --prefix "$REPO/gateway/client-bundle" --no-audit --no-fund --ignore-scripts || return 1
    if [ -f "$REPO/adapter-redis/tests/node/package.json" ]; then
        (cd "$REPO/adapter-redis/tests/node" && npm ci --no-audit --no-fund) || return 1
    fi
}

install_python_packages() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" || return 1
    fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REPO/tests/python/requirements.txt" || return 1
}

rust_tests() {
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --no-fail-fast
    else
        echo "cargo-nextest not installed: using cargo test"
        cargo test --workspace --no-fail-fast
    fi
}

export -f rust_tests install_system_packages install_node_packages install_python_packages check_node as_root
export VENV REPO

log "gateway tests: repository $REPO, $(nproc) cores, started $(date -u +%FT%TZ)"

stage install-system 900 bash -c install_system_packages
stage install-node 300 bash -c install_node_packages
NODE_OK=$(ok install-node)
stage install-python 300 bash -c install_python_packages
PY_OK=$(ok install-python)

stage build 1500 cargo build --workspace --all-targets
BUILD_OK=$(ok build)
[ -x "$GATEWAY_BIN" ] || BUILD_OK=0

stage fmt 300 cargo fmt --all -- --check
stage clippy 900 cargo clippy --workspace --all-targets -- -D warnings
if [ "$BUILD_OK" -eq 1 ]; then
    stage rust-tests 900 bash -c rust_tests
    stage rust-doctests 600 cargo test --workspace --doc
else
    skip rust-tests "the build failed"
    skip rust-doctests "the build failed"
fi

if [ -f "$REPO/deploy/verify.sh" ]; then
    stage deploy-verify 600 bash "$REPO/deploy/verify.sh"
fi

if [ "$BUILD_OK" -eq 1 ] && [ "$NODE_OK" -eq 1 ]; then
    stage e2e 900 bash -c 'cd "$REPO/tests" && node --test --test-concurrency=2 e2e/*.test.mjs'
    stage e2e-cluster 900 bash -c 'cd "$REPO/tests" && node --test --test-concurrency=2 e2e-cluster/*.test.mjs'
    # The cross-node files again, on a three-primary Redis Cluster with the sharded adapter
    # (tests/e2e-cluster/README.md); redis-restart and nginx-topology stay single-Redis.
    stage e2e-cluster-sharded 600 bash -c 'cd "$REPO/tests" && E2E_REDIS=cluster E2E_ADAPTER_MODE=sharded E2E_ADAPTER_SUBSCRIPTIONS=dynamic node --test --test-concurrency=2 e2e-cluster/cross-node.test.mjs e2e-cluster/node-failure.test.mjs e2e-cluster/join-ack.test.mjs'
    stage e2e-cluster-sharded-static 600 bash -c 'cd "$REPO/tests" && E2E_REDIS=cluster E2E_ADAPTER_MODE=sharded E2E_ADAPTER_SUBSCRIPTIONS=static node --test --test-concurrency=2 e2e-cluster/cross-node.test.mjs e2e-cluster/node-failure.test.mjs e2e-cluster/join-ack.test.mjs'
    stage browser 300 bash -c 'cd "$REPO/tests" && node --test --test-concurrency=1 browser/*.test.mjs'
    # One file at a time: several of these attacks measure the node's RSS.
    stage hostile 900 bash -c 'cd "$REPO/tests" && node --test --test-concurrency=1 hostile/*.test.mjs'
else
    skip e2e "the build or npm ci failed"
    skip e2e-cluster "the build or npm ci failed"
    skip e2e-cluster-sharded "the build or npm ci failed"
    skip e2e-cluster-sharded-static "the build or npm ci failed"
    skip browser "the build or npm ci failed"
    skip hostile "the build or npm ci failed"
fi

# The Node.js sharded-adapter peer that Rust interop tests drive, checked on its own on a real
# three-primary Redis Cluster (no gateway binary needed).
if [ "$NODE_OK" -eq 1 ]; then
    stage node-peers 300 bash -c 'cd "$REPO/adapter-redis/tests/node" && node --test sharded-peer.test.js'
else
    skip node-peers "npm ci failed"
fi

# The compose cluster for real: a Docker engine (installed and started when missing), the image
# from deploy/Dockerfile, `docker compose up` and clients through nginx. Never skipped.
if [ "$NODE_OK" -eq 1 ]; then
    stage compose 1800 bash "$REPO/tests/compose/run.sh"
else
    skip compose "npm ci failed (the compose clients are socket.io-client processes)"
fi

if [ "$BUILD_OK" -eq 1 ] && [ "$PY_OK" -eq 1 ]; then
    stage python 300 bash -c 'cd "$REPO/tests/python" && "$VENV/bin/python" -m pytest -q -p no:cacheprovider'
else
    skip python "the build or the Python venv failed"
fi

log "summary (total $(($(date +%s) - RUN_START))s)"
printf '%s\n' "${SUMMARY[@]}"
echo
echo "stages: ${#PASSED[@]} passed, ${#FAILED[@]} failed"
[ ${#FAILED[@]} -eq 0 ]
