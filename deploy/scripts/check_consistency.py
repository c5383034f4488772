#!/usr/bin/env python3
"""Cross-file checks that no single validator can make (deploy/verify.sh runs this).

Each schema validator sees one file; these rules tie the files together: the environment
variable names are the contract's (docs/protocol.md, section "Configuration"), proxy timeouts outlast a Socket.IO
ping cycle, grace periods outlast the gateway's own shutdown, nginx and compose agree on names
and ports, and the probes hit the right endpoints.

Usage: check_consistency.py <compose config JSON> <rendered kustomization YAML> <nginx dir> <Dockerfile>
"""

import json
import re
import sys
from pathlib import Path

import yaml

# The names of the original design's contract (docs/protocol.md, "Configuration"): the gateway
# must read every one of them.
CONTRACT_ENV = {
    "PORT", "HOST", "SERVER_ID", "JWT_SECRET", "JWT_PUBLIC_KEY_FILE", "JWT_ALGORITHM", "REDIS_URL",
    "ALLOWED_ORIGINS", "TRUSTED_PROXIES", "CONNECTION_RATE_LIMIT", "EVENT_RATE_LIMIT", "EVENT_RATE_BURST",
    "BANNED_WORDS", "PING_INTERVAL_MS", "PING_TIMEOUT_MS", "MAX_PAYLOAD_BYTES", "STATS_TTL_SECS",
    "DRAIN_SECS", "GRACE_SECS", "STATIC_DIR", "LOG_FORMAT", "OTEL_EXPORTER_OTLP_ENDPOINT", "DEV_MODE",
    "ALLOW_EIO3", "HISTORY_SIZE",
}


def gateway_env_names():
    """Every environment variable the gateway's command line reads (`env = "NAME"` in its clap
    arguments). Read from the source rather than listed here, so that a new setting needs no
    edit of this file and a misspelt name in compose, Kubernetes or the Dockerfile (which the
    gateway would silently ignore) is still caught."""
    src = Path(__file__).resolve().parents[2] / "gateway" / "src"
    names = set()
    for path in src.rglob("*.rs"):
        names |= set(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', path.read_text()))
    return names


KNOWN_ENV = gateway_env_names()
DEFAULTS = {"PING_INTERVAL_MS": 25000, "PING_TIMEOUT_MS": 60000, "DRAIN_SECS": 5, "GRACE_SECS": 30}
GATEWAY_IMAGE_PREFIX = "socketio-gateway"


class Checker:
    def __init__(self):
        self.failures = []
        self.count = 0

    def expect(self, condition, message):
        self.count += 1
        if not condition:
            self.failures.append(message)


def seconds(text):
    match = re.fullmatch(r"(\d+)(ms|s|m)?", str(text).strip())
    if not match:
        raise ValueError(f"cannot read duration {text!r}")
    value, unit = int(match.group(1)), match.group(2) or "s"
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


def ping_cycle_secs(env):
    return (int(env.get("PING_INTERVAL_MS", DEFAULTS["PING_INTERVAL_MS"]))
            + int(env.get("PING_TIMEOUT_MS", DEFAULTS["PING_TIMEOUT_MS"]))) / 1000


def nginx_directive(text, name):
    return re.findall(rf"^\s*{name}\s+([^;]+);", text, flags=re.MULTILINE)


def check_compose(c, compose, nginx_conf, upstream_conf, listen_conf):
    services = compose["services"]
    # The gateway image also runs the one-shot `init-secret` service, which is no node.
    gateways = {name: svc for name, svc in services.items()
                if str(svc.get("image", "")).startswith(GATEWAY_IMAGE_PREFIX)
                and (svc.get("command") or [""])[0] != "init-secret"}
    c.expect({"gateway-1", "gateway-2", "gateway-3"} <= set(gateways), f"compose gateway services: {sorted(gateways)}")
    ids = []
    for name, svc in gateways.items():
        env = svc.get("environment") or {}
        unknown = set(env) - KNOWN_ENV
        c.expect(not unknown, f"compose {name}: environment names outside the contract: {sorted(unknown)}")
        c.expect("JWT_SECRET" in env and bool(env.get("JWT_SECRET_FILE")),
                 f"compose {name}: needs JWT_SECRET (optional) and the generated JWT_SECRET_FILE")
        c.expect(env.get("REDIS_URL", "").startswith("redis://redis:"), f"compose {name}: REDIS_URL {env.get('REDIS_URL')}")
        if "SERVER_ID" in env:
            ids.append(env["SERVER_ID"])
        elif not svc.get("deploy", {}).get("replicas"):
            c.expect(False, f"compose {name}: neither SERVER_ID nor a replicated service")
        grace = int(env.get("GRACE_SECS", DEFAULTS["GRACE_SECS"]))
        c.expect(int(env.get("DRAIN_SECS", DEFAULTS["DRAIN_SECS"])) < grace, f"compose {name}: DRAIN_SECS >= GRACE_SECS")
        c.expect(seconds(svc.get("stop_grace_period", "10s")) > grace,
                 f"compose {name}: stop_grace_period {svc.get('stop_grace_period')} not longer than GRACE_SECS {grace}")
        test = " ".join((svc.get("healthcheck") or {}).get("test") or [])
        c.expect("healthcheck" in test and test.endswith("/ready"), f"compose {name}: healthcheck {test!r}")
        c.expect((svc.get("depends_on") or {}).get("redis", {}).get("condition") == "service_healthy",
                 f"compose {name}: must wait for a healthy redis")
        for timeout in nginx_directive(nginx_conf, "proxy_read_timeout") + nginx_directive(nginx_conf, "proxy_send_timeout"):
            c.expect(seconds(timeout) > ping_cycle_secs(env),
                     f"nginx timeout {timeout} not longer than {name}'s ping interval + timeout ({ping_cycle_secs(env)} s)")
    c.expect(len(ids) == len(set(ids)), f"compose SERVER_IDs repeat: {ids}")

    hosts = re.findall(r"^\s*server\s+([^:\s]+):(\d+)", upstream_conf, flags=re.MULTILINE)
    c.expect(bool(hosts), "nginx/upstream.conf lists no server")
    for host, port in hosts:
        c.expect(host in gateways, f"nginx/upstream.conf names {host}, not a compose gateway service")
        env = (gateways.get(host) or {}).get("environment") or {}
        c.expect(port == str(env.get("PORT", "3000")), f"nginx/upstream.conf port {port} for {host}")
    nginx = services.get("nginx") or {}
    listen = re.findall(r"^\s*listen\s+(?:[\d.]+:)?(\d+)", listen_conf, flags=re.MULTILINE)
    targets = [str(p.get("target")) for p in nginx.get("ports") or []]
    c.expect(len(listen) == 1 and targets == listen, f"compose nginx ports {targets} vs nginx/listen.conf {listen}")
    health = " ".join((nginx.get("healthcheck") or {}).get("test") or [])
    c.expect(bool(listen) and f":{listen[0]}/nginx-health" in health, f"compose nginx healthcheck {health!r}")
    waits = nginx.get("depends_on") or {}
    c.expect(all(waits.get(h, {}).get("condition") == "service_healthy" for h, _ in hosts),
             f"compose nginx must wait for healthy {[h for h, _ in hosts]}")
    c.expect(set(nginx_directive(nginx_conf, "server_tokens")) == {"off"}, "nginx: server_tokens off")


def find(documents, kind, name):
    for document in documents:
        if document.get("kind") == kind and document.get("metadata", {}).get("name") == name:
            return document
    return None


def check_kubernetes(c, documents, nginx_conf):
    config = find(documents, "ConfigMap", "gateway-config")
    deployment = find(documents, "Deployment", "gateway")
    hpa = find(documents, "HorizontalPodAutoscaler", "gateway")
    ingress = find(documents, "Ingress", "gateway")
    for kind, found in (("ConfigMap", config), ("Deployment", deployment), ("HorizontalPodAutoscaler", hpa),
                        ("Ingress", ingress), ("Service", find(documents, "Service", "gateway")),
                        ("PodDisruptionBudget", find(documents, "PodDisruptionBudget", "gateway")),
                        ("Deployment redis", find(documents, "Deployment", "redis"))):
        c.expect(found is not None, f"kustomization renders no {kind}")
    if None in (config, deployment, hpa, ingress):
        return
    data = config.get("data") or {}
    c.expect(not set(data) - KNOWN_ENV, f"ConfigMap names the gateway does not read: {sorted(set(data) - KNOWN_ENV)}")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {item["name"]: item for item in container.get("env") or []}
    c.expect(not set(env) - KNOWN_ENV, f"Deployment env the gateway does not read: {sorted(set(env) - KNOWN_ENV)}")
    c.expect(env.get("SERVER_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
             "Deployment: SERVER_ID from the downward API (metadata.name)")
    c.expect("secretKeyRef" in env.get("JWT_SECRET", {}).get("valueFrom", {}), "Deployment: JWT_SECRET from a Secret")
    c.expect(container["readinessProbe"]["httpGet"]["path"] == "/ready", "readinessProbe must GET /ready")
    c.expect(container["livenessProbe"]["httpGet"]["path"] == "/health", "livenessProbe must GET /health")
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = int(data.get("GRACE_SECS", DEFAULTS["GRACE_SECS"]))
    c.expect(int(data.get("DRAIN_SECS", DEFAULTS["DRAIN_SECS"])) < grace, "ConfigMap: DRAIN_SECS >= GRACE_SECS")
    c.expect(pod["terminationGracePeriodSeconds"] > pre_stop + grace,
             f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} <= preStop {pre_stop} + GRACE_SECS {grace}")
    c.expect(str(container["ports"][0]["containerPort"]) == str(data.get("PORT", "3000")), "containerPort != PORT")
    c.expect(bool(pod.get("topologySpreadConstraints")), "Deployment: topologySpreadConstraints")
    c.expect("replicas" not in deployment["spec"], "Deployment sets replicas although the HPA owns them")
    metrics = {m.get("resource", {}).get("name") or m.get("pods", {}).get("metric", {}).get("name")
               for m in hpa["spec"]["metrics"]}
    c.expect({"cpu", "socketio_connections_active"} <= metrics, f"HPA metrics {metrics}")
    c.expect(hpa["spec"].get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds", 0) >= 300,
             "HPA scale-down must be slow (stabilizationWindowSeconds >= 300)")
    annotations = ingress["metadata"].get("annotations") or {}
    c.expect(annotations.get("nginx.ingress.kubernetes.io/affinity") == "cookie", "Ingress: cookie affinity")
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        value = annotations.get(f"nginx.ingress.kubernetes.io/{key}", "60")
        c.expect(seconds(value) > ping_cycle_secs(data), f"Ingress {key} {value} not longer than the ping cycle")


def check_dockerfile(c, dockerfile):
    c.expect(re.search(r"^HEALTHCHECK\b.*?/ready", dockerfile, flags=re.MULTILINE | re.DOTALL) is not None,
             "Dockerfile: HEALTHCHECK on /ready")
    c.expect("--locked" in dockerfile and "-p gateway" in dockerfile, "Dockerfile: cargo build --locked -p gateway")
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    c.expect(bool(users) and users[-1].split(":")[0] not in ("0", "root"), f"Dockerfile: last USER {users}")
    names = set(re.findall(r"^\s*(?:ENV\s+)?([A-Z][A-Z0-9_]*)=", dockerfile, flags=re.MULTILINE))
    c.expect(not names - KNOWN_ENV, f"Dockerfile ENV the gateway does not read: {sorted(names - KNOWN_ENV)}")
    c.expect("STATIC_DIR" in names, "Dockerfile: STATIC_DIR set")


def main(argv):
    if len(argv) != 5:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        compose = json.load(handle)
    with open(argv[2], encoding="utf-8") as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d]
    read = lambda path: open(path, encoding="utf-8").read()  # noqa: E731
    nginx_conf = read(f"{argv[3]}/nginx.conf")
    checker = Checker()
    checker.expect(not CONTRACT_ENV - KNOWN_ENV,
                   f"contract settings the gateway does not read: {sorted(CONTRACT_ENV - KNOWN_ENV)}")
    check_compose(checker, compose, nginx_conf, read(f"{argv[3]}/upstream.conf"), read(f"{argv[3]}/listen.conf"))
    check_kubernetes(checker, documents, nginx_conf)
    check_dockerfile(checker, read(argv[4]))
    for failure in checker.failures:
        print(f"inconsistent: {failure}", file=sys.stderr)
    print(f"{checker.count - len(checker.failures)} of {checker.count} cross-file rules hold")
    return 1 if checker.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
