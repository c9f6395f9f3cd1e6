"""The after-sales case aggregate alone (no database): its transitions, both sides, and
how a refund is spread over its lines."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from domain.aftersales import Case, NotRestockable
from domain.errors import InvalidCommand, InvalidTransition

T0 = datetime(2026, 11, 25, tzinfo=timezone.utc)


def case(type: str = "return_refund", amount: int | None = None) -> Case:
    return Case.request("AS-1", "O-1", "D1", type, [("TEA", 2), ("CUP", 1)], "broken",
                        amount, "CNY", "ops", T0)


def test_a_return_goes_requested_approved_received_refunded_closed() -> None:
    c = case()
    c.approve("ops", T0)
    c.receive("W1", True, "wh", T0)
    c.refund(100, "R-1", [], "ops", T0, refundable_minor=3000)
    c.close("ops", T0)
    assert [(h["status"], h["actor"]) for h in c.history] == [
        ("requested", "ops"), ("approved", "ops"), ("received", "wh"),
        ("refunded", "ops"), ("closed", "ops")]
    assert c.refunded_minor == 100


def test_a_refund_is_positive_but_for_goods_paid_nothing() -> None:
    c = case("refund_only")
    c.approve("ops", T0)
    for amount, refundable in ((0, 1), (-1, 0), (-1, 100)):
        with pytest.raises(InvalidCommand):
            c.refund(amount, "R-1", [], "ops", T0, refundable_minor=refundable)
    assert c.status == "approved"
    c.refund(0, "R-1", [], "ops", T0, refundable_minor=0)  # a free gift, held back
    assert (c.status, c.refunded_minor) == ("refunded", 0)


@pytest.mark.parametrize("type, steps", [
    ("return_refund", ["refund"]),             # not received yet
    ("refund_only", ["approve", "receive"]),   # nothing comes back
    ("compensation", ["close"]),               # not paid yet
    ("exchange", ["approve", "refund"]),       # not received yet
    ("exchange", ["approve", "receive", "close"]),  # not done until shipped or refunded
    ("repair", ["approve", "receive", "refund"]),   # a repair refunds nothing
    ("return_refund", ["approve", "receive", "ship"]),  # a return ships nothing back
    ("repair", ["approve", "ship"]),           # nothing to send back yet
    ("repair", ["reject", "approve"]),         # rejected is final but for closing
])
def test_other_transitions_are_refused_and_record_nothing(type: str,
                                                          steps: list[str]) -> None:
    c = case(type, 500 if type == "compensation" else None)
    commands = {"refund": lambda: c.refund(1, "R", [], "ops", T0, refundable_minor=500),
                "receive": lambda: c.receive("W1", False, "wh", T0),
                "close": lambda: c.close("ops", T0),
                "ship": lambda: c.ship(SENT, "wh", T0),
                "approve": lambda: c.approve("ops", T0),
                "reject": lambda: c.reject("ops", T0)}
    for name in steps[:-1]:
        commands[name]()
    version = c.version
    with pytest.raises(InvalidTransition):
        commands[steps[-1]]()
    assert c.version == version


SENT = [{"shipment_id": "SH1", "warehouse_id": "W1", "lines": [{"sku": "TEA", "quantity": 2}]}]


@pytest.mark.parametrize("type, status", [("exchange", "exchanged"), ("repair", "repaired")])
def test_an_exchange_or_a_repair_ships_then_closes(type: str, status: str) -> None:
    c = case(type)
    c.approve("ops", T0)
    c.receive("W2", False, "wh", T0)
    assert c.received_at_warehouse == "W2"
    c.ship(SENT, "wh", T0)
    assert (c.status, c.shipment_ids) == (status, ["SH1"])
    c.close("ops", T0)
    assert [h["status"] for h in c.history][-3:] == ["received", status, "closed"]


def test_a_repair_is_never_restocked_and_an_exchange_may_be_refunded_instead() -> None:
    repair = case("repair")
    repair.approve("ops", T0)
    version = repair.version
    with pytest.raises(NotRestockable):
        repair.receive("W1", True, "wh", T0)
    assert repair.version == version
    exchange = case("exchange")
    exchange.approve("ops", T0)
    exchange.receive("W1", True, "wh", T0)
    exchange.refund(100, "R-1", [], "ops", T0, 100)  # the replacement could not be sent
    assert exchange.status == "refunded"


def test_requests_are_checked() -> None:
    with pytest.raises(InvalidCommand):
        Case.request("AS-1", "O-1", None, "swap", [("TEA", 1)], "r", None, "CNY", "a", T0)
    with pytest.raises(InvalidCommand):
        Case.request("AS-1", "O-1", None, "compensation", [("TEA", 1)], "r", None, "CNY",
                     "a", T0)
    with pytest.raises(InvalidCommand):
        Case.request("AS-1", "O-1", None, "repair", [("TEA", 1)], "r", 5, "CNY", "a", T0)


def test_a_refund_is_spread_by_largest_remainder() -> None:
    # 1000 over caps 1999 and 990 (2989): 668.79 and 331.21 -> 668 + 331 = 999, the
    # last fen to the larger remainder (.79): 669 and 331.
    assert case().refund_splits(1000, [1999, 990]) == [669, 331]
    assert sum(case().refund_splits(7, [1, 1, 1])) == 7
