"""`fenxiao serve --workers N`: N API processes under gunicorn, and the projection worker
as one process of its own beside them (not a thread in each: one worker is enough, and
the API processes stay stateless).

The worker process is `fenxiao worker` itself, started with the server and stopped with
it. If it dies, the API carries on and the master says so in its log: reads still answer
with the position they reflect, and projections stand still until a worker runs again
(on PostgreSQL any `fenxiao worker` anywhere takes over through the advisory locks).
"""
from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any, Callable

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

WORKER_COMMAND = (sys.executable, "-m", "api.cli", "worker")
WORKER_STOP_TIMEOUT_S = 20.0  # it stops between batches; then it is killed


class WorkerProcess:
    """The projection worker beside the API processes."""

    def __init__(self, command: tuple[str, ...] = WORKER_COMMAND) -> None:
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.reported = False

    def start(self, log: Any) -> None:
        self.process = subprocess.Popen(self.command)  # its output goes where ours goes
        log.info("projection worker started (pid: %s)", self.process.pid)

    def notice_exit(self, log: Any) -> None:
        """Say once if the worker ended while the server was not stopping."""
        if self.process is None or self.stopping or self.reported:
            return
        code = self.process.poll()
        if code is not None:
            self.reported = True
            log.error("the projection worker (pid: %s) %s; the API carries on without it, "
                      "its read models stand still until a `fenxiao worker` runs",
                      self.process.pid, describe_exit(code))

    def terminate(self) -> None:
        self.stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def wait(self) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=WORKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was stopped by {signal.Signals(-code).name}"
        except ValueError:
            return f"was stopped by signal {-code}"
    return f"exited with status {code}"


class _Arbiter(Arbiter):
    """Gunicorn's master, minding the projection worker process too (when there is one)."""

    def start(self) -> None:
        super().start()  # listening: a port that is taken has stopped us by now
        if self.app.worker_process is not None:
            self.app.worker_process.start(self.log)

    def reap_workers(self) -> None:
        # Gunicorn waits for any child that ended, ours included, and would drop its exit
        # status: look at ours first.
        if self.app.worker_process is not None:
            self.app.worker_process.notice_exit(self.log)
        super().reap_workers()

    def stop(self, graceful: bool = True) -> None:
        worker = self.app.worker_process
        if worker is not None:
            worker.terminate()  # it stops while the API processes finish their requests
        super().stop(graceful)
        if worker is not None:
            worker.wait()


class Server(BaseApplication):  # type: ignore[misc]  # gunicorn has no type hints
    """Gunicorn, configured here (not from its command line or a file), loading the app in
    each API process after the fork, so that each opens its own engine and pool."""

    def __init__(self, make_app: Callable[[], Flask], options: dict[str, Any],
                 worker_process: WorkerProcess | None) -> None:
        self.make_app = make_app
        self.options = options
        self.worker_process = worker_process
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.make_app()

    def run(self) -> None:
        _Arbiter(self).run()


def serve(make_app: Callable[[], Flask], host: str, port: int, workers: int, threads: int,
          with_worker: bool) -> None:
    """Serve until stopped (SIGTERM or SIGINT stop the API processes and the worker)."""
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "preload_app": False,  # an engine opened before the fork would share its sockets
        "proc_name": "fenxiao",
        # As waitress: X-Forwarded-* headers change nothing (a proxy in front decides).
        "forwarded_allow_ips": "",
        # Gunicorn's control socket has one path per user: two servers would fight over it.
        "control_socket_disable": True,
    }
    Server(make_app, options, WorkerProcess() if with_worker else None).run()
