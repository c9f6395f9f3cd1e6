"""Checkpoints of the log for point-in-time audit queries (commands/audit.py).

Balances as of a past position are computed from the log, not from today's read models:
the nearest checkpoint at or before the position, plus the journal entries between it and
the position, read from the log. Checkpoints keep that tail short, so an as-of balance costs
the same over a million events as over a thousand. Every CHECKPOINT_EVERY positions this
projection writes:

- a checkpoint row: its position and the latest event time at or before it (a running
  maximum, so "the last checkpoint whose latest time is <= T" is an index seek; the same
  rows turn an as-of time into a log position);
- the cumulative debit and credit of every ledger key (account, currency, kind of entry)
  that moved since the previous checkpoint. Keys that did not move keep their earlier row:
  the balance of a key at a checkpoint is its row with the greatest position at or before
  it. Each account has a key of kind ALL_KINDS, its totals (what balances and the trial
  balance read); a distributor's accounts also have a key per kind of entry, because its
  earnings figures (lifetime earned, reversed, paid out) are sums by kind.

The first checkpoint past every multiple of FULL_SPAN positions is a full one (a row in
`audit_full_checkpoints`): it also writes the totals of every ALL_KINDS key that did not
move. A trial balance as of a position then reads the rows from the full checkpoint before
it up to the position, one range of a few thousand rows, instead of looking every account
up on its own (an index seek each: ~50 ms for 12,000 accounts).

It reads every event of the domain (not only journal entries) so that the checkpoints
follow the whole log and their times cover every event. Checkpoints fall on positions
alone, so a rebuild writes exactly the rows the live projection wrote.
"""
from __future__ import annotations

import importlib
import pkgutil
from datetime import datetime
from functools import lru_cache
from typing import Any, Sequence

from eventsourcing.domain import Aggregate, BaseAggregate
from sqlalchemy import (Column, DateTime, Index, LargeBinary, MetaData, String, Table, Text,
                        func, or_, select, tuple_)
from sqlalchemy.engine import Connection
from sqlalchemy_utils.types.uuid import UUIDType

import domain
from commands.views import utc
from commands.storage import BIGINT, EVENTS_TABLE, insert_for, metadata, tracking
from domain.ledger import JournalEntry, parse_account
from projections.base import Projection
from projections.batching import insert, rewrite

CHECKPOINT_EVERY = 128  # log positions between checkpoints: the longest tail to read
FULL_SPAN = 32_768  # log positions between full checkpoints: at most 256 checkpoints apart

checkpoints = Table(
    "audit_checkpoints", metadata,
    Column("position", BIGINT, primary_key=True),
    Column("latest_at", DateTime(timezone=True), nullable=False),
    Index("ix_audit_checkpoints_latest_at", "latest_at"),
)

checkpoint_balances = Table(
    "audit_checkpoint_balances", metadata,
    Column("account", String(120), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("kind", String(40), primary_key=True),
    Column("position", BIGINT, primary_key=True),
    Column("debit_minor", BIGINT, nullable=False),
    Column("credit_minor", BIGINT, nullable=False),
    Index("ix_audit_checkpoint_balances_position", "position"),
)

# The checkpoints that list every ALL_KINDS key, moved since the previous one or not.
full_checkpoints = Table(
    "audit_full_checkpoints", metadata,
    Column("position", BIGINT, primary_key=True),
)

# Every key's totals at this projection's own position: the source of the next checkpoint
# (and the list of keys an as-of query looks up). `changed_at`: the last position that
# moved the key, so a checkpoint copies only the keys moved since the previous one.
running_balances = Table(
    "audit_running_balances", metadata,
    Column("account", String(120), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("kind", String(40), primary_key=True),
    Column("debit_minor", BIGINT, nullable=False),
    Column("credit_minor", BIGINT, nullable=False),
    Column("changed_at", BIGINT, nullable=False, index=True),
)

# One row: the latest event time seen so far (the running maximum carried across batches).
clock = Table(
    "audit_clock", metadata,
    Column("name", String(20), primary_key=True),
    Column("latest_at", DateTime(timezone=True), nullable=False),
)
CLOCK_ROW = "latest"

Key = tuple[str, str, str]  # account, currency, kind
ALL_KINDS = ""  # the kind of an account's key that totals every kind of entry


def event_time(event: Any) -> datetime:
    """When the event was recorded, by the application clock: `meta["at"]`, stamped on
    every event when it is saved (commands/app.py MetadataMapper). Events recorded before
    that stamp existed fall back to the library's own `timestamp` (the wall clock when the
    event was triggered, which was the application clock's time outside tests)."""
    meta = getattr(event, "meta", None) or {}
    at = meta.get("at") if isinstance(meta, dict) else None
    return utc(at if isinstance(at, datetime) else event.timestamp)


@lru_cache(maxsize=1)
def domain_event_classes() -> tuple[type, ...]:
    """Every event class of every aggregate in the `domain` package (but the library's
    generic `Event` and `Created` bases: each aggregate here names its own events)."""
    found = []
    for module_info in pkgutil.iter_modules(domain.__path__):
        module = importlib.import_module(f"domain.{module_info.name}")
        for aggregate in vars(module).values():
            if isinstance(aggregate, type) and issubclass(aggregate, BaseAggregate) \
                    and aggregate.__module__ == module.__name__:
                found.extend(cls for name, cls in vars(aggregate).items()
                             if isinstance(cls, type) and issubclass(cls, Aggregate.Event)
                             and name not in ("Event", "Created"))
    return tuple(found)


# The event store's table, as eventsourcing-sqlalchemy defines it, for reading only (in a
# MetaData of its own: Alembic creates it, and it is not one of this projection's tables).
event_log = Table(
    EVENTS_TABLE, MetaData(),
    Column("id", BIGINT, primary_key=True),
    Column("originator_id", UUIDType(), nullable=False),
    Column("originator_version", BIGINT, nullable=False),
    Column("topic", Text(), nullable=False),
    Column("state", LargeBinary(), nullable=False),
)


class AuditCheckpointsProjection(Projection):
    name = "audit_checkpoints"
    tables = (checkpoints, checkpoint_balances, full_checkpoints, running_balances, clock)
    # The handlers only name the events to read: `apply_batch` folds them all at once.
    handlers = {cls: (lambda conn, event: None) for cls in domain_event_classes()}

    def apply_batch(self, conn: Connection, events: Sequence[Any]) -> None:
        if not events:
            return
        fold = _Fold(conn, events)
        for event, position in zip(events, _positions(conn, events)):
            fold.add(event, position)
        fold.save(conn)


class _Fold:
    """One batch folded in memory: a few reads at its start (the keys it moves, and those
    moved since the last checkpoint), a few set-based writes at its end."""

    def __init__(self, conn: Connection, batch: Sequence[Any]) -> None:
        latest = conn.execute(select(clock.c.latest_at)
                              .where(clock.c.name == CLOCK_ROW)).scalar()
        self.latest = utc(latest) if latest is not None else None
        self.last = conn.execute(select(func.max(checkpoints.c.position))).scalar() or 0
        accounts = sorted({line["account"] for event in batch
                           if isinstance(event, JournalEntry.EntryPosted)
                           for line in event.lines})
        r = running_balances.c
        self.totals: dict[Key, list[int]] = {}  # key -> [debit, credit, changed_at]
        self.pending: set[Key] = set()  # moved since the last checkpoint
        for row in conn.execute(select(running_balances).where(
                or_(r.changed_at > self.last, r.account.in_(accounts)))):
            key = (row.account, row.currency, row.kind)
            self.totals[key] = [row.debit_minor, row.credit_minor, row.changed_at]
            if row.changed_at > self.last:
                self.pending.add(key)
        self.existing = set(self.totals)  # the keys with a row in the table
        self.moved: set[Key] = set()
        self.checkpoints: list[dict[str, Any]] = []
        self.balances: list[dict[str, Any]] = []
        self.full: list[dict[str, Any]] = []
        self.conn = conn
        self.stored: dict[Key, list[int]] | None = None  # every ALL_KINDS key, read once

    def add(self, event: Any, position: int) -> None:
        at = event_time(event)
        self.latest = at if self.latest is None or at > self.latest else self.latest
        if isinstance(event, JournalEntry.EntryPosted):
            for line in event.lines:
                own = parse_account(line["account"]) is not None
                for kind in ([ALL_KINDS, event.kind] if own else [ALL_KINDS]):
                    key = (line["account"], event.currency, kind)
                    totals = self.totals.setdefault(key, [0, 0, 0])
                    totals[0 if line["amount"] > 0 else 1] += abs(line["amount"])
                    totals[2] = position
                    self.moved.add(key)
                    self.pending.add(key)
        if position - self.last >= CHECKPOINT_EVERY:
            self.checkpoints.append({"position": position, "latest_at": self.latest})
            written = set(self.pending)
            if position // FULL_SPAN != self.last // FULL_SPAN:
                self.full.append({"position": position})
                written |= {key for key in self._all_kinds() if key not in self.totals}
                written |= {key for key in self.totals if key[2] == ALL_KINDS}
            self.balances += [{"account": key[0], "currency": key[1], "kind": key[2],
                               "position": position, "debit_minor": self._of(key)[0],
                               "credit_minor": self._of(key)[1]}
                              for key in sorted(written)]
            self.pending.clear()
            self.last = position

    def _all_kinds(self) -> dict[Key, list[int]]:
        """Every ALL_KINDS key's totals as the table holds them at the batch's start
        (those the batch moved are in `totals`, which comes first)."""
        if self.stored is None:
            r = running_balances.c
            self.stored = {(row.account, row.currency, row.kind):
                           [row.debit_minor, row.credit_minor]
                           for row in self.conn.execute(select(running_balances)
                                                        .where(r.kind == ALL_KINDS))}
        return self.stored

    def _of(self, key: Key) -> list[int]:
        return self.totals[key] if key in self.totals else self._all_kinds()[key]

    def save(self, conn: Connection) -> None:
        rows = {key: {"account": key[0], "currency": key[1], "kind": key[2],
                      "debit_minor": self.totals[key][0], "credit_minor": self.totals[key][1],
                      "changed_at": self.totals[key][2]} for key in sorted(self.moved)}
        rewrite(conn, running_balances, [rows[k] for k in rows if k in self.existing],
                [rows[k] for k in rows if k not in self.existing])
        if self.checkpoints:
            conn.execute(checkpoints.insert(), self.checkpoints)
        if self.full:
            conn.execute(full_checkpoints.insert(), self.full)
        insert(conn, checkpoint_balances, self.balances)  # COPY on PostgreSQL
        stmt = insert_for(conn, clock).values(name=CLOCK_ROW, latest_at=self.latest)
        conn.execute(stmt.on_conflict_do_update(index_elements=["name"],
                                                set_={"latest_at": self.latest}))


def _positions(conn: Connection, batch: Sequence[Any]) -> list[int]:
    """The log position of each event (the runner hands over decoded events only). A
    batch is the projection's next events after its tracked position, so their positions
    are one range read, checked at both ends; a batch applied one event at a time (or a
    retried parked event) is looked up by (aggregate id, version) instead."""
    e = event_log.c
    start = conn.execute(select(tracking.c.position)
                         .where(tracking.c.name == AuditCheckpointsProjection.name)).scalar()
    ids = conn.execute(select(e.id).where(e.id > (start or 0), e.topic.in_(_topics()))
                       .order_by(e.id).limit(len(batch))).scalars().all()
    if len(ids) == len(batch) and _is_at(conn, ids[0], batch[0]) and \
            _is_at(conn, ids[-1], batch[-1]):
        return ids
    keys = [(event.originator_id, event.originator_version) for event in batch]
    found = {(row.originator_id, row.originator_version): row.id for row in conn.execute(
        select(e.id, e.originator_id, e.originator_version)
        .where(tuple_(e.originator_id, e.originator_version).in_(keys)))}
    return [found[key] for key in keys]


def _is_at(conn: Connection, position: int, event: Any) -> bool:
    row = conn.execute(select(event_log.c.originator_id, event_log.c.originator_version)
                       .where(event_log.c.id == position)).one()
    return (row.originator_id, row.originator_version) == (event.originator_id,
                                                           event.originator_version)


@lru_cache(maxsize=1)
def _topics() -> tuple[str, ...]:
    return tuple(AuditCheckpointsProjection.topics())
