"""Double-entry commission ledger.

A line is {"account": name, "amount": minor units}, debit positive and credit negative;
every entry's lines sum to zero. "X -> Y" in DESIGN.md means debit X, credit Y. Distributor
accounts are `distributor:{id}:pending|available|withdrawing` (what the merchant owes them,
so their balances are credit balances); merchant accounts are `merchant:{name}`.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.approvals import AWAITING, check_second, first_approval, needs_two
from domain.errors import DomainError, InvalidCommand, InvalidTransition
from domain.ids import natural_id

BUCKETS = ("pending", "available", "withdrawing")
COMMISSION_EXPENSE = "merchant:commission_expense"
CASH = "merchant:cash"
SALES = "merchant:sales"
REFUNDS = "merchant:refunds"
MERCHANT_ACCOUNTS = (COMMISSION_EXPENSE, CASH, SALES, REFUNDS)
DISTRIBUTOR_ACCOUNT = re.compile(r"^distributor:[A-Za-z0-9_.:-]{1,64}:(pending|available|"
                                 r"withdrawing)$")

Line = dict[str, Any]


class Unbalanced(DomainError):
    code = "unbalanced"


class InsufficientBalance(DomainError):
    code = "insufficient_balance"


class BelowMinimum(DomainError):
    """A business rule, not a shape: the minimum is a setting the request cannot know."""

    code = "below_minimum"


def account(distributor_id: str, bucket: str) -> str:
    assert bucket in BUCKETS, bucket
    return f"distributor:{distributor_id}:{bucket}"


def parse_account(name: str) -> tuple[str, str] | None:
    """`distributor:{id}:{bucket}` -> (id, bucket); None for merchant accounts. Ids may
    contain ':' themselves, so the bucket is what follows the last one."""
    if not name.startswith("distributor:"):
        return None
    distributor_id, _, bucket = name.removeprefix("distributor:").rpartition(":")
    return distributor_id, bucket


def transfer_lines(debit_account: str, credit_account: str, amount_minor: int) -> list[Line]:
    assert amount_minor > 0, amount_minor
    return [{"account": debit_account, "amount": amount_minor},
            {"account": credit_account, "amount": -amount_minor}]


def accrual_lines(distributor_id: str, amount_minor: int) -> list[Line]:
    return transfer_lines(COMMISSION_EXPENSE, account(distributor_id, "pending"), amount_minor)


def maturity_lines(distributor_id: str, amount_minor: int) -> list[Line]:
    return transfer_lines(account(distributor_id, "pending"),
                          account(distributor_id, "available"), amount_minor)


def reverse_pending_lines(distributor_id: str, amount_minor: int) -> list[Line]:
    return transfer_lines(account(distributor_id, "pending"), COMMISSION_EXPENSE, amount_minor)


def clawback_lines(distributor_id: str, amount_minor: int) -> list[Line]:
    return transfer_lines(account(distributor_id, "available"), COMMISSION_EXPENSE,
                          amount_minor)


def withdrawal_request_lines(distributor_id: str, amount_minor: int) -> list[Line]:
    return transfer_lines(account(distributor_id, "available"),
                          account(distributor_id, "withdrawing"), amount_minor)


def withdrawal_paid_lines(distributor_id: str, amount_minor: int) -> list[Line]:
    return transfer_lines(account(distributor_id, "withdrawing"), CASH, amount_minor)


def withdrawal_rejected_lines(distributor_id: str, amount_minor: int) -> list[Line]:
    return transfer_lines(account(distributor_id, "withdrawing"),
                          account(distributor_id, "available"), amount_minor)


def payment_lines(amount_minor: int) -> list[Line]:
    """A customer's payment for an order: cash in, against sales."""
    return transfer_lines(CASH, SALES, amount_minor)


def refund_lines(amount_minor: int) -> list[Line]:
    """Money paid back to a customer (a cancellation after payment): refunds, a contra
    account of sales, against cash out."""
    return transfer_lines(REFUNDS, CASH, amount_minor)


def check_lines(currency: str, lines: list[Line]) -> None:
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise InvalidCommand(f"{currency!r} is not a currency code", field="currency")
    if len(lines) < 2:
        raise Unbalanced("an entry needs at least two lines")
    for line in lines:
        amount, name = line.get("amount"), line.get("account", "")
        if type(amount) is not int or amount == 0:
            raise Unbalanced(f"line amounts must be non-zero integers, not {amount!r}")
        if name not in MERCHANT_ACCOUNTS and not DISTRIBUTOR_ACCOUNT.match(name):
            raise InvalidCommand(f"unknown account {name!r}", field="account")
    total = sum(line["amount"] for line in lines)
    if total != 0:
        raise Unbalanced(f"debits and credits differ by {total}", total=total)


class JournalEntry(Aggregate):
    """One balanced posting per cause: the id derives from the cause, so the same cause
    can never post twice (a second one collides on the stream)."""

    @staticmethod
    def create_id(cause: str) -> UUID:
        return natural_id("journal_entry", cause)

    @classmethod
    def post(cls, cause: str, kind: str, currency: str, lines: list[Line], memo: str,
             at: datetime) -> "JournalEntry":
        check_lines(currency, lines)
        return cls(cause=cause, kind=kind, currency=currency,
                   lines=[{"account": line["account"], "amount": line["amount"]}
                          for line in lines], memo=memo, at=at)

    @event("EntryPosted")
    def __init__(self, cause: str, kind: str, currency: str, lines: list[Line], memo: str,
                 at: datetime) -> None:
        self.cause = cause
        self.kind = kind
        self.currency = currency
        self.lines = lines
        self.memo = memo
        self.at = at


class Wallet(Aggregate):
    """A distributor's three balances, kept on the write side for the withdrawal rules."""

    @staticmethod
    def create_id(distributor_id: str) -> UUID:
        return natural_id("wallet", distributor_id)

    @event("WalletOpened")
    def __init__(self, distributor_id: str, currency: str) -> None:
        self.distributor_id = distributor_id
        self.currency = currency
        self.pending = 0
        self.available = 0  # may go negative after a clawback; carried forward
        self.withdrawing = 0

    def apply_entry(self, entry_id: str, lines: list[Line]) -> None:
        deltas = {bucket: 0 for bucket in BUCKETS}
        for line in lines:
            owner = parse_account(line["account"])
            if owner and owner[0] == self.distributor_id:
                deltas[owner[1]] -= line["amount"]
        if any(deltas.values()):
            self._posted(entry_id=entry_id, pending_delta=deltas["pending"],
                         available_delta=deltas["available"],
                         withdrawing_delta=deltas["withdrawing"])

    @event("WalletPosted")
    def _posted(self, entry_id: str, pending_delta: int, available_delta: int,
                withdrawing_delta: int) -> None:
        self.pending += pending_delta
        self.available += available_delta
        self.withdrawing += withdrawing_delta

    def check_withdrawal(self, amount_minor: int, minimum_minor: int) -> None:
        if amount_minor < minimum_minor:
            raise BelowMinimum(f"the smallest withdrawal is {minimum_minor}",
                               minimum=minimum_minor, requested=amount_minor)
        if self.available < 0:
            raise InsufficientBalance(
                f"the available balance is {self.available}: a negative balance must be "
                "earned back before any withdrawal", available=self.available)
        if amount_minor > self.available:
            raise InsufficientBalance(f"{amount_minor} asked, {self.available} available",
                                      available=self.available, requested=amount_minor)


class Withdrawal(Aggregate):
    @staticmethod
    def create_id(withdrawal_id: str) -> UUID:
        return natural_id("withdrawal", withdrawal_id)

    @classmethod
    def request(cls, withdrawal_id: str, distributor_id: str, amount_minor: int,
                currency: str, at: datetime) -> "Withdrawal":
        if amount_minor <= 0:
            raise InvalidCommand("amount must be positive", field="amount")
        return cls(withdrawal_id=withdrawal_id, distributor_id=distributor_id,
                   amount_minor=amount_minor, currency=currency, at=at)

    @event("WithdrawalRequested")
    def __init__(self, withdrawal_id: str, distributor_id: str, amount_minor: int,
                 currency: str, at: datetime) -> None:
        self.withdrawal_id = withdrawal_id
        self.distributor_id = distributor_id
        self.amount_minor = amount_minor
        self.currency = currency
        self.status = "requested"
        self.payment_reference: str | None = None
        self.reason: str | None = None
        self.first_approval: dict[str, Any] | None = None
        self.approved_by: list[str] = []

    def _require_undecided(self) -> None:
        if self.status not in ("requested", AWAITING):
            raise InvalidTransition(f"withdrawal {self.withdrawal_id} is already "
                                    f"{self.status}", status=self.status)

    def approve(self, actor: str, payment_reference: str, four_eyes_min_minor: int,
                available_minor: int, at: datetime) -> None:
        """Pay it, or above the four-eyes threshold record the first of two approvals
        (domain/approvals.py); the second, by someone else, pays it. `available_minor`:
        the distributor's available balance now. Negative, a clawback since the request
        has taken back money already earned: nothing more leaves until it is earned back
        (or this withdrawal is refused, which returns its amount to the balance)."""
        self._require_undecided()
        if available_minor < 0:
            raise InsufficientBalance(
                f"the available balance of {self.distributor_id} is {available_minor}: a "
                "clawback since the request must be earned back before this withdrawal is "
                "paid (or refuse it)", available=available_minor)
        reference = payment_reference.strip()
        if not reference:
            raise InvalidCommand("a payment reference is required", field="payment_reference")
        if self.status == AWAITING:
            check_second(self.first_approval, actor, self.amount_minor, reference,
                         f"withdrawal {self.withdrawal_id}")
            self._paid(payment_reference=reference, at=at,
                       approved_by=[self.first_approval["actor"], actor])
        elif needs_two(self.amount_minor, four_eyes_min_minor):
            self._approved(actor=actor, payment_reference=reference, at=at)
        else:
            self._paid(payment_reference=reference, at=at, approved_by=[actor])

    @event("WithdrawalApproved")
    def _approved(self, actor: str, payment_reference: str, at: datetime) -> None:
        self.status = AWAITING
        self.first_approval = first_approval(actor, self.amount_minor, payment_reference)

    class WithdrawalPaid(Aggregate.Event):
        """Version 2 names who approved it (one person, or two above the four-eyes
        threshold); version 1 events read as no names (the command log has the actor)."""

        payment_reference: str
        at: datetime
        approved_by: list[str]
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["approved_by"] = []

    @event(WithdrawalPaid)
    def _paid(self, payment_reference: str, at: datetime, approved_by: list[str]) -> None:
        self.status = "paid"
        self.payment_reference = payment_reference
        self.approved_by = list(approved_by)

    def reject(self, reason: str, at: datetime) -> None:
        """Also after a first approval: a second person who disagrees refuses it."""
        self._require_undecided()
        if not reason.strip():
            raise InvalidCommand("a reason is required", field="reason")
        self._rejected(reason=reason, at=at)

    @event("WithdrawalRejected")
    def _rejected(self, reason: str, at: datetime) -> None:
        self.status = "rejected"
        self.reason = reason


class PayoutReference(Aggregate):
    """Index: a payment reference pays one withdrawal, once; a second use collides here."""

    @staticmethod
    def create_id(payment_reference: str) -> UUID:
        return natural_id("payout_reference", payment_reference.strip())

    @event("PayoutReferenceUsed")
    def __init__(self, payment_reference: str, withdrawal_id: str) -> None:
        self.payment_reference = payment_reference.strip()
        self.withdrawal_id = withdrawal_id
