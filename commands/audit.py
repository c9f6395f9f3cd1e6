"""Audit queries over the log itself: the history of events with their metadata, and
balances, orders and earnings as they stood at a past log position or time.

Nothing here reads today's read models. A point-in-time figure is computed from the log:
balances from the nearest checkpoint at or before the position (projections/
audit_checkpoints.py, itself built from the log) plus the journal entries after it, read
from the log; an order by replaying its aggregate up to the position.

"As of a time" T means the log up to the first event recorded later than T (recorded by the
application clock: `meta["at"]`, see commands/app.py), so a time always names a prefix of
the log, and a view as of a time is exactly the view as of that position. With a clock that
never goes back, that is every event recorded at or before T.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from sqlalchemy import func, select, true
from sqlalchemy.engine import Connection

from commands.orders import order_view
from commands.views import iso
from domain.distributors import Distributor
from domain.errors import InvalidCommand, NotFound
from domain.ledger import BUCKETS, JournalEntry, account as bucket_account
from domain.orders import Order
from projections.audit_checkpoints import (ALL_KINDS, checkpoint_balances, checkpoints,
                                           domain_event_classes, event_log, event_time,
                                           full_checkpoints, running_balances, utc)
from projections.ledger import _KIND_FIGURE as KIND_FIGURE
from projections.ledger import EARNING_FIELDS

ENTRY_POSTED = get_topic(JournalEntry.EntryPosted)
SCAN_CHUNK = 200  # events decoded at a time while looking for a time in the log
AsOfArg = int | datetime | None  # a log position, a time, or None for the head


def type_name(topic: str) -> str:
    """"domain.orders:Order.OrderPaid" -> "Order.OrderPaid"."""
    return topic.rpartition(":")[2]


def event_types() -> dict[str, str]:
    """Readable event type -> topic, for every event of the domain."""
    return {type_name(get_topic(cls)): get_topic(cls) for cls in domain_event_classes()}


@dataclass(frozen=True)
class AsOf:
    position: int
    time: datetime | None  # the time asked for, else when the event at `position` was

    def view(self) -> dict[str, Any]:
        return {"position": self.position, "time": iso(self.time)}


class Log:
    """Reads and decodes the event log (encrypted or not) through the app's mapper."""

    def __init__(self, app: Any, conn: Connection) -> None:
        self.app, self.conn = app, conn
        self.head = conn.execute(select(func.max(event_log.c.id))).scalar() or 0

    def decode(self, row: Any) -> Any:
        state = row.state
        return self.app.mapper.to_domain_event(StoredEvent(
            originator_id=row.originator_id, originator_version=row.originator_version,
            topic=row.topic, state=bytes(state) if isinstance(state, memoryview) else state))

    def rows(self, *where: Any, limit: int | None = None) -> list[Any]:
        query = select(event_log).where(*where).order_by(event_log.c.id)
        return self.conn.execute(query.limit(limit) if limit else query).all()

    def scan(self, after: int) -> Iterator[tuple[int, Any]]:
        """(position, event) of every event after `after`, up to the head, in chunks."""
        while after < self.head:
            chunk = self.rows(event_log.c.id > after, event_log.c.id <= self.head,
                              limit=SCAN_CHUNK)
            if not chunk:
                return
            for row in chunk:
                yield row.id, self.decode(row)
            after = chunk[-1].id

    # -- as of -------------------------------------------------------------------------

    def as_of(self, asked: AsOfArg) -> AsOf:
        if asked is None:
            return AsOf(self.head, self.time_at(self.head))
        if isinstance(asked, datetime):
            return AsOf(self.position_at(asked), utc(asked))
        if asked > self.head:
            raise InvalidCommand(f"as_of {asked} is beyond the log head {self.head}",
                                 field="as_of")
        return AsOf(asked, self.time_at(asked))

    def time_at(self, position: int) -> datetime | None:
        """When the last event at or before `position` was recorded (None: no event)."""
        row = self.conn.execute(select(event_log).where(event_log.c.id <= position)
                                .order_by(event_log.c.id.desc()).limit(1)).first()
        return event_time(self.decode(row)) if row else None

    def position_at(self, time: datetime, inclusive: bool = True) -> int:
        """The end of the log as of `time`: the position before the first event recorded
        after it (at or after it, if not `inclusive`). The checkpoints' running maximum of
        times skips every stretch of the log recorded wholly before it."""
        time = utc(time)
        c = checkpoints.c
        before = c.latest_at <= time if inclusive else c.latest_at < time
        start = self.conn.execute(select(func.max(c.position)).where(before)).scalar() or 0
        for position, event in self.scan(start):
            at = event_time(event)
            if at > time or (not inclusive and at == time):
                return position - 1
        return self.head

    # -- balances ------------------------------------------------------------------------

    def totals(self, position: int, currency: str, accounts: Iterable[str] | None = None,
               by_kind: bool = False) -> dict[tuple[str, str], list[int]]:
        """(account, kind of entry) -> [debit, credit], cumulative up to `position`: the
        checkpoint at or before it, plus the journal entries after it, from the log. The
        kind is ALL_KINDS unless `by_kind` (kept for distributors' accounts only)."""
        wanted = set(accounts) if accounts is not None else None
        start = self.conn.execute(select(func.max(checkpoints.c.position))
                                  .where(checkpoints.c.position <= position)).scalar() or 0
        totals = self._checkpointed(start, currency, wanted, by_kind)
        for row in self.rows(event_log.c.id > start, event_log.c.id <= position,
                             event_log.c.topic == ENTRY_POSTED):
            entry = self.decode(row)
            if entry.currency != currency:
                continue
            for line in entry.lines:
                if wanted is None or line["account"] in wanted:
                    key = (line["account"], entry.kind if by_kind else ALL_KINDS)
                    pair = totals.setdefault(key, [0, 0])
                    pair[0 if line["amount"] > 0 else 1] += abs(line["amount"])
        return totals

    def _checkpointed(self, start: int, currency: str, wanted: set[str] | None,
                      by_kind: bool) -> dict[tuple[str, str], list[int]]:
        """Each key's totals at the checkpoint `start`: its row with the greatest
        position at or before it. The running table lists the keys, and each key's row is
        a correlated subquery, so every database runs it as an index seek per key (a plain
        join lets PostgreSQL's planner read a key's whole history instead)."""
        if start == 0:
            return {}
        if wanted is None and not by_kind:
            full = self._from_full_checkpoint(start, currency)
            if full is not None:
                return full
        r, b = running_balances.c, checkpoint_balances.c
        keys = (r.currency == currency, r.kind != ALL_KINDS if by_kind else r.kind == ALL_KINDS)
        latest = (select(b.debit_minor, b.credit_minor)
                  .where(b.account == r.account, b.currency == r.currency, b.kind == r.kind,
                         b.position <= start)
                  .order_by(b.position.desc()).limit(1))
        if self.conn.dialect.name == "postgresql":
            # One seek per key for both totals (a LATERAL subquery): half the time of
            # two scalar subqueries, the bulk of an as-of trial balance over many keys.
            found = latest.lateral("found")
            query = (select(r.account, r.kind, found.c.debit_minor.label("debit"),
                            found.c.credit_minor.label("credit"))
                     .select_from(running_balances.join(found, true())).where(*keys))
        else:  # SQLite has no LATERAL; its correlated subqueries are cheap seeks
            query = select(r.account, r.kind,
                           latest.with_only_columns(b.debit_minor).scalar_subquery()
                           .label("debit"),
                           latest.with_only_columns(b.credit_minor).scalar_subquery()
                           .label("credit")).where(*keys)
        if wanted is not None:
            query = query.where(r.account.in_(sorted(wanted)))
        query = query.order_by(r.account, r.kind)  # the keys' order: the caller sorts less
        # A key with no row by then (none, or NULL) had not moved yet. Fetched as plain
        # tuples in one go: thousands of rows, read row by row, cost as much as the query.
        return {(account, kind): [debit, credit]
                for account, kind, debit, credit in self.conn.execute(query).all()
                if debit is not None}

    def _from_full_checkpoint(self, start: int, currency: str
                              ) -> dict[tuple[str, str], list[int]] | None:
        """Every account's totals at the checkpoint `start` from the full checkpoint at
        or before it (all its accounts) and the checkpoints after it up to `start` (the
        accounts each moved), in position order: one range of rows. None when there is
        no full checkpoint that early (checkpoints built before full ones existed)."""
        full = self.conn.execute(select(func.max(full_checkpoints.c.position))
                                 .where(full_checkpoints.c.position <= start)).scalar()
        if full is None:
            return None
        b = checkpoint_balances.c
        rows = self.conn.execute(
            select(b.account, b.debit_minor, b.credit_minor)
            .where(b.position >= full, b.position <= start, b.currency == currency,
                   b.kind == ALL_KINDS)
            .order_by(b.position, b.account)).all()
        return {(account, ALL_KINDS): [debit, credit] for account, debit, credit in rows}

    def existed(self, aggregate_id: UUID, position: int) -> int | None:
        """The aggregate's version as of `position` (None: it did not exist yet)."""
        return self.conn.execute(
            select(func.max(event_log.c.originator_version))
            .where(event_log.c.originator_id == aggregate_id, event_log.c.id <= position)
        ).scalar()


def _read(app: Any, as_of: AsOfArg, answer: Callable[[Log, AsOf], dict[str, Any]]
          ) -> dict[str, Any]:
    with app.engine.connect() as conn:
        log = Log(app, conn)
        point = log.as_of(as_of)
        return {**answer(log, point), "as_of": point.view()}


def trial_balance(app: Any, as_of: AsOfArg) -> dict[str, Any]:
    """Every account's debits, credits and balance (debit - credit) as of a position or a
    time; the balances sum to zero, as every entry's lines do."""
    currency = app.settings.currency

    def answer(log: Log, point: AsOf) -> dict[str, Any]:
        accounts = [{"account": account, "debit": debit, "credit": credit,
                     "balance": debit - credit}
                    for (account, _), (debit, credit) in
                    sorted(log.totals(point.position, currency).items())]
        return {"currency": currency, "accounts": accounts,
                "total": sum(a["balance"] for a in accounts)}
    return _read(app, as_of, answer)


def account_balance(app: Any, account: str, as_of: AsOfArg) -> dict[str, Any]:
    """One account as of a position or a time (zeros for an account nothing had moved)."""
    currency = app.settings.currency

    def answer(log: Log, point: AsOf) -> dict[str, Any]:
        debit, credit = log.totals(point.position, currency, [account]).get(
            (account, ALL_KINDS), [0, 0])
        return {"account": account, "currency": currency, "debit": debit,
                "credit": credit, "balance": debit - credit}
    return _read(app, as_of, answer)


def order_as_of(app: Any, order_id: str, as_of: AsOfArg) -> dict[str, Any]:
    """The order as it stood: its aggregate replayed up to the position, shown as
    GET /orders/{id} shows it. 404 if it had not been placed by then."""
    aggregate_id = Order.create_id(order_id)

    def answer(log: Log, point: AsOf) -> dict[str, Any]:
        version = log.existed(aggregate_id, point.position)
        if version is None:
            raise NotFound(f"order {order_id} not found as of position {point.position}",
                           order_id=order_id, as_of=point.position)
        return order_view(app.repository.get(aggregate_id, version=version))
    return _read(app, as_of, answer)


def earnings_as_of(app: Any, distributor_id: str, as_of: AsOfArg) -> dict[str, Any]:
    """A distributor's earnings as GET /distributors/{id}/earnings shows them, as of a
    position or a time: the balances of its three accounts (what the merchant owes it:
    credit balances), and the lifetime figures summed by kind of entry. 404 if it had not
    applied by then."""
    currency = app.settings.currency
    accounts = {bucket_account(distributor_id, bucket): bucket for bucket in BUCKETS}

    def answer(log: Log, point: AsOf) -> dict[str, Any]:
        if log.existed(Distributor.create_id(distributor_id), point.position) is None:
            raise NotFound(f"distributor {distributor_id} not found as of position "
                           f"{point.position}", distributor_id=distributor_id,
                           as_of=point.position)
        figures = {name: 0 for name in EARNING_FIELDS}
        for (account, kind), (debit, credit) in \
                log.totals(point.position, currency, accounts, by_kind=True).items():
            figures[accounts[account]] += credit - debit
            if kind in KIND_FIGURE:
                figures[KIND_FIGURE[kind]] += debit + credit
        return {"distributor_id": distributor_id, "currency": currency, **figures}
    return _read(app, as_of, answer)


# -- history ------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventFilter:
    after: int = 0
    aggregate_id: UUID | None = None
    topic: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None


def list_events(app: Any, where: EventFilter, limit: int, masked: bool
                ) -> tuple[list[dict[str, Any]], int]:
    """Events in log order after `where.after`, at most `limit`, and the log head read.
    A time range is turned into positions the way as_of is (from: the first event recorded
    at or after it; to: the last before the first one recorded after it), so it is always
    one stretch of the log."""
    with app.engine.connect() as conn:
        log = Log(app, conn)
        e = event_log.c
        conditions = [e.id > where.after, e.id <= log.head]
        if where.aggregate_id is not None:
            conditions.append(e.originator_id == where.aggregate_id)
        if where.topic is not None:
            conditions.append(e.topic == where.topic)
        if where.time_from is not None:
            conditions.append(e.id > log.position_at(where.time_from, inclusive=False))
        if where.time_to is not None:
            conditions.append(e.id <= log.position_at(where.time_to))
        rows = log.rows(*conditions, limit=limit)
        return [history_item(row.id, log.decode(row), masked) for row in rows], log.head


REDACTED_SECRET = "whsec_********"
_NOT_DATA = {"originator_id", "originator_version", "originator_topic", "timestamp", "meta"}


def history_item(position: int, event: Any, masked: bool) -> dict[str, Any]:
    meta = getattr(event, "meta", None) or {}
    kind = type_name(get_topic(type(event)))
    data = {k: v for k, v in vars(event).items() if k not in _NOT_DATA}
    if "secret" in data:  # a webhook's signing secret: shown once, to its registrant only
        data["secret"] = REDACTED_SECRET
    if masked:
        data = mask_personal(kind, data)
    return {
        "position": position, "aggregate_id": str(event.originator_id),
        "version": event.originator_version, "type": kind,
        "timestamp": iso(event_time(event)),
        **{name: meta.get(name) for name in ("actor", "command_id", "idempotency_key",
                                             "correlation_id", "causation_id",
                                             "request_id")},
        "data": jsonable(data),
    }


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    return value


# -- personal data ----------------------------------------------------------------------

PERSON_AGGREGATES = ("Distributor.",)  # events whose top-level "name" is a person's
ADDRESS_KEPT = {"region"}  # coarse enough to keep (allocation and reports use it)


def mask_phone(phone: str) -> str:
    return "*" * (len(phone) - 4) + phone[-4:] if len(phone) > 4 else "****"


def mask_name(name: str) -> str:
    return name[:1] + "**" if name else name


def mask_personal(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """The event's data with people's phone numbers (last four digits kept), names (first
    character kept) and street addresses (all but the region) masked."""
    masked = _mask(data)
    if kind.startswith(PERSON_AGGREGATES) and isinstance(masked.get("name"), str):
        masked["name"] = mask_name(masked["name"])
    return masked


def _mask(value: Any) -> Any:
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key in ("phone", "phone_key") and isinstance(item, str):
            out[key] = mask_phone(item)
        elif key == "shipping_address" and isinstance(item, dict):
            out[key] = {k: v if k in ADDRESS_KEPT or v is None else "***"
                        for k, v in item.items()}
        elif key == "customer" and isinstance(item, dict):
            out[key] = {**_mask(item), **({"name": mask_name(item["name"])}
                                          if isinstance(item.get("name"), str) else {})}
        else:
            out[key] = _mask(item)
    return out

