"""The library's SQLAlchemy persistence, with a connection pool sized for a server.

SQLAlchemy's default pool keeps 5 connections: a process serving 16 request threads, a
writer and a live tail uses more at once, and every connection above 5 is closed when it
is handed back and opened again at the next burst (a new PostgreSQL backend each time,
milliseconds, measured as the slowest 1 % of reads). SQLite's pools are left as they are.
"""
from __future__ import annotations

from typing import Any

from eventsourcing_sqlalchemy.datastore import SQLAlchemyDatastore
from eventsourcing_sqlalchemy.factory import SQLAlchemyFactory

POOL_SIZE = 24  # connections kept open: request threads, the writer, the tail
MAX_OVERFLOW = 16  # more, opened for a burst and closed after it


class PooledDatastore(SQLAlchemyDatastore):
    def __init__(self, *, url: str | None = None, **engine_kwargs: Any) -> None:
        if url and url.startswith("postgresql"):
            engine_kwargs.setdefault("pool_size", POOL_SIZE)
            engine_kwargs.setdefault("max_overflow", MAX_OVERFLOW)
        super().__init__(url=url, **engine_kwargs)


class PooledFactory(SQLAlchemyFactory):
    datastore_class = PooledDatastore
