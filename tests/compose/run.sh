#!/usr/bin/env bash
# The compose stage: `bash tests/compose/run.sh` (also a stage of tests/run.sh, never skipped).
#
# Brings up docker-compose.yml for real and tests it through nginx, as an operator would use it:
#  1. a Docker engine (Debian's docker.io installed and dockerd started when none answers) with the
#     Compose v2 plugin (tests/compose/engine.sh);
#  2. base images: the official ones when a registry answers, else stand-ins built locally from
#     Debian packages under local names passed through the image variables (standins.sh);
#  3. the image built from the real deploy/Dockerfile (BuildKit, no frontend fetched);
#  4. `docker compose up --wait` with no .env at all: Redis, the secret generator, three nodes and
#     nginx, healthy; plus three client networks attached to nginx whose /24s ip_hash spreads
#     over the three nodes;
#  5. tests/compose/cluster.test.mjs: socket.io-client processes in containers on those networks
#     (cross-node chat, rooms, presence; SIGKILL of a node; graceful stop; pool scale out and in);
#  6. tests/compose/browser.test.mjs: two headless Chromium pages of the demo page chatting through
#     the published 127.0.0.1 port, with every request off that origin blocked;
#  7. `docker compose down -v` leaves no container, network or volume of the project.
# Prints the time of each step. Exit status 0 only when every step passed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
COMPOSE_TMP="$(mktemp -d "${TMPDIR:-/tmp}/compose-stage.XXXXXX")"
export COMPOSE_TMP
project="gateway-compose-test"
# shellcheck source=tests/compose/engine.sh
source "$repo/tests/compose/engine.sh"
# shellcheck source=tests/compose/standins.sh
source "$repo/tests/compose/standins.sh"

stage_start=$(date +%s)
step_start=$stage_start
timings=()
step() { # step NAME: closes the previous step's timing
    local now
    now=$(date +%s)
    timings+=("$(printf '%-58s %5ss' "$1" "$((now - step_start))")")
    printf '=== compose: %s (%ss)\n' "$1" "$((now - step_start))"
    step_start=$now
}
print_timings() {
    echo "=== compose stage timings"
    printf '%s\n' "${timings[@]}"
    echo "total $(($(date +%s) - stage_start))s"
}

ensure_engine
ensure_compose_plugin
step "engine and compose plugin ready"

rust_version=$(sed -n 's/^ARG RUST_VERSION=//p' deploy/Dockerfile)
choose_base_images "$rust_version"
step "base images (${BUILDER_IMAGE:-official})"

export GATEWAY_IMAGE="socketio-gateway:compose-test"
build_args=()
for var in BUILDER_IMAGE NODE_IMAGE RUNTIME_IMAGE; do
    [[ -n ${!var:-} ]] && build_args+=(--build-arg "$var=${!var}")
done
DOCKER_BUILDKIT=1 "$DOCKER" build -q -f deploy/Dockerfile -t "$GATEWAY_IMAGE" "${build_args[@]}" . >/dev/null
step "image built from deploy/Dockerfile"

# The published port: a free one, on 127.0.0.1 (the compose default bind address).
GATEWAY_HTTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export GATEWAY_HTTP_PORT

# Three client networks whose /24s nginx's ip_hash maps to three different nodes of the three, and
# one of which maps to a pool node once the pool adds two (ip_hash: hash over the first three
# octets, index hash % number of servers, in the order of upstream.conf).
read -r -a client_octets <<<"$(python3 - <<'PY'
def index(octets, peers):
    h = 89
    for o in octets:
        h = (h * 113 + o) % 6271
    return h % peers
candidates = [(172, 31, n) for n in range(200, 250)]
for a in candidates:
    for b in candidates:
        for c in candidates:
            if len({index(a, 3), index(b, 3), index(c, 3)}) == 3 and max(index(x, 5) for x in (a, b, c)) >= 3:
                print(a[2], b[2], c[2])
                raise SystemExit
raise SystemExit("no subnets found")
PY
)"
clients_file="$COMPOSE_TMP/clients.yml"
{
    echo "services:"
    echo "  nginx:"
    echo "    networks:"
    for i in 0 1 2; do
        echo "      client-$i:"
        echo "        aliases: [nginx]"
    done
    echo "networks:"
    for i in 0 1 2; do
        echo "  client-$i:"
        echo "    ipam:"
        echo "      config:"
        echo "        - subnet: 172.31.${client_octets[$i]}.0/24"
    done
} >"$clients_file"

: >"$COMPOSE_TMP/empty.env"
# No .env, no JWT_SECRET: what a newcomer types (the repository's own .env, if any, is ignored).
unset JWT_SECRET DEV_TOKENS GATEWAY_BIND_ADDRESS
compose_args=(compose -p "$project" --project-directory "$repo" --env-file "$COMPOSE_TMP/empty.env"
    -f "$repo/docker-compose.yml" -f "$clients_file")
scale_args=(-f "$repo/deploy/compose.scale.yml" --profile scale)

cleanup() {
    local rc=$?
    "$DOCKER" ps -aq --filter "label=$project-agent" | xargs -r "$DOCKER" rm -f >/dev/null 2>&1 || true
    if [[ $rc -ne 0 ]]; then
        local logs="${TMPDIR:-/tmp}/compose-stage-failure.log"
        "$DOCKER" "${compose_args[@]}" "${scale_args[@]}" logs --no-color --timestamps >"$logs" 2>&1 || true
        echo "=== compose: failed; the project's last log lines (all of them in $logs)"
        tail -n 60 "$logs"
    fi
    "$DOCKER" "${compose_args[@]}" "${scale_args[@]}" down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
    rm -rf "$COMPOSE_TMP"
    exit "$rc"
}
trap cleanup EXIT

# A leftover of an interrupted run would hold the names and subnets.
"$DOCKER" "${compose_args[@]}" "${scale_args[@]}" down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true

"$DOCKER" "${compose_args[@]}" up -d --wait --quiet-pull
step "docker compose up --wait (no .env): all healthy"

# The port answers on 127.0.0.1 only, and the node serves the client bundle and the page.
curl -fsS "http://127.0.0.1:$GATEWAY_HTTP_PORT/nginx-health" >/dev/null
curl -fsS -o "$COMPOSE_TMP/bundle.js" "http://127.0.0.1:$GATEWAY_HTTP_PORT/socket.io/socket.io.min.js"
cmp -s "$COMPOSE_TMP/bundle.js" "$repo/tests/node_modules/socket.io-client/dist/socket.io.min.js" \
    || { echo "compose: /socket.io/socket.io.min.js is not socket.io-client's own bundle"; exit 1; }
published=$("$DOCKER" "${compose_args[@]}" port nginx 8080)
[[ $published == 127.0.0.1:* ]] || { echo "compose: nginx published on $published, not 127.0.0.1"; exit 1; }
# The generated secret is shared by the nodes and printed nowhere.
if "$DOCKER" "${compose_args[@]}" logs --no-color 2>&1 | grep -qE '[0-9a-f]{64}'; then
    echo "compose: a 64-hex-digit value (the secret?) appears in the logs"; exit 1
fi
# `gateway token` in a node mints a token every node accepts (the documented admin path).
admin_token=$("$DOCKER" "${compose_args[@]}" exec -T gateway-1 /usr/local/bin/gateway token \
    --user-id ops --username ops --role admin | tail -n 1)
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $admin_token" \
    -H 'Content-Type: application/json' -d '{"message":"compose stage"}' \
    "http://127.0.0.1:$GATEWAY_HTTP_PORT/api/announce")
[[ $status == 200 ]] || { echo "compose: /api/announce with a 'gateway token' admin token answered $status"; exit 1; }
# Nodes answer /metrics on the backend network (what Prometheus scrapes).
"$DOCKER" "${compose_args[@]}" exec -T gateway-2 /usr/local/bin/gateway healthcheck --url http://gateway-1:3000/metrics
step "port on 127.0.0.1, client bundle, token, /metrics on the backend"

networks=()
for i in 0 1 2; do networks+=("\"${project}_client-$i\""); done
node_image=${NODE_IMAGE:-node:22-bookworm-slim}
(
    cd "$repo/tests"
    DOCKER="$DOCKER" \
    COMPOSE_ARGS="$(printf '%s\n' "${compose_args[@]}" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().split("\n")[:-1]))')" \
    COMPOSE_SCALE_ARGS="$(printf '%s\n' "${scale_args[@]}" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().split("\n")[:-1]))')" \
    CLIENT_NETWORKS="[$(IFS=,; echo "${networks[*]}")]" \
    NODE_IMAGE="$node_image" TESTS_DIR="$repo/tests" AGENT_LABEL="$project-agent" \
        node --test --test-concurrency=1 compose/cluster.test.mjs
)
step "clients on three /24s: chat, kill, stop, scale (cluster.test.mjs)"

(
    cd "$repo/tests"
    COMPOSE_URL="http://127.0.0.1:$GATEWAY_HTTP_PORT" node --test compose/browser.test.mjs
)
step "two Chromium pages chat through nginx (browser.test.mjs)"

"$DOCKER" "${compose_args[@]}" "${scale_args[@]}" down -v --remove-orphans
left=$("$DOCKER" ps -aq --filter "label=com.docker.compose.project=$project"; \
    "$DOCKER" network ls -q --filter "label=com.docker.compose.project=$project"; \
    "$DOCKER" volume ls -q --filter "label=com.docker.compose.project=$project")
[[ -z $left ]] || { echo "compose: down -v left: $left"; exit 1; }
step "docker compose down -v leaves nothing"
print_timings
echo "compose: 1 passed, 0 failed"
