"""Random networks and money movements through the application; after every step the
books balance, earnings equal the ledger lines, nobody beyond level 2 is credited, and no
withdrawal takes `available` below zero."""
from __future__ import annotations

from collections import defaultdict

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import func, select

from commands import Fenxiao
from commands.settings import Settings
from domain.errors import DomainError
from domain.ledger import parse_account
from projections.ledger import LedgerProjection, earnings, journal
from projections.runner import ProjectionRunner
from tests.conftest import wipe

IDS = [f"D{n}" for n in range(6)]


def make_machine(url: str) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            wipe(url)
            self.app = Fenxiao(Settings(database_url=url))
            self.runner = ProjectionRunner(self.app, [LedgerProjection()], batch_size=50)
            self.uplines: dict[str, str | None] = {}
            self.lines: list[tuple[str, int]] = []
            self.refunded: dict[tuple[str, int], int] = defaultdict(int)
            self.nets: dict[tuple[str, int], int] = {}
            self.withdrawals: list[str] = []
            for n, distributor_id in enumerate(IDS):
                referrer = IDS[n - 1] if n else None
                code = self.app.distributor(referrer).referral_code if referrer else None
                self.ok(lambda: self.app.apply_distributor(
                    distributor_id, f"1380000{n:04d}", code, distributor_id))
                self.ok(lambda: self.app.approve_distributor(distributor_id))
                self.uplines[distributor_id] = referrer

        def teardown(self) -> None:
            if hasattr(self, "app"):
                self.app.close()

        def ok(self, command) -> dict | None:
            before = self.app.last_position()
            try:
                return self.app.execute(command).body
            except DomainError:
                assert self.app.last_position() == before  # refused: nothing recorded
                return None

        @rule(who=st.sampled_from(IDS), suspend=st.booleans())
        def suspend_or_reinstate(self, who: str, suspend: bool) -> None:
            action = self.app.suspend_distributor if suspend else self.app.reinstate_distributor
            self.ok(lambda: action(who, "stateful test"))

        @rule(who=st.sampled_from(IDS), upline=st.sampled_from(IDS))
        def reparent(self, who: str, upline: str) -> None:
            if self.ok(lambda: self.app.change_upline(who, upline, "stateful test")):
                self.uplines[who] = upline
            chain, current = [], who  # the network stays a forest
            while current is not None:
                assert current not in chain
                chain.append(current)
                current = self.uplines[current]

        @rule(kind=st.sampled_from(["rate", "fixed"]), l1=st.integers(0, 6000),
              l2=st.integers(0, 6000))
        def set_rule(self, kind: str, l1: int, l2: int) -> None:
            self.ok(lambda: self.app.set_commission_rule(None, kind, l1, l2))

        @rule(seller=st.sampled_from(IDS), quantity=st.integers(1, 5),
              net=st.integers(1, 100_000), self_purchase=st.booleans())
        def accrue(self, seller: str, quantity: int, net: int, self_purchase: bool) -> None:
            key = (f"O{len(self.lines)}", 1)
            body = self.ok(lambda: self.app.accrue_commission(
                key[0], key[1], "TEA", quantity, net, seller, self_purchase))
            assert body is not None
            self.lines.append(key)
            self.nets[key] = net
            allowed = {1: seller, 2: self.uplines[seller]}
            for a in body["accruals"]:
                assert allowed[a["level"]] == a["distributor_id"]
            assert sum(a["amount_minor"] for a in body["accruals"]) <= net

        @rule(data=st.data())
        def mature(self, data: st.DataObject) -> None:
            if self.lines:
                order_id, line_no = data.draw(st.sampled_from(self.lines))
                self.ok(lambda: self.app.mature_commission(order_id, line_no))

        @rule(data=st.data(), share=st.integers(1, 100))
        def refund(self, data: st.DataObject, share: int) -> None:
            if not self.lines:
                return
            key = data.draw(st.sampled_from(self.lines))
            total = min(self.nets[key], self.refunded[key] + self.nets[key] * share // 100 + 1)
            if self.ok(lambda: self.app.reverse_commission(key[0], key[1], total)):
                self.refunded[key] = total

        @rule(who=st.sampled_from(IDS), amount=st.integers(50, 5000))
        def withdraw(self, who: str, amount: int) -> None:
            body = self.ok(lambda: self.app.request_withdrawal(who, amount))
            if body:
                self.withdrawals.append(body["withdrawal_id"])
                assert self.app.wallet(who).available >= 0

        @rule(data=st.data(), pay=st.booleans())
        def decide(self, data: st.DataObject, pay: bool) -> None:
            if self.withdrawals:
                w = data.draw(st.sampled_from(self.withdrawals))
                if pay:
                    self.ok(lambda: self.app.approve_withdrawal(w, "BANK"))
                else:
                    self.ok(lambda: self.app.reject_withdrawal(w, "checked"))

        @invariant()
        def books_balance_and_earnings_match_the_ledger(self) -> None:
            if not hasattr(self, "app"):
                return
            self.runner.catch_up()
            with self.app.engine.connect() as conn:
                assert conn.execute(select(func.coalesce(func.sum(journal.c.amount_minor),
                                                         0))).scalar() == 0
                owed: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
                for account, amount in conn.execute(select(journal.c.account,
                                                           journal.c.amount_minor)):
                    found = parse_account(account)
                    if found:
                        owed[found[0]][found[1]] -= amount
                for row in conn.execute(select(earnings)):
                    for bucket in ("pending", "available", "withdrawing"):
                        assert getattr(row, bucket) == owed[row.distributor_id][bucket]
                    wallet = self.app.wallet(row.distributor_id)
                    assert (wallet.pending, wallet.available, wallet.withdrawing) == (
                        row.pending, row.available, row.withdrawing)
                    assert row.withdrawing >= 0 and row.pending >= 0

    return LedgerMachine


def test_ledger_laws(database_url: str) -> None:
    machine = make_machine(database_url)
    machine.TestCase.settings = settings(
        settings.default, max_examples=max(10, settings.default.max_examples // 3),
        stateful_step_count=25)
    machine.TestCase().runTest()
