"""Random networks and money movements through the application, against a model.

The model is a plain re-statement of DESIGN.md's rules (two levels, half-up rounding,
proportional reversals, withdrawals only from a sufficient `available`): from its own
state it predicts whether each command is accepted or refused (and with which code) and
what every wallet holds afterwards, and the application must agree. After every step the
books balance, earnings equal the ledger lines and the wallets, and nobody beyond level 2
is credited.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import func, select

from commands import Fenxiao
from commands.app import CommandContext
from commands.settings import Settings
from domain.errors import DomainError
from domain.ledger import parse_account
from projections.ledger import LedgerProjection, earnings, journal
from projections.runner import ProjectionRunner
from tests.conftest import wipe

IDS = [f"D{n}" for n in range(6)]
MIN_WITHDRAWAL = Settings(database_url="").min_withdrawal_minor
FOUR_EYES_MIN = 2_000  # withdrawals above it need two approvers
APPROVERS = ("operator-a", "operator-b")
BP = 10_000


def half_up(amount: int, numerator: int, denominator: int) -> int:
    return (2 * amount * numerator + denominator) // (2 * denominator)


@dataclass
class LineModel:
    net: int
    accrued: dict[int, tuple[str, int]]  # level -> (distributor, amount)
    matured: bool = False
    refunded: int = 0
    reversed: dict[int, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class WithdrawalModel:
    who: str
    amount: int
    status: str = "requested"
    first_approver: str | None = None  # above the four-eyes threshold, once approved


class Model:
    """What the rules say should happen, kept without asking the application."""

    def __init__(self) -> None:
        self.status = {d: "active" for d in IDS}
        self.uplines: dict[str, str | None] = {}
        self.rule = ("rate", 1000, 500)  # the default rule
        self.wallets = {d: {"pending": 0, "available": 0, "withdrawing": 0} for d in IDS}
        self.lines: dict[tuple[str, int], LineModel] = {}
        self.withdrawals: dict[str, WithdrawalModel] = {}

    def ancestors(self, who: str | None) -> list[str]:
        chain = []
        while who is not None and self.uplines[who] is not None:
            who = self.uplines[who]
            chain.append(who)
        return chain

    def reparent_refusal(self, who: str, upline: str) -> str | None:
        if upline == self.uplines[who]:
            return "invalid_transition"
        if upline == who or who in self.ancestors(upline):
            return "cycle"
        return None

    def rule_refusal(self, kind: str, l1: int, l2: int) -> str | None:
        return "rule_exceeds_net" if kind == "rate" and l1 + l2 > BP else None

    def split(self, seller: str, quantity: int, net: int, self_purchase: bool
              ) -> dict[int, tuple[str, int]]:
        kind, l1, l2 = self.rule
        raw = ([(net * bp + BP // 2) // BP for bp in (l1, l2)] if kind == "rate"
               else [fixed * quantity for fixed in (l1, l2)])
        first = min(raw[0], net)
        amounts = {1: first, 2: min(raw[1], net - first)}
        earners = {1: seller, 2: self.uplines[seller]}
        accrued = {}
        for level, who in earners.items():
            forfeited = who is None or self.status[who] != "active" or (
                level == 1 and self_purchase)  # self-purchase commission is off
            if not forfeited and amounts[level] > 0:
                accrued[level] = (who, amounts[level])
        return accrued

    def move(self, who: str, source: str, target: str | None, amount: int) -> None:
        self.wallets[who][source] -= amount
        if target:
            self.wallets[who][target] += amount

    def mature(self, line: LineModel) -> None:
        for level, (who, amount) in line.accrued.items():
            self.move(who, "pending", "available", amount - line.reversed[level])
        line.matured = True

    def reverse(self, line: LineModel, total: int) -> None:
        source = "available" if line.matured else "pending"
        for level, (who, amount) in line.accrued.items():
            delta = half_up(amount, total, line.net) - line.reversed[level]
            self.move(who, source, None, delta)
            line.reversed[level] += delta
        line.refunded = total

    def withdrawal_refusal(self, who: str, amount: int) -> str | None:
        if self.status[who] != "active":
            return "invalid_transition"
        if amount < MIN_WITHDRAWAL:
            return "below_minimum"
        if amount > self.wallets[who]["available"]:  # also refuses a negative balance
            return "insufficient_balance"
        return None


def make_machine(url: str) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            wipe(url)
            self.app = Fenxiao(Settings(database_url=url, four_eyes_min_minor=FOUR_EYES_MIN))
            self.runner = ProjectionRunner(self.app, [LedgerProjection()], batch_size=50)
            self.model = Model()
            for n, distributor_id in enumerate(IDS):
                referrer = IDS[n - 1] if n else None
                code = self.app.distributor(referrer).referral_code if referrer else None
                self.run(lambda: self.app.apply_distributor(
                    distributor_id, f"1380000{n:04d}", code, distributor_id))
                self.run(lambda: self.app.approve_distributor(distributor_id))
                self.model.uplines[distributor_id] = referrer

        def teardown(self) -> None:
            if hasattr(self, "app"):
                self.app.close()

        def run(self, command, refused: str | None = None,
                actor: str = "system") -> dict | None:
            """Run `command` as `actor`; `refused` is the code the model predicts (None:
            accepted)."""
            before = self.app.last_position()
            try:
                body = self.app.execute(command, context=CommandContext(actor=actor)).body
            except DomainError as error:
                assert error.code == refused, f"refused ({error.code}); model: {refused}"
                assert self.app.last_position() == before  # refused: nothing recorded
                return None
            assert refused is None, f"accepted; the model expected {refused}"
            return body

        @rule(who=st.sampled_from(IDS), suspend=st.booleans())
        def suspend_or_reinstate(self, who: str, suspend: bool) -> None:
            needs, becomes = ("active", "suspended") if suspend else ("suspended", "active")
            action = self.app.suspend_distributor if suspend else self.app.reinstate_distributor
            refused = None if self.model.status[who] == needs else "invalid_transition"
            if self.run(lambda: action(who, "stateful test"), refused):
                self.model.status[who] = becomes

        @rule(who=st.sampled_from(IDS), upline=st.sampled_from(IDS))
        def reparent(self, who: str, upline: str) -> None:
            refused = self.model.reparent_refusal(who, upline)
            if self.run(lambda: self.app.change_upline(who, upline, "stateful test"),
                        refused):
                self.model.uplines[who] = upline

        @rule(kind=st.sampled_from(["rate", "fixed"]), l1=st.integers(0, 6000),
              l2=st.integers(0, 6000))
        def set_rule(self, kind: str, l1: int, l2: int) -> None:
            refused = self.model.rule_refusal(kind, l1, l2)
            if self.run(lambda: self.app.set_commission_rule(None, kind, l1, l2), refused):
                self.model.rule = (kind, l1, l2)

        @rule(seller=st.sampled_from(IDS), quantity=st.integers(1, 5),
              net=st.integers(1, 100_000), self_purchase=st.booleans())
        def accrue(self, seller: str, quantity: int, net: int, self_purchase: bool) -> None:
            key = (f"O{len(self.model.lines)}", 1)
            body = self.run(lambda: self.app.accrue_commission(
                key[0], key[1], "TEA", quantity, net, seller, self_purchase))
            expected = self.model.split(seller, quantity, net, self_purchase)
            assert {a["level"]: (a["distributor_id"], a["amount_minor"])
                    for a in body["accruals"]} == expected
            self.model.lines[key] = LineModel(net=net, accrued=expected)
            for who, amount in expected.values():
                self.model.wallets[who]["pending"] += amount

        @rule(data=st.data())
        def mature(self, data: st.DataObject) -> None:
            if not self.model.lines:
                return
            key = data.draw(st.sampled_from(sorted(self.model.lines)))
            line = self.model.lines[key]
            refused = "invalid_transition" if line.matured else None
            if self.run(lambda: self.app.mature_commission(*key), refused):
                self.model.mature(line)

        @rule(data=st.data(), share=st.integers(1, 100))
        def refund(self, data: st.DataObject, share: int) -> None:
            if not self.model.lines:
                return
            key = data.draw(st.sampled_from(sorted(self.model.lines)))
            line = self.model.lines[key]
            total = min(line.net, line.refunded + line.net * share // 100 + 1)
            refused = "validation_error" if total <= line.refunded else None  # fully refunded
            if self.run(lambda: self.app.reverse_commission(*key, total), refused):
                self.model.reverse(line, total)

        @rule(who=st.sampled_from(IDS), amount=st.integers(50, 5000))
        def withdraw(self, who: str, amount: int) -> None:
            self._withdraw(who, amount)

        @rule(data=st.data(), share=st.integers(1, 120))
        def withdraw_a_share(self, data: st.DataObject, share: int) -> None:
            """Random amounts mostly overdraw: ask for a share of what the model says
            is available (over 100 %: just too much; a small share: below the minimum)."""
            funded = [d for d in IDS if self.model.wallets[d]["available"] > 0]
            if funded:
                who = data.draw(st.sampled_from(funded))
                self._withdraw(who, self.model.wallets[who]["available"] * share // 100)

        def _withdraw(self, who: str, amount: int) -> None:
            refused = self.model.withdrawal_refusal(who, amount)
            body = self.run(lambda: self.app.request_withdrawal(who, amount), refused)
            if body:
                self.model.withdrawals[body["withdrawal_id"]] = WithdrawalModel(who, amount)
                self.model.move(who, "available", "withdrawing", amount)

        @rule(data=st.data(), pay=st.booleans(), actor=st.sampled_from(APPROVERS))
        def decide(self, data: st.DataObject, pay: bool, actor: str) -> None:
            """Pay or refuse; above the threshold a payout takes two different people
            (the same one twice is refused), and either may refuse in between."""
            if not self.model.withdrawals:
                return
            w = data.draw(st.sampled_from(list(self.model.withdrawals)))  # ids are random
            withdrawal = self.model.withdrawals[w]
            undecided = withdrawal.status in ("requested", "awaiting_second_approval")
            refused = None if undecided else "invalid_transition"
            if not pay:
                if self.run(lambda: self.app.reject_withdrawal(w, "checked"), refused, actor):
                    withdrawal.status = "rejected"
                    self.model.move(withdrawal.who, "withdrawing", "available",
                                    withdrawal.amount)
                return
            if undecided and self.model.wallets[withdrawal.who]["available"] < 0:
                refused = "insufficient_balance"  # a clawback since: earned back first
            elif undecided and withdrawal.first_approver == actor:
                refused = "second_approver_required"
            body = self.run(lambda: self.app.approve_withdrawal(w, f"BANK-{w}"), refused, actor)
            if not body:
                return
            if withdrawal.status == "requested" and withdrawal.amount > FOUR_EYES_MIN:
                assert body["status"] == "awaiting_second_approval"
                withdrawal.status, withdrawal.first_approver = body["status"], actor
                return
            assert body["status"] == "paid"
            assert body["approvals"] == [a for a in (withdrawal.first_approver, actor) if a]
            withdrawal.status = "paid"
            self.model.move(withdrawal.who, "withdrawing", None, withdrawal.amount)

        @invariant()
        def wallets_hold_what_the_model_says(self) -> None:
            if not hasattr(self, "app"):
                return
            for who, expected in self.model.wallets.items():
                wallet = self.app.wallet(who)
                assert {"pending": wallet.pending, "available": wallet.available,
                        "withdrawing": wallet.withdrawing} == expected, who

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
                        assert getattr(row, bucket) == \
                            self.model.wallets[row.distributor_id][bucket]
                    assert row.withdrawing >= 0 and row.pending >= 0

    return LedgerMachine


def test_ledger_laws(database_url: str) -> None:
    machine = make_machine(database_url)
    machine.TestCase.settings = settings(
        settings.default, max_examples=max(10, settings.default.max_examples // 3),
        stateful_step_count=25)
    machine.TestCase().runTest()
