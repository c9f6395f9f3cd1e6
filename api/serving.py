"""`fenxiao serve --workers N`: N API processes under gunicorn, and the projection worker
as one process of its own beside them (not a thread in each: one worker is enough, and
the API processes stay stateless).

The worker process is `fenxiao worker` itself, started with the server and stopped with
it. If it dies, the API carries on and the master says so in its log: reads still answer
with the position they reflect, and projections stand still until a worker runs again
(on PostgreSQL any `fenxiao worker` anywhere takes over through the advisory locks).

On PostgreSQL the master also runs the writer (`fenxiao writer`, commands/writer_host.py):
the one process the API processes send their commands to, decided in order and committed
in batches. If it ends, the master starts another; meanwhile each API process decides its
commands itself.
"""
from __future__ import annotations

import gc
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from typing import Any, Callable

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from api.access_log import configure_for_serving
from api.server_errors import use_json_errors_in_gunicorn
from commands.writer_host import ADDRESS_ENV, KEY_ENV

WORKER_COMMAND = (sys.executable, "-m", "api.cli", "worker")
WRITER_COMMAND = (sys.executable, "-m", "api.cli", "writer")
WORKER_STOP_TIMEOUT_S = 20.0  # it stops between batches; then it is killed


class WorkerProcess:
    """A process the master runs beside the API processes: the projection worker, or the
    writer (`restart`: started again whenever it ends while the server runs)."""

    def __init__(self, command: tuple[str, ...] = WORKER_COMMAND,
                 what: str = "projection worker", restart: bool = False) -> None:
        self.command = command
        self.what = what
        self.restart = restart
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.reported = False

    def start(self, log: Any) -> None:
        self.process = subprocess.Popen(self.command)  # its output goes where ours goes
        log.info("%s started (pid: %s)", self.what, self.process.pid)

    def notice_exit(self, log: Any) -> None:
        """Say once if it ended while the server was not stopping (and start it again if
        it is the writer)."""
        if self.process is None or self.stopping or self.reported:
            return
        code = self.process.poll()
        if code is None:
            return
        if self.restart:
            log.error("the %s (pid: %s) %s; starting another", self.what,
                      self.process.pid, describe_exit(code))
            self.start(log)
            return
        self.reported = True
        log.error("the %s (pid: %s) %s; the API carries on without it, its read models "
                  "stand still until a `fenxiao worker` runs", self.what,
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


def freeze_startup_objects() -> None:
    """Call once a server process has built its app: what exists now (Flask, SQLAlchemy,
    the routes and schemas, the imported modules: hundreds of thousands of objects that
    live as long as the process) is moved out of the garbage collector's reach, so a full
    collection no longer walks it. Measured at 500 reads/s on two API processes: full
    collections paused a process 65-108 ms every few seconds (p99 45-55 ms); frozen, no
    pause above 5 ms (p99 4.6-5.8 ms)."""
    gc.collect()
    gc.freeze()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was stopped by {signal.Signals(-code).name}"
        except ValueError:
            return f"was stopped by signal {-code}"
    return f"exited with status {code}"


class _Arbiter(Arbiter):
    """Gunicorn's master, minding the writer and projection worker processes too."""

    def start(self) -> None:
        super().start()  # listening: a port that is taken has stopped us by now
        for companion in self.app.companions():
            companion.start(self.log)

    def reap_workers(self) -> None:
        # Gunicorn waits for any child that ended, ours included, and would drop its exit
        # status: look at ours first.
        for companion in self.app.companions():
            companion.notice_exit(self.log)
        super().reap_workers()

    def stop(self, graceful: bool = True) -> None:
        worker, writer = self.app.worker_process, self.app.writer_process
        if worker is not None:
            worker.terminate()  # it stops while the API processes finish their requests
        super().stop(graceful)
        if writer is not None:  # once no API process can send it a command
            writer.terminate()
            writer.wait()
        if worker is not None:
            worker.wait()


class Server(BaseApplication):  # type: ignore[misc]  # gunicorn has no type hints
    """Gunicorn, configured here (not from its command line or a file), loading the app in
    each API process after the fork, so that each opens its own engine and pool."""

    def __init__(self, make_app: Callable[[], Flask], options: dict[str, Any],
                 worker_process: WorkerProcess | None,
                 writer_process: WorkerProcess | None = None) -> None:
        self.make_app = make_app
        self.options = options
        self.worker_process = worker_process
        self.writer_process = writer_process
        super().__init__()

    def companions(self) -> list[WorkerProcess]:
        """The writer first: the API processes send it their commands."""
        return [p for p in (self.writer_process, self.worker_process) if p is not None]

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        app = self.make_app()
        use_json_errors_in_gunicorn()  # what gunicorn refuses itself, in our envelope
        configure_for_serving()
        freeze_startup_objects()
        return app

    def run(self) -> None:
        _Arbiter(self).run()


def serve(make_app: Callable[[], Flask], host: str, port: int, workers: int, threads: int,
          with_worker: bool, shared_writer: bool = False) -> None:
    """Serve until stopped (SIGTERM or SIGINT stop the API processes and the worker).
    `shared_writer`: the API processes send their commands to one writer process."""
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
    worker = WorkerProcess() if with_worker else None
    if not shared_writer:
        Server(make_app, options, worker).run()
        return
    with tempfile.TemporaryDirectory(prefix="fenxiao-writer-") as private:  # mode 0700
        # The API processes (forked from here) and the writer find both in the
        # environment they inherit.
        os.environ[ADDRESS_ENV] = os.path.join(private, "writer.sock")
        os.environ[KEY_ENV] = secrets.token_hex(32)
        writer = WorkerProcess(WRITER_COMMAND, "writer", restart=True)
        Server(make_app, options, worker, writer).run()
