"""Our projection runner: batched, exactly-once, woken by LISTEN/NOTIFY or by polling.

Exactly-once comes from the tracking write: each batch's read-model writes commit in the same
transaction as an upsert of the projection's position that succeeds only if the position is
still the one the batch started from. A second runner that read the same batch fails that
write and its whole transaction rolls back, so an event is never applied twice.

An event that cannot be applied never stalls a projection: when a batch fails because of
its events, it is applied again one event at a time, each in a savepoint; an event that
fails alone is parked (a row in `fenxiao_parked`, committed with the batch's other writes
and its tracking position) and the projection carries on past it. `retry_parked` re-applies
parked events after a fix. Failures of the database itself are never parked: the batch is
retried whole.

Process managers (projections/policies.py) take another path, because a command opens its
own transaction (on SQLite a second writer would wait on the batch's open one forever): the
runner reads a batch of their events, issues each event's commands (each its own
transaction, keyed by the event that caused it, so a redelivery is "already done"), then
advances the tracking position, with the events whose commands were refused parked, in one
short compare-and-set transaction. The worker also ticks the time rules (commands/tick.py)
every `tick_interval_s`.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import zlib
from typing import Any, Callable, Iterable, Iterator, Sequence

import eventsourcing.persistence
import sqlalchemy.exc
from eventsourcing.persistence import StoredEvent
from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.engine import Connection

from commands.app import ConcurrencyConflict, CoreApp, StoreMismatch
from commands.storage import NOTIFY_CHANNEL, insert_for, parked_events, tracking
from domain.errors import DomainError
from projections.base import Projection
from projections.parking import begin_for_savepoints, describe, park, unwrap
from projections.policies import ProcessManager, all_process_managers

log = logging.getLogger("fenxiao.projections")

MAX_POLL_S = 0.02  # a reader waiting on a worker of another process looks this often
READ_WINDOW = 20_000  # log positions a read of a batch looks through, to begin with
MAX_READ_WINDOW = 1 << 22  # ... and at most, for a projection whose events are sparse


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


def lock_position(conn: Connection, name: str) -> int:
    """Read `name`'s position (0 for a new name), holding its row lock on PostgreSQL so a
    second runner (or sealer) waits for this batch instead of reading the same events."""
    query = select(tracking.c.position).where(tracking.c.name == name)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    start = conn.execute(query).scalar()
    if start is None:
        conn.execute(insert_for(conn, tracking).values(name=name, position=0)
                     .on_conflict_do_nothing())
        start = conn.execute(query).scalar_one()
    return start


def positions(conn: Connection) -> dict[str, int]:
    return {name: pos for name, pos in conn.execute(select(tracking.c.name, tracking.c.position))}


# Built once, not on every query's read (building it took about 6 % of a read's CPU).
_NAMED_POSITIONS = select(tracking.c.name, tracking.c.position).where(
    tracking.c.name.in_(bindparam("names", expanding=True)))


def lowest_position(conn: Connection, names: Sequence[str]) -> int:
    """The lowest position of the projections `names` (0 for one that never ran), reading
    only their rows."""
    found = dict(conn.execute(_NAMED_POSITIONS, {"names": list(names)}).all())
    return min(found.get(name, 0) for name in names)


# Failures of the database, the connection or our own transaction handling, which say
# nothing about the event being applied: the batch is retried whole, nothing is parked.
_NOT_THE_EVENTS_FAULT = (
    TrackingConflict,
    sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.InternalError, sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError, sqlalchemy.exc.PendingRollbackError,
    sqlalchemy.exc.ResourceClosedError,
    eventsourcing.persistence.OperationalError, eventsourcing.persistence.InterfaceError,
    eventsourcing.persistence.InternalError,
)


def is_the_events_fault(error: Exception) -> bool:
    """Whether `error`, raised while decoding or applying one event, comes from that event
    (its data meets a handler, a column or a constraint it cannot satisfy: DataError,
    IntegrityError, a value the driver cannot bind, an exception in handler code)."""
    cause = unwrap(error)
    if isinstance(error, _NOT_THE_EVENTS_FAULT) or isinstance(cause, _NOT_THE_EVENTS_FAULT):
        return False
    return not (isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.connection_invalidated)


def is_a_refusal(error: Exception) -> bool:
    """Whether a process manager's command failed because of its event (a business rule
    refused it, or handler code cannot deal with the event): parked. Contention and a
    store the cipher key does not fit are passing troubles: the batch is retried."""
    if isinstance(error, (ConcurrencyConflict, StoreMismatch)):
        return False
    return isinstance(error, DomainError) or is_the_events_fault(error)


class ProjectionRunner:
    def __init__(self, app: CoreApp, projections: Sequence[Projection],
                 batch_size: int | None = None, poll_interval_s: float | None = None,
                 process_managers: Sequence[ProcessManager] = (),
                 tick_interval_s: float | None = None) -> None:
        self.app = app
        self.projections = {p.name: p for p in projections}
        self.process_managers = {m.name: m for m in process_managers}
        self.batch_size = batch_size or app.settings.projection_batch_size
        # Small: a crash mid-batch makes the batch's done commands run again (as no-ops).
        self.process_batch_size = min(self.batch_size, 100)
        self.tick_interval_s = tick_interval_s  # None: the background worker never ticks
        self.ticks: list[dict[str, Any]] = []  # the last few ticks' results, for tests
        self.is_postgres = app.engine.dialect.name == "postgresql"
        self.poll_interval_s = poll_interval_s or (2.0 if self.is_postgres else 0.2)
        self.events = app.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
        self._windows: dict[str, int] = {}  # positions the next read looks through
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._locks = AdvisoryLocks(app) if self.is_postgres else None
        self._on_commit = lambda _position: self._wake.set()  # removed by a scratch build
        app.commit_listeners.append(self._on_commit)

    # -- one batch ---------------------------------------------------------------

    def run_batch(self, projection: Projection, *, one_by_one: bool = False,
                  until: int | None = None) -> int:
        """Apply the next batch of events to `projection` (none after `until`); return how
        many positions it moved. `one_by_one` applies each event in its own savepoint and
        parks those that fail, for a batch that failed as a whole."""
        with self._transaction() as conn:
            if one_by_one:
                begin_for_savepoints(conn)
            start = lock_position(conn, projection.name)
            rows, end = self._read_batch(conn, projection, start, until=until)
            if end == start:
                return 0
            if one_by_one:
                self._apply_one_by_one(conn, projection, rows)
            else:
                projection.apply_batch(conn, [self._decode(r) for r in rows])
            advance_tracking(conn, projection.name, start, end)
            return end - start

    def _transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """A transaction to write a batch in, as a context giving its connection; a scratch
        build (projections/scratch.py) gives its own connection instead."""
        return _session_connection(self.app)

    def _read_batch(self, conn: Connection, projection: Projection | ProcessManager,
                    start: int, limit: int | None = None,
                    until: int | None = None) -> tuple[list[Any], int]:
        """The projection's next events after `start` (none after `until`), and the
        position the batch ends at."""
        limit = limit or self.batch_size
        head = conn.execute(select(func.max(self.events.c.id))).scalar() or 0
        if until is not None:
            head = min(head, until)
        if head <= start:
            return [], start
        # One query looks at a bounded range of positions: over the whole rest of the log,
        # PostgreSQL may read all of the projection's events there (then sort them) for
        # every batch of a busy projection.
        window = self._windows.get(projection.name, READ_WINDOW)
        end = min(head, start + max(window, limit))
        rows = conn.execute(
            self._event_rows()
            .where(self.events.c.id > start, self.events.c.id <= end,
                   self.events.c.topic.in_(projection.topics()))
            .order_by(self.events.c.id).limit(limit)).all()
        # Fewer rows than asked for means nothing relevant is left up to `end`: the next
        # read looks further (the index on (topic, id) makes a read cost the rows it
        # finds). A full batch sets the window to the span it took, so a dense stretch
        # is not read (and sorted) far beyond one batch.
        if len(rows) < limit:
            self._windows[projection.name] = min(window * 4, MAX_READ_WINDOW)
            return rows, end
        self._windows[projection.name] = max(READ_WINDOW, rows[-1].id - start)
        return rows, rows[-1].id

    def _event_rows(self) -> Any:
        return select(self.events.c.id, self.events.c.originator_id,
                      self.events.c.originator_version, self.events.c.topic,
                      self.events.c.state)

    def _apply_one_by_one(self, conn: Connection, projection: Projection,
                          rows: Sequence[Any]) -> None:
        for row in rows:
            try:
                self._apply_in_savepoint(conn, projection, row)
            except Exception as error:
                if not is_the_events_fault(error):
                    raise
                park(conn, projection.name, row, error)

    def _apply_in_savepoint(self, conn: Connection, projection: Projection, row: Any) -> None:
        # A failed statement aborts a PostgreSQL transaction: only the savepoint is lost.
        with conn.begin_nested():
            projection.apply_batch(conn, [self._decode(row)])

    def position(self, name: str) -> int:
        with self.app.engine.connect() as conn:
            return positions(conn).get(name, 0)

    def _decode(self, row: Any) -> Any:
        state = row.state
        return self.app.mapper.to_domain_event(StoredEvent(
            originator_id=row.originator_id, originator_version=row.originator_version,
            topic=row.topic, state=bytes(state) if isinstance(state, memoryview) else state))

    def catch_up(self, names: Iterable[str] | None = None,
                 progress: Callable[[int], None] | None = None,
                 until: int | None = None) -> None:
        """Run batches until every named projection and process manager (default all)
        is at the log head, or at position `until` (one already past it stays put)."""
        for name in self.names() if names is None else names:
            if name in self.process_managers:
                run = functools.partial(self._run_process_batch_retrying,
                                        self.process_managers[name], until)
            else:
                run = functools.partial(self._run_batch_retrying, self.projections[name],
                                        until)
            while n := run():
                positions_advanced()
                if progress:
                    progress(n)

    def run_tail(self, names: Sequence[str]) -> list[str]:
        """The live tail, in one transaction: when the named projections and process
        managers are less than a batch behind the log, read the new events once, apply
        to every projection those past its own position, and move every position to the
        end together with those writes (a process manager only if none of them is its:
        its commands run on their own path, `catch_up`). A command then reaches every
        read model in one commit, where a transaction per projection took ~7 ms each.
        Returns the names still to catch up: all of them when the tail does not apply
        (one far behind, a new one, a batch that fails: `catch_up` parks what must be)."""
        names = list(names)
        try:
            with self._transaction() as conn:
                at = self._positions_locked(conn, names)
                if at is None:
                    return names
                rows = conn.execute(self._event_rows()
                                    .where(self.events.c.id > min(at.values()))
                                    .order_by(self.events.c.id)
                                    .limit(self.batch_size + 1)).all()
                if not rows or len(rows) > self.batch_size:
                    return [] if not rows else names
                done, left = self._apply_tail(conn, at, rows)
                self._advance_all(conn, at, done, rows[-1].id)
        except TrackingConflict:
            return names
        except Exception as error:
            if not is_the_events_fault(error):
                raise
            return names  # applied a projection at a time, its bad event parked
        positions_advanced()
        return left

    def _positions_locked(self, conn: Connection, names: Sequence[str]
                          ) -> dict[str, int] | None:
        """The positions of `names` (their rows locked on PostgreSQL); None if one has no
        row yet."""
        query = select(tracking.c.name, tracking.c.position).where(tracking.c.name.in_(names))
        if self.is_postgres:
            query = query.with_for_update()
        found = dict(conn.execute(query).all())
        return found if len(found) == len(set(names)) else None

    def _apply_tail(self, conn: Connection, at: dict[str, int], rows: Sequence[Any]
                    ) -> tuple[list[str], list[str]]:
        decoded: dict[int, Any] = {}

        def events(after: int, topics: set[str]) -> list[Any]:
            return [decoded[row.id] if row.id in decoded else
                    decoded.setdefault(row.id, self._decode(row))
                    for row in rows if row.id > after and row.topic in topics]

        done, left = [], []
        for name, after in at.items():
            if after >= rows[-1].id:
                continue
            if name in self.projections:
                projection = self.projections[name]
                mine = events(after, set(projection.topics()))
                if mine:
                    projection.apply_batch(conn, mine)
                done.append(name)
            elif any(row.id > after and row.topic in set(self.process_managers[name].topics())
                     for row in rows):
                left.append(name)
            else:
                done.append(name)
        return done, left

    @staticmethod
    def _advance_all(conn: Connection, at: dict[str, int], done: Sequence[str],
                     end: int) -> None:
        """Every name in `done` from its own position to `end`, each only if still there."""
        by_start: dict[int, list[str]] = {}
        for name in done:
            by_start.setdefault(at[name], []).append(name)
        for start, group in by_start.items():
            moved = conn.execute(update(tracking).where(
                tracking.c.name.in_(group), tracking.c.position == start)
                .values(position=end)).rowcount
            if moved != len(group):
                raise TrackingConflict("a position moved under the live tail")

    def names(self) -> list[str]:
        """Projections first: the process managers' commands are read back by them."""
        return [*self.projections, *self.process_managers]

    def _run_batch_retrying(self, projection: Projection, until: int | None = None) -> int:
        before = self.position(projection.name)
        try:
            return self.run_batch(projection, until=until)
        except TrackingConflict:
            return 1  # someone else advanced it; read again from their position
        except Exception as error:
            if not is_the_events_fault(error):
                raise  # the database's trouble, not an event's: retried whole, later
            # Another runner's rows for the same batch collided with ours before our
            # tracking write could refuse: the same lost race, reported by a constraint.
            if self.position(projection.name) != before:
                return 1
            log.warning("%s: a batch failed (%s); applying its events one by one",
                        projection.name, describe(error))
        try:
            return self.run_batch(projection, one_by_one=True, until=until)
        except TrackingConflict:
            return 1

    # -- process managers ------------------------------------------------------------

    def run_process_batch(self, manager: ProcessManager, until: int | None = None) -> int:
        """Issue the commands of `manager`'s next batch of events, then advance its
        position; return how many positions it moved. Each command is its own
        transaction, keyed by its cause: if anything stops us before the tracking write,
        the batch is delivered again and its done commands answer "already done"."""
        start = self._start_position(manager.name)
        with self.app.engine.connect() as conn:
            rows, end = self._read_batch(conn, manager, start, self.process_batch_size,
                                         until)
        if end == start:
            return 0
        refused = [(row, error) for row in rows
                   if (error := self._issue(manager, row)) is not None]
        with self.app.datastore.transaction(commit=True) as session:
            conn = session.connection()
            for row, error in refused:
                park(conn, manager.name, row, error)
            advance_tracking(conn, manager.name, start, end)
        return end - start

    def _issue(self, manager: ProcessManager, row: Any) -> Exception | None:
        """Run the event's commands; the error if they were refused (to be parked)."""
        try:
            manager.handle(self.app, self._decode(row), row.id)
        except Exception as error:
            if not is_a_refusal(error):
                raise  # the database's trouble, or contention: the batch is retried
            return error
        return None

    def _start_position(self, name: str) -> int:
        """The manager's position, its tracking row created on first use (a read, not a
        write, every other time: on SQLite a write would queue behind every command)."""
        query = select(tracking.c.position).where(tracking.c.name == name)
        with self.app.engine.connect() as conn:
            start = conn.execute(query).scalar()
        if start is None:
            with self.app.engine.begin() as conn:
                conn.execute(insert_for(conn, tracking).values(name=name, position=0)
                             .on_conflict_do_nothing())
                start = conn.execute(query).scalar_one()
        return start

    def _run_process_batch_retrying(self, manager: ProcessManager,
                                    until: int | None = None) -> int:
        try:
            return self.run_process_batch(manager, until)
        except TrackingConflict:
            return 1  # another runner issued the same (keyed) commands and won

    def _retry_process_event(self, manager: ProcessManager, position: int) -> bool:
        this = and_(parked_events.c.projection == manager.name,
                    parked_events.c.position == position)
        with self.app.engine.connect() as conn:
            row = conn.execute(self._event_rows().where(self.events.c.id == position)).one()
        error = self._issue(manager, row)  # keyed: a concurrent retry cannot double it
        with self.app.engine.begin() as conn:
            if error is None:
                return conn.execute(parked_events.delete().where(this)).rowcount == 1
            conn.execute(update(parked_events).where(this).values(error=describe(error)))
        log.warning("%s: the event at position %d is still parked: %s",
                    manager.name, position, describe(error))
        return False

    # -- rebuilds ----------------------------------------------------------------------

    def rebuild(self, name: str, progress: Callable[[int], None] | None = None) -> None:
        """Replay the whole log into scratch tables, then swap them in: one transaction
        replaces the live rows, the projection's parked events (the replay met those
        events again; whichever still fail are parked anew) and its position, so readers
        see the old read model or the new, never a half-built one. Events logged during
        the build are then applied as any others (projections/scratch.py)."""
        if name in self.process_managers:
            raise ValueError(f"{name} is a process manager: its commands are facts in the "
                             "log, not a read model to rebuild")
        from projections.scratch import ScratchBuild  # it builds on this module

        with ScratchBuild(self.app, [self.projections[name]], self.batch_size) as build:
            build.build(progress=progress)
            build.swap(name)
        self.catch_up([name], progress)

    # -- parked events -------------------------------------------------------------

    def retry_parked(self, name: str) -> tuple[int, int]:
        """Re-apply `name`'s parked events in log order, each in its own transaction with
        its removal from the parked table; those that fail again stay parked with the new
        error. A process manager's parked events have their commands issued again (each
        keyed by its cause), then leave the table. Return (how many were applied, how
        many are still parked)."""
        mine = parked_events.c.projection == name
        with self.app.engine.connect() as conn:
            parked = conn.execute(select(parked_events.c.position).where(mine)
                                  .order_by(parked_events.c.position)).scalars().all()
        if name in self.process_managers:
            manager = self.process_managers[name]
            applied = sum(self._retry_process_event(manager, p) for p in parked)
        else:
            projection = self.projections[name]
            applied = sum(self._retry_one(projection, position) for position in parked)
        with self.app.engine.connect() as conn:
            remaining = conn.execute(
                select(func.count()).select_from(parked_events).where(mine)).scalar()
        return applied, remaining

    def _retry_one(self, projection: Projection, position: int) -> bool:
        this = and_(parked_events.c.projection == projection.name,
                    parked_events.c.position == position)
        with self.app.datastore.transaction(commit=True) as session:
            conn = session.connection()
            begin_for_savepoints(conn)
            # Hold the parked row, so two retries at once cannot both apply its event.
            query = select(parked_events.c.position).where(this)
            if self.is_postgres:
                query = query.with_for_update()
            if conn.execute(query).first() is None:
                return False  # a concurrent retry got there first
            row = conn.execute(self._event_rows().where(self.events.c.id == position)).one()
            try:
                self._apply_in_savepoint(conn, projection, row)
            except Exception as error:
                if not is_the_events_fault(error):
                    raise
                conn.execute(update(parked_events).where(this)
                             .values(error=describe(error)))
                log.warning("%s: the event at position %d is still parked: %s",
                            projection.name, position, describe(error))
                return False
            conn.execute(parked_events.delete().where(this))
            return True

    # -- background operation ------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._spawn(self._loop, "fenxiao-projections")
        if self.is_postgres:
            self._spawn(self._listen, "fenxiao-listen")
        if self.tick_interval_s:
            self._spawn(self._tick_loop, "fenxiao-tick")

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
        from projections.seal import seal_in_worker  # it builds on this module

        while not self._stop.is_set():
            self._wake.clear()
            try:
                held = self._locks.held(self.names()) if self._locks else self.names()
                self.catch_up(self.run_tail(held))
            except Exception:  # keep serving; the next wake-up retries from the log
                log.exception("projection batch failed; retrying")
                self._stop.wait(1.0)
            seal_in_worker(self.app, self._locks)  # the log's HMAC chain; never raises
            self._wake.wait(self.poll_interval_s)

    def _tick_loop(self) -> None:
        """Run the time rules as of the clock's now every `tick_interval_s` (on
        PostgreSQL only the worker holding the "tick" advisory lock does)."""
        from commands.tick import tick  # imports the read models it reads

        locks = AdvisoryLocks(self.app) if self.is_postgres else None
        try:
            while not self._stop.wait(self.tick_interval_s):
                try:
                    if locks is None or locks.held([TICK_LOCK]):
                        self.ticks = [*self.ticks[-9:], tick(self.app, actor="worker")]
                except Exception:  # keep ticking; the next tick finds what this one missed
                    log.exception("tick failed; trying again at the next one")
        finally:
            if locks:
                locks.close()

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


@contextlib.contextmanager
def _session_connection(app: CoreApp) -> Iterator[Connection]:
    """The datastore's transaction (on SQLite it holds the process's write lock)."""
    with app.datastore.transaction(commit=True) as session:
        yield session.connection()


class AdvisoryLocks:
    """PostgreSQL session-level advisory locks: one worker at a time per projection; the
    others stand by and take over when its connection (and so its locks) goes away."""

    def __init__(self, app: CoreApp) -> None:
        self.app = app
        self._conn: Any = None
        self._held: set[str] = set()

    def held(self, projections: Iterable[str]) -> list[str]:
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


TICK_LOCK = "time rules"  # a name no projection has


def lock_key(name: str) -> int:
    return zlib.crc32(f"fenxiao-projection:{name}".encode()) - (1 << 31)


TICK_INTERVAL_S = 60.0  # the worker runs the time rules this often


def worker(app: CoreApp, tick_interval_s: float | None = TICK_INTERVAL_S,
           **options: Any) -> ProjectionRunner:
    """What `fenxiao worker` and `fenxiao serve` run: every projection, every process
    manager, and the time rules every minute."""
    from projections import all_projections

    return ProjectionRunner(app, all_projections(), process_managers=all_process_managers(),
                            tick_interval_s=tick_interval_s, **options)


# Runners in this process say when positions moved, so a reader waiting for a position
# in the same process wakes at once (others poll; see wait_for_position).
_advanced = threading.Condition()


def positions_advanced() -> None:
    with _advanced:
        _advanced.notify_all()


def wait_for_position(app: CoreApp, names: Sequence[str], min_position: int,
                      timeout_s: float, conn: Connection | None = None) -> int | None:
    """Block until every named projection has applied `min_position`; return the lowest of
    their positions, or None on time-out. Polls on `conn` if given (it must see each new
    commit: autocommit, or SQLite's driver, which opens no transaction for a SELECT)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        if conn is None:
            with app.engine.connect() as own:
                lowest = lowest_position(own, names)
        else:
            lowest = lowest_position(conn, names)
        if lowest >= min_position:
            return lowest
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        with _advanced:  # a runner of this process wakes us; another's, the next poll
            _advanced.wait(min(delay, left))
        delay = min(delay * 2, MAX_POLL_S)
