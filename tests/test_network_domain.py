"""Distributors, indexes, bindings and the ledger primitives, without a database."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from domain.distributors import (CustomerBinding, CycleRefused, Distributor, PhoneClaim,
                                 ReferrerInactive, attribute, normalize_phone, should_bind)
from domain.errors import Duplicate, InvalidCommand, InvalidTransition
from domain.ledger import (BelowMinimum, InsufficientBalance, JournalEntry, Unbalanced, Wallet,
                           Withdrawal, accrual_lines, maturity_lines, transfer_lines)

AT = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("raw, normal", [
    ("13800138000", "+8613800138000"), ("138-0013-8000", "+8613800138000"),
    ("+86 138 0013 8000", "+8613800138000"), ("+14155550100", "+14155550100"),
    ("+44 20 7946 0000", "+442079460000"), ("8613800138000", "+8613800138000"),
])
def test_phone_normalisation(raw: str, normal: str) -> None:
    assert normalize_phone(raw) == normal


# Impossible numbers too: no country 999, a US number in no area's plan, a +86 number
# one digit short.
@pytest.mark.parametrize("raw", ["12800138000", "1380013800", "phone", "+0123456789", "",
                                 "+999123456789", "+15551234567", "+861380013800"])
def test_bad_phones_are_refused(raw: str) -> None:
    with pytest.raises(InvalidCommand):
        normalize_phone(raw)


def applicant(referrer: str | None = None) -> Distributor:
    return Distributor.apply_for("B", "Bo", "13900000002", referrer, AT)


def test_lifecycle_transitions() -> None:
    d = applicant()
    with pytest.raises(InvalidTransition):
        d.suspend("x", AT)
    d.approve("CODE2345", None, AT)
    with pytest.raises(InvalidTransition):
        d.approve("OTHER", None, AT)
    d.suspend("audit", AT)
    with pytest.raises(InvalidCommand):
        d.reinstate(" ", AT)
    d.reinstate("cleared", AT)
    assert d.status == "active"


def test_referrer_must_be_active() -> None:
    d = applicant(referrer="A")
    d.collect_events()
    with pytest.raises(ReferrerInactive):
        d.approve("CODE", "suspended", AT)
    assert d.collect_events() == [] and d.status == "pending"
    d.approve("CODE", "active", AT)
    assert d.upline_id == "A"


def test_upline_changes_refuse_cycles() -> None:
    d = applicant(referrer="A")
    d.approve("CODE", "active", AT)
    with pytest.raises(CycleRefused):
        d.change_upline("B", "self", [], "active", AT)
    with pytest.raises(CycleRefused):  # X sits below B: X's uplines include B
        d.change_upline("X", "loop", ["Y", "B", "A"], "active", AT)
    with pytest.raises(InvalidTransition):
        d.change_upline("P", "pending one", [], "pending", AT)
    d.change_upline("Z", "moved team", ["Q"], "active", AT)
    event = d.collect_events()[-1]
    assert (event.old_upline_id, event.new_upline_id) == ("A", "Z")


def test_phone_claims() -> None:
    claim = PhoneClaim.claim("+8613900000002", "B")
    with pytest.raises(Duplicate):
        claim.reclaim("C")
    claim.release()
    claim.reclaim("C")
    assert (claim.live, claim.distributor_id) == (True, "C")


def test_bindings_permanent_and_lapsing() -> None:
    forever = CustomerBinding.bind("C1", "A", AT, 0)
    assert forever.is_live(AT + timedelta(days=3650))
    lapsing = CustomerBinding.bind("C2", "A", AT, 7)
    assert lapsing.is_live(AT + timedelta(days=6))
    with pytest.raises(InvalidTransition):
        lapsing.rebind("B", AT + timedelta(days=6), 7)
    lapsing.rebind("B", AT + timedelta(days=7), 7)
    assert lapsing.distributor_id == "B"
    assert attribute("X", "A") == "X" and attribute(None, "A") == "A"
    assert attribute(None, None) is None
    assert should_bind(False, False, "A") and not should_bind(True, True, "A")
    assert should_bind(True, False, "B") and not should_bind(False, False, None)


def test_entries_must_balance() -> None:
    ok = JournalEntry.post("c1", "accrual", "CNY", accrual_lines("D", 100), "", AT)
    assert sum(line["amount"] for line in ok.lines) == 0
    bad = [
        [{"account": "merchant:cash", "amount": 5}, {"account": "merchant:sales", "amount": -4}],
        [{"account": "merchant:cash", "amount": 5}],
        [{"account": "merchant:cash", "amount": 0}, {"account": "merchant:sales", "amount": 0}],
        [{"account": "merchant:cash", "amount": 1.5},
         {"account": "merchant:sales", "amount": -1.5}],
    ]
    for lines in bad:
        with pytest.raises(Unbalanced):
            JournalEntry.post("c2", "x", "CNY", lines, "", AT)
    with pytest.raises(InvalidCommand):
        JournalEntry.post("c3", "x", "CNY", transfer_lines("merchant:cash", "nowhere", 5), "",
                          AT)
    with pytest.raises(InvalidCommand):
        JournalEntry.post("c4", "x", "cny", accrual_lines("D", 1), "", AT)
    assert JournalEntry.create_id("c1") == ok.id  # the cause fixes the stream


def test_wallet_and_withdrawal_rules() -> None:
    wallet = Wallet(distributor_id="D", currency="CNY")
    wallet.apply_entry("e1", accrual_lines("D", 500))
    wallet.apply_entry("e2", maturity_lines("D", 300))
    wallet.apply_entry("e3", accrual_lines("OTHER", 999))  # not ours: ignored
    assert (wallet.pending, wallet.available, wallet.withdrawing) == (200, 300, 0)
    wallet.collect_events()
    for amount, error in ((99, BelowMinimum), (301, InsufficientBalance)):
        with pytest.raises(error):
            wallet.check_withdrawal(amount, 100)
    wallet.check_withdrawal(300, 100)
    withdrawal = Withdrawal.request("W1", "D", 300, "CNY", AT)
    withdrawal.approve("op-1", "BANK-1", 50_000, 0, AT)
    assert (withdrawal.status, withdrawal.approved_by) == ("paid", ["op-1"])
    with pytest.raises(InvalidTransition):
        withdrawal.approve("op-2", "BANK-2", 50_000, 0, AT)
    with pytest.raises(InvalidTransition):
        withdrawal.reject("late", AT)


def test_four_eyes_on_a_withdrawal() -> None:
    """Above the threshold: one approval records itself; the same person again, or
    another reference, is refused; a second person pays; nothing is paid while the
    available balance is negative."""
    from domain.approvals import ApprovalMismatch, SecondApproverRequired

    withdrawal = Withdrawal.request("W2", "D", 60_000, "CNY", AT)
    withdrawal.collect_events()
    with pytest.raises(InsufficientBalance):
        withdrawal.approve("op-1", "BANK-9", 50_000, -1, AT)
    withdrawal.approve("op-1", "BANK-9", 50_000, 0, AT)
    assert withdrawal.status == "awaiting_second_approval"
    for actor, reference, error in (("op-1", "BANK-9", SecondApproverRequired),
                                    ("op-2", "BANK-8", ApprovalMismatch)):
        with pytest.raises(error):
            withdrawal.approve(actor, reference, 50_000, 0, AT)
    assert len(withdrawal.collect_events()) == 1  # the first approval alone
    withdrawal.approve("op-2", " BANK-9 ", 50_000, 0, AT)
    assert (withdrawal.status, withdrawal.approved_by, withdrawal.payment_reference) == \
        ("paid", ["op-1", "op-2"], "BANK-9")
    at_the_threshold = Withdrawal.request("W3", "D", 50_000, "CNY", AT)
    at_the_threshold.approve("op-1", "BANK-7", 50_000, 0, AT)
    assert at_the_threshold.status == "paid"


def test_ids_with_colons_keep_their_accounts_apart() -> None:
    from domain.ledger import parse_account

    assert parse_account("distributor:A:B:pending") == ("A:B", "pending")
    assert parse_account("merchant:cash") is None
    wallet = Wallet(distributor_id="A", currency="CNY")
    wallet.apply_entry("e1", accrual_lines("A:B", 500))
    assert wallet.pending == 0
