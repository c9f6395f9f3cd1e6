"""Schemathesis, a client nobody here wrote, against a real server and our OpenAPI
document: every check, the examples, coverage, fuzzing and stateful phases, a fixed seed
and a bounded time. Any failure fails the test (on SQLite and on PostgreSQL)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.test_server import FENXIAO, cli, free_port, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# A few minutes in CI; quick while iterating. Seconds per database.
MAX_TIME_S = int(os.environ.get("FENXIAO_SCHEMATHESIS_S") or (150 if os.environ.get("CI")
                                                                else 30))


def test_schemathesis_finds_nothing(db_url: str, processes, tmp_path: Path) -> None:
    env = {**os.environ, "FENXIAO_DATABASE_URL": db_url, "FENXIAO_RATE_LIMIT": "off",
           "FENXIAO_AUTH_FAILURE_LIMIT": "off"}
    cli(env, "demo")  # real ids for the fuzzer to find
    token = cli(env, "token", "create", "--role", "admin", "--name", "schemathesis")
    port = free_port()
    log = (tmp_path / "server.log").open("w")  # a pipe nobody reads could fill and block
    processes.append(subprocess.Popen([*FENXIAO, "serve", "--port", str(port)], env=env,
                                      cwd=ROOT, stdout=log, stderr=log, text=True))
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_until_up(base, processes[0])
    run = subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
         "run", f"{base}/openapi.json", "--checks", "all",
         "--phases", "examples,coverage,fuzzing,stateful", "--seed", "20261125",
         "--max-time", str(MAX_TIME_S), "--workers", "1", "--no-color",
         "-H", f"Authorization: Bearer {token}"],
        cwd=tmp_path, env={**env, "SCHEMATHESIS_HOOKS": ""}, capture_output=True,
        text=True, timeout=MAX_TIME_S * 3 + 120)
    summary = run.stdout[run.stdout.rfind("SUMMARY"):]
    print(summary)
    assert run.returncode == 0, (run.stdout[-20000:] + run.stderr[-5000:]
                                 + (tmp_path / "server.log").read_text()[-5000:])
