"""The after-sales case aggregate alone (no database): its transitions, both sides, and
how a refund is spread over its lines."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from domain.aftersales import Case
from domain.errors import InvalidCommand, InvalidTransition

T0 = datetime(2026, 11, 25, tzinfo=timezone.utc)


def case(type: str = "return_refund", amount: int | None = None) -> Case:
    return Case.request("AS-1", "O-1", "D1", type, [("TEA", 2), ("CUP", 1)], "broken",
                        amount, "CNY", "ops", T0)


def test_a_return_goes_requested_approved_received_refunded_closed() -> None:
    c = case()
    c.approve("ops", T0)
    c.receive("W1", True, "wh", T0)
    c.refund(100, "R-1", [], "ops", T0)
    c.close("ops", T0)
    assert [(h["status"], h["actor"]) for h in c.history] == [
        ("requested", "ops"), ("approved", "ops"), ("received", "wh"),
        ("refunded", "ops"), ("closed", "ops")]
    assert c.refunded_minor == 100


@pytest.mark.parametrize("type, steps", [
    ("return_refund", ["refund"]),             # not received yet
    ("refund_only", ["approve", "receive"]),   # nothing comes back
    ("compensation", ["close"]),               # not paid yet
    ("exchange", ["approve", "refund"]),       # an exchange refunds nothing
    ("repair", ["reject", "approve"]),         # rejected is final but for closing
])
def test_other_transitions_are_refused_and_record_nothing(type: str,
                                                          steps: list[str]) -> None:
    c = case(type, 500 if type == "compensation" else None)
    for name in steps[:-1]:
        {"approve": lambda: c.approve("ops", T0), "reject": lambda: c.reject("ops", T0)}[name]()
    version = c.version
    last = {"refund": lambda: c.refund(1, "R", [], "ops", T0),
            "receive": lambda: c.receive("W1", False, "wh", T0),
            "close": lambda: c.close("ops", T0),
            "approve": lambda: c.approve("ops", T0)}[steps[-1]]
    with pytest.raises(InvalidTransition):
        last()
    assert c.version == version


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
