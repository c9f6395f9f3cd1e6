"""Our projection runner: batched, exactly-once, woken by LISTEN/NOTIFY or by polling.

Exactly-once comes from the tracking write: each batch's read-model writes commit in the same
transaction as an upsert of the projection's position that succeeds only if the position is
still the one the batch started from. A second runner that read the same batch fails that
write and its whole transaction rolls back, so an event is never applied twice.
"""
from __future__ import annotations

import logging
import threading
import time
import zlib
from typing import Any, Callable, Iterable, Sequence

import sqlalchemy.exc
from eventsourcing.persistence import StoredEvent
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from commands.app import CoreApp
from commands.storage import NOTIFY_CHANNEL, insert_for, tracking
from projections.base import Projection

log = logging.getLogger("fenxiao.projections")


class TrackingConflict(Exception):
    """Another runner has moved this projection's position since the batch was read."""


def advance_tracking(conn: Connection, name: str, expected: int, new: int) -> None:
    """Move `name` from `expected` to `new` atomically, or raise TrackingConflict."""
    if new <= expected:
        raise TrackingConflict(f"{name}: position must move forward ({expected} -> {new})")
    stmt = insert_for(conn, tracking).values(name=name, position=new)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"], set_={"position": stmt.excluded.position},
        where=tracking.c.position == expected)
    if conn.execute(stmt).rowcount != 1:
        raise TrackingConflict(f"{name}: position moved away from {expected}")


def positions(conn: Connection) -> dict[str, int]:
    return {name: pos for name, pos in conn.execute(select(tracking.c.name, tracking.c.position))}


class ProjectionRunner:
    def __init__(self, app: CoreApp, projections: Sequence[Projection],
                 batch_size: int | None = None, poll_interval_s: float | None = None) -> None:
        self.app = app
        self.projections = {p.name: p for p in projections}
        self.batch_size = batch_size or app.settings.projection_batch_size
        self.is_postgres = app.engine.dialect.name == "postgresql"
        self.poll_interval_s = poll_interval_s or (2.0 if self.is_postgres else 0.2)
        self.events = app.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._locks = AdvisoryLocks(app) if self.is_postgres else None
        app.commit_listeners.append(lambda _position: self._wake.set())

    # -- one batch ---------------------------------------------------------------

    def run_batch(self, projection: Projection) -> int:
        """Apply the next batch of events to `projection`; return how many were read."""
        with self.app.datastore.transaction(commit=True) as session:
            conn = session.connection()
            start = self._lock_position(conn, projection.name)
            head = conn.execute(select(func.max(self.events.c.id))).scalar() or 0
            if head <= start:
                return 0
            rows = conn.execute(
                select(self.events.c.id, self.events.c.originator_id,
                       self.events.c.originator_version, self.events.c.topic,
                       self.events.c.state)
                .where(self.events.c.id > start, self.events.c.id <= head,
                       self.events.c.topic.in_(projection.topics()))
                .order_by(self.events.c.id).limit(self.batch_size)).all()
            # Fewer rows than asked for means nothing relevant is left up to the head.
            end = rows[-1].id if len(rows) == self.batch_size else head
            projection.apply_batch(conn, [self._decode(r) for r in rows])
            advance_tracking(conn, projection.name, start, end)
            return end - start

    def _lock_position(self, conn: Connection, name: str) -> int:
        """Read the position, holding its row lock on PostgreSQL so a second runner waits
        for this batch instead of reading the same events."""
        query = select(tracking.c.position).where(tracking.c.name == name)
        if self.is_postgres:
            query = query.with_for_update()
        start = conn.execute(query).scalar()
        if start is None:
            conn.execute(insert_for(conn, tracking).values(name=name, position=0)
                         .on_conflict_do_nothing())
            start = conn.execute(query).scalar()
        return start

    def position(self, name: str) -> int:
        with self.app.engine.connect() as conn:
            return positions(conn).get(name, 0)

    def _decode(self, row: Any) -> Any:
        state = row.state
        return self.app.mapper.to_domain_event(StoredEvent(
            originator_id=row.originator_id, originator_version=row.originator_version,
            topic=row.topic, state=bytes(state) if isinstance(state, memoryview) else state))

    def catch_up(self, names: Iterable[str] | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        """Run batches until every named projection (default all) is at the log head."""
        for name in list(self.projections) if names is None else names:
            projection = self.projections[name]
            while n := self._run_batch_retrying(projection):
                if progress:
                    progress(n)

    def _run_batch_retrying(self, projection: Projection) -> int:
        before = self.position(projection.name)
        try:
            return self.run_batch(projection)
        except TrackingConflict:
            return 1  # someone else advanced it; read again from their position
        except sqlalchemy.exc.IntegrityError:
            # Another runner's rows for the same batch collided with ours before our
            # tracking write could refuse: the same lost race, reported by a constraint.
            if self.position(projection.name) != before:
                return 1
            raise

    def rebuild(self, name: str, progress: Callable[[int], None] | None = None) -> None:
        """Empty a projection's tables and replay the whole log into them."""
        projection = self.projections[name]
        with self.app.datastore.transaction(commit=True) as session:
            conn = session.connection()
            projection.clear(conn)
            # Reset rather than delete, so an in-flight batch of another runner fails its
            # compare-and-set instead of inserting a fresh, later position.
            conn.execute(update(tracking).where(tracking.c.name == name).values(position=0))
        self.catch_up([name], progress)

    # -- background operation ------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._spawn(self._loop, "fenxiao-projections")
        if self.is_postgres:
            self._spawn(self._listen, "fenxiao-listen")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        if self._locks:
            self._locks.close()

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                held = self._locks.held(self.projections) if self._locks else self.projections
                self.catch_up(held)
            except Exception:  # keep serving; the next wake-up retries from the log
                log.exception("projection batch failed; retrying")
                self._stop.wait(1.0)
            self._wake.wait(self.poll_interval_s)

    def _listen(self) -> None:
        """Wake the loop on NOTIFY; reconnect whenever the connection drops."""
        import psycopg2
        import select as select_module

        args = self.app.engine.url.translate_connect_args(username="user", database="dbname")
        while not self._stop.is_set():
            try:
                conn = psycopg2.connect(**args)
                try:
                    conn.autocommit = True
                    conn.cursor().execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not self._stop.is_set():
                        if select_module.select([conn], [], [], 1.0)[0]:
                            conn.poll()
                            if conn.notifies:
                                conn.notifies.clear()
                                self._wake.set()
                finally:
                    conn.close()
            except Exception:
                log.warning("LISTEN connection lost; polling until it is back", exc_info=True)
                self._stop.wait(1.0)


class AdvisoryLocks:
    """PostgreSQL session-level advisory locks: one worker at a time per projection; the
    others stand by and take over when its connection (and so its locks) goes away."""

    def __init__(self, app: CoreApp) -> None:
        self.app = app
        self._conn: Any = None
        self._held: set[str] = set()

    def held(self, projections: dict[str, Projection]) -> list[str]:
        try:
            if self._conn is None:
                self._conn = self.app.engine.raw_connection()
                self._conn.detach()
                self._conn.autocommit = True
                self._held.clear()
            cursor = self._conn.cursor()
            for name in projections:
                if name not in self._held:
                    cursor.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(name),))
                    if cursor.fetchone()[0]:
                        self._held.add(name)
        except Exception:
            self.close()
            raise
        return [name for name in projections if name in self._held]

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
        self._conn = None
        self._held.clear()


def lock_key(name: str) -> int:
    return zlib.crc32(f"fenxiao-projection:{name}".encode()) - (1 << 31)


def wait_for_position(app: CoreApp, names: Sequence[str], min_position: int,
                      timeout_s: float) -> int | None:
    """Block until every named projection has applied `min_position`; return the lowest of
    their positions, or None on time-out."""
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        with app.engine.connect() as conn:
            current = positions(conn)
        lowest = min(current.get(name, 0) for name in names)
        if lowest >= min_position:
            return lowest
        if time.monotonic() >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
