"""The webhook sender: pushes each endpoint's public events to it, in log order, at least
once, signed (Standard Webhooks), from the worker process and never from a request.

Each endpoint has its own cursor (`fenxiao_webhook_cursors`) and its own thread, so a slow
or dead receiver only ever delays itself. A step reads the endpoint's next events after
its cursor (commands/feed.py, personal data masked as for an integration token), sends
them one by one, and records every attempt together with the cursor's new place in one
transaction. A crash before that commit sends the same events again, with the same
`webhook-id`: at least once, never lost.

A failed event is retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (the first
attempt being immediate); after the eighth failure it is marked failed for that endpoint
and the next event is sent. An endpoint failing without a single success for
`webhook_disable_after_s` is disabled (an event of the endpoint, which the notifications
read model tells operators about).

On PostgreSQL every endpoint is held by one sender at a time, through a session advisory
lock; a standby worker takes it over when the holder's connection goes away. The cursor's
update is a compare-and-set, so even an overlap cannot move it twice.

Destinations are checked again at every step, after resolving the host now; the request
itself (signature, time-outs, no redirects) is projections/webhook_http.py's.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import orjson
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from commands.app import CommandContext
from commands.feed import INTEGRATION, read_page, topics_for
from commands.messages import DisableWebhook
from commands.storage import insert_for, webhook_cursors, webhook_deliveries
from commands.webhooks import check_destination
from domain.errors import DomainError
from domain.webhooks import ENABLED, WebhookEndpoint, WebhookUrlRefused
from projections.runner import AdvisoryLocks
from projections.wakeups import log_signal
from projections.webhook_http import (CONNECT_TIMEOUT_S, TOTAL_TIMEOUT_S, Outcome, Poster,
                                      signature_header)

log = logging.getLogger("fenxiao.webhooks")

# Seconds to wait after the 1st, 2nd, ... 7th failed attempt; the 8th failure gives up.
RETRY_DELAYS_S = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
MAX_ATTEMPTS = len(RETRY_DELAYS_S) + 1
STEP_EVENTS = 200  # events sent between two commits of the cursor
STEP_SECONDS = 1.0  # ... or this long, whichever comes first
IDLE_WAIT_S = 1.0  # an idle endpoint looks at the log at least this often
SENDER = CommandContext(actor="webhook-sender")


@dataclass
class Cursor:
    position: int
    attempts: int
    next_attempt_at: datetime | None
    failing_since: datetime | None
    replays_applied: int
    enables_applied: int

    def row(self) -> dict[str, Any]:
        return {"position": self.position, "attempts": self.attempts,
                "next_attempt_at": self.next_attempt_at, "failing_since": self.failing_since,
                "replays_applied": self.replays_applied,
                "enables_applied": self.enables_applied}


def utc(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


class EndpointSender:
    """One endpoint's deliveries; `step` is one round: send what is due, record it."""

    def __init__(self, app: Any, webhook_id: str, registered_position: int,
                 clock: Callable[[], datetime], allow_private: bool,
                 poster: Poster) -> None:
        self.app = app
        self.webhook_id = webhook_id
        self.aggregate_id = WebhookEndpoint.create_id(webhook_id)
        self.registered_position = registered_position
        self.clock = clock
        self.allow_private = allow_private
        self.poster = poster
        self.stopping = threading.Event()

    def step(self) -> float | None:
        """Send what is due; the seconds until something is due again (None: nothing is
        known to be due; wait for the log to advance)."""
        endpoint = self.app.find(self.aggregate_id)
        if endpoint is None:
            return None
        cursor = self._cursor(endpoint)
        if endpoint.status != ENABLED:
            return None
        now = self.clock()
        if cursor.next_attempt_at is not None and now < cursor.next_attempt_at:
            return (cursor.next_attempt_at - now).total_seconds()
        with self.app.engine.connect() as conn:
            page = read_page(self.app, conn, cursor.position, topics_for(endpoint.types),
                             STEP_EVENTS, INTEGRATION, pings_of=self.aggregate_id)
        if not page.items:
            if page.next_after > cursor.position and cursor.attempts == 0:
                self._save(cursor, Cursor(**{**cursor.row(), "position": page.next_after}),
                           [])
            return None
        return self._send(endpoint, cursor, page.items)

    def _send(self, endpoint: WebhookEndpoint, cursor: Cursor,
              items: list[dict[str, Any]]) -> float | None:
        new = Cursor(**cursor.row())
        attempts: list[dict[str, Any]] = []
        started = time.monotonic()
        address = self._address(endpoint, new, items[0], attempts)
        due: float | None = 0.0  # all sent: look for more at once
        if address is None and new.next_attempt_at is not None:
            due = max((new.next_attempt_at - self.clock()).total_seconds(), 0.001)
        for item in items if address is not None else ():
            if self.stopping.is_set() or time.monotonic() - started > STEP_SECONDS:
                due = 0.0
                break
            now = self.clock()
            outcome = self._post(endpoint, address, item, now)
            if self._record(new, item, outcome, now, attempts):
                continue
            due = max((new.next_attempt_at - now).total_seconds(), 0.001) \
                if new.next_attempt_at else 0.0
            break
        self._save(cursor, new, attempts)
        self._disable_if_failing_too_long(new)
        return due

    def _address(self, endpoint: WebhookEndpoint, new: Cursor, first: dict[str, Any],
                 attempts: list[dict[str, Any]]) -> str | None:
        """The checked address to send to now, or None: the refusal is recorded as a
        failed attempt of the next event (retried as any failure; the host may change)."""
        try:
            return check_destination(endpoint.url, self.allow_private)[0]
        except WebhookUrlRefused as refused:
            now = self.clock()
            self._record(new, first, Outcome(False, None, f"refused: {refused.message}", 0),
                         now, attempts)
            return None

    def _post(self, endpoint: WebhookEndpoint, address: str, item: dict[str, Any],
              now: datetime) -> Outcome:
        body = orjson.dumps(item)
        timestamp = int(now.timestamp())
        headers = {"webhook-id": item["id"], "webhook-timestamp": str(timestamp),
                   "webhook-signature": signature_header(endpoint.secrets_at(now), item["id"],
                                                         timestamp, body)}
        return self.poster.post(endpoint.url, address, headers, body)

    def _record(self, new: Cursor, item: dict[str, Any], outcome: Outcome, now: datetime,
                attempts: list[dict[str, Any]]) -> bool:
        """Note the attempt and move the cursor; whether the next event may be sent now."""
        attempt = new.attempts + 1
        if outcome.ok:
            result, new.position, new.attempts = "delivered", item["position"], 0
            new.next_attempt_at, new.failing_since = None, None
        elif attempt >= MAX_ATTEMPTS:
            result, new.position, new.attempts, new.next_attempt_at = (
                "failed", item["position"], 0, None)
            new.failing_since = new.failing_since or now
        else:
            result, new.attempts = "retrying", attempt
            new.next_attempt_at = now + timedelta(seconds=RETRY_DELAYS_S[attempt - 1])
            new.failing_since = new.failing_since or now
        attempts.append({"webhook_id": self.webhook_id, "event_id": item["id"],
                         "event_type": item["type"], "position": item["position"],
                         "attempt": attempt, "at": now, "status_code": outcome.status_code,
                         "latency_ms": outcome.latency_ms, "error": outcome.error,
                         "outcome": result})
        return result != "retrying"

    def _disable_if_failing_too_long(self, cursor: Cursor) -> None:
        limit_s = self.app.settings.webhook_disable_after_s
        if cursor.failing_since is None or \
                (self.clock() - cursor.failing_since).total_seconds() < limit_s:
            return
        command = DisableWebhook(self.webhook_id, automatic=True, reason=(
            f"{self.webhook_id}: every delivery failed since "
            f"{cursor.failing_since.isoformat()} (more than {limit_s} s)"))
        try:
            self.app.execute(functools.partial(command.handle, self.app), context=SENDER)
        except DomainError as refused:  # disabled meanwhile by an operator: nothing to do
            log.info("webhook %s: not disabled: %s", self.webhook_id, refused)

    # -- the cursor ---------------------------------------------------------------------

    def _cursor(self, endpoint: WebhookEndpoint) -> Cursor:
        """The endpoint's cursor (made at its registration's position on first use),
        rewound by a replay asked for since and started afresh by an enabling since."""
        with self.app.engine.connect() as conn:
            row = conn.execute(select(webhook_cursors).where(
                webhook_cursors.c.webhook_id == self.webhook_id)).first()
        if row is None:
            with self._transaction() as conn:
                conn.execute(insert_for(conn, webhook_cursors).values(
                    webhook_id=self.webhook_id, **Cursor(
                        self.registered_position, 0, None, None, 0, 0).row())
                    .on_conflict_do_nothing())
            return self._cursor(endpoint)
        cursor = Cursor(row.position, row.attempts, utc(row.next_attempt_at),
                        utc(row.failing_since), row.replays_applied, row.enables_applied)
        new = Cursor(**cursor.row())
        if endpoint.replays > cursor.replays_applied:
            new.position, new.replays_applied = endpoint.replay_from, endpoint.replays
            new.attempts, new.next_attempt_at = 0, None
        if endpoint.enables > cursor.enables_applied:
            new.enables_applied = endpoint.enables
            new.attempts, new.next_attempt_at, new.failing_since = 0, None, None
        if new != cursor:
            self._save(cursor, new, [])
        return new

    def _save(self, old: Cursor, new: Cursor, attempts: list[dict[str, Any]]) -> None:
        """The attempts and the cursor's new place, in one transaction; the cursor only if
        it is still where this step found it (else another sender moved it: this step's
        attempts are still facts, and are kept)."""
        c = webhook_cursors.c
        with self._transaction() as conn:
            if attempts:
                conn.execute(webhook_deliveries.insert(), attempts)
            moved = conn.execute(update(webhook_cursors).where(
                c.webhook_id == self.webhook_id, c.position == old.position,
                c.attempts == old.attempts, c.replays_applied == old.replays_applied,
                c.enables_applied == old.enables_applied).values(**new.row())).rowcount
        if moved != 1:
            log.warning("webhook %s: its cursor was moved by another sender",
                        self.webhook_id)


    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """The datastore's transaction: on SQLite it holds the process's write lock, so
        the sender's writes queue behind the writer's instead of meeting a locked file."""
        with self.app.datastore.transaction(commit=True) as session:
            yield session.connection()


class WebhookSender:
    """Every endpoint's sender, each in a thread of its own, in the worker process."""

    def __init__(self, app: Any, clock: Callable[[], datetime] | None = None,
                 allow_private: bool | None = None, refresh_s: float = 1.0,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 total_timeout_s: float = TOTAL_TIMEOUT_S) -> None:
        self.app = app
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.allow_private = (app.settings.webhook_allow_private if allow_private is None
                              else allow_private)
        self.refresh_s = refresh_s
        self.timeouts = (connect_timeout_s, total_timeout_s)
        self.signal = log_signal(app)
        self._stop = threading.Event()
        self._threads: dict[str, tuple[threading.Thread, EndpointSender]] = {}
        self._supervisor: threading.Thread | None = None
        self._locks = AdvisoryLocks(app) if app.engine.dialect.name == "postgresql" else None

    def endpoint(self, webhook_id: str, registered_position: int) -> EndpointSender:
        return EndpointSender(self.app, webhook_id, registered_position, self.clock,
                              self.allow_private, Poster(*self.timeouts))

    def run_once(self) -> None:
        """Every endpoint's due deliveries, here and now, one step each until nothing
        is due at once (for tests and the command line; the worker uses threads)."""
        for endpoint, position in self.app.webhook_endpoints():
            sender = self.endpoint(endpoint.webhook_id, position)
            try:
                while sender.step() == 0.0:
                    pass
            finally:
                sender.poster.close()

    def wake(self) -> None:
        self.signal.notify()

    def start(self) -> "WebhookSender":
        self._stop.clear()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                            name="fenxiao-webhooks")
        self._supervisor.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._supervisor is not None:
            self._supervisor.join(timeout=10)
        self._stop_threads(list(self._threads))
        if self._locks:
            self._locks.close()

    def _supervise(self) -> None:
        """Every `refresh_s`: a thread for each enabled endpoint this worker holds, none
        for the others (not on every commit: the endpoints' threads wake on those)."""
        while not self._stop.is_set():
            try:
                self._adjust_threads()
            except Exception:  # the database is away: keep trying
                log.exception("webhook sender: cannot list endpoints; retrying")
                self._stop_threads(list(self._threads))  # our locks may be gone
            self._stop.wait(self.refresh_s)

    def _adjust_threads(self) -> None:
        endpoints = {e.webhook_id: (e, position)
                     for e, position in self.app.webhook_endpoints()}
        wanted = [i for i, (e, _) in endpoints.items() if e.status == ENABLED]
        held = set(self._locks.held([f"webhook:{i}" for i in wanted])) if self._locks \
            else {f"webhook:{i}" for i in wanted}
        mine = {i for i in wanted if f"webhook:{i}" in held}
        self._stop_threads([i for i in self._threads if i not in mine])
        for webhook_id in mine - self._threads.keys():
            sender = self.endpoint(webhook_id, endpoints[webhook_id][1])
            thread = threading.Thread(target=self._run_endpoint, args=(sender,), daemon=True,
                                      name=f"fenxiao-webhook-{webhook_id}")
            self._threads[webhook_id] = (thread, sender)
            thread.start()

    def _stop_threads(self, webhook_ids: list[str]) -> None:
        stopped = [self._threads.pop(i) for i in webhook_ids if i in self._threads]
        if not stopped:
            return  # (a wake-up here would wake the supervisor itself, for ever)
        for _thread, sender in stopped:
            sender.stopping.set()
        self.wake()
        # A thread waiting on a hung receiver ends with its request's time-out: all of
        # them within one such time-out, not one after the other.
        deadline = time.monotonic() + TOTAL_TIMEOUT_S + 1
        for thread, _sender in stopped:
            thread.join(timeout=max(deadline - time.monotonic(), 0.0))

    def _run_endpoint(self, sender: EndpointSender) -> None:
        try:
            while not sender.stopping.is_set() and not self._stop.is_set():
                seen = self.signal.version
                try:
                    due = sender.step()
                except Exception:
                    log.exception("webhook %s: a step failed; trying again",
                                  sender.webhook_id)
                    due = IDLE_WAIT_S
                if due == 0.0:
                    continue
                self.signal.wait(seen, IDLE_WAIT_S if due is None else
                                 min(max(due, 0.01), IDLE_WAIT_S))
        finally:
            sender.poster.close()
