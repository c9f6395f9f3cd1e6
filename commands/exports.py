"""Exports for auditors: the journal, the trial balance and distributor statements, as CSV.

Each reads the ledger read models (and, for statements, the commission entries), either
live or as of an earlier moment: then the projections are built from the log alone up to
that position in scratch tables (projections/scratch.py) and the very same queries run
against those, so an export as of the head equals the live one.

A moment is a log position or a time; a time means the last position whose event was
recorded at or before it (event timestamps come from the application clock, so "as of a
time" means the same for every aggregate).

Rows are in log order (each journal entry's position in the log, then its line number),
not by the dates on the entries: a tick dates entries at the `now` it was given, so dates
need not grow along the log, while a running balance must follow the order things
happened in.

Text cells that a spreadsheet would run as a formula (starting with = + - @, tab or CR)
get a leading apostrophe: ids and memos come from users, and auditors open these files in
spreadsheets. Numbers are written as they are.
"""
from __future__ import annotations

import contextlib
import csv
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, TextIO
from uuid import UUID

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from commands.app import CoreApp
from commands.audit import Log
from commands.views import iso
from domain.distributors import Distributor
from domain.errors import InvalidCommand, NotFound
from domain.ledger import BUCKETS, account, parse_account
from projections.base import Projection
from projections.commissions import CommissionsProjection, commissions, reversals
from projections.ledger import LedgerProjection, balances, journal
from projections.runner import positions
from projections.scratch import ScratchBuild

KINDS = ("journal", "trial-balance", "statements")

COLUMNS = {
    "journal": ("position", "entry_uuid", "line_no", "at", "kind", "cause", "account",
                "debit", "credit", "currency", "memo"),
    "trial-balance": ("account", "currency", "debit", "credit", "balance"),
    "statements": ("distributor_id", "position", "at", "entry_uuid", "entry_line", "kind",
                   "cause", "account", "amount", "pending", "available", "withdrawing",
                   "balance", "currency", "order_id", "order_line", "level", "sku",
                   "rule_kind", "rule_version", "rate_bp", "fixed_per_unit",
                   "commission_base", "refund_reference", "refunded_total",
                   "reversal_cause", "withdrawal_id", "memo"),
}
TOTAL = "TOTAL"  # the trial balance's last row per currency (no account is named so)

# The causes commands/ledger.py posts entries under, read back to name what is behind
# each entry of a statement.
_COMMISSION_CAUSE = re.compile(
    r"^commission:(?P<order>.+):(?P<line>\d+):L(?P<level>\d+):"
    r"(?:accrued|matured|reversed:(?P<total>\d+))$")
_WITHDRAWAL_CAUSE = re.compile(r"^withdrawal:(?P<id>.+):(?:requested|paid|rejected)$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def projections_for(kind: str) -> list[Projection]:
    """The read models an export reads."""
    if kind == "statements":
        return [LedgerProjection(), CommissionsProjection()]
    return [LedgerProjection()]


# -- as of when ------------------------------------------------------------------------

def parse_as_of(text: str) -> int | datetime:
    """A log position (digits) or an ISO-8601 time, where a time without an offset is
    UTC (the command line's leniency; the API insists on an offset)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidCommand(f"as_of {text!r} is neither a log position nor an ISO-8601 "
                             "time", field="as_of") from None
    if when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    try:
        return when.astimezone(timezone.utc)
    except OverflowError:
        raise InvalidCommand(f"as_of {text!r} is outside the years 1-9999 in UTC",
                             field="as_of") from None


def resolve_as_of(app: CoreApp, asked: int | datetime) -> int:
    """The log position a position or a time means, as every audit view resolves it
    (commands/audit.py): a time is the log up to the first event recorded after it;
    a position beyond the log head is refused."""
    with app.engine.connect() as conn:
        return Log(app, conn).as_of(asked).position


# -- where an export reads ------------------------------------------------------------

@dataclass(frozen=True)
class Books:
    """A connection on which the projections' tables are those to export (live, or the
    shadows of a scratch build), the event log, and the log position they reflect."""

    conn: Connection
    events: Table
    position: int


@contextlib.contextmanager
def books(app: CoreApp, kind: str, as_of: int | None = None,
          progress: Callable[[int], None] | None = None) -> Iterator[Books]:
    """The live read models (`as_of` None), else the log up to position `as_of` built
    into scratch tables. `progress(n)` is told how far each build batch moved."""
    events = app.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
    needed = projections_for(kind)
    if as_of is None:
        with app.engine.connect() as conn:
            current = positions(conn)
            yield Books(conn, events, min(current.get(p.name, 0) for p in needed))
        return
    with ScratchBuild(app, needed) as build:
        build.build(until=as_of, progress=progress)
        with build.reading() as conn:
            yield Books(conn, events, as_of)


# -- the rows ----------------------------------------------------------------------------

def journal_rows(books: Books, distributor_id: str | None = None) -> list[dict[str, Any]]:
    """Every journal line in log order; with `distributor_id`, the whole entries that
    touch one of its accounts (so each entry still balances)."""
    query = select(journal)
    if distributor_id is not None:
        query = query.where(journal.c.entry_uuid.in_(
            select(journal.c.entry_uuid).where(journal.c.account.in_(
                [account(distributor_id, bucket) for bucket in BUCKETS]))))
    rows = books.conn.execute(query).all()
    at = _entry_positions(books, {r.entry_uuid for r in rows})
    return [{"position": at[r.entry_uuid], "entry_uuid": r.entry_uuid, "line_no": r.line_no,
             "at": iso(r.at), "kind": r.kind, "cause": r.cause, "account": r.account,
             "debit": max(r.amount_minor, 0), "credit": max(-r.amount_minor, 0),
             "currency": r.currency, "memo": r.memo}
            for r in sorted(rows, key=lambda r: (at[r.entry_uuid], r.line_no))]


def trial_balance_rows(books: Books) -> list[dict[str, Any]]:
    """Each account's debits, credits and balance (debit minus credit), then a TOTAL row
    per currency, whose balance is 0 when the books balance."""
    rows = books.conn.execute(select(balances).order_by(balances.c.currency,
                                                        balances.c.account)).all()
    out: list[dict[str, Any]] = []
    for currency in sorted({r.currency for r in rows}):
        mine = [r for r in rows if r.currency == currency]
        out += [{"account": r.account, "currency": currency, "debit": r.debit_minor,
                 "credit": r.credit_minor, "balance": r.debit_minor - r.credit_minor}
                for r in mine]
        debit, credit = sum(r.debit_minor for r in mine), sum(r.credit_minor for r in mine)
        out.append({"account": TOTAL, "currency": currency, "debit": debit,
                    "credit": credit, "balance": debit - credit})
    return out


def statement_rows(books: Books, distributor_id: str | None = None) -> list[dict[str, Any]]:
    """Per distributor (each one, or only `distributor_id`), every journal line that
    moved one of its accounts, in log order, with the running balance of each account
    and of all three (what the merchant owes it: credits count up), and what is behind
    the entry: the order, line, level, rule and refund of a commission, or the
    withdrawal."""
    conn = books.conn
    query = select(journal).where(journal.c.account.like("distributor:%"))
    if distributor_id is not None:
        query = query.where(journal.c.account.in_(
            [account(distributor_id, bucket) for bucket in BUCKETS]))
    lines = conn.execute(query).all()
    at = _entry_positions(books, {r.entry_uuid for r in lines})
    entries = _commission_entries(conn, distributor_id)
    owners = {r.account: parse_account(r.account) for r in lines}
    lines.sort(key=lambda r: (owners[r.account][0], at[r.entry_uuid], r.line_no))
    out: list[dict[str, Any]] = []
    running: dict[str, dict[str, int]] = {}
    for r in lines:
        owner, bucket = owners[r.account]
        figures = running.setdefault(owner, {b: 0 for b in BUCKETS})
        figures[bucket] -= r.amount_minor
        out.append({"distributor_id": owner, "position": at[r.entry_uuid], "at": iso(r.at),
                    "entry_uuid": r.entry_uuid, "entry_line": r.line_no, "kind": r.kind,
                    "cause": r.cause, "account": r.account, "amount": -r.amount_minor,
                    **figures, "balance": sum(figures.values()), "currency": r.currency,
                    **_behind(r.cause, entries), "memo": r.memo})
    return out


def _commission_entries(conn: Connection, distributor_id: str | None
                        ) -> dict[tuple[str, int, int], tuple[Any, dict[int, Any]]]:
    """(order, line, level) -> (the commission entry, its reversals by the line's
    refunded total)."""
    query = select(commissions)
    found_reversals = select(reversals).join(commissions, (
        commissions.c.line_uuid == reversals.c.line_uuid)
        & (commissions.c.level == reversals.c.level))
    if distributor_id is not None:
        query = query.where(commissions.c.distributor_id == distributor_id)
        found_reversals = found_reversals.where(commissions.c.distributor_id == distributor_id)
    by_entry: dict[tuple[str, int], dict[int, Any]] = {}
    for r in conn.execute(found_reversals):
        by_entry.setdefault((r.line_uuid, r.level), {})[r.refunded_total_minor] = r
    return {(c.order_id, c.line_no, c.level): (c, by_entry.get((c.line_uuid, c.level), {}))
            for c in conn.execute(query)}


def _behind(cause: str, entries: dict[tuple[str, int, int], tuple[Any, dict[int, Any]]]
            ) -> dict[str, Any]:
    behind: dict[str, Any] = {name: None for name in (
        "order_id", "order_line", "level", "sku", "rule_kind", "rule_version", "rate_bp",
        "fixed_per_unit", "commission_base", "refund_reference", "refunded_total",
        "reversal_cause", "withdrawal_id")}
    if found := _WITHDRAWAL_CAUSE.match(cause):
        behind["withdrawal_id"] = found["id"]
    elif found := _COMMISSION_CAUSE.match(cause):
        order_id, line_no, level = found["order"], int(found["line"]), int(found["level"])
        behind.update(order_id=order_id, order_line=line_no, level=level)
        if found["total"] is not None:
            behind["refunded_total"] = int(found["total"])
        entry = entries.get((order_id, line_no, level))
        if entry is not None:
            commission, reversed_by = entry
            behind.update(sku=commission.sku, rule_kind=commission.rule_kind,
                          rule_version=commission.rule_version, rate_bp=commission.rate_bp,
                          fixed_per_unit=commission.fixed_per_unit,
                          commission_base=commission.base_minor)
            reversal = reversed_by.get(behind["refunded_total"])
            if reversal is not None:
                behind.update(refund_reference=reversal.refund_reference,
                              reversal_cause=reversal.cause)
    return behind


def _entry_positions(books: Books, entry_uuids: Iterable[str]) -> dict[str, int]:
    """Journal entry id -> the log position of the event that posted it (an entry is
    posted by its aggregate's first event)."""
    events, found = books.events, {}
    ids = sorted(entry_uuids)
    for start in range(0, len(ids), 500):
        chunk = [UUID(i) for i in ids[start:start + 500]]
        for position, originator_id in books.conn.execute(
                select(events.c.id, events.c.originator_id)
                .where(events.c.originator_id.in_(chunk), events.c.originator_version == 1)):
            found[str(originator_id)] = position
    return found


def rows(books: Books, kind: str, distributor_id: str | None = None
         ) -> list[dict[str, Any]]:
    if kind == "journal":
        return journal_rows(books, distributor_id)
    if kind == "statements":
        return statement_rows(books, distributor_id)
    if distributor_id is not None:
        raise InvalidCommand("a trial balance covers every account; distributor_id "
                             "applies to the journal and statements", field="distributor_id")
    return trial_balance_rows(books)


def check_distributor(app: CoreApp, distributor_id: str) -> None:
    """Refuse a distributor the log has never heard of (an empty statement would say
    nothing about whether it exists)."""
    if not app.exists(Distributor.create_id(distributor_id)):
        raise NotFound(f"distributor {distributor_id} not found",
                       distributor_id=distributor_id)


def write_csv(kind: str, found: Iterable[dict[str, Any]], out: TextIO) -> None:
    writer = csv.DictWriter(out, COLUMNS[kind])
    writer.writeheader()
    for row in found:
        writer.writerow({k: _cell(v) for k, v in row.items()})


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


# -- any read model's tables (`fenxiao audit as-of`) ---------------------------------------

def write_tables(tables: list[Table], found: dict[str, list[dict[str, Any]]], fmt: str,
                 out: TextIO, **about: Any) -> None:
    """Write the rows of `tables` as CSV (one table only: a CSV document has one header),
    JSON ({**about, tables: {name: rows}}) or aligned text for people."""
    if fmt == "json":
        json.dump({**about, "tables": {t.name: found[t.name] for t in tables}}, out,
                  default=_plain, indent=1)
        out.write("\n")
        return
    if fmt == "csv":
        [table] = tables
        writer = csv.writer(out)
        writer.writerow([c.name for c in table.columns])
        writer.writerows([_cell(v) if isinstance(v := row[c.name], str) else _text(v)
                          for c in table.columns] for row in found[table.name])
        return
    for table in tables:
        names = [c.name for c in table.columns]
        cells = [names, *([_text(row[n]) for n in names] for row in found[table.name])]
        widths = [max(len(line[i]) for line in cells) for i in range(len(names))]
        out.write(f"{table.name}: {len(cells) - 1} rows\n")
        for line in cells:
            out.write("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() + "\n")
        out.write("\n")


def _plain(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else str(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso(value) or ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=_plain, sort_keys=True)
    return str(value)
