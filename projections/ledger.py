"""Read models of the double-entry ledger: the journal (one row per line), balances per
account, each distributor's earnings, and withdrawals.

Busy (a paid order posts an entry, each commission level several), so a batch is folded
into a few set-based statements rather than a handful of statements per entry."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import (JSON, Column, DateTime, Index, Integer, String, Table, Text, func,
                        select, tuple_)
from sqlalchemy.engine import Connection

from commands.views import iso, utc
from commands.storage import BIGINT as MINOR, metadata
from domain.approvals import AWAITING
from domain.ledger import JournalEntry, Withdrawal, parse_account
from projections.base import Projection
from projections.batching import Rows, insert

journal = Table(
    "rm_journal", metadata,
    Column("entry_uuid", String(36), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("cause", String(200), nullable=False, index=True),
    Column("kind", String(40), nullable=False),
    Column("account", String(120), nullable=False, index=True),
    Column("amount_minor", MINOR, nullable=False),  # debit positive, credit negative
    Column("currency", String(3), nullable=False),
    Column("memo", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

balances = Table(
    "rm_account_balances", metadata,
    Column("account", String(120), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("debit_minor", MINOR, nullable=False),
    Column("credit_minor", MINOR, nullable=False),
)

EARNING_FIELDS = ("pending", "available", "withdrawing", "paid_out", "reversed",
                  "lifetime_earned")
earnings = Table(
    "rm_earnings", metadata,
    Column("distributor_id", String(64), primary_key=True),
    Column("currency", String(3), primary_key=True),
    *(Column(name, MINOR, nullable=False) for name in EARNING_FIELDS),
)

withdrawals = Table(
    "rm_withdrawals", metadata,
    Column("withdrawal_id", String(64), primary_key=True),
    Column("withdrawal_uuid", String(36), nullable=False, unique=True),
    Column("distributor_id", String(64), nullable=False, index=True),
    Column("amount_minor", MINOR, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(40), nullable=False),
    Column("payment_reference", String(200), nullable=True),
    Column("reason", Text, nullable=True),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("approvals", JSON, nullable=True),  # who approved so far (null: nobody)
    Index("rm_withdrawals_queue_idx", "status", "requested_at", "withdrawal_id"),
)

# kind of entry -> the earnings figure (besides the balances) that its lines move
_KIND_FIGURE = {"accrual": "lifetime_earned", "reversal": "reversed", "clawback": "reversed",
                "withdrawal_paid": "paid_out"}
_DECISIONS = {Withdrawal.WithdrawalApproved: AWAITING, Withdrawal.WithdrawalPaid: "paid",
              Withdrawal.WithdrawalRejected: "rejected"}


class _Batch:
    """A batch of ledger events folded into a few statements: every journal line and
    withdrawal in one INSERT each, and the batch's balance and earnings changes summed
    per account and per distributor, then added to their rows in one go
    (projections/batching.py; sums commute, so the result is what applying the events
    one by one gives)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.balances: dict[tuple[str, str], list[int]] = {}
        self.earnings: dict[tuple[str, str], dict[str, int]] = {}
        self.withdrawals = Rows(withdrawals, "withdrawal_id", also=["withdrawal_uuid"])
        self.decided: list[Any] = []

    def posted(self, e: Any) -> None:
        entry_uuid, memo, currency = str(e.originator_id), e.memo or "", e.currency
        figure = _KIND_FIGURE.get(e.kind)
        for n, line in enumerate(e.lines, 1):
            account, amount = line["account"], line["amount"]
            self.lines.append({"entry_uuid": entry_uuid, "line_no": n, "cause": e.cause,
                               "kind": e.kind, "account": account, "amount_minor": amount,
                               "currency": currency, "memo": memo, "at": e.at})
            balance = self.balances.setdefault((account, currency), [0, 0])
            balance[0] += max(amount, 0)
            balance[1] += max(-amount, 0)
            found = parse_account(account)
            if found is None:
                continue
            distributor_id, bucket = found
            row = self.earnings.setdefault((distributor_id, currency),
                                           dict.fromkeys(EARNING_FIELDS, 0))
            row[bucket] -= amount  # what the merchant owes: the credit balance
            if figure:  # these kinds touch exactly one account of the distributor
                row[figure] += abs(amount)

    def requested_withdrawal(self, e: Any) -> None:
        self.withdrawals.insert({
            "withdrawal_id": e.withdrawal_id, "withdrawal_uuid": str(e.originator_id),
            "distributor_id": e.distributor_id, "amount_minor": e.amount_minor,
            "currency": e.currency, "status": "requested", "payment_reference": None,
            "reason": None, "requested_at": e.at, "decided_at": None, "approvals": None})

    def decided_withdrawal(self, e: Any) -> None:
        self.decided.append(e)  # applied in write(), once the batch's withdrawals are read

    def write(self, conn: Connection) -> None:
        insert(conn, journal, self.lines)
        for table, key, sums in (
                (balances, ("account", "currency"), {
                    k: {"debit_minor": debit, "credit_minor": credit}
                    for k, (debit, credit) in self.balances.items()}),
                (earnings, ("distributor_id", "currency"), self.earnings)):
            rows = Rows(table, key)
            rows.increment(conn, sums)
            rows.write(conn)
        self.withdrawals.load(conn, [str(e.originator_id) for e in self.decided],
                              "withdrawal_uuid")
        for e in self.decided:  # a withdrawal requested earlier, or in this batch
            status, changes = _DECISIONS[type(e)], {}
            if status == AWAITING:  # the first of two approvals: nothing decided yet,
                changes.update(approvals=[e.actor],  # the reference the second must name
                               payment_reference=e.payment_reference)
            else:
                changes.update(decided_at=e.at, reason=getattr(e, "reason", None),
                               payment_reference=getattr(e, "payment_reference", None))
            if type(e) is Withdrawal.WithdrawalPaid and e.approved_by:
                changes["approvals"] = list(e.approved_by)
            self.withdrawals.update(conn, str(e.originator_id), "withdrawal_uuid",
                                    status=status, **changes)
        self.withdrawals.write(conn)


_FOLD = {
    JournalEntry.EntryPosted: _Batch.posted,
    Withdrawal.WithdrawalRequested: _Batch.requested_withdrawal,
    Withdrawal.WithdrawalApproved: _Batch.decided_withdrawal,
    Withdrawal.WithdrawalPaid: _Batch.decided_withdrawal,
    Withdrawal.WithdrawalRejected: _Batch.decided_withdrawal,
}


class LedgerProjection(Projection):
    name = "ledger"
    tables = (journal, balances, earnings, withdrawals)
    handlers = {}  # apply_batch folds the batch itself

    @classmethod
    def event_types(cls) -> tuple[type, ...]:
        return tuple(_FOLD)

    def apply_batch(self, conn: Connection, events: Sequence[Any]) -> None:
        batch = _Batch()
        for e in events:
            _FOLD[type(e)](batch, e)
        batch.write(conn)


def earnings_of(conn: Connection, distributor_id: str, currency: str) -> dict[str, Any]:
    row = conn.execute(select(earnings).where(earnings.c.distributor_id == distributor_id,
                                              earnings.c.currency == currency)).first()
    figures = {name: (getattr(row, name) if row else 0) for name in EARNING_FIELDS}
    return {"distributor_id": distributor_id, "currency": currency, **figures}


def list_withdrawals(conn: Connection, status: str | None, distributor_id: str | None,
                     after: list[str] | None, limit: int) -> list[dict[str, Any]]:
    """The payout queue: oldest request first."""
    w = withdrawals.c
    query = select(withdrawals).order_by(w.requested_at, w.withdrawal_id).limit(limit)
    if status is not None:
        query = query.where(w.status == status)
    if distributor_id is not None:
        query = query.where(w.distributor_id == distributor_id)
    if after is not None:
        at, withdrawal_id = after
        query = query.where(tuple_(w.requested_at, w.withdrawal_id)
                            > tuple_(utc(datetime.fromisoformat(at)), withdrawal_id))
    return [_withdrawal_view(r) for r in conn.execute(query)]


def withdrawal_row(conn: Connection, withdrawal_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(withdrawals)
                       .where(withdrawals.c.withdrawal_id == withdrawal_id)).first()
    return _withdrawal_view(row) if row else None


def _withdrawal_view(r: Any) -> dict[str, Any]:
    return {"withdrawal_id": r.withdrawal_id, "distributor_id": r.distributor_id,
            "amount": r.amount_minor, "currency": r.currency, "status": r.status,
            "requested_at": iso(r.requested_at), "payment_reference": r.payment_reference,
            "reason": r.reason, "approvals": list(r.approvals or [])}


def withdrawal_counts(conn: Connection, distributor_id: str | None = None) -> dict[str, int]:
    query = select(withdrawals.c.status, func.count()).group_by(withdrawals.c.status)
    if distributor_id is not None:
        query = query.where(withdrawals.c.distributor_id == distributor_id)
    return dict(conn.execute(query).all())
