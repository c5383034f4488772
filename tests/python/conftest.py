"""Starts the real gateway binary for the python-socketio tests and signs HS256 tokens."""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
GATEWAY_BIN = os.environ.get("GATEWAY_BIN", str(REPO_ROOT / "target" / "debug" / "gateway"))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign_hs256(claims: dict, secret: str) -> str:
    """A JWT signed HS256 with the standard library only."""
    now = int(time.time())
    payload = {"iat": now, "exp": now + 3600, **claims}
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(payload).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64url(mac)}"


class Gateway:
    def __init__(self, proc: subprocess.Popen, url: str, secret: str, stderr_path: Path):
        self.proc = proc
        self.url = url
        self.secret = secret
        self.stderr_path = stderr_path

    def token(self, user_id: str, username: str, role: str = "user") -> str:
        return sign_hs256({"userId": user_id, "username": username, "role": role}, self.secret)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-6000:]


@pytest.fixture
async def gateway(tmp_path, request):
    if not Path(GATEWAY_BIN).exists():
        pytest.fail(f"gateway binary not found at {GATEWAY_BIN}: run `cargo build -p gateway` or set GATEWAY_BIN")
    secret = secrets.token_hex(32)
    stderr_path = tmp_path / "gateway.stderr"
    args = [
        GATEWAY_BIN, "--port", "0", "--host", "127.0.0.1", "--jwt-secret", secret,
        "--connection-rate-limit", "100000", "--server-id", "python-e2e",
    ]
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, env=env)
    try:
        url = await asyncio.wait_for(asyncio.to_thread(_read_listening_line, proc), timeout=20)
        gw = Gateway(proc, url, secret, stderr_path)
        yield gw
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(f"----- gateway stderr -----\n{gw.stderr()}")
    except Exception:
        print(f"----- gateway stderr -----\n{stderr_path.read_text(errors='replace')[-6000:]}")
        raise
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _read_listening_line(proc: subprocess.Popen) -> str:
    assert proc.stdout is not None
    for raw in proc.stdout:
        m = re.match(r"^listening on (http://\S+)$", raw.decode(errors="replace").strip())
        if m:
            return m.group(1).rstrip("/")
    raise RuntimeError(f"gateway exited with {proc.wait()} before printing 'listening on'")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
