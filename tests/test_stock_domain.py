"""StockItem: given past events, when a command, then new events or an error."""
from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from domain.errors import InsufficientStock, InvalidCommand
from domain.stock import SameWarehouse, StockItem


def item_with(on_hand: int = 0, reserved: dict[str, int] | None = None) -> StockItem:
    item = StockItem(sku="TEA", warehouse_id="W1")
    if on_hand:
        item.receive(on_hand, "PO-1")
    for reference, quantity in (reserved or {}).items():
        item.reserve(quantity, reference)
    item.collect_events()
    return item


def replayed(item: StockItem, events: list) -> StockItem:
    copy = None
    for event in events:
        copy = event.mutate(copy)
    return copy


def test_receive_then_reserve_then_issue() -> None:
    item = item_with(10)
    item.reserve(4, "O-1")
    item.issue(3, "O-1")
    assert (item.on_hand, item.reserved, item.available) == (7, 1, 6)
    assert [type(e).__name__ for e in item.collect_events()] == ["StockReserved", "StockIssued"]


@pytest.mark.parametrize("command, args", [
    ("receive", (0, "PO")), ("receive", (-1, "PO")), ("reserve", (0, "O")),
    ("release", (-2, "O")), ("issue", (0, "O")), ("restock", (0, "R")),
    ("adjust", (0, "count")), ("adjust", (3, "  ")),
])
def test_bad_quantities_are_refused_and_change_nothing(command: str, args: tuple) -> None:
    item = item_with(5)
    with pytest.raises(InvalidCommand):
        getattr(item, command)(*args)
    assert item.collect_events() == []
    assert (item.on_hand, item.reserved) == (5, 0)


def test_cannot_reserve_more_than_available() -> None:
    item = item_with(5, {"O-1": 3})
    with pytest.raises(InsufficientStock) as refused:
        item.reserve(3, "O-2")
    assert refused.value.details["available"] == 2
    assert item.collect_events() == []


def test_negative_adjustment_cannot_touch_reserved_stock() -> None:
    item = item_with(5, {"O-1": 3})
    with pytest.raises(InsufficientStock):
        item.adjust(-3, "damaged")
    item.adjust(-2, "damaged")
    assert (item.on_hand, item.reserved) == (3, 3)


def test_release_and_issue_only_what_the_reference_holds() -> None:
    item = item_with(10, {"O-1": 2, "O-2": 5})
    with pytest.raises(InvalidCommand):
        item.release(3, "O-1")
    with pytest.raises(InvalidCommand):
        item.issue(1, "O-3")
    item.release(2, "O-1")
    assert item.reservations == {"O-2": 5}


def test_transfer_refuses_same_warehouse_and_unavailable_stock() -> None:
    item = item_with(4, {"O-1": 2})
    with pytest.raises(SameWarehouse):
        item.transfer_out(1, "W1", "T-1")
    with pytest.raises(InsufficientStock):
        item.transfer_out(3, "W2", "T-1")
    item.transfer_out(2, "W2", "T-1")
    assert item.available == 0


def test_id_is_derived_from_sku_and_warehouse() -> None:
    assert StockItem(sku="A", warehouse_id="W").id == StockItem.create_id("A", "W")
    assert StockItem.create_id("A", "W") != StockItem.create_id("W", "A")


quantities = st.integers(min_value=-3, max_value=12)
references = st.sampled_from(["O-1", "O-2", "O-3"])


class StockMachine(RuleBasedStateMachine):
    """Random command sequences against a simple model; invariants after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.item = StockItem(sku="TEA", warehouse_id="W1")
        self.events = list(self.item.collect_events())
        self.on_hand = 0
        self.held: dict[str, int] = {}

    def attempt(self, command: str, *args: object) -> bool:
        before = (self.item.on_hand, self.item.reserved, dict(self.item.reservations))
        try:
            getattr(self.item, command)(*args)
        except (InsufficientStock, InvalidCommand):
            assert self.item.collect_events() == []
            assert before == (self.item.on_hand, self.item.reserved, self.item.reservations)
            return False
        self.events.extend(self.item.collect_events())
        return True

    @property
    def available(self) -> int:
        return self.on_hand - sum(self.held.values())

    @rule(q=quantities)
    def receive(self, q: int) -> None:
        assert self.attempt("receive", q, "PO") == (q > 0)
        if q > 0:
            self.on_hand += q

    @rule(delta=st.integers(min_value=-10, max_value=10))
    def adjust(self, delta: int) -> None:
        allowed = delta != 0 and -delta <= self.available
        assert self.attempt("adjust", delta, "stock count") == allowed
        if allowed:
            self.on_hand += delta

    @rule(q=quantities, ref=references)
    def reserve(self, q: int, ref: str) -> None:
        allowed = 0 < q <= self.available
        assert self.attempt("reserve", q, ref) == allowed
        if allowed:
            self.held[ref] = self.held.get(ref, 0) + q

    @rule(q=quantities, ref=references, issue=st.booleans())
    def release_or_issue(self, q: int, ref: str, issue: bool) -> None:
        allowed = 0 < q <= self.held.get(ref, 0)
        assert self.attempt("issue" if issue else "release", q, ref) == allowed
        if allowed:
            self.held[ref] -= q
            if issue:
                self.on_hand -= q

    @precondition(lambda self: self.on_hand > 0)
    @rule(q=quantities)
    def transfer_out(self, q: int) -> None:
        allowed = 0 < q <= self.available
        assert self.attempt("transfer_out", q, "W2", "T") == allowed
        if allowed:
            self.on_hand -= q

    @invariant()
    def matches_model_and_keeps_invariants(self) -> None:
        item = self.item
        assert item.on_hand == self.on_hand >= 0
        assert 0 <= item.reserved <= item.on_hand
        assert item.reserved == sum(self.held.values())
        assert item.reservations == {k: v for k, v in self.held.items() if v}

    @invariant()
    def replay_equals_live(self) -> None:
        copy = replayed(self.item, self.events)
        assert (copy.on_hand, copy.reserved, copy.reservations) == (
            self.item.on_hand, self.item.reserved, self.item.reservations)


TestStockMachine = StockMachine.TestCase
