"""Raw driver baselines: what the database itself does for rows shaped like events."""
from __future__ import annotations

import os
import sqlite3
import time
import uuid
from typing import Any, Sequence

from sqlalchemy.engine import make_url

STATE = os.urandom(200)


def _connect(url: str) -> tuple[Any, str]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        import psycopg2

        conn = psycopg2.connect(**parsed.translate_connect_args(username="user",
                                                                database="dbname"))
        ddl = ("CREATE TABLE bench_raw (id BIGSERIAL PRIMARY KEY, "
               "originator_id UUID NOT NULL, originator_version INTEGER NOT NULL, "
               "topic TEXT NOT NULL, state BYTEA NOT NULL)")
        return conn, ddl
    conn = sqlite3.connect(parsed.database)
    conn.execute("PRAGMA journal_mode=WAL")
    ddl = ("CREATE TABLE bench_raw (id INTEGER PRIMARY KEY, originator_id BLOB NOT NULL, "
           "originator_version INTEGER NOT NULL, topic TEXT NOT NULL, state BLOB NOT NULL)")
    return conn, ddl


def _row(n: int, postgres: bool) -> tuple[Any, ...]:
    originator = str(uuid.uuid4()) if postgres else uuid.uuid4().bytes
    return (originator, n, "domain.stock:StockItem.StockReceived", STATE)


def measure(url: str, single_rows: int, batched_rows: int, batch: int = 1000
            ) -> dict[str, float]:
    """Rows per second for INSERT+COMMIT per row, and for batched inserts."""
    conn, ddl = _connect(url)
    postgres = not isinstance(conn, sqlite3.Connection)
    mark = "%s" if postgres else "?"
    insert = (f"INSERT INTO bench_raw (originator_id, originator_version, topic, state) "
              f"VALUES ({mark}, {mark}, {mark}, {mark})")
    cursor = conn.cursor()
    cursor.execute("DROP TABLE IF EXISTS bench_raw")
    cursor.execute(ddl)
    conn.commit()
    try:
        started = time.perf_counter()
        for n in range(single_rows):
            cursor.execute(insert, _row(n, postgres))
            conn.commit()
        single = single_rows / (time.perf_counter() - started)
        rows = [_row(n, postgres) for n in range(batched_rows)]
        started = time.perf_counter()
        for start in range(0, batched_rows, batch):
            chunk = rows[start:start + batch]
            if postgres:
                from psycopg2.extras import execute_values

                execute_values(cursor, insert.replace(f"({mark}, {mark}, {mark}, {mark})",
                                                      "%s"), chunk, page_size=batch)
            else:
                cursor.executemany(insert, chunk)
            conn.commit()
        batched = batched_rows / (time.perf_counter() - started)
    finally:
        cursor.execute("DROP TABLE IF EXISTS bench_raw")
        conn.commit()
        conn.close()
    return {"raw_single_row_commit": single, "raw_batched_insert": batched}


def raw_log_read(url: str, batch: int = 5000, topics: Sequence[str] | None = None
                 ) -> tuple[int, float]:
    """(rows, rows per second) for the raw driver reading the whole event table in order,
    or only the events of `topics` (in any order), streamed (a server-side cursor on
    PostgreSQL), nothing decoded."""
    parsed = make_url(url)
    query = "SELECT id, originator_id, originator_version, topic, state FROM fenxiao_events"
    if topics is None:
        query += " ORDER BY id"
    else:  # in any order: the cheapest plan (a few events of a long log by their topic)
        assert not any("'" in topic for topic in topics)  # names of Python classes
        query += " WHERE topic IN ({})".format(", ".join(f"'{t}'" for t in topics))
    if parsed.get_backend_name() == "postgresql":
        import psycopg2

        conn = psycopg2.connect(**parsed.translate_connect_args(username="user",
                                                                database="dbname"))
        cursor = conn.cursor(name="bench_raw_read")
        cursor.itersize = batch
    else:
        conn = sqlite3.connect(parsed.database)
        cursor = conn.cursor()
    try:
        started = time.perf_counter()
        cursor.execute(query)
        rows = 0
        while chunk := cursor.fetchmany(batch):
            rows += len(chunk)
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    return rows, rows / seconds
