"""The application layer on both databases: commands, atomic saves, metadata, replay."""
from __future__ import annotations

import json

import pytest

from commands import Fenxiao
from commands.app import CommandContext, IdempotencyKeyReused
from domain.errors import Duplicate, InsufficientStock, NotFound
from domain.stock import StockItem


def stocked(app: Fenxiao, quantity: int = 10) -> None:
    app.execute(lambda: app.open_warehouse("W1", "East", "east"))
    app.execute(lambda: app.open_warehouse("W2", "South", "south"))
    app.execute(lambda: app.add_product("TEA", "Tea", "250 g", 1999))
    if quantity:
        app.execute(lambda: app.receive_stock("TEA", "W1", quantity, "PO-1"))


def test_stock_movements_and_positions(app: Fenxiao) -> None:
    stocked(app)
    moved = app.execute(lambda: app.transfer_stock("TEA", "W1", "W2", 4)).body
    assert moved["from"]["on_hand"] == 6 and moved["to"]["on_hand"] == 4
    assert moved["position"] == app.last_position()
    reserved = app.execute(lambda: app.reserve_stock("TEA", "W2", 3, "O-1")).body
    assert reserved["available"] == 1


def test_a_refused_command_records_nothing(app: Fenxiao) -> None:
    stocked(app, quantity=2)
    before = app.last_position()
    with pytest.raises(InsufficientStock):
        app.execute(lambda: app.transfer_stock("TEA", "W1", "W2", 3))
    with pytest.raises(NotFound):
        app.execute(lambda: app.receive_stock("NOPE", "W1", 1, "PO"))
    with pytest.raises(NotFound):
        app.execute(lambda: app.receive_stock("TEA", "W9", 1, "PO"))
    with pytest.raises(Duplicate):
        app.execute(lambda: app.add_product("TEA", "Tea", "", 1))
    assert app.last_position() == before


def test_replay_equals_live(app: Fenxiao) -> None:
    stocked(app)
    item = app.stock_item("TEA", "W1")
    item.reserve(4, "O-1")
    item.issue(1, "O-1")
    item.adjust(-2, "damaged")
    app.execute(lambda: {"position": app.record(item)})
    stored = app.repository.get(StockItem.create_id("TEA", "W1"))
    assert (stored.on_hand, stored.reserved, stored.reservations, stored.version) == (
        item.on_hand, item.reserved, item.reservations, item.version)


def test_events_carry_command_metadata(app: Fenxiao) -> None:
    stocked(app, quantity=0)
    context = CommandContext(actor="warehouse-1", idempotency_key="k-1",
                             correlation_id="corr-9")
    app.execute(lambda: app.receive_stock("TEA", "W1", 5, "PO-7"), context=context,
                request_hash="h")
    stored = app.recorder.select_events(StockItem.create_id("TEA", "W1"))
    meta = json.loads(stored[-1].state)["meta"]
    assert meta["actor"] == "warehouse-1"
    assert meta["idempotency_key"] == "k-1"
    assert meta["correlation_id"] == "corr-9"
    assert meta["command_id"] == context.command_id


def test_idempotent_commands_act_once(app: Fenxiao) -> None:
    stocked(app, quantity=0)
    context = CommandContext(actor="wh", idempotency_key="receipt-1")
    first = app.execute(lambda: app.receive_stock("TEA", "W1", 5, "PO"), status=201,
                        context=context, request_hash="same")
    again = app.execute(lambda: app.receive_stock("TEA", "W1", 5, "PO"), status=201,
                        context=CommandContext(actor="wh", idempotency_key="receipt-1"),
                        request_hash="same")
    assert again == first
    assert app.stock_item("TEA", "W1").on_hand == 5
    with pytest.raises(IdempotencyKeyReused):
        app.execute(lambda: app.receive_stock("TEA", "W1", 6, "PO"), context=context,
                    request_hash="different")
    # the key belongs to its principal: another token may use the same string
    other = app.execute(lambda: app.receive_stock("TEA", "W1", 1, "PO"),
                        context=CommandContext(actor="other", idempotency_key="receipt-1"),
                        request_hash="same")
    assert other.body["on_hand"] == 6


def test_a_command_cannot_load_what_it_has_saved(app: Fenxiao) -> None:
    """Load, decide, save: a load after the save would see the command's own uncommitted
    events, and could leak them into the aggregate cache. It is refused, nothing is
    recorded, and the cached aggregate stays as committed."""
    stocked(app, quantity=5)
    app.stock_item("TEA", "W1")  # now cached
    before = app.last_position()

    def save_then_load() -> dict:
        item = app.stock_item("TEA", "W1")
        item.receive(100, "PO-phantom")
        app.record(item)
        app.stock_item("TEA", "W1")
        return {}

    with pytest.raises(AssertionError):
        app.execute(save_then_load)
    assert app.last_position() == before
    assert app.stock_item("TEA", "W1").on_hand == 5
    app.execute(lambda: app.receive_stock("TEA", "W1", 1, "PO-real"))
    assert app.stock_item("TEA", "W1").on_hand == 6
