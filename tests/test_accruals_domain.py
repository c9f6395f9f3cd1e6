"""LineCommission: proportional reversals that end exactly at zero."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.accruals import LineCommission, RefundExceedsPaid, half_up_share
from domain.commissions import CompliancePolicyViolation
from domain.errors import InvalidCommand, InvalidTransition

AT = datetime(2026, 11, 1, tzinfo=timezone.utc)


def line(net: int = 1000, l1: int = 100, l2: int = 50) -> LineCommission:
    accruals = [{"level": 1, "distributor_id": "D", "amount_minor": l1},
                {"level": 2, "distributor_id": "U", "amount_minor": l2}]
    return LineCommission.accrue("O-1", 1, "TEA", net, "CNY", accruals, [], AT)


def test_half_up_share() -> None:
    assert half_up_share(100, 1, 3) == 33
    assert half_up_share(50, 1, 4) == 13  # 12.5 rounds up
    assert half_up_share(5, 1, 2) == 3
    assert half_up_share(7, 0, 9) == 0


def test_refunds_reverse_in_proportion_and_the_last_one_exactly() -> None:
    commission = line(net=999, l1=100, l2=33)
    first = commission.reverse(333, AT)
    assert [(r["level"], r["amount_minor"], r["source"]) for r in first] == [
        (1, 33, "pending"), (2, 11, "pending")]
    commission.mature(AT)
    last = commission.reverse(999, AT)
    assert [(r["level"], r["amount_minor"], r["source"]) for r in last] == [
        (1, 67, "available"), (2, 22, "available")]
    assert commission.outstanding(1) == commission.outstanding(2) == 0


def test_refunds_beyond_the_net_or_not_growing_are_refused() -> None:
    commission = line()
    commission.collect_events()
    with pytest.raises(RefundExceedsPaid):
        commission.reverse(1001, AT)
    commission.reverse(500, AT)
    with pytest.raises(InvalidCommand):
        commission.reverse(500, AT)
    assert len(commission.collect_events()) == 1


def test_maturity_moves_only_what_is_left_and_only_once() -> None:
    commission = line()
    commission.reverse(250, AT)
    assert commission.mature(AT) == [
        {"level": 1, "distributor_id": "D", "amount_minor": 75},
        {"level": 2, "distributor_id": "U", "amount_minor": 37}]
    with pytest.raises(InvalidTransition):
        commission.mature(AT)


def test_more_than_two_levels_is_impossible() -> None:
    accruals = [{"level": n, "distributor_id": f"D{n}", "amount_minor": 1} for n in (1, 2, 3)]
    with pytest.raises(CompliancePolicyViolation):
        LineCommission.accrue("O", 1, "S", 100, "CNY", accruals, [], AT)


@given(net=st.integers(1, 10**7), rates=st.tuples(st.integers(0, 6000), st.integers(0, 4000)),
       cuts=st.lists(st.integers(1, 10**7), max_size=6), mature_after=st.integers(0, 6))
def test_reversals_never_exceed_and_end_at_exactly_the_accrual(net, rates, cuts, mature_after):
    l1, l2 = (half_up_share(net, r, 10_000) for r in rates)
    accruals = [a for a in ({"level": 1, "distributor_id": "D", "amount_minor": l1},
                            {"level": 2, "distributor_id": "U", "amount_minor": l2})
                if a["amount_minor"]]
    commission = LineCommission.accrue("O", 1, "S", net, "CNY", accruals, [], AT)
    totals = sorted({min(c, net) for c in cuts} | {net})
    reversed_sum = {a["level"]: 0 for a in accruals}
    for n, total in enumerate(totals):
        if n == mature_after:
            commission.mature(AT)
        for r in commission.reverse(total, AT):
            assert r["amount_minor"] > 0
            reversed_sum[r["level"]] += r["amount_minor"]
        for a in accruals:
            assert 0 <= reversed_sum[a["level"]] <= a["amount_minor"]
    assert all(reversed_sum[a["level"]] == a["amount_minor"] for a in accruals)
