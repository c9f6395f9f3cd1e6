"""End to end against real processes: `fenxiao` CLI, the servers (waitress, gunicorn),
a worker."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest


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
    """Its stderr is read only if it fails to start: so no access log, whose lines would
    fill the pipe and stop the server mid-write (`start_logged` keeps them)."""
    return subprocess.Popen([*FENXIAO, *args], env={**env, "FENXIAO_ACCESS_LOG": "0"},
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


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


def raw_request(port: int, header: bytes) -> tuple[int, str, dict]:
    """A request with `header` as it is (what no HTTP library sends): the status, the
    Content-Type and the JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /api/v1/products HTTP/1.1\r\nHost: x\r\n" + header +
                     b"\r\nConnection: close\r\n\r\n")
        answer = b"".join(iter(lambda: conn.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers["Content-Type"], json.loads(body)


def refused_by_the_server_in_json(port: int) -> None:
    """What the HTTP server refuses before the app sees it answers in the envelope too."""
    for header in (b"Authorization: Bearer fx_abc\x00def", b"X-Note\x00: 1"):
        status, content_type, body = raw_request(port, header)
        assert (status, content_type) == (400, "application/json"), body
        assert body["error"]["code"] == "bad_request" and body["error"]["message"]


def test_serve_with_in_process_worker_on_sqlite(tmp_path: Path, processes) -> None:
    env = {**os.environ, "FENXIAO_DATABASE_URL": f"sqlite:///{tmp_path / 'e2e.db'}"}
    cli(env, "db", "upgrade")
    cli(env, "demo")
    port = free_port()
    processes.append(start(env, "serve", "--port", str(port)))
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_until_up(base, processes[0])
    exercise(base, env)
    refused_by_the_server_in_json(port)


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


# -- several processes: gunicorn API processes and one worker process -----------------

def start_logged(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    """As `start`, the process's stderr kept in `log` (read while it runs)."""
    with log.open("w") as sink:
        return subprocess.Popen([*FENXIAO, *args], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=sink, text=True)


def children(pid: int) -> list[tuple[int, list[str]]]:
    """The processes whose parent is `pid`, each with its command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode().split("\0")[:-1]
        except OSError:  # it ended meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append((int(entry.name), cmdline))
    return found


def wait_for(condition: Any, what: str, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def api_and_worker_processes(server: subprocess.Popen, api_processes: int
                             ) -> tuple[list[int], int]:
    """The server's API processes (gunicorn's forks) and its worker process."""
    def found() -> tuple[list[int], int] | None:
        kids = children(server.pid)
        workers = [pid for pid, cmdline in kids if cmdline[-1:] == ["worker"]]
        apis = [pid for pid, cmdline in kids if "serve" in cmdline]
        return (apis, workers[0]) if len(apis) == api_processes and workers else None
    return wait_for(found, f"{api_processes} API processes and a worker process")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; its parent has not collected it yet


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    assert server.wait(timeout=60) == 0


@pytest.mark.server
def test_several_api_processes_and_one_worker_process_on_postgresql(
        db_url: str, processes, tmp_path: Path) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("several API processes need PostgreSQL (SQLite is refused)")
    env = {**os.environ, "FENXIAO_DATABASE_URL": db_url}
    cli(env, "demo")
    port = free_port()
    server = start_logged(env, tmp_path / "serve.log", "serve", "--port", str(port),
                          "--workers", "2", "--threads", "2")
    processes.append(server)
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_until_up(base, server)
    (first, second), worker = api_and_worker_processes(server, 2)
    token = cli(env, "token", "create", "--role", "admin", "--name", "e2e")
    # Each API process alone in turn (the other stopped): both answer health, run a
    # command, and read it back once the worker process has projected it.
    for serving, paused in ((first, second), (second, first)):
        os.kill(paused, signal.SIGSTOP)
        try:
            assert call(base, "GET", "/health")[0] == 200
            status, receipt, _ = call(base, "POST", "/stock/receipts", token, {
                "sku": "TEA-LJ-250", "warehouse_id": "WH-EAST", "quantity": 1,
                "reference": f"via {serving}"})
            assert status == 201, receipt
            status, tea, headers = call(
                base, "GET", f"/inventory/TEA-LJ-250?min_position={receipt['position']}",
                token)
            assert status == 200 and int(headers["X-Fenxiao-Position"]) >= receipt["position"]
        finally:
            os.kill(paused, signal.SIGCONT)
    assert tea["on_hand"] == 160  # the demo's 160, 2 shipped, 2 received here
    refused_by_the_server_in_json(port)
    stop(server)
    assert not any(alive(pid) for pid in (first, second, worker))  # stopped with it


@pytest.mark.server
def test_one_api_process_beside_a_worker_process_that_may_die(tmp_path: Path,
                                                              processes) -> None:
    env = {**os.environ, "FENXIAO_DATABASE_URL": f"sqlite:///{tmp_path / 'e2e.db'}"}
    cli(env, "db", "upgrade")
    cli(env, "demo")
    port = free_port()
    log = tmp_path / "serve.log"
    server = start_logged(env, log, "serve", "--port", str(port), "--workers", "1")
    processes.append(server)
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_until_up(base, server)
    [api_process], worker = api_and_worker_processes(server, 1)
    exercise(base, env)  # read-your-writes: the worker process projects
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: "projection worker" in log.read_text()
             and "SIGKILL" in log.read_text(), "the server to say its worker died")
    assert call(base, "GET", "/health")[0] == 200  # it carries on
    stop(server)
    assert not alive(api_process)


def test_a_port_that_is_taken_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "FENXIAO_DATABASE_URL": f"sqlite:///{tmp_path / 'e2e.db'}"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for more in ([], ["--workers", "1"]):  # waitress, gunicorn
            done = subprocess.run([*FENXIAO, "serve", "--port", port, "--no-worker", *more],
                                  env=env, cwd=ROOT, capture_output=True, text=True,
                                  timeout=60)
            assert done.returncode == 1
            assert done.stderr.splitlines() == [
                f"Error: port {port} on 127.0.0.1 is taken: another server listens there; "
                "stop it or choose another --port"]
