""""The log has advanced": one signal per application, for those who wait on the log
outside the projection runner (the event feed's long polls, the webhook sender).

It is woken by the same notifications the projections use: the application's commit
listeners for commands committed in this process, and on PostgreSQL the NOTIFY every
write sends on the event table's channel (one LISTEN connection per process, started on
first use, reconnecting when it drops). Waiters also time out, so a lost wake-up costs
at most their timeout.
"""
from __future__ import annotations

import logging
import select as select_module
import threading
import time
import weakref
from typing import Any

from commands.storage import NOTIFY_CHANNEL

log = logging.getLogger("fenxiao.wakeups")
IDLE_CLOSE_S = 10.0  # the LISTEN connection closes when nobody has waited for this long


class LogSignal:
    def __init__(self, app: Any) -> None:
        self._changed = threading.Condition()
        self._version = 0
        self._listening = False
        self._last_wait = time.monotonic()
        self._app = weakref.ref(app)
        app.commit_listeners.append(lambda _position: self.notify())

    @property
    def version(self) -> int:
        """Read before looking at the log; `wait(version, ...)` then returns at once if
        anything was committed in between."""
        return self._version

    def notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout_s: float) -> bool:
        """Until the log advances past what was seen at `seen`, or the time-out (False)."""
        self._last_wait = time.monotonic()
        self._ensure_listening()
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._version == seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def _ensure_listening(self) -> None:
        app = self._app()
        if self._listening or app is None or app.engine.dialect.name != "postgresql":
            return
        with self._changed:
            if self._listening:
                return
            self._listening = True
        args = app.engine.url.translate_connect_args(username="user", database="dbname")
        threading.Thread(target=self._listen, args=(args,), name="fenxiao-log-listen",
                         daemon=True).start()

    def _wanted(self) -> bool:
        return self._app() is not None and \
            time.monotonic() - self._last_wait < IDLE_CLOSE_S

    def _listen(self, args: dict[str, Any]) -> None:
        try:
            self._listen_while_wanted(args)
        finally:
            with self._changed:
                self._listening = False  # the next wait starts another

    def _listen_while_wanted(self, args: dict[str, Any]) -> None:
        import psycopg2

        while self._wanted():
            try:
                conn = psycopg2.connect(**args)
                try:
                    conn.autocommit = True
                    conn.cursor().execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.notify()  # anything committed while we were not listening
                    while self._wanted():
                        if select_module.select([conn], [], [], 1.0)[0]:
                            conn.poll()
                            if conn.notifies:
                                conn.notifies.clear()
                                self.notify()
                finally:
                    conn.close()
            except Exception:
                log.warning("LISTEN connection lost; waiters time out until it is back",
                            exc_info=True)
                time.sleep(1.0)


_signals: "weakref.WeakKeyDictionary[Any, LogSignal]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def log_signal(app: Any) -> LogSignal:
    """The application's signal, made on first use."""
    with _lock:
        signal = _signals.get(app)
        if signal is None:
            signal = _signals[app] = LogSignal(app)
        return signal
