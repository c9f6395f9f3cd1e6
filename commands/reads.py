"""Connections for reads: one round trip per query on PostgreSQL.

A connection of the engine opens a transaction with its first statement and rolls it back
when it is closed: with psycopg2 that is a BEGIN and a ROLLBACK around every read, three
round trips for one SELECT. A read needs neither: under READ COMMITTED each statement
sees its own snapshot, in a transaction or not, so in autocommit it answers the same in
one round trip a statement, and nothing is sent when the connection goes back to the pool
(there is nothing to roll back). SQLite's driver opens no transaction for a SELECT:
nothing to save there, its connections are left as they are.

Autocommit is switched on the driver's connection, not with SQLAlchemy's isolation_level
option: SQLAlchemy resets that one on check-in by setting the isolation level, which
psycopg2 sends to the server as a SET (a round trip for every read).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from sqlalchemy.engine import Connection, Engine


@contextlib.contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for SELECTs only, as a context manager (as engine.connect())."""
    with engine.connect() as conn:
        if engine.dialect.name != "postgresql":
            yield conn
            return
        driver = conn.connection.dbapi_connection
        driver.autocommit = True  # checked out idle: no transaction is open
        try:
            yield conn
        finally:
            _leave_autocommit(conn, driver)


def _leave_autocommit(conn: Connection, driver: Any) -> None:
    """Never hand a connection back to the pool in autocommit: the commands that take it
    next rely on their transaction."""
    try:
        driver.autocommit = False
    except Exception:  # a broken connection (or a read left a transaction open)
        conn.invalidate()
