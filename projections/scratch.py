"""Projections built from the log into scratch tables, beside the live ones.

Three things need a read model built aside: `fenxiao audit as-of` (a view as it stood at a
past position), `fenxiao audit check` (live equals a rebuild from the log) and `fenxiao
projections rebuild` (build aside, then swap in one transaction, so readers never see a
half-built table).

How a build writes elsewhere, and why this way. Projections write through module-level
SQLAlchemy Tables, which SQL names without a schema. Turning those into per-build table
factories would mean rewriting every projection module and each of its queries; instead a
build runs the very same handlers on one connection on which temporary tables of the same
names shadow the projection's tables: PostgreSQL looks a name up in the session's
temporary schema (`pg_temp`) before the search path, SQLite in `temp` before `main`. The
build creates them from the projections' own Table definitions (sent to the temporary
schema with `schema_translate_map` for that DDL alone). Everything else keeps meaning the
live table on that connection: the event log (the runner's and any a projection reads
itself), and any table the build does not shadow. Temporary tables:

- are private to the connection: concurrent builds never collide, readers never see them;
- vanish when the connection closes, even if the process dies (no scratch litter). A
  build closes its connection for good at the end, so it never goes back to the pool
  with a shadow on it;
- leave the live schema alone (no DDL there, nothing for migrations to notice) and are not
  written to PostgreSQL's WAL.

The price: a whole build happens on one connection, held from start to end, and the swap
into the live tables is a DELETE + INSERT ... SELECT on that connection (a temporary table
cannot be renamed into the live schema). On the build's connection the live copy of a
shadowed table is named under the placeholder schema LIVE, which `schema_translate_map`
renders as the database's default schema (`public`, `main`).

The runner's batching, parking of failing events and tracking run unchanged: the build
shadows `fenxiao_tracking` and `fenxiao_parked` too. As with any rebuild, a projection is
replayed alone: one that read another projection's tables would read the live ones.
"""
from __future__ import annotations

import contextlib
import gc
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from sqlalchemy import MetaData, Table, delete, insert, select
from sqlalchemy.engine import Connection

from commands.app import CoreApp
from commands.storage import insert_for, parked_events, tracking
from projections.base import Projection
from projections.parking import begin_for_savepoints
from projections.runner import ProjectionRunner

LIVE = "fenxiao_live"  # placeholder schema: rendered as the database's default schema
_TEMPORARY = {"postgresql": "pg_temp", "sqlite": "temp"}
_live_metadata = MetaData()
_live_lock = threading.Lock()


def live(table: Table) -> Table:
    """`table` as it must be named on a build's connection to mean the live one rather
    than its temporary shadow."""
    if table.schema is not None:
        return table
    with _live_lock:
        key = f"{LIVE}.{table.name}"
        if key not in _live_metadata.tables:
            table.to_metadata(_live_metadata, schema=LIVE)
        return _live_metadata.tables[key]


class _ScratchRunner(ProjectionRunner):
    """The runner, applying every batch on the build's connection: into its temporary
    tables, from the live event log."""

    def __init__(self, app: CoreApp, projections: Sequence[Projection], conn: Connection,
                 batch_size: int | None) -> None:
        super().__init__(app, projections, batch_size=batch_size)
        app.commit_listeners.remove(self._on_commit)  # nothing to wake: never started
        self.conn = conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.conn.begin():
            yield self.conn

    def position(self, name: str) -> int:
        with self.conn.begin():
            found = self.conn.execute(
                select(tracking.c.position).where(tracking.c.name == name)).scalar()
        return found or 0


class ScratchBuild:
    """Projections built from the log into temporary tables; use as a context manager.

    `build(until)` brings them to a position, `rows(table)` reads a scratch table,
    `swap(name)` replaces a projection's live contents with the scratch ones.
    """

    def __init__(self, app: CoreApp, projections: Sequence[Projection],
                 batch_size: int | None = None) -> None:
        self.app = app
        self.projections = {p.name: p for p in projections}
        self.batch_size = batch_size
        self.conn: Connection | None = None
        self.runner: _ScratchRunner | None = None

    def __enter__(self) -> "ScratchBuild":
        conn = self.app.engine.connect()
        self.conn = conn
        try:
            conn.execution_options(schema_translate_map={None: _TEMPORARY[conn.dialect.name]})
            with conn.begin():
                for table in self._tables():
                    table.create(conn)
            conn.execution_options(schema_translate_map={LIVE: None})
            self.runner = _ScratchRunner(self.app, list(self.projections.values()), conn,
                                         self.batch_size)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *_: Any) -> None:
        self._close()

    def _tables(self) -> list[Table]:
        tables = [t for p in self.projections.values() for t in p.tables]
        return [*tables, tracking, parked_events]

    def _close(self) -> None:
        """Close the connection for good: the database drops its temporary tables."""
        if self.conn is not None:
            self.conn.invalidate()
            self.conn.close()
            self.conn = None

    def build(self, until: int | None = None, names: Sequence[str] | None = None,
              progress: Callable[[int], None] | None = None) -> None:
        """Apply the log to the scratch tables up to `until` (default: the head)."""
        assert self.runner is not None, "use ScratchBuild as a context manager"
        with fewer_collections():
            self.runner.catch_up(names or list(self.projections), progress, until)

    def position(self, name: str) -> int:
        assert self.runner is not None, "use ScratchBuild as a context manager"
        return self.runner.position(name)

    def rows(self, table: Table) -> list[Any]:
        """Every row of the scratch copy of `table`, in primary-key order."""
        assert self.conn is not None, "use ScratchBuild as a context manager"
        with self.conn.begin():
            return self.conn.execute(select(table).order_by(*_key(table))).all()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """The build's connection in a transaction: queries written against the
        projections' tables read the scratch copies."""
        assert self.conn is not None, "use ScratchBuild as a context manager"
        with self.conn.begin():
            yield self.conn

    def swap(self, name: str) -> int:
        """In one transaction, replace projection `name`'s live rows and parked events
        with the scratch ones and set its live position to the one the build reached;
        return that position. Readers see the old contents or the new, never a mix.
        Events logged since are then the live runner's, as any others."""
        assert self.conn is not None, "use ScratchBuild as a context manager"
        conn, projection = self.conn, self.projections[name]
        position = self.position(name)
        live_tracking, live_parked = live(tracking), live(parked_events)
        with self._write_lock(), conn.begin():
            # SQLite: take the write lock now (BEGIN IMMEDIATE), before reading anything.
            begin_for_savepoints(conn)
            held = select(live_tracking.c.position).where(live_tracking.c.name == name)
            if conn.dialect.name == "postgresql":  # a live batch of `name` waits for us
                held = held.with_for_update()
            conn.execute(held)
            for table in reversed(projection.tables):
                conn.execute(delete(live(table)))
            for table in projection.tables:
                columns = [c.name for c in table.columns]
                conn.execute(insert(live(table)).from_select(columns, select(table)))
            conn.execute(delete(live_parked).where(live_parked.c.projection == name))
            conn.execute(insert(live_parked).from_select(
                [c.name for c in parked_events.columns],
                select(parked_events).where(parked_events.c.projection == name)))
            stmt = insert_for(conn, live_tracking).values(name=name, position=position)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["name"], set_={"position": stmt.excluded.position}))
        return position

    def _write_lock(self) -> Any:
        """On SQLite the datastore serialises this process's writers with a lock of its
        own: the swap, a writer of live tables, takes it too."""
        lock = getattr(self.app.datastore, "write_lock", None)
        return lock if lock is not None else contextlib.nullcontext()


_collections_lock = threading.Lock()
_collections = {"builds": 0, "before": gc.get_threshold()}  # builds running in the process


@contextlib.contextmanager
def fewer_collections(threshold: int = 10_000) -> Iterator[None]:
    """Python's cyclic garbage collector run less often, for a build's duration.

    A build makes and drops a batch's worth of containers (events, rows) at a time, so the
    collector ran every 700 allocations, and as a batch's objects lived on, promoted them
    and walked every object of the process (the application, SQLAlchemy's metadata) over
    and over: a fifth of a build's CPU time, measured (the runner reading and decoding
    200,000 events: 10.8 s of CPU, 8.3 s so). The objects alive before the build are set
    aside (gc.freeze) and the youngest generation is collected every `threshold`
    allocations; both are put back when the last of the builds running in the process
    (exports serve HTTP requests with builds) ends. Garbage is still collected, less
    often: memory stays flat."""
    with _collections_lock:
        if not _collections["builds"]:
            _collections["before"] = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(threshold, *_collections["before"][1:])
        _collections["builds"] += 1
    try:
        yield
    finally:
        with _collections_lock:
            _collections["builds"] -= 1
            if not _collections["builds"]:
                gc.set_threshold(*_collections["before"])
                gc.unfreeze()


def _key(table: Table) -> list[Any]:
    return list(table.primary_key.columns) or list(table.columns)


# -- the rebuild proof ---------------------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    """A row that differs between a live table and its rebuild from the log; `live` or
    `rebuilt` is None when the row is missing there."""

    projection: str
    table: str
    key: dict[str, Any]
    live: dict[str, Any] | None
    rebuilt: dict[str, Any] | None

    def describe(self) -> str:
        key = ", ".join(f"{k}={v!r}" for k, v in self.key.items())
        if self.live is None:
            what = f"missing live; rebuilt {self.rebuilt}"
        elif self.rebuilt is None:
            what = f"not in the rebuild; live {self.live}"
        else:
            what = "; ".join(f"{c}: live {self.live[c]!r} vs rebuilt {self.rebuilt[c]!r}"
                             for c in self.live if self.live[c] != self.rebuilt[c])
        return f"{self.projection}: {self.table} [{key}]: {what}"


def live_snapshot(app: CoreApp, projection: Projection) -> tuple[int, dict[str, list[Any]]]:
    """The projection's live position and the rows of its tables, read in one snapshot
    (so the rows are exactly those of that position, whatever a worker does meanwhile)."""
    with app.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            if conn.dialect.name == "sqlite":  # pysqlite would not begin before a SELECT
                conn.exec_driver_sql("BEGIN")
            position = conn.execute(select(tracking.c.position)
                                    .where(tracking.c.name == projection.name)).scalar() or 0
            rows = {t.name: conn.execute(select(t).order_by(*_key(t))).all()
                    for t in projection.tables}
    return position, rows


def compare(projection: Projection, table: Table, live_rows: Sequence[Any],
            rebuilt_rows: Sequence[Any]) -> list[Difference]:
    """The rows that differ, matched by primary key (by the whole row without one)."""
    key_names = [c.name for c in _key(table)]

    def by_key(rows: Sequence[Any]) -> dict[tuple, dict[str, Any]]:
        mapped = (dict(r._mapping) for r in rows)
        return {tuple(m[k] for k in key_names): m for m in mapped}

    live_by_key, rebuilt_by_key = by_key(live_rows), by_key(rebuilt_rows)
    return [Difference(projection.name, table.name, dict(zip(key_names, key)),
                       live_by_key.get(key), rebuilt_by_key.get(key))
            for key in sorted(live_by_key.keys() | rebuilt_by_key.keys(), key=repr)
            if live_by_key.get(key) != rebuilt_by_key.get(key)]


def compare_with_rebuild(app: CoreApp, projection: Projection, position: int,
                         live_rows: dict[str, list[Any]],
                         progress: Callable[[int], None] | None = None) -> list[Difference]:
    """Rebuild `projection` from the log in scratch tables up to `position` and compare
    with `live_rows` (its tables at that position: `live_snapshot`)."""
    with ScratchBuild(app, [projection]) as build:
        build.build(until=position, progress=progress)
        return [difference for table in projection.tables
                for difference in compare(projection, table, live_rows[table.name],
                                          build.rows(table))]


def check(app: CoreApp, projections: Sequence[Projection]) -> list[Difference]:
    """Every difference between the projections' live tables and their rebuild from the
    log, each compared at the position its live tables are at (a worker lagging behind
    the log, or running meanwhile, is no difference)."""
    return [difference for projection in projections
            for difference in compare_with_rebuild(app, projection,
                                                   *live_snapshot(app, projection))]


def as_of(app: CoreApp, projection: Projection, position: int,
          progress: Callable[[int], None] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The projection's tables as they stood at log position `position`, built from the
    log: table name -> rows (dicts, in primary-key order)."""
    with ScratchBuild(app, [projection]) as build:
        build.build(until=position, progress=progress)
        return {t.name: [dict(r._mapping) for r in build.rows(t)] for t in projection.tables}
