"""Read models of the double-entry ledger: the journal (one row per line), balances per
account, each distributor's earnings, and withdrawals."""
from __future__ import annotations

from typing import Any

from sqlalchemy import (Column, DateTime, Integer, String, Table, Text, select,
                        update)
from sqlalchemy.engine import Connection

from commands.storage import BIGINT as MINOR, increment, metadata
from domain.ledger import JournalEntry, Withdrawal, parse_account
from projections.base import Projection

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
    Column("status", String(20), nullable=False),
    Column("payment_reference", String(200), nullable=True),
    Column("reason", Text, nullable=True),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=True),
)

# kind of entry -> the earnings figure (besides the balances) that its lines move
_KIND_FIGURE = {"accrual": "lifetime_earned", "reversal": "reversed", "clawback": "reversed",
                "withdrawal_paid": "paid_out"}


def _posted(conn: Connection, e: Any) -> None:
    conn.execute(journal.insert(), [
        {"entry_uuid": str(e.originator_id), "line_no": n, "cause": e.cause, "kind": e.kind,
         "account": line["account"], "amount_minor": line["amount"], "currency": e.currency,
         "memo": e.memo or "", "at": e.at}
        for n, line in enumerate(e.lines, 1)])
    increment(conn, balances, ["account", "currency"], [
        {"account": line["account"], "currency": e.currency,
         "debit_minor": max(line["amount"], 0), "credit_minor": max(-line["amount"], 0)}
        for line in e.lines], ["debit_minor", "credit_minor"])
    increment(conn, earnings, ["distributor_id", "currency"],
              list(_earnings_changes(e).values()), EARNING_FIELDS)


def _earnings_changes(e: Any) -> dict[str, dict[str, Any]]:
    changes: dict[str, dict[str, Any]] = {}
    figure = _KIND_FIGURE.get(e.kind)
    for line in e.lines:
        found = parse_account(line["account"])
        if found is None:
            continue
        distributor_id, bucket = found
        row = changes.setdefault(distributor_id, {
            "distributor_id": distributor_id, "currency": e.currency,
            **{name: 0 for name in EARNING_FIELDS}})
        row[bucket] -= line["amount"]  # what the merchant owes: the credit balance
        if figure:  # these kinds touch exactly one account of the distributor
            row[figure] += abs(line["amount"])
    return changes


def _requested(conn: Connection, e: Any) -> None:
    conn.execute(withdrawals.insert().values(
        withdrawal_id=e.withdrawal_id, withdrawal_uuid=str(e.originator_id),
        distributor_id=e.distributor_id, amount_minor=e.amount_minor, currency=e.currency,
        status="requested", requested_at=e.at))


def _decided(status: str) -> Any:
    def handler(conn: Connection, e: Any) -> None:
        conn.execute(update(withdrawals)
                     .where(withdrawals.c.withdrawal_uuid == str(e.originator_id))
                     .values(status=status, decided_at=e.at,
                             payment_reference=getattr(e, "payment_reference", None),
                             reason=getattr(e, "reason", None)))
    return handler


class LedgerProjection(Projection):
    name = "ledger"
    tables = (journal, balances, earnings, withdrawals)
    handlers = {
        JournalEntry.EntryPosted: _posted,
        Withdrawal.WithdrawalRequested: _requested,
        Withdrawal.WithdrawalPaid: _decided("paid"),
        Withdrawal.WithdrawalRejected: _decided("rejected"),
    }


def earnings_of(conn: Connection, distributor_id: str, currency: str) -> dict[str, Any]:
    row = conn.execute(select(earnings).where(earnings.c.distributor_id == distributor_id,
                                              earnings.c.currency == currency)).first()
    figures = {name: (getattr(row, name) if row else 0) for name in EARNING_FIELDS}
    return {"distributor_id": distributor_id, "currency": currency, **figures}
