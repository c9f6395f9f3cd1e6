"""The commission split: two levels at most, half-up rounding, caps, forfeits."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.commissions import (Beneficiary, CommissionRules, PaidLine, RuleExceedsNet,
                                RuleTerms, split_commission)
from domain.errors import InvalidCommand


def line(net: int, quantity: int = 1) -> PaidLine:
    return PaidLine(order_id="O", line_no=1, sku="TEA", quantity=quantity, net_minor=net,
                    currency="CNY")


SELLER = Beneficiary("E", "active", "D")
UPLINE = Beneficiary("D", "active", "C")


def amounts(net: int, terms: RuleTerms, quantity: int = 1) -> list[tuple[int, int]]:
    accruals, _ = split_commission(line(net, quantity), SELLER, UPLINE, terms, False, False)
    return [(a.level, a.amount_minor) for a in accruals]


@pytest.mark.parametrize("net, bp1, bp2, expected", [
    (1999, 1000, 500, [(1, 200), (2, 100)]),   # 199.9 -> 200, 99.95 -> 100
    (1995, 1000, 500, [(1, 200), (2, 100)]),   # 199.5 -> 200 (half up), 99.75 -> 100
    (10, 1000, 500, [(1, 1), (2, 1)]),         # 1.0, 0.5 -> 1
    (9, 1000, 500, [(1, 1)]),                  # 0.9 -> 1, 0.45 -> 0: no level-2 accrual
    (4, 1000, 500, []),                        # 0.4 and 0.2: nothing at all
    (12345, 333, 0, [(1, 411)]),               # 411.0885 -> 411
])
def test_rate_rounding_by_hand(net: int, bp1: int, bp2: int, expected: list) -> None:
    assert amounts(net, RuleTerms("rate", bp1, bp2, 3)) == expected


def test_fixed_per_unit_and_its_cap() -> None:
    assert amounts(3000, RuleTerms("fixed", 150, 40, 1), quantity=3) == [(1, 450), (2, 120)]
    # a tiny line: level 1 capped at the net, level 2 gets what is left (nothing)
    assert amounts(100, RuleTerms("fixed", 150, 40, 1)) == [(1, 100)]
    assert amounts(180, RuleTerms("fixed", 150, 40, 1)) == [(1, 150), (2, 30)]


def test_accruals_record_rule_rate_and_base() -> None:
    accruals, _ = split_commission(line(1999), SELLER, UPLINE, RuleTerms("rate", 1000, 500, 7),
                                   False, False)
    first = accruals[0]
    assert (first.rule_version, first.rule_kind, first.rate_bp, first.base_minor,
            first.fixed_per_unit) == (7, "rate", 1000, 1999, None)


def test_forfeits() -> None:
    terms = RuleTerms("rate", 1000, 500, 1)
    suspended = Beneficiary("E", "suspended", "D")
    accruals, forfeits = split_commission(line(1000), suspended, UPLINE, terms, False, False)
    assert [(a.level, a.distributor_id) for a in accruals] == [(2, "D")]
    assert [(f.level, f.reason, f.amount_minor) for f in forfeits] == [(1, "suspended", 100)]
    accruals, forfeits = split_commission(line(1000), SELLER, UPLINE, terms, True, False)
    assert [(f.level, f.reason) for f in forfeits] == [(1, "self_purchase")]
    assert [a.level for a in accruals] == [2]
    accruals, forfeits = split_commission(line(1000), SELLER, UPLINE, terms, True, True)
    assert forfeits == [] and [a.level for a in accruals] == [1, 2]
    accruals, forfeits = split_commission(line(1000), SELLER, None, terms, False, False)
    assert [a.level for a in accruals] == [1] and forfeits == []


def test_rules_are_versioned_and_refuse_more_than_the_line() -> None:
    rules = CommissionRules()
    assert rules.rule_for("TEA") == RuleTerms("rate", 1000, 500, 0)
    rules.set_rule(None, "rate", 1200, 300, None)
    rules.set_rule("TEA", "fixed", 100, 50, 999)
    assert rules.rule_for("TEA").version == 2 and rules.rule_for("CUP").level1 == 1200
    rules.collect_events()
    for args in ((None, "rate", 9000, 1001, None), ("TEA", "fixed", 900, 100, 999),
                 ("TEA", "rate", -1, 0, None), ("TEA", "bonus", 1, 1, None)):
        with pytest.raises((RuleExceedsNet, InvalidCommand)):
            rules.set_rule(*args)
    assert rules.collect_events() == []


def five_level_chain() -> list[Beneficiary]:
    """A <- B <- C <- D <- E: E's upline is D, D's is C, and so on."""
    names = "ABCDE"
    return [Beneficiary(n, "active", names[i - 1] if i else None) for i, n in enumerate(names)]


@given(net=st.integers(1, 10**8), quantity=st.integers(1, 500),
       terms=st.one_of(
           st.tuples(st.just("rate"), st.integers(0, 10_000), st.integers(0, 10_000))
           .filter(lambda t: t[1] + t[2] <= 10_000),
           st.tuples(st.just("fixed"), st.integers(0, 10**6), st.integers(0, 10**6))),
       seller_index=st.integers(0, 4), self_purchase=st.booleans(),
       statuses=st.lists(st.sampled_from(["active", "suspended"]), min_size=5, max_size=5))
def test_nobody_above_level_two_is_ever_credited(net, quantity, terms, seller_index,
                                                 self_purchase, statuses) -> None:
    chain = [Beneficiary(b.distributor_id, s, b.upline_id)
             for b, s in zip(five_level_chain(), statuses)]
    seller = chain[seller_index]
    upline = chain[seller_index - 1] if seller_index else None
    accruals, forfeits = split_commission(
        line(net, quantity), seller, upline, RuleTerms(terms[0], terms[1], terms[2], 1),
        self_purchase, False)
    allowed = {seller.distributor_id} | ({upline.distributor_id} if upline else set())
    assert len(accruals) + len(forfeits) <= 2
    assert {a.distributor_id for a in accruals} | {f.distributor_id for f in forfeits} <= allowed
    assert sum(a.amount_minor for a in accruals) <= net
    assert all(a.amount_minor > 0 for a in accruals)
    assert {a.level for a in accruals}.isdisjoint({f.level for f in forfeits})
    for a in accruals:
        assert a.distributor_id == (seller if a.level == 1 else upline).distributor_id
