"""Tables owned by the infrastructure (not by a read model), and dialect helpers.

The event store table itself is defined by eventsourcing-sqlalchemy; Alembic creates it
with the same shape (see migrations/). Read-model tables live with their projections.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import (BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

metadata = MetaData()
# 64-bit on PostgreSQL; SQLite's INTEGER is already 64-bit and must stay INTEGER for rowids.
BIGINT = BigInteger().with_variant(Integer(), "sqlite")

EVENTS_TABLE = "fenxiao_events"
EVENTS_TOPIC_INDEX = "fenxiao_events_topic_idx"  # (topic, id): migration 0015
SNAPSHOTS_TABLE = "fenxiao_snapshots"
NOTIFY_CHANNEL = EVENTS_TABLE

# One row per projection or process manager: the last log position it has applied.
tracking = Table(
    "fenxiao_tracking", metadata,
    Column("name", String(100), primary_key=True),
    Column("position", BIGINT, nullable=False),
)

# The stored response of every command sent with an Idempotency-Key, written in the
# same transaction as the command's events.
idempotency = Table(
    "fenxiao_idempotency", metadata,
    Column("principal", String(100), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_tokens = Table(
    "fenxiao_api_tokens", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("role", String(20), nullable=False),
    Column("distributor_id", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),  # None: never
    Column("revoked_at", DateTime(timezone=True), nullable=True),  # the row stays listed
    Column("last_used_at", DateTime(timezone=True), nullable=True),  # up to a minute behind
    UniqueConstraint("name", name="uq_fenxiao_api_tokens_name"),
)


def insert_for(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which supports ON CONFLICT on both SQLite and PostgreSQL."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]],
           key: Iterable[str], update: Iterable[str]) -> None:
    """INSERT rows, overwriting the `update` columns where the key already exists."""
    if not rows:
        return
    stmt = insert_for(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key),
        set_={name: stmt.excluded[name] for name in update},
    )
    conn.execute(stmt, list(rows))


def increment(conn: Connection, table: Table, key: Iterable[str],
              rows: Sequence[Mapping[str, Any]], add: Iterable[str]) -> None:
    """INSERT rows; where the key exists, add the `add` columns to what is there."""
    if not rows:
        return
    stmt = insert_for(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key),
        set_={name: table.c[name] + stmt.excluded[name] for name in add},
    )
    conn.execute(stmt, list(rows))

# Events a projection could not apply: parked here (the projection carries on past them)
# until `fenxiao projections retry NAME` re-applies them after a fix.
parked_events = Table(
    "fenxiao_parked", metadata,
    Column("projection", String(100), primary_key=True),
    Column("position", BIGINT, primary_key=True),
    Column("topic", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False),
)

# Facts about the store itself, one row each: e.g. the cipher canary, a value encrypted
# with FENXIAO_CIPHER_KEY when the store was first used, checked at every start.
store_facts = Table(
    "fenxiao_store_facts", metadata,
    Column("name", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

# Webhook delivery state (projections/webhook_sender.py): per endpoint, the position its
# deliveries have reached (every event up to it acknowledged or given up on) and the
# retry state of the next one; written only by the endpoint's one sender.
webhook_cursors = Table(
    "fenxiao_webhook_cursors", metadata,
    Column("webhook_id", String(64), primary_key=True),
    Column("position", BIGINT, nullable=False),
    Column("attempts", Integer, nullable=False),  # failed attempts of the next event
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("failing_since", DateTime(timezone=True), nullable=True),
    Column("replays_applied", Integer, nullable=False),
    Column("enables_applied", Integer, nullable=False),
)

# Every delivery attempt: when, the answer (or the error) and how long it took.
webhook_deliveries = Table(
    "fenxiao_webhook_deliveries", metadata,
    Column("delivery_id", BIGINT, primary_key=True, autoincrement=True),
    Column("webhook_id", String(64), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("position", BIGINT, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("latency_ms", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("outcome", String(12), nullable=False),  # delivered, retrying, failed
    Index("ix_fenxiao_webhook_deliveries_webhook", "webhook_id", "delivery_id"),
)
