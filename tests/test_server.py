"""End to end against real processes: `fenxiao` CLI, the waitress server, a worker."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


FENXIAO = [sys.executable, "-m", "api.cli"]
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*FENXIAO, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def call(base: str, method: str, path: str, token: str | None = None,
         body: Any = None) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(
        base + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json",
                 **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([*FENXIAO, *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_until_up(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr and server.stderr.read()
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server did not come up")


def exercise(base: str, env: dict[str, str]) -> None:
    token = cli(env, "token", "create", "--role", "admin", "--name", "e2e")
    status, health, _ = call(base, "GET", "/health")
    assert status == 200 and health["status"] == "ok"
    status, receipt, _ = call(base, "POST", "/stock/receipts", token, {
        "sku": "TEA-LJ-250", "warehouse_id": "WH-EAST", "quantity": 5, "reference": "E2E"})
    assert status == 201, receipt
    status, tea, headers = call(base, "GET",
                                f"/inventory/TEA-LJ-250?min_position={receipt['position']}",
                                token)
    assert status == 200 and tea["on_hand"] == 163  # the demo shipped 2 of its 160
    assert int(headers["X-Fenxiao-Position"]) >= receipt["position"]
    assert call(base, "GET", "/inventory", None)[0] == 401


def test_serve_with_in_process_worker_on_sqlite(tmp_path: Path, processes) -> None:
    env = {**os.environ, "FENXIAO_DATABASE_URL": f"sqlite:///{tmp_path / 'e2e.db'}"}
    cli(env, "db", "upgrade")
    cli(env, "demo")
    port = free_port()
    processes.append(start(env, "serve", "--port", str(port)))
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_until_up(base, processes[0])
    exercise(base, env)


def test_api_and_separate_worker_processes(db_url: str, processes) -> None:
    env = {**os.environ, "FENXIAO_DATABASE_URL": db_url}
    cli(env, "demo")
    port = free_port()
    processes.append(start(env, "serve", "--port", str(port), "--no-worker"))
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_until_up(base, processes[0])
    status, health, _ = call(base, "GET", "/health")
    assert all(p["lag"] > 0 for p in health["projections"])  # nobody projects yet
    processes.append(start(env, "worker"))
    exercise(base, env)
    cli(env, "projections", "rebuild")  # with the worker running: still exactly once
    token = cli(env, "token", "create", "--role", "auditor", "--name", "after-rebuild")
    assert call(base, "GET", "/inventory/TEA-LJ-250", token)[1]["on_hand"] == 163
