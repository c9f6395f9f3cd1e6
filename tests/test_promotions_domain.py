"""Coupons, threshold promotions, an order's discount and its split over lines."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import Duplicate, InvalidCommand, InvalidTransition, NotFound
from domain.coupons import Coupon, CouponExhausted, CouponLimitReached, ThresholdPromotions
from domain.promotions import (CouponExpired, CouponNotApplicable, CouponNotYetValid,
                               CouponTerms, SaleLine, ThresholdTerms, Tier, allocate_discount,
                               best_tier, compute_discount)
from tests.domain_support import assert_replays, state

AT = datetime(2024, 6, 1, 9, tzinfo=timezone.utc)
LINES = [SaleLine("TEA", 2, 1999), SaleLine("CUP", 1, 1000)]  # gross 3998 + 1000 = 4998
TIERS = ThresholdTerms("P-618", (Tier(3000, 300), Tier(5000, 600)))


def coupon(**terms: object) -> Coupon:
    c = Coupon.issue(CouponTerms(**{"code": "save10", "amount_off_minor": 1000, **terms}),
                     "CNY", AT)
    c.collect_events()
    return c


# -- allocate_discount -------------------------------------------------------------

@pytest.mark.parametrize("grosses, discount, expected", [
    ([3998, 1000], 300, [240, 60]),     # 239.98 and 60.02: the last fen to the larger rest
    ([1, 1, 1], 2, [1, 1, 0]),          # equal remainders: earlier lines first
    ([100, 0, 300], 400, [100, 0, 300]),
    ([500, 500], 0, [0, 0]),
    ([0], 0, [0]),
])
def test_allocate_discount_by_hand(grosses: list[int], discount: int,
                                   expected: list[int]) -> None:
    assert allocate_discount(grosses, discount) == expected


@pytest.mark.parametrize("grosses, discount", [([100], 101), ([100], -1), ([-5, 10], 1)])
def test_allocate_discount_refuses_what_cannot_be_spread(grosses: list[int],
                                                         discount: int) -> None:
    with pytest.raises(ValueError):
        allocate_discount(grosses, discount)


@st.composite
def grosses_and_discount(draw: st.DrawFn) -> tuple[list[int], int]:
    grosses = draw(st.lists(st.integers(0, 10**7), min_size=1, max_size=25))
    return grosses, draw(st.integers(0, sum(grosses)))


@given(grosses_and_discount())
def test_allocation_sums_exactly_within_gross_and_within_a_fen(case) -> None:
    grosses, discount = case
    parts = allocate_discount(grosses, discount)
    total = sum(grosses)
    assert sum(parts) == discount
    assert all(0 <= part <= gross for part, gross in zip(parts, grosses))
    # |part - discount × gross / total| < 1, in integers
    assert all(abs(part * total - discount * gross) < total or total == 0
               for part, gross in zip(parts, grosses))
    assert allocate_discount(grosses, discount) == parts  # deterministic


# -- threshold tiers -----------------------------------------------------------------

def test_best_tier_is_the_largest_discount_the_spend_reaches() -> None:
    other = ThresholdTerms("P-VIP", (Tier(4000, 450),), valid_to=AT + timedelta(days=1))
    assert best_tier([TIERS], 2999, AT) is None
    assert best_tier([TIERS], 3000, AT) == ("P-618", Tier(3000, 300))
    assert best_tier([TIERS, other], 4998, AT) == ("P-VIP", Tier(4000, 450))
    assert best_tier([TIERS, other], 5000, AT) == ("P-618", Tier(5000, 600))
    assert best_tier([TIERS, other], 4998, AT + timedelta(days=1)) == \
        ("P-618", Tier(3000, 300))  # P-VIP has ended: its window is half-open


def test_threshold_promotions_add_end_and_refuse_bad_tiers() -> None:
    book = ThresholdPromotions()
    book.add(TIERS, "CNY", AT)
    assert book.active(AT) == [TIERS]
    book.collect_events()
    for bad in (ThresholdTerms("P-2", ()), ThresholdTerms("P-2", (Tier(100, 101),)),
                ThresholdTerms("P-2", (Tier(100, 10), Tier(100, 20))),
                ThresholdTerms("P-2", (Tier(0, 0),)),
                ThresholdTerms("P-2", (Tier(100, 10),), valid_from=AT, valid_to=AT)):
        with pytest.raises(InvalidCommand):
            book.add(bad, "CNY", AT)
    with pytest.raises(Duplicate):
        book.add(TIERS, "CNY", AT)
    with pytest.raises(NotFound):
        book.end("P-404", AT)
    assert book.collect_events() == []
    book.end("P-618", AT + timedelta(hours=1))
    assert book.active(AT) == [TIERS.__class__("P-618", TIERS.tiers,
                                               valid_to=AT + timedelta(hours=1))]
    assert book.active(AT + timedelta(hours=1)) == []
    with pytest.raises(InvalidTransition):
        book.end("P-618", AT + timedelta(hours=2))


# -- the order's discount --------------------------------------------------------------

def test_threshold_only_spreads_over_every_line() -> None:
    discount = compute_discount(LINES, AT, thresholds=[TIERS])
    assert (discount.threshold_minor, discount.threshold_promotion_id) == (300, "P-618")
    assert discount.line_discounts == (240, 60) and discount.coupon_minor == 0


def test_scoped_percent_coupon_applies_to_its_lines_gross_only() -> None:
    terms = CouponTerms("TEA10", percent_off_bp=1000, skus=("TEA",))
    discount = compute_discount(LINES, AT, terms, [TIERS])
    # 10 % of TEA's gross 3998 = 399.8 -> 400, all on the TEA line; threshold 300 as above
    assert (discount.coupon_minor, discount.coupon_code) == (400, "TEA10")
    assert discount.line_discounts == (640, 60) and discount.total_minor == 700


def test_percent_rounds_half_up_and_fixed_is_capped_at_the_eligible_amount() -> None:
    half = compute_discount([SaleLine("TEA", 1, 1995)], AT,
                            CouponTerms("P", percent_off_bp=1000))
    assert half.coupon_minor == 200  # 199.5 -> 200
    capped = compute_discount(LINES, AT, CouponTerms("BIG", amount_off_minor=5000,
                                                     skus=("CUP",)), [TIERS])
    # CUP's gross is 1000, of which the threshold already took 60
    assert capped.coupon_minor == 940 and capped.line_discounts == (240, 1000)


@pytest.mark.parametrize("terms, error", [
    (CouponTerms("MIN", amount_off_minor=100, min_spend_minor=5000), CouponNotApplicable),
    (CouponTerms("CUPMIN", amount_off_minor=100, min_spend_minor=1001, skus=("CUP",)),
     CouponNotApplicable),  # the min spend counts the covered products only
    (CouponTerms("NONE", amount_off_minor=100, skus=("PEN",)), CouponNotApplicable),
    (CouponTerms("SOON", amount_off_minor=100, valid_from=AT + timedelta(seconds=1)),
     CouponNotYetValid),
    (CouponTerms("OLD", amount_off_minor=100, valid_to=AT), CouponExpired),
])
def test_coupon_refusals(terms: CouponTerms, error: type) -> None:
    with pytest.raises(error):
        compute_discount(LINES, AT, terms)


def test_a_coupon_worth_nothing_on_this_order_is_refused() -> None:
    with pytest.raises(CouponNotApplicable):
        compute_discount([SaleLine("FREE", 1, 0)], AT, CouponTerms("X", percent_off_bp=500))


@st.composite
def orders_with_promotions(draw: st.DrawFn):
    skus = ["A", "B", "C", "D"]
    lines = [SaleLine(sku, draw(st.integers(1, 20)), draw(st.integers(0, 50_000)))
             for sku in draw(st.lists(st.sampled_from(skus), min_size=1, max_size=4,
                                      unique=True))]
    tiers = draw(st.lists(st.tuples(st.integers(1, 200_000), st.integers(1, 200_000))
                          .map(lambda t: Tier(max(t), min(t))), max_size=3,
                          unique_by=lambda t: t.min_spend_minor))
    thresholds = [ThresholdTerms("P", tuple(tiers))] if tiers else []
    scope = draw(st.none() | st.lists(st.sampled_from(skus), min_size=1, unique=True)
                 .map(tuple))
    coupon_terms = draw(st.none() | st.builds(
        CouponTerms, code=st.just("C"), skus=st.just(scope),
        amount_off_minor=st.integers(1, 100_000)) | st.builds(
        CouponTerms, code=st.just("C"), skus=st.just(scope),
        percent_off_bp=st.integers(1, 10_000)))
    return lines, coupon_terms, thresholds


@given(orders_with_promotions())
def test_discount_laws(case) -> None:
    lines, coupon_terms, thresholds = case
    try:
        discount = compute_discount(lines, AT, coupon_terms, thresholds)
    except CouponNotApplicable:
        assert coupon_terms is not None
        return
    grosses = [line.gross_minor for line in lines]
    assert sum(discount.line_discounts) == discount.total_minor
    assert all(0 <= d <= g for d, g in zip(discount.line_discounts, grosses))
    assert discount.threshold_minor <= sum(grosses)
    if coupon_terms is not None:
        eligible = sum(g for line, g in zip(lines, grosses) if coupon_terms.applies_to(line.sku))
        assert 0 < discount.coupon_minor <= min(eligible, coupon_terms.value_for(eligible))
        threshold_only = compute_discount(lines, AT, None, thresholds).line_discounts
        for line, with_coupon, without in zip(lines, discount.line_discounts, threshold_only):
            if not coupon_terms.applies_to(line.sku):
                assert with_coupon == without  # the coupon touches its own lines only


# -- the Coupon aggregate --------------------------------------------------------------

def test_issue_normalises_the_code_and_keeps_the_terms() -> None:
    c = coupon(skus=("TEA", "CUP", "TEA"), total_limit=5)
    assert c.code == "SAVE10" and c.id == Coupon.create_id(" Save10 ")
    assert c.terms.skus == ("CUP", "TEA") and c.terms.total_limit == 5


@pytest.mark.parametrize("terms", [
    {"amount_off_minor": None}, {"percent_off_bp": 500}, {"amount_off_minor": 0},
    {"amount_off_minor": None, "percent_off_bp": 10_001}, {"min_spend_minor": -1},
    {"total_limit": 0}, {"per_customer_limit": 0}, {"skus": ()}, {"code": ""},
    {"valid_from": AT, "valid_to": AT - timedelta(days=1)},
])
def test_bad_coupon_terms_are_refused(terms: dict) -> None:
    with pytest.raises(InvalidCommand):
        Coupon.issue(CouponTerms(**{"code": "X", "amount_off_minor": 100, **terms}),
                     "CNY", AT)


def test_total_limit_then_exhausted_and_release_gives_a_use_back() -> None:
    c = coupon(total_limit=2)
    c.redeem("O-1", "C-1", 1000, AT)
    c.redeem("O-2", "C-2", 1000, AT)
    c.collect_events()
    before = state(c)
    with pytest.raises(CouponExhausted):
        c.redeem("O-3", "C-3", 1000, AT)
    assert c.collect_events() == [] and state(c) == before
    c.release("O-1", "cancelled", AT)
    c.redeem("O-3", "C-3", 1000, AT)
    assert c.redeemed == 2 and not c.redeemed_by("O-1") and c.redeemed_by("O-3")


def test_per_customer_limit_and_one_redemption_per_order() -> None:
    c = coupon(per_customer_limit=1)
    c.redeem("O-1", "C-1", 1000, AT)
    with pytest.raises(CouponLimitReached):
        c.redeem("O-2", "C-1", 1000, AT)
    with pytest.raises(Duplicate):
        c.redeem("O-1", "C-2", 1000, AT)
    c.redeem("O-2", "C-2", 1000, AT)
    c.release("O-1", "expired", AT)
    c.redeem("O-3", "C-1", 1000, AT)
    assert c.per_customer == {"C-1": 1, "C-2": 1}


def test_redemption_window_and_release_of_an_unknown_order() -> None:
    c = coupon(valid_from=AT, valid_to=AT + timedelta(days=7))
    with pytest.raises(CouponNotYetValid):
        c.redeem("O-1", "C-1", 1000, AT - timedelta(seconds=1))
    with pytest.raises(CouponExpired):
        c.redeem("O-1", "C-1", 1000, AT + timedelta(days=7))
    with pytest.raises(InvalidTransition):
        c.release("O-1", "cancelled", AT)
    assert c.collect_events() == []


def test_coupon_replays_through_the_store() -> None:
    c = Coupon.issue(CouponTerms("R", percent_off_bp=800, skus=("TEA",), total_limit=9,
                                 per_customer_limit=2, valid_to=AT + timedelta(days=1)),
                     "CNY", AT)
    c.redeem("O-1", "C-1", 160, AT)
    c.redeem("O-2", "C-1", 160, AT)
    c.release("O-1", "cancelled", AT)
    assert_replays(c, c.collect_events())
    book = ThresholdPromotions()
    book.add(TIERS, "CNY", AT)
    book.end("P-618", AT + timedelta(days=2))
    assert_replays(book, book.collect_events())
