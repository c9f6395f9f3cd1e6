"""Parked events: the events a projection could not apply, kept in `fenxiao_parked` with
the error until `fenxiao projections retry NAME` re-applies them (see projections/runner.py).
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import sqlalchemy.exc
from eventsourcing.persistence import PersistenceError
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from commands.storage import parked_events, upsert

log = logging.getLogger("fenxiao.projections")


def unwrap(error: BaseException) -> BaseException:
    """The SQL error behind one that the datastore's transaction re-raised as its own."""
    if isinstance(error, PersistenceError) and error.__cause__ is not None:
        return error.__cause__
    return error


def describe(error: BaseException) -> str:
    """The error as stored with a parked event or logged. For SQL errors only the driver's
    message: SQLAlchemy's text adds the bound parameters, which may be personal data
    decrypted from the event, and neither this table nor the log is encrypted."""
    error = unwrap(error)
    message = error.orig if isinstance(error, sqlalchemy.exc.StatementError) else error
    return f"{type(error).__name__}: {message}".strip()[:4000]


def begin_for_savepoints(conn: Connection) -> None:
    """Open the transaction now, so that savepoints nest inside it. pysqlite opens one only
    before its first INSERT/UPDATE/DELETE: a SAVEPOINT issued earlier opens it instead, and
    releasing that savepoint commits everything (see SQLAlchemy's pysqlite notes on
    SAVEPOINT). IMMEDIATE also takes SQLite's write lock up front, as our FOR UPDATE does
    on PostgreSQL, so the position read next cannot be moved under us."""
    if conn.dialect.name == "sqlite" and not conn.connection.driver_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def park(conn: Connection, name: str, row: Any, error: Exception) -> None:
    """Record that projection `name` could not apply the event in `row` (a row of the
    events table). An upsert: after a manual reset of a tracking position the same event
    can be met again, and then its newest error is the one worth keeping."""
    values = {"topic": row.topic, "error": describe(error),
              "parked_at": datetime.now(timezone.utc)}
    upsert(conn, parked_events, [{"projection": name, "position": row.id, **values}],
           ["projection", "position"], values)
    log.warning("%s: parked the event at position %d: %s", name, row.id, values["error"])


def parked_counts(conn: Connection) -> dict[str, int]:
    """Projection name -> how many of its events are parked (only those with any)."""
    return dict(conn.execute(select(parked_events.c.projection, func.count())
                             .group_by(parked_events.c.projection)).all())


def list_parked(conn: Connection) -> list[Any]:
    return conn.execute(select(parked_events).order_by(
        parked_events.c.projection, parked_events.c.position)).all()
