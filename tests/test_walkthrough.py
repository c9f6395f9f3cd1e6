"""The README's walkthrough of the API (docs/walkthrough.sh) run against a real server, and
held to the README's examples, so that what the README shows is what works."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.test_server import ROOT, cli, free_port, start, wait_until_up

SCRIPT = ROOT / "docs" / "walkthrough.sh"
README = ROOT / "README.md"
MARKER = "<!-- walkthrough: docs/walkthrough.sh -->"


@pytest.mark.server
def test_the_walkthrough_runs_against_a_real_server(tmp_path: Path, processes) -> None:
    env = {**os.environ, "FENXIAO_DATABASE_URL": f"sqlite:///{tmp_path / 'walk.db'}"}
    cli(env, "db", "upgrade")
    cli(env, "demo")
    token = cli(env, "token", "create", "--role", "admin", "--name", "walkthrough")
    port = free_port()
    processes.append(start(env, "serve", "--port", str(port)))
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_until_up(base, processes[0])
    done = subprocess.run(["bash", str(SCRIPT)], env={**env, "BASE": base, "TOKEN": token},
                          cwd=tmp_path, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    log = done.stdout
    for figure in ("ok: the amount paid (24600)", "ok: the order's status (delivered)",
                   "ok: the case's status (refunded)", "ok: the amount refunded (12300)",
                   "ok: r[\"pending\"] > 0", "ok: r[\"reversed\"] > 0",
                   "ok: the purchase order's status (received)", "walkthrough OK"):
        assert figure in log, log[-4000:]


def commands(lines: list[str]) -> list[str]:
    """Lines of shell as compared: whitespace collapsed, blank lines and comments left out."""
    kept = (" ".join(line.split()) for line in lines)
    return [line for line in kept if line and not line.startswith("#")]


def readme_walkthrough() -> list[list[str]]:
    """The README's code blocks marked as the walkthrough's, each a list of commands."""
    blocks = re.findall(re.escape(MARKER) + r"\n```sh\n(.*?)\n```", README.read_text(),
                        re.DOTALL)
    return [commands(block.splitlines()) for block in blocks]


def is_curl(line: str) -> bool:
    return line.startswith("curl ") or bool(re.match(r"[A-Z_]+=\$\(curl ", line))


def test_the_readme_shows_what_the_walkthrough_runs() -> None:
    script = commands(SCRIPT.read_text().splitlines())
    blocks = readme_walkthrough()
    assert len(blocks) >= 7, "the README's walkthrough blocks are marked with " + MARKER
    shown = [line for block in blocks for line in block]
    # every line the README shows is in the script, in the README's order ...
    position = 0
    for line in shown:
        assert line in script[position:], f"README line not in docs/walkthrough.sh " \
                                          f"(or out of order): {line}"
        position = script.index(line, position) + 1
    # ... and every request the script makes is shown
    missing = [line for line in script if is_curl(line) and line not in shown]
    assert not missing, f"requests of docs/walkthrough.sh not in the README: {missing}"
