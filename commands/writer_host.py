"""One writer for all the API processes of `fenxiao serve --workers N`.

A writer in each API process decides against its own copies of the aggregates: two
processes taking orders for the same stock items meet at every commit, and each then
decides holding the event table's lock, one process after the other, while its own
request threads compete with it for the interpreter (measured: two processes placed 0.8x
what one did). So the API processes send their commands (values: commands/messages) over
a local socket to one writer process, which decides them in order against what it holds
and commits them in batches, exactly as a single process's writer does
(commands/writer.py); the API processes do the HTTP, the tokens, the validation and the
JSON, on every core.

The socket is a Unix socket in a directory only the server's user can enter, and a
connection must prove it knows the server's random key before anything is read from it
(multiprocessing.connection's challenge): the pickled commands come only from the API
processes the same server started.

An API process that cannot reach the writer (not started yet, restarting) decides the
command itself, through its own writer: the same rules and the same store, so the same
outcome, only without the shared batches. If the writer process ends after a command was
sent and before it answered, the command may or may not have been committed: the request
is answered 503 `writer_unavailable`, and its repeat with the same Idempotency-Key returns
the committed outcome or runs it now (exactly once either way).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener, wait
from typing import Any

from commands.app import CommandContext, Reply, StoredRefusal, StoreMismatch
from commands.messages import Command
from commands.writer import Ask, HeldAggregates, Writer
from domain.errors import DomainError

log = logging.getLogger(__name__)

ADDRESS_ENV = "FENXIAO_WRITER_SOCKET"  # the Unix socket's path
KEY_ENV = "FENXIAO_WRITER_KEY"  # hex; the key a connection must prove it knows
ANSWER_TIMEOUT_S = 60.0  # a writer silent this long is treated as gone


class WriterUnavailable(Exception):
    """The writer process stopped between taking a command and answering it: whether the
    command was committed is not known here (its Idempotency-Key will tell)."""

    code = "writer_unavailable"


class WriterHost:
    """The writer process's side, on one thread: it waits for commands on every API
    connection at once, decides all that arrived together as one batch (the writer of
    commands/writer.py, run here on this thread) and sends each reply on its connection.
    No thread per connection: a command costs no thread switches in this process, and
    the writer never waits for the interpreter behind another thread."""

    def __init__(self, app: Any, address: str, key: bytes, max_batch: int = 64) -> None:
        self.app = app
        self.writer = Writer(app, max_batch=max_batch)  # its own thread is not started
        with contextlib.suppress(FileNotFoundError):  # a writer before us was killed
            os.unlink(address)
        self.listener = Listener(address, family="AF_UNIX", authkey=key)
        self.closed = False
        self._joined: list[Connection] = []  # accepted, not yet waited on
        self._wake_read, self._wake_write = os.pipe()  # wakes the loop for a new one

    def serve_forever(self) -> None:
        self.app.check_store()  # never write beside events we cannot read
        threading.Thread(target=self._accept, daemon=True,
                         name="fenxiao-writer-accept").start()
        connections: list[Connection] = []
        while not self.closed:
            ready = wait([self._wake_read, *connections], timeout=1.0)
            if self._wake_read in ready:
                os.read(self._wake_read, 4096)
                while self._joined:
                    connections.append(self._joined.pop())
            asks: list[tuple[Ask, Connection]] = []
            for conn in ready:
                if conn is self._wake_read:
                    continue
                try:
                    command, status, context, request_hash = conn.recv()
                except (EOFError, OSError):  # the API process closed it (or ended)
                    connections.remove(conn)
                    conn.close()
                    continue
                asks.append((Ask(functools.partial(command.handle, self.app), status,
                                 context, request_hash), conn))
            for start in range(0, len(asks), self.writer.max_batch):
                self._decide(asks[start:start + self.writer.max_batch], connections)
        for conn in connections:
            conn.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn = self.listener.accept()
            except (OSError, EOFError, AuthenticationError) as error:
                if not self.closed:
                    log.warning("a connection to the writer was refused: %s", error)
                continue
            self._joined.append(conn)
            os.write(self._wake_write, b"+")

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        os.write(self._wake_write, b"!")

    def _decide(self, asks: list[tuple[Ask, Connection]], connections: list[Connection]
                ) -> None:
        try:
            self.writer.decide([ask for ask, _ in asks])
        except BaseException as error:  # a bug: nobody may wait for ever
            self.writer.held = HeldAggregates(self.writer.held.maxsize)
            for ask, _ in asks:
                if not ask.answer.done():
                    ask.answer.set_exception(error)
        for ask, conn in asks:
            try:
                conn.send(answer(ask))
            except OSError:  # that API process ended: nobody to tell
                if conn in connections:
                    connections.remove(conn)
                conn.close()


def answer(ask: Ask) -> tuple[str, Any]:
    """What to send back for a decided ask: ("reply", Reply), ("refused", status,
    envelope), or ("failed", kind, message) for anything else (a bug: a 500 over there)."""
    error = ask.answer.exception()
    if error is None:
        return ("reply", ask.answer.result())
    if isinstance(error, DomainError):  # its status and body, as it was first given
        return ("refused", error.status, error.envelope())
    log.error("a command failed in the writer process", exc_info=error)
    return ("failed", type(error).__name__, str(error))


class WriterLink:
    """An API process's side: one connection to the writer process per request thread."""

    def __init__(self, address: str, key: bytes) -> None:
        self.address, self.key = address, key
        self._local = threading.local()

    @classmethod
    def from_env(cls) -> "WriterLink | None":
        address, key = os.environ.get(ADDRESS_ENV), os.environ.get(KEY_ENV)
        if not address or not key:
            return None
        return cls(address, bytes.fromhex(key))

    def execute(self, command: Command, status: int, context: CommandContext,
                request_hash: str) -> Reply | None:
        """The command's reply from the writer process; None if it could not be sent
        (decide it here); a refusal raised as the DomainError it was there."""
        conn = self._connection()
        if conn is None:
            return None
        try:
            conn.send((command, status, context, request_hash))
        except OSError:  # not sent whole: the writer reads no half message
            self._drop()
            return None
        try:
            if not conn.poll(ANSWER_TIMEOUT_S):  # stuck: its late answer must not be
                raise TimeoutError  # read as the next command's, so the line is dropped
            answer = conn.recv()
        except (EOFError, OSError) as error:
            self._drop()
            raise WriterUnavailable(
                "the writer process stopped (or stalled) before answering: repeat the "
                "request with the same Idempotency-Key to learn its outcome") from error
        kind, *rest = answer
        if kind == "reply":
            return rest[0]
        if kind == "refused":
            status, body = rest
            raise StoredRefusal(status, body)
        name, message = rest
        if name == StoreMismatch.__name__:
            raise StoreMismatch(message)
        raise RuntimeError(f"{name} in the writer process: {message}")

    def _connection(self) -> Connection | None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = Client(self.address, family="AF_UNIX", authkey=self.key)
            except (OSError, EOFError):  # not listening (yet, or any more)
                return None
            except AuthenticationError:  # another server's socket: never ours to use
                log.error("the writer at %s refused this process's key", self.address)
                return None
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            conn.close()
