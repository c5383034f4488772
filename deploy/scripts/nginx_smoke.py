#!/usr/bin/env python3
"""Run the shipped nginx config the way the end-to-end test will, and check what it forwards.

Copies nginx/ to a temporary directory, replaces only upstream.conf (one local backend) and
listen.conf (a free loopback port), starts
    nginx -c <tmp>/nginx.conf -p <tmp>/ -g 'daemon off; pid <tmp>/nginx.pid;'
in the foreground, and checks through it, against a small local HTTP backend that echoes the
request headers it received:
- /nginx-health answers 200 without a backend, and the Server header carries no version;
- a WebSocket upgrade request reaches the backend with Upgrade/Connection: upgrade, X-Real-IP set
  to the client and X-Forwarded-For with the client appended;
- a plain request reaches it with Connection: close (the $connection_upgrade map's default);
- /metrics is never proxied (404): Prometheus scrapes each node on the backend network.
nginx is stopped by its own PID. Exit 0 when all hold, 1 with a message otherwise.

Usage: nginx_smoke.py <repo>/nginx [nginx binary]
"""

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

DEADLINE_SECS = 10.0


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the request path and headers it received, as JSON."""

    def do_GET(self):  # noqa: N802 (http.server naming)
        body = json.dumps(
            {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(port, path, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def wait_until_up(port, nginx):
    deadline = time.monotonic() + DEADLINE_SECS
    while time.monotonic() < deadline:
        if nginx.poll() is not None:
            raise AssertionError(f"nginx exited early with code {nginx.returncode}")
        try:
            return request(port, "/nginx-health")
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nginx did not answer on 127.0.0.1:{port} within {DEADLINE_SECS}s")


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def run_checks(port, nginx):
    status, headers, body = wait_until_up(port, nginx)
    expect(status == 200 and body == b"ok\n", f"/nginx-health: {status} {body!r}")
    expect(headers.get("Server") == "nginx", f"server_tokens: Server header is {headers.get('Server')!r}")

    status, _, body = request(
        port,
        "/socket.io/?EIO=4&transport=websocket",
        {"Upgrade": "websocket", "Connection": "Upgrade", "X-Forwarded-For": "198.51.100.7"},
    )
    expect(status == 200, f"/socket.io/ through nginx: status {status}")
    seen = json.loads(body)["headers"]
    expect(seen.get("upgrade") == "websocket", f"Upgrade not forwarded: {seen}")
    expect(seen.get("connection") == "upgrade", f"Connection not 'upgrade': {seen}")
    expect(seen.get("x-real-ip") == "127.0.0.1", f"X-Real-IP: {seen}")
    expect(seen.get("x-forwarded-for") == "198.51.100.7, 127.0.0.1", f"X-Forwarded-For: {seen}")
    expect(seen.get("x-forwarded-proto") == "http", f"X-Forwarded-Proto: {seen}")

    status, _, body = request(port, "/ready")
    expect(status == 200, f"/ready through nginx: status {status}")
    seen = json.loads(body)["headers"]
    expect(seen.get("connection") == "close", f"plain request Connection: {seen}")
    expect("upgrade" not in seen, f"plain request carries Upgrade: {seen}")

    status, _, _ = request(port, "/metrics")
    expect(status == 404, f"/metrics through nginx: status {status}, expected 404")


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    source = os.path.abspath(argv[1])
    nginx_bin = argv[2] if len(argv) == 3 else "nginx"
    workdir = tempfile.mkdtemp(prefix="nginx-smoke-")
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    stderr_path = os.path.join(workdir, "nginx.stderr")
    try:
        prefix = os.path.join(workdir, "nginx")
        shutil.copytree(source, prefix)
        port = free_port()
        with open(os.path.join(prefix, "upstream.conf"), "w", encoding="utf-8") as handle:
            handle.write(f"server 127.0.0.1:{backend.server_address[1]} max_fails=3 fail_timeout=10s;\n")
        with open(os.path.join(prefix, "listen.conf"), "w", encoding="utf-8") as handle:
            handle.write(f"listen 127.0.0.1:{port};\n")
        with open(stderr_path, "wb") as stderr:
            nginx = subprocess.Popen(
                [nginx_bin, "-c", f"{prefix}/nginx.conf", "-p", f"{prefix}/",
                 "-g", f"daemon off; pid {prefix}/nginx.pid;"],
                stdout=subprocess.DEVNULL, stderr=stderr,
            )
        try:
            run_checks(port, nginx)
        finally:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(timeout=DEADLINE_SECS)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()
        print(f"nginx on 127.0.0.1:{port} -> backend 127.0.0.1:{backend.server_address[1]}: all checks held")
        return 0
    except AssertionError as error:
        print(f"nginx_smoke: {error}", file=sys.stderr)
        with open(stderr_path, encoding="utf-8", errors="replace") as log:
            sys.stderr.write(log.read()[-2000:])
        return 1
    finally:
        backend.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
