#!/usr/bin/env bash
# The benchmark of the gateway against the Node.js stack it replaces (issue 6), in one command:
#
#   bash tests/bench/run.sh            # full sizes (about 30 minutes)
#   bash tests/bench/run.sh --quick    # smoke sizes (a few minutes)
#   bash tests/bench/run.sh --quick --no-build   # reuse the release binaries already built
#
# Builds the release gateway and the load generator, installs the pinned npm packages of the
# Node.js reference server (npm ci) and matplotlib into <repo>/.venv, raises the open-file limit,
# runs every scenario against both stacks and writes BENCHMARKS.md, docs/bench/results.json and
# docs/bench/{latency,memory}.png. Extra arguments go to gateway-bench (e.g. --only idle,single).
# Not part of tests/run.sh.
set -euo pipefail

BUILD=1
ARGS=()
for arg in "$@"; do
    if [ "$arg" = "--no-build" ]; then BUILD=0; else ARGS+=("$arg"); fi
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
export PATH="$HOME/.cargo/bin:$PATH"

for tool in node npm redis-server ss python3 cargo; do
    if ! command -v "$tool" >/dev/null; then
        echo "run.sh: \`$tool\` is missing (node/npm: Node.js 20+; redis-server: apt-get install redis-server; ss: apt-get install iproute2)" >&2
        exit 1
    fi
done

# One descriptor per connection in the generator and in the node: as high as allowed.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
echo "run.sh: open-file limit $(ulimit -n)"

if [ "$BUILD" = 1 ]; then
    echo "run.sh: building the release gateway and gateway-bench"
    cargo build --release -p gateway -p gateway-tests --bin gateway --bin gateway-bench
fi
for bin in target/release/gateway target/release/gateway-bench; do
    [ -x "$bin" ] || { echo "run.sh: $bin is missing (run without --no-build)" >&2; exit 1; }
done

echo "run.sh: installing the Node.js reference server's packages"
(cd tests/bench/node && npm ci --no-audit --no-fund --loglevel=error)

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import matplotlib' 2>/dev/null; then
    .venv/bin/pip install --quiet -r tests/bench/requirements.txt
fi

commit="$(git rev-parse --short HEAD)"
if ! git diff --quiet HEAD -- gateway cluster adapter-redis 2>/dev/null; then
    commit="$commit plus uncommitted changes in gateway/cluster/adapter-redis"
fi

built="$(date -u -r target/release/gateway '+%Y-%m-%d %H:%M UTC')"
target/release/gateway-bench "${ARGS[@]}" \
    --command "bash tests/bench/run.sh${*:+ $*}" \
    --version-line "rustc=$(rustc --version)" \
    --version-line "gateway binary=target/release/gateway built $built; HEAD $commit"

.venv/bin/python tests/bench/charts.py docs/bench/results.json docs/bench
echo "run.sh: wrote BENCHMARKS.md, docs/bench/results.json, docs/bench/latency.png, docs/bench/memory.png"
