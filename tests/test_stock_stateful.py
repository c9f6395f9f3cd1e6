"""Random stock command sequences through the application and the inventory projection,
against a simple model: stock never negative, reserved within on_hand, and the read model
(built incrementally, then rebuilt) always equals the model."""
from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from commands import Fenxiao
from commands.settings import Settings
from domain.errors import DomainError
from projections.inventory import InventoryProjection, list_inventory
from projections.runner import ProjectionRunner
from tests.conftest import wipe

SKUS = ["A", "B"]
WAREHOUSES = ["W1", "W2"]


def make_machine(url: str) -> type[RuleBasedStateMachine]:
    class StockThroughTheApp(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            wipe(url)
            self.app = Fenxiao(Settings(database_url=url))
            self.runner = ProjectionRunner(self.app, [InventoryProjection()], batch_size=5)
            for w in WAREHOUSES:
                self.app.execute(lambda: self.app.open_warehouse(w, w, "east"))
            for sku in SKUS:
                self.app.execute(lambda: self.app.add_product(sku, sku, "", 100))
            self.model: dict[tuple[str, str], list[int]] = {}
            self.reservations: dict[tuple[str, str, str], int] = {}

        def teardown(self) -> None:
            if hasattr(self, "app"):
                self.app.close()

        def run(self, command) -> bool:
            before = self.app.last_position()
            try:
                self.app.execute(command)
                return True
            except DomainError:
                assert self.app.last_position() == before
                return False

        def level(self, sku: str, w: str) -> list[int]:
            return self.model.setdefault((sku, w), [0, 0])

        @rule(sku=st.sampled_from(SKUS), w=st.sampled_from(WAREHOUSES),
              q=st.integers(-2, 9))
        def receive(self, sku: str, w: str, q: int) -> None:
            if self.run(lambda: self.app.receive_stock(sku, w, q, "PO")):
                self.level(sku, w)[0] += q
            else:
                assert q <= 0

        @rule(sku=st.sampled_from(SKUS), w=st.sampled_from(WAREHOUSES),
              q=st.integers(1, 6), order=st.sampled_from(["O1", "O2"]))
        def reserve(self, sku: str, w: str, q: int, order: str) -> None:
            on_hand, reserved = self.level(sku, w)
            ok = self.run(lambda: self.app.reserve_stock(sku, w, q, f"{order}"))
            assert ok == (q <= on_hand - reserved)
            if ok:
                self.level(sku, w)[1] += q
                self.reservations[(sku, w, order)] = self.reservations.get((sku, w, order), 0) + q

        @rule(sku=st.sampled_from(SKUS), w=st.sampled_from(WAREHOUSES),
              q=st.integers(1, 6), order=st.sampled_from(["O1", "O2"]), ship=st.booleans())
        def release_or_issue(self, sku: str, w: str, q: int, order: str, ship: bool) -> None:
            held = self.reservations.get((sku, w, order), 0)
            move = self.app.issue_stock if ship else self.app.release_stock
            ok = self.run(lambda: move(sku, w, q, order))
            assert ok == (q <= held)
            if ok:
                self.reservations[(sku, w, order)] = held - q
                level = self.level(sku, w)
                level[1] -= q
                if ship:
                    level[0] -= q

        @rule(sku=st.sampled_from(SKUS), q=st.integers(1, 8), forward=st.booleans())
        def transfer(self, sku: str, q: int, forward: bool) -> None:
            source, target = WAREHOUSES if forward else WAREHOUSES[::-1]
            on_hand, reserved = self.level(sku, source)
            ok = self.run(lambda: self.app.transfer_stock(sku, source, target, q))
            assert ok == (q <= on_hand - reserved)
            if ok:
                self.level(sku, source)[0] -= q
                self.level(sku, target)[0] += q

        @rule()
        def catch_up(self) -> None:
            self.runner.catch_up()

        @invariant()
        def read_model_equals_model(self) -> None:
            if not hasattr(self, "app"):
                return
            for on_hand, reserved in self.model.values():
                assert on_hand >= 0 and 0 <= reserved <= on_hand
            self.runner.catch_up()
            with self.app.engine.connect() as conn:
                rows = {(r["sku"], r["warehouse_id"]): [r["on_hand"], r["reserved"]]
                        for r in list_inventory(conn, None, None, None, 100)}
            assert rows == {k: v for k, v in self.model.items() if k in rows}
            assert all(v == [0, 0] for k, v in self.model.items() if k not in rows)

    return StockThroughTheApp


def test_stock_through_the_app(database_url: str) -> None:
    machine = make_machine(database_url)
    machine.TestCase.settings = settings(
        settings.default, max_examples=max(10, settings.default.max_examples // 3),
        stateful_step_count=15)
    machine.TestCase().runTest()
