"""Distributor network and commissions through the application, on both databases."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from commands import Fenxiao
from domain.errors import DomainError, Duplicate, InvalidCommand, InvalidTransition
from domain.ledger import BelowMinimum
from projections import all_projections
from projections.runner import ProjectionRunner


def run(app: Fenxiao, command):
    return app.execute(command).body


def active(app: Fenxiao, distributor_id: str, phone: str, upline: str | None = None) -> str:
    code = None
    if upline:
        code = app.distributor(upline).referral_code
    run(app, lambda: app.apply_distributor(f"Name {distributor_id}", phone, code,
                                           distributor_id))
    return run(app, lambda: app.approve_distributor(distributor_id))["referral_code"]


def chain(app: Fenxiao, n: int) -> list[str]:
    """D0 <- D1 <- ... : each Dk (k > 0) was referred by D(k-1)."""
    ids = [f"D{k}" for k in range(n)]
    for k, distributor_id in enumerate(ids):
        active(app, distributor_id, f"1380000{k:04d}", ids[k - 1] if k else None)
    return ids


def test_application_review_and_referral(app: Fenxiao) -> None:
    code = active(app, "A", "13800000001")
    assert len(code) == 8 and code.isalnum()
    applied = run(app, lambda: app.apply_distributor("Bo", "+8613900000002", code, "B"))
    assert applied["status"] == "pending"
    approved = run(app, lambda: app.approve_distributor("B"))
    assert (approved["status"], approved["upline_id"]) == ("active", "A")
    assert approved["referral_code"] != code


def test_phone_rules(app: Fenxiao) -> None:
    active(app, "A", "138 0000 0001")
    with pytest.raises(Duplicate):
        app.execute(lambda: app.apply_distributor("Copy", "+8613800000001", None, "A2"))
    with pytest.raises(InvalidCommand):
        app.execute(lambda: app.apply_distributor("Bad", "12345", None, "B"))
    run(app, lambda: app.apply_distributor("Cy", "13700000003", None, "C"))
    with pytest.raises(Duplicate):  # a pending application holds the phone too
        app.execute(lambda: app.apply_distributor("Cy again", "13700000003", None, "C2"))
    run(app, lambda: app.reject_distributor("C", "incomplete documents"))
    again = run(app, lambda: app.apply_distributor("Cy", "13700000003", None, "C3"))
    assert again["status"] == "pending"


def test_referrer_must_be_active_at_approval(app: Fenxiao) -> None:
    code = active(app, "A", "13800000001")
    run(app, lambda: app.apply_distributor("Bo", "13900000002", code, "B"))
    run(app, lambda: app.suspend_distributor("A", "audit"))
    with pytest.raises(DomainError) as refused:
        app.execute(lambda: app.approve_distributor("B"))
    assert refused.value.code == "referrer_inactive"
    run(app, lambda: app.reinstate_distributor("A", "audit passed"))
    assert run(app, lambda: app.approve_distributor("B"))["upline_id"] == "A"


def test_re_parenting_refuses_cycles_and_keeps_history(app: Fenxiao) -> None:
    a, b, c = chain(app, 3)
    with pytest.raises(DomainError) as refused:
        app.execute(lambda: app.change_upline(a, c, "would loop"))
    assert refused.value.code == "cycle"
    with pytest.raises(DomainError):
        app.execute(lambda: app.change_upline(b, b, "self"))
    run(app, lambda: app.change_upline(c, a, "team change"))
    assert app.distributor(c).upline_id == a
    history = [type(e).__name__ for e in app.recorder.select_events(
        app.distributor(c).id)]
    assert len(history) == 3


def test_customer_binding(app: Fenxiao) -> None:
    a_code = active(app, "A", "13800000001")
    active(app, "B", "13800000002")
    first = run(app, lambda: app.attribute_order("C1", referral_code=a_code))
    assert first["distributor_id"] == "A" and first["position"]
    assert run(app, lambda: app.attribute_order("C1"))["distributor_id"] == "A"
    named = run(app, lambda: app.attribute_order("C1", distributor_id="B"))
    assert named["distributor_id"] == "B" and named["position"] is None  # no rebinding
    assert run(app, lambda: app.attribute_order("C2"))["distributor_id"] is None


def test_n_day_binding_lapses(db_url: str) -> None:
    from commands.settings import Settings

    app = Fenxiao(Settings(database_url=db_url, binding_days=7))
    try:
        now = datetime(2026, 11, 1, tzinfo=timezone.utc)
        app.clock = lambda: now
        active(app, "A", "13800000001")
        active(app, "B", "13800000002")
        run(app, lambda: app.attribute_order("C1", distributor_id="A"))
        now += timedelta(days=8)
        assert run(app, lambda: app.attribute_order("C1"))["distributor_id"] is None
        rebound = run(app, lambda: app.attribute_order("C1", distributor_id="B"))
        assert rebound["position"] is not None
        assert run(app, lambda: app.attribute_order("C1"))["distributor_id"] == "B"
    finally:
        app.close()


def test_rules_are_versioned_and_capped(app: Fenxiao) -> None:
    run(app, lambda: app.add_product("TEA", "Tea", "", 1000))
    default = run(app, lambda: app.set_commission_rule(None, "rate", 1200, 300))
    assert default["version"] == 1
    with pytest.raises(DomainError) as refused:
        app.execute(lambda: app.set_commission_rule("TEA", "rate", 6000, 4001))
    assert refused.value.code == "rule_exceeds_net"
    with pytest.raises(DomainError):
        app.execute(lambda: app.set_commission_rule("TEA", "fixed", 800, 201))
    fixed = run(app, lambda: app.set_commission_rule("TEA", "fixed", 150, 50))
    assert (fixed["level1_fixed"], fixed["version"]) == (150, 2)


def test_five_level_chain_pays_two_levels_only(app: Fenxiao) -> None:
    ids = chain(app, 5)
    result = run(app, lambda: app.accrue_commission("O-1", 1, "TEA", 2, 19990, ids[-1]))
    assert [(a["level"], a["distributor_id"], a["amount_minor"]) for a in
            result["accruals"]] == [(1, "D4", 1999), (2, "D3", 1000)]
    again = run(app, lambda: app.accrue_commission("O-1", 1, "TEA", 2, 19990, ids[-1]))
    assert again["accrued"] is False and again["position"] is None
    for upper in ids[:3]:
        assert app.wallet(upper).pending == 0


def test_suspended_forfeits_and_rule_change_does_not_touch_the_past(app: Fenxiao) -> None:
    a, b = chain(app, 2)
    run(app, lambda: app.suspend_distributor(a, "investigation"))
    result = run(app, lambda: app.accrue_commission("O-1", 1, "TEA", 1, 1000, b))
    assert [(f["level"], f["reason"]) for f in result["forfeits"]] == [(2, "suspended")]
    run(app, lambda: app.set_commission_rule(None, "rate", 2000, 1000))
    assert app.line_commission("O-1", 1).accruals[0]["amount_minor"] == 100


def test_commission_lifecycle_and_withdrawals(app: Fenxiao) -> None:
    a, b = chain(app, 2)
    run(app, lambda: app.accrue_commission("O-1", 1, "TEA", 1, 10000, b))  # b 1000, a 500
    run(app, lambda: app.reverse_commission("O-1", 1, 2500))  # before maturity
    assert (app.wallet(b).pending, app.wallet(a).pending) == (750, 375)
    run(app, lambda: app.mature_commission("O-1", 1))
    assert (app.wallet(b).pending, app.wallet(b).available) == (0, 750)
    w = run(app, lambda: app.request_withdrawal(b, 700, "W-1"))
    assert w["status"] == "requested"
    with pytest.raises(DomainError) as refused:
        app.execute(lambda: app.request_withdrawal(b, 100))
    assert refused.value.code == "insufficient_balance"
    with pytest.raises(BelowMinimum):
        app.execute(lambda: app.request_withdrawal(b, 10))
    paid = run(app, lambda: app.approve_withdrawal("W-1", "BANK-77"))
    assert paid["status"] == "paid"
    with pytest.raises(InvalidTransition):
        app.execute(lambda: app.approve_withdrawal("W-1", "BANK-78"))
    run(app, lambda: app.reverse_commission("O-1", 1, 10000))  # clawback after maturity
    wallet = app.wallet(b)
    assert (wallet.available, wallet.withdrawing) == (50 - 750, 0)
    with pytest.raises(DomainError):  # a negative balance blocks withdrawals
        app.execute(lambda: app.request_withdrawal(b, 100))
    ProjectionRunner(app, all_projections()).catch_up()
    from projections.ledger import earnings_of
    with app.engine.connect() as conn:
        figures = earnings_of(conn, b, "CNY")
    assert figures == {"distributor_id": b, "currency": "CNY", "pending": 0,
                       "available": -700, "withdrawing": 0, "paid_out": 700,
                       "reversed": 1000, "lifetime_earned": 1000}


def test_concurrent_approvals_pay_once(app: Fenxiao) -> None:
    from concurrent.futures import ThreadPoolExecutor

    a, b = chain(app, 2)
    run(app, lambda: app.accrue_commission("O-1", 1, "TEA", 1, 100000, b))
    run(app, lambda: app.mature_commission("O-1", 1))
    run(app, lambda: app.request_withdrawal(b, 5000, "W-1"))

    def approve(n: int) -> str:
        try:
            app.execute(lambda: app.approve_withdrawal("W-1", f"BANK-{n}"))
            return "paid"
        except InvalidTransition:
            return "refused"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(approve, range(8)))
    assert outcomes.count("paid") == 1
    assert app.wallet(b).withdrawing == 0
    paid_entries = [e for e in app.recorder.select_events(app.withdrawal("W-1").id)]
    assert len(paid_entries) == 2


def test_the_same_cause_never_posts_twice(app: Fenxiao) -> None:
    from datetime import datetime, timezone

    from domain.ledger import JournalEntry, accrual_lines

    at = datetime(2026, 11, 1, tzinfo=timezone.utc)
    first = JournalEntry.post("manual:1", "accrual", "CNY", accrual_lines("D", 5), "", at)
    app.execute(lambda: {"position": app.record(first)})
    again = JournalEntry.post("manual:1", "accrual", "CNY", accrual_lines("D", 5), "", at)
    before = app.last_position()
    with pytest.raises(Exception) as refused:
        app.save(again)
    assert "IntegrityError" in type(refused.value).__name__
    assert app.last_position() == before
