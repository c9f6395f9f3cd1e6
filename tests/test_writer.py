"""The writer (commands/writer.py): commands decided in batches give exactly the outcomes
and the events of the same commands run one at a time; a refusal inside a batch changes
nothing and poisons nothing; writers of several processes on one hot SKU never oversell
and never hand a client a concurrency conflict."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from commands import Fenxiao
from commands.app import CommandContext
from commands.messages import (CancelOrder, Command, FrozenMap, PayOrder, PlaceOrder,
                               ReceiveStock)
from commands.settings import Settings
from commands.writer import Ask, Writer
from domain.errors import DomainError
from domain.stock import StockItem
from tests.api_support import event_log
from tests.conftest import wipe

T0 = datetime(2026, 12, 1, 8, tzinfo=timezone.utc)
PRICES = {"TEA": 1000, "CUP": 300}
ADDRESS = FrozenMap({"region": "east", "city": "Shanghai", "line1": "1 Nanjing Rd"})


def _app(url: str) -> Fenxiao:
    app = Fenxiao(Settings(database_url=url, rate_limit=None, auth_failure_limit=None))
    app.clock = lambda: T0
    return app


def _shop(app: Fenxiao, stock: int = 6) -> None:
    app.execute(lambda: app.open_warehouse("W1", "East", "east"))
    app.execute(lambda: app.open_warehouse("W2", "South", "south"))
    for sku, price in PRICES.items():
        app.execute(lambda: app.add_product(sku, sku, "", price))
        app.execute(lambda: app.receive_stock(sku, "W1", stock, "PO-0"))


# -- a command sequence, as values --------------------------------------------------

def _place(n: int, lines: list[tuple[str, int]], backorder: bool, duplicate_of: int | None
           ) -> PlaceOrder:
    return PlaceOrder(customer_id=f"C{n % 3}", customer_name="Buyer", phone="13800138000",
                      shipping_address=ADDRESS, lines=tuple(lines),
                      order_id=f"O{duplicate_of if duplicate_of is not None else n}",
                      allow_backorder=backorder)


@st.composite
def steps(draw: Any) -> list[tuple[Command, str | None]]:
    """Placements (some backordered, some duplicates), payments (right, wrong and reused
    references), cancellations, receipts that fill backorders; keys sometimes repeated
    with the same command and sometimes with another."""
    result: list[tuple[Command, str | None]] = []
    for n in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["place", "place", "place", "pay", "cancel", "receive"]))
        if kind == "place":
            skus = draw(st.lists(st.sampled_from(sorted(PRICES)), min_size=1, max_size=2,
                                 unique=True))
            lines = [(sku, draw(st.integers(1, 4))) for sku in skus]
            duplicate = draw(st.none() | st.integers(0, max(0, n - 1)))
            command: Command = _place(n, lines, draw(st.booleans()), duplicate)
        elif kind == "pay":
            order = draw(st.integers(0, n))
            amount = draw(st.sampled_from([1000, 1300, 2000, 2300, 4000, 999]))
            command = PayOrder(order_id=f"O{order}", amount_minor=amount,
                               payment_reference=f"R{draw(st.integers(0, 3))}")
        elif kind == "cancel":
            command = CancelOrder(order_id=f"O{draw(st.integers(0, n))}", reason="changed")
        else:
            command = ReceiveStock(sku=draw(st.sampled_from(sorted(PRICES))),
                                   warehouse_id="W1", quantity=draw(st.integers(1, 3)),
                                   reference=f"PO-{n}")
        key = draw(st.none() | st.sampled_from(["k1", "k2", f"k-{n}"]))
        if key and draw(st.booleans()) and result:  # the same command again, same key
            command = result[-1][0]
            key = result[-1][1] or key
        result.append((command, key))
    return result


def _ask(app: Fenxiao, command: Command, key: str | None) -> Ask:
    return Ask(lambda: command.handle(app), command.status,
               CommandContext(actor="tester", idempotency_key=key), command.fingerprint())


def _one_at_a_time(app: Fenxiao, sequence: list[tuple[Command, str | None]]) -> list[Any]:
    outcomes = []
    for command, key in sequence:
        ask = _ask(app, command, key)
        try:
            reply = app.execute(ask.decide, status=ask.status, context=ask.context,
                                request_hash=ask.request_hash)
            outcomes.append((reply.status, reply.body))
        except DomainError as refusal:
            outcomes.append((refusal.status, refusal.envelope()))
    return outcomes


def _in_batches(app: Fenxiao, sequence: list[tuple[Command, str | None]],
                sizes: list[int]) -> list[Any]:
    writer = Writer(app)  # not started: this thread decides, one batch at a time
    asks = [_ask(app, command, key) for command, key in sequence]
    start = 0
    for size in sizes + [len(asks)]:
        if start < len(asks):
            writer.decide(asks[start:start + size])
            start += size
    outcomes = []
    for ask in asks:
        try:
            reply = ask.answer.result(timeout=0)
            outcomes.append((reply.status, reply.body))
        except DomainError as refusal:
            outcomes.append((refusal.status, refusal.envelope()))
    return outcomes


def _idempotency(app: Fenxiao) -> list[tuple[Any, ...]]:
    from commands.storage import idempotency
    with app.engine.connect() as conn:
        return sorted((r.key, r.request_hash, r.status, r.body)
                      for r in conn.execute(select(idempotency)))


@settings(max_examples=max(25, settings.default.max_examples // 3), deadline=None)
@given(sequence=steps(), sizes=st.lists(st.integers(1, 6), max_size=6))
def test_batches_decide_exactly_as_one_at_a_time(database_url: str, sequence: Any,
                                                 sizes: list[int]) -> None:
    runs = []
    for batched in (False, True):
        wipe(database_url)
        app = _app(database_url)
        try:
            _shop(app, stock=4)
            outcomes = (_in_batches(app, sequence, sizes) if batched
                        else _one_at_a_time(app, sequence))
            runs.append((outcomes, event_log(app), _idempotency(app)))
        finally:
            app.close()
    (outcomes_a, log_a, keys_a), (outcomes_b, log_b, keys_b) = runs
    assert outcomes_b == outcomes_a
    assert log_b == log_a  # event for event, position for position
    assert keys_b == keys_a


def test_a_refusal_inside_a_batch_changes_nothing_and_poisons_nothing(app: Fenxiao) -> None:
    app.clock = lambda: T0
    _shop(app, stock=5)
    before = app.last_position()
    sequence = [(_place(1, [("TEA", 3)], False, None), None),
                (_place(2, [("TEA", 3)], False, None), None),  # 2 left: refused
                (_place(3, [("TEA", 2)], False, None), None),
                (_place(1, [("CUP", 1)], False, None), None)]  # order O1 again: duplicate
    outcomes = _in_batches(app, sequence, [4])
    assert [status for status, _ in outcomes] == [201, 409, 201, 409]
    assert outcomes[1][1]["error"]["code"] == "insufficient_stock"
    assert outcomes[3][1]["error"]["code"] == "duplicate"
    item = app.repository.get(StockItem.create_id("TEA", "W1"))
    assert (item.on_hand, item.reserved) == (5, 5)
    cup = app.repository.get(StockItem.create_id("CUP", "W1"))
    assert cup.reserved == 0
    assert outcomes[2][1]["position"] == app.last_position() > before


def test_writers_of_two_processes_on_one_hot_sku_never_oversell(db_url: str) -> None:
    """Two applications (as two server processes would) each with its writer, many
    clients each, ordering the same SKU: every unit sold once, no client told of a
    conflict, and what each writer holds agrees with the store afterwards."""
    first, second = _app(db_url), _app(db_url)
    try:
        _shop(first, stock=40)
        for app in (first, second):
            app.start_writer()

        def place(n: int) -> int | str:
            app = (first, second)[n % 2]
            command = _place(n, [("TEA", 1)], False, None)
            try:
                return app.execute(lambda: command.handle(app), status=201).status
            except DomainError as refusal:
                return refusal.code

        with ThreadPoolExecutor(max_workers=12) as pool:
            outcomes = list(pool.map(place, range(60)))
        assert outcomes.count(201) == 40, outcomes
        assert set(outcomes) == {201, "insufficient_stock"}, outcomes
        item = first.repository.get(StockItem.create_id("TEA", "W1"))
        assert (item.on_hand, item.reserved) == (40, 40)
        # Each writer's next command sees the other's work: one more unit arrives and
        # exactly one more order takes it, whichever writer decides it.
        first.execute(lambda: first.receive_stock("TEA", "W1", 1, "PO-1"))
        assert place(101) == 201 and place(102) == "insufficient_stock"
    finally:
        first.close()
        second.close()


def test_commands_wait_for_the_commit_that_carries_them(app: Fenxiao) -> None:
    """Replies come after the commit: when `execute` returns through the writer, the
    position it names is in the store."""
    app.clock = lambda: T0
    _shop(app, stock=30)
    app.start_writer()
    positions: list[int] = []
    lock = threading.Lock()

    def place(n: int) -> None:
        command = _place(n, [("TEA", 1)], False, None)
        position = app.execute(lambda: command.handle(app), status=201).body["position"]
        assert app.last_position() >= position
        with lock:
            positions.append(position)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(place, range(24)))
    assert len(set(positions)) == 24


def test_a_conflict_decides_again_only_the_commands_it_touched(db_url: str) -> None:
    """Another process records an order of TEA between this writer's decisions and its
    commit: the batch's TEA order is decided again (and placed), its CUP order, which
    shares nothing with it, commits as first decided."""
    ours, theirs = _app(db_url), _app(db_url)
    try:
        _shop(ours, stock=5)
        writer = Writer(ours)
        writer.decide([_ask(ours, _place(0, [("TEA", 1)], False, None), None)])  # held
        commit = ours.commit_decisions
        decided: list[list[str]] = []

        def commit_after_theirs(decisions: Any, changed: Any, seen: Any = None) -> Any:
            decided.append([d.ask.context.idempotency_key for d in decisions])
            if len(decided) == 1:  # another process: its own thread, its own context
                other = _place(9, [("TEA", 2)], False, None)
                with ThreadPoolExecutor(max_workers=1) as pool:
                    pool.submit(theirs.execute, lambda: other.handle(theirs),
                                status=201).result()
            return commit(decisions, changed, seen)

        ours.commit_decisions = commit_after_theirs  # type: ignore[method-assign]
        asks = [_ask(ours, _place(1, [("TEA", 1)], False, None), "tea"),
                _ask(ours, _place(2, [("CUP", 1)], False, None), "cup")]
        writer.decide(asks)
        assert decided == [["tea", "cup"], ["cup"], ["tea"]]
        assert [ask.answer.result().status for ask in asks] == [201, 201]
        item = ours.repository.get(StockItem.create_id("TEA", "W1"))
        assert item.reserved == 4  # 1 + their 2 + 1: nothing lost, nothing twice
        assert writer.held.get(item.id).version == item.version
    finally:
        ours.close()
        theirs.close()


def test_what_another_process_changed_is_read_before_the_next_batch(db_url: str) -> None:
    """The writer reads a price it only reads (never writes, so no key of the store would
    catch a stale copy): changed by another process between two batches, the next order
    is priced anew."""
    ours, theirs = _app(db_url), _app(db_url)
    try:
        _shop(ours, stock=5)
        writer = Writer(ours)
        first = _ask(ours, _place(1, [("TEA", 1)], False, None), None)
        writer.decide([first])  # holds the TEA product now, at 1000
        assert first.answer.result().body["total"] == PRICES["TEA"]
        theirs.execute(lambda: theirs.change_price("TEA", 1500))
        time.sleep(0.05)
        second = _ask(ours, _place(2, [("TEA", 1)], False, None), None)
        writer.decide([second])
        assert second.answer.result().body["total"] == 1500
    finally:
        ours.close()
        theirs.close()
