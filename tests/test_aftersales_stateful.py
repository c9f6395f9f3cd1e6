"""Random after-sales lives through the application, against an independent model.

A small shop with awkward prices (1, 333, 777, 1999 fen), a threshold promotion and a
coupon (so line nets are uneven), rules in basis points and fixed per unit, a two-level
network (D1 <- D2) and a lone distributor (D3); some orders attributed, one customer's
not. Orders are placed and paid, picked, packed, dispatched and delivered by carrier
events; after-sales cases of every type are requested on random lines and quantities
(too many too), approved or rejected, received (restocked or scrapped), refunded by
random partial amounts (too much too), compensated, shipped (an exchange's replacement,
a repair back) and closed; time passes with ticks that complete orders and mature
commission (so later refunds claw back what is available); the process managers run at
random moments (their lag is part of the test); distributors withdraw (so a clawback can
leave `available` negative, which then refuses withdrawals).

The model re-states DESIGN.md's rules in plain Python and asks the application nothing
it predicts: its own pricing (threshold tier, coupon, largest-remainder spread), its own
allocation, its own commission (half-up per line and level, capped at the net), its own
case rules (quantities taken by earlier cases, the return window, the refund caps and
their largest-remainder split over a case's lines) and its own reversal: for a line of
net N with level amount A refunded R in all, A × R / N rounded half-up has been reversed,
and all of A once R == N. Each refusal is predicted (the set of rules a command breaks:
the application must name one of them, and accept exactly when the set is empty), and a
refused command must leave the log untouched.

After every step: every line's refunds and compensations stay within what it was paid
and equal the model's; the journal balances and cash, sales, refunds, commission expense
and every wallet are the model's (in the wallets and in the earnings read model,
`reversed` included); the stock is the model's (on_hand >= 0, 0 <= reserved <= on_hand,
reservations exactly what unsent shipments hold, restocks counted); each line's
commission per level is the model's, and where the reversal policy has caught up it is
accrued − half_up(accrued × refunded / net), exactly 0 for a fully refunded line; nothing
is parked. At every tick the read models the tick reads agree with the model too: the
commission entries (each reversal with the refund behind it), the orders' refunded
totals and the cases.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable
from uuid import UUID

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)
from sqlalchemy import func, select

from commands import Fenxiao
from commands.settings import Settings
from commands.storage import parked_events
from commands.tick import tick
from domain.accruals import LineCommission
from domain.carriers import RateCard
from domain.errors import DomainError
from domain.ledger import Wallet
from domain.orders import Order
from domain.promotions import CouponTerms
from domain.stock import StockItem
from projections.aftersales import AfterSalesProjection
from projections.aftersales import cases as rm_cases
from projections.commissions import CommissionsProjection
from projections.commissions import commissions as rm_commissions
from projections.commissions import reversals as rm_reversals
from projections.ledger import LedgerProjection, balances, earnings
from projections.orders import OrdersProjection
from projections.orders import orders as rm_orders
from projections.policies import all_process_managers
from projections.runner import ProjectionRunner
from tests.conftest import wipe
from tests.test_ledger_stateful import WithdrawalModel

T0 = datetime(2026, 3, 2, 8, tzinfo=timezone.utc)
DAY = timedelta(days=1)
RETURN_WINDOW = 7 * DAY  # the default return window
FREEZE = 7 * DAY  # the default commission freeze
SHIPPING_FEE, FREE_SHIPPING_MIN = 800, 5000
MIN_WITHDRAWAL = 100  # the default
BP = 10_000

PRICES = {"P1": 1, "P333": 333, "P777": 777, "P1999": 1999}
SKUS = sorted(PRICES)
WAREHOUSES = {"W1": "east", "W2": "south"}
# P1999 is scarce: O1 takes all of it, so an exchange of it finds no replacement unless
# stock arrives or comes back.
INITIAL_STOCK = [("P333", "W1", 8), ("P333", "W2", 4), ("P1999", "W1", 2),
                 ("P1", "W2", 30), ("P777", "W1", 4)]
# Rules per SKU: a rate of a third-ish, a fixed amount per unit on two levels, a fixed
# amount as large as the price on level 1 (the cap at the net bites after a discount);
# P1999 is on the default rule (1000 / 500 bp).
RULES: dict[str | None, tuple[str, int, int]] = {
    None: ("rate", 1000, 500), "P333": ("rate", 3333, 1667), "P777": ("fixed", 70, 33),
    "P1": ("fixed", 1, 0)}
TIERS = [(2000, 137)]  # spend 20.00, 1.37 off: an odd discount spread over the lines
COUPON, COUPON_OFF = "C7", 211
# D1 <- D2 (level 2 on D2's sales goes to D1); D3 alone.
DISTRIBUTORS = {"D1": ("13800000001", None), "D2": ("13800000002", "D1"),
                "D3": ("13800000003", None)}
DIDS = sorted(DISTRIBUTORS)
# customer -> (phone, region, who it always buys through; None: nobody)
CUSTOMERS = {"C1": ("13900000001", "east", "D2"), "C2": ("13900000002", "south", "D3"),
             "C3": ("13900000003", "west", None)}
# The history every example starts from: O1 (D2's, two levels) delivered, a compensation
# of it paid, then O1 completed and its commission matured (so a compensation or repair
# of it, the cases a completed order still takes, acts on what is available); then O2
# (D3's, with the coupon) delivered and an exchange of it approved (its replacement
# finds as many in the customer's region as elsewhere), and O3 (D2's, with the coupon)
# paid and not sent yet.
FIRST = ("C1", [("P333", 3), ("P1999", 2), ("P1", 5)], None)
FIRST_COMPENSATION = 777  # of O1's P1999 line, paid before maturity
SECOND = ("C2", [("P333", 1), ("P777", 2)], COUPON)
SECOND_EXCHANGE = [("P333", 1)]
THIRD = ("C1", [("P333", 2), ("P1", 3)], COUPON)
MAX_ORDERS = 7

TYPES = ("refund_only", "return_refund", "exchange", "repair", "compensation")
RETURNS = ("return_refund", "exchange", "repair")  # goods come back
TAKES_GOODS = ("refund_only", "return_refund", "exchange")  # quantities taken for good
AFTER_WINDOW = ("repair", "compensation")
# Cases that can no longer move money or goods; any other holds its order's completion.
SETTLED = ("refunded", "compensated", "rejected", "exchanged", "repaired", "closed")
CLOSABLE = ("refunded", "compensated", "rejected", "exchanged", "repaired")
LADDER = ["created", "picked", "packed", "dispatched", "in_transit", "out_for_delivery",
          "delivered"]
RANK = {status: rank for rank, status in enumerate(LADDER)}


def half_up(amount: int, numerator: int, denominator: int) -> int:
    return (2 * amount * numerator + denominator) // (2 * denominator)


def spread(amounts: list[int], total: int) -> list[int]:
    """`total` over `amounts` in proportion, largest remainder (ties: earlier first)."""
    whole = sum(amounts)
    if whole == 0 or total == 0:
        return [0] * len(amounts)
    parts = [total * a // whole for a in amounts]
    order = sorted(range(len(amounts)), key=lambda i: (-(total * amounts[i] % whole), i))
    for i in order[:total - sum(parts)]:
        parts[i] += 1
    return parts


@dataclass
class LineModel:
    line_no: int
    sku: str
    quantity: int
    net: int
    allocations: list[list[Any]]  # [[warehouse, quantity]], in order
    commission: dict[int, tuple[str, int]]  # level -> (distributor, amount), at payment
    refunded: int = 0
    compensated: int = 0
    held_back: int = 0  # refunded only before dispatch: never sent
    cancelled: bool = False  # refunded in full by the order's cancellation
    accrued: bool = False  # the accrual policy has run
    matured: bool = False
    reversed: dict[int, int] = field(default_factory=dict)
    reversed_for: int = 0  # the refunded total the reversal policy has reached
    # (refunded total, refund reference) of each refund the reversal policy has yet to see
    waiting: list[tuple[int, str | None]] = field(default_factory=list)
    # (level, amount, clawback, refunded total, reference) per reversal, in order
    reversals: list[tuple[int, int, bool, int, str | None]] = field(default_factory=list)


@dataclass
class ShipmentModel:
    source: str  # order, exchange, repair
    source_id: str
    warehouse: str
    lines: dict[str, int]
    status: str = "created"  # created ... delivered, or cancelled
    shipment_id: str | None = None
    carrier: str | None = None
    tracking: str | None = None

    @property
    def sent(self) -> bool:
        return self.status != "cancelled" and RANK[self.status] >= RANK["dispatched"]

    @property
    def holds_stock(self) -> bool:
        return self.source != "repair" and not self.sent and self.status != "cancelled"


@dataclass
class OrderModel:
    order_id: str
    customer: str
    distributor: str | None
    lines: list[LineModel]
    total: int
    status: str = "fulfilling"
    delivered_at: datetime | None = None
    completed_at: datetime | None = None
    shipping_refunded: int = 0
    cases: dict[str, tuple[str, dict[str, int]]] = field(default_factory=dict)

    @property
    def region(self) -> str:
        return CUSTOMERS[self.customer][1]

    def line(self, sku: str) -> LineModel | None:
        return next((x for x in self.lines if x.sku == sku), None)


@dataclass
class CaseModel:
    case_id: str
    order_id: str
    type: str
    lines: list[tuple[str, int]]
    amount: int | None
    status: str = "requested"
    refunded: int = 0
    warehouse: str | None = None


class Model:
    """What the rules say, kept without asking the application."""

    def __init__(self, compensation_reverses: bool) -> None:
        self.compensation_reverses = compensation_reverses
        self.now = T0
        self.levels: dict[tuple[str, str], list[int]] = {}  # (sku, w) -> [on_hand, reserved]
        self.orders: dict[str, OrderModel] = {}
        self.shipments: list[ShipmentModel] = []
        self.cases: dict[str, CaseModel] = {}
        self.withdrawals: dict[str, WithdrawalModel] = {}
        self.wallets = {d: {"pending": 0, "available": 0, "withdrawing": 0} for d in DIDS}
        self.paid = self.refunds = self.paid_out = self.expense = self.earned = 0
        self.reversed = {d: 0 for d in DIDS}

    # -- stock ----------------------------------------------------------------------

    def available(self, sku: str, w: str) -> int:
        on_hand, reserved = self.levels.get((sku, w), (0, 0))
        return on_hand - reserved

    def receive(self, sku: str, w: str, quantity: int) -> None:
        self.levels.setdefault((sku, w), [0, 0])[0] += quantity

    def plan(self, sku: str, quantity: int, region: str) -> tuple[list[list[Any]], int]:
        """The customer's region first, then most available, then warehouse id; split."""
        candidates = sorted(((w, self.available(s, w)) for s, w in self.levels if s == sku),
                            key=lambda c: (WAREHOUSES[c[0]] != region, -c[1], c[0]))
        picks, wanted = [], quantity
        for w, available in candidates:
            if wanted and available > 0:
                take = min(wanted, available)
                picks.append([w, take])
                wanted -= take
        return picks, wanted

    # -- orders -----------------------------------------------------------------------

    def price(self, lines: list[tuple[str, int]], coupon: str | None) -> tuple[list[int], int]:
        """Each line's net, and the shipping fee."""
        grosses = [PRICES[sku] * quantity for sku, quantity in lines]
        subtotal = sum(grosses)
        tier = max((off for spend, off in TIERS if spend <= subtotal), default=0)
        discounts = spread(grosses, min(tier, subtotal))
        if coupon is not None:
            left = [g - d for g, d in zip(grosses, discounts)]
            value = min(COUPON_OFF, subtotal, sum(left))
            discounts = [d + part for d, part in zip(discounts, spread(left, value))]
        nets = [g - d for g, d in zip(grosses, discounts)]
        return nets, 0 if sum(nets) >= FREE_SHIPPING_MIN else SHIPPING_FEE

    def commission(self, customer: str, sku: str, quantity: int, net: int
                   ) -> dict[int, tuple[str, int]]:
        """Level 1 to the seller, level 2 to its upline; rates half-up per line and
        level, fixed amounts per unit; level 1 capped at the net, level 2 at the rest."""
        seller = CUSTOMERS[customer][2]
        if seller is None or net <= 0:
            return {}
        kind, l1, l2 = RULES.get(sku, RULES[None])
        raw = ([half_up(net, bp, BP) for bp in (l1, l2)] if kind == "rate"
               else [fixed * quantity for fixed in (l1, l2)])
        first = min(raw[0], net)
        second = min(raw[1], net - first)
        upline = DISTRIBUTORS[seller][1]
        earned = {}
        if first > 0:
            earned[1] = (seller, first)
        if upline is not None and second > 0:
            earned[2] = (upline, second)
        return earned

    def place_and_pay(self, order_id: str, customer: str, lines: list[tuple[str, int]],
                      coupon: str | None) -> OrderModel | None:
        """The order placed and paid (its shipments created), or None: refused for want
        of stock (nothing reserved)."""
        plans = [self.plan(sku, quantity, CUSTOMERS[customer][1]) for sku, quantity in lines]
        if any(uncovered for _, uncovered in plans):
            return None
        nets, shipping = self.price(lines, coupon)
        o = OrderModel(order_id, customer, CUSTOMERS[customer][2], [
            LineModel(n, sku, quantity, net, picks,
                      self.commission(customer, sku, quantity, net))
            for n, ((sku, quantity), net, (picks, _))
            in enumerate(zip(lines, nets, plans), start=1)],
            total=sum(nets) + shipping)
        for line in o.lines:
            for w, quantity in line.allocations:
                self.levels[(line.sku, w)][1] += quantity
        self.orders[order_id] = o
        self.paid += o.total
        by_warehouse: dict[str, dict[str, int]] = {}
        for line in o.lines:
            for w, quantity in line.allocations:
                by_warehouse.setdefault(w, {})[line.sku] = \
                    by_warehouse.setdefault(w, {}).get(line.sku, 0) + quantity
        for w, goods in sorted(by_warehouse.items()):
            self.shipments.append(ShipmentModel("order", order_id, w, goods))
        return o

    def order_shipments(self, o: OrderModel) -> list[ShipmentModel]:
        return [s for s in self.shipments if s.source == "order" and s.source_id == o.order_id]

    def case_shipments(self, case: CaseModel) -> list[ShipmentModel]:
        return [s for s in self.shipments
                if s.source in ("exchange", "repair") and s.source_id == case.case_id]

    def dispatched(self, o: OrderModel) -> bool:
        return any(s.sent for s in self.order_shipments(o))

    def dispatch(self, s: ShipmentModel, carrier: str, tracking: str) -> None:
        s.status, s.carrier, s.tracking = "dispatched", carrier, tracking
        if s.source != "repair":
            for sku, quantity in s.lines.items():
                level = self.levels[(sku, s.warehouse)]
                level[0] -= quantity
                level[1] -= quantity
        if s.source == "order":
            o = self.orders[s.source_id]
            if o.status == "fulfilling" and all(
                    x.sent or x.status == "cancelled" for x in self.order_shipments(o)):
                o.status = "shipped"

    def deliver(self, s: ShipmentModel) -> None:
        s.status = "delivered"
        if s.source == "order":
            o = self.orders[s.source_id]
            if all(x.status in ("delivered", "cancelled") for x in self.order_shipments(o)):
                o.status, o.delivered_at = "delivered", self.now

    # -- cases --------------------------------------------------------------------------

    def eligible(self, o: OrderModel, sku: str, type: str) -> int:
        """What a new case of `type` may name of `sku`: what was delivered (or, before
        any dispatch, for a refund only, and always for a compensation, what was
        ordered), net of what earlier cases took. Goods a refund only held back before
        dispatch were never delivered: they count as taken, not as missing twice."""
        line = o.line(sku)
        if line is None:
            return 0
        if type == "compensation":
            return line.quantity
        delivered = sum(s.lines.get(sku, 0) for s in self.order_shipments(o)
                        if s.status == "delivered")
        if type == "repair":  # takes nothing for good: a repaired item may break again
            return delivered
        taken = sum(lines.get(sku, 0) for t, lines in o.cases.values() if t in TAKES_GOODS)
        if type == "refund_only" and not self.dispatched(o):
            return max(line.quantity - taken, 0)
        return max(delivered + line.held_back - taken, 0)

    def request_refusals(self, o: OrderModel, type: str, lines: list[tuple[str, int]],
                         amount: int | None) -> set[str]:
        refusals = set()
        if any(o.line(sku) is None for sku, _ in lines):
            refusals.add("exceeds_delivered")
        elif type == "compensation" and amount > sum(
                -(-o.line(sku).net * q // o.line(sku).quantity) for sku, q in lines):
            refusals.add("refund_exceeds_paid")  # beyond what its goods' refund may pay
        if o.status == "cancelled":
            refusals.add("invalid_transition")
        if type not in AFTER_WINDOW and (o.status == "completed" or (
                o.delivered_at is not None and self.now >= o.delivered_at + RETURN_WINDOW)):
            refusals.add("return_window_closed")
        if any(quantity > self.eligible(o, sku, type) for sku, quantity in lines):
            refusals.add("exceeds_delivered")
        return refusals

    @staticmethod
    def left(line: LineModel) -> int:
        """What is left of a line's payment to pay back."""
        return line.net - line.refunded - line.compensated

    def caps(self, case: CaseModel) -> list[int]:
        """What each case line's quantity was paid, rounded up."""
        o = self.orders[case.order_id]
        return [-(-o.line(sku).net * quantity // o.line(sku).quantity)
                for sku, quantity in case.lines]

    def stuck(self, case: CaseModel) -> bool:
        """An approved refund only or compensation that no refund can ever pay (what its
        lines were paid, or have left, is less than it needs): it cannot be closed
        either, so the natural steps leave it alone."""
        return case.status == "approved" and case.type in ("refund_only", "compensation") \
            and bool(self.refund_refusals(case, case.amount or 1))

    def ship_refusals(self, case: CaseModel) -> set[str]:
        if case.status != "received" or case.type not in ("exchange", "repair"):
            return {"invalid_transition"}
        if case.type == "exchange":
            region = self.orders[case.order_id].region
            if any(self.plan(sku, quantity, region)[1] for sku, quantity in case.lines):
                return {"insufficient_stock"}
        return set()

    def ship(self, case: CaseModel) -> None:
        """An exchange's replacement, reserved like an order's, one shipment per
        warehouse; a repair's goods back from where they were received (no stock)."""
        if case.type == "repair":
            self.shipments.append(ShipmentModel("repair", case.case_id, case.warehouse,
                                                dict(case.lines)))
            case.status = "repaired"
            return
        region = self.orders[case.order_id].region
        goods: dict[str, dict[str, int]] = {}
        for sku, quantity in case.lines:
            picks, _ = self.plan(sku, quantity, region)
            for w, q in picks:
                self.levels[(sku, w)][1] += q
                goods.setdefault(w, {})[sku] = q
        for w, lines in sorted(goods.items()):
            self.shipments.append(ShipmentModel("exchange", case.case_id, w, lines))
        case.status = "exchanged"

    def refund_refusals(self, case: CaseModel, amount: int) -> set[str]:
        o = self.orders[case.order_id]
        refusals = set()
        if case.type == "compensation" and amount != case.amount:
            refusals.add("amount_mismatch")
        caps = self.caps(case)
        if amount == 0 and sum(caps) > 0:  # zero refunds only goods paid nothing
            refusals.add("validation_error")
        if amount > sum(caps):
            refusals.add("refund_exceeds_paid")
        else:
            for (sku, _), share in zip(case.lines, spread(caps, amount)):
                line = o.line(sku)
                if share and o.status == "cancelled":
                    refusals.add("invalid_transition")
                if share > self.left(line):
                    refusals.add("refund_exceeds_paid")
        refundable = {"compensation": ("approved",), "refund_only": ("approved",),
                      "return_refund": ("received",), "exchange": ("received",)}
        if case.status not in refundable.get(case.type, ()):
            refusals.add("invalid_transition")
        if case.type == "refund_only" and not self.dispatched(o) and any(
                quantity > sum(q for _, q in o.line(sku).allocations)
                for sku, quantity in case.lines):
            refusals.add("invalid_transition")
        return refusals

    def refund(self, case: CaseModel, amount: int, reference: str) -> None:
        o = self.orders[case.order_id]
        as_refund = case.type != "compensation" or self.compensation_reverses
        for (sku, _), share in zip(case.lines, spread(self.caps(case), amount)):
            line = o.line(sku)
            if share and as_refund:
                line.refunded += share
                line.waiting.append((line.refunded, reference))
            elif share:
                line.compensated += share
        case.refunded = amount
        case.status = "compensated" if case.type == "compensation" else "refunded"
        self.refunds += amount
        if case.type == "refund_only" and not self.dispatched(o):
            self.hold_back(o, case)
            if not any(line.allocations for line in o.lines):
                self.cancel(o)

    def cancel(self, o: OrderModel) -> None:
        """Every unit refunded before dispatch: nothing is left to send, so the order is
        cancelled, and what is left of its payment (shipping too) refunded; the
        cancellation reverses all the commission of each line it refunds."""
        o.shipping_refunded = o.total - sum(line.net for line in o.lines)
        self.refunds += o.shipping_refunded
        for line in o.lines:
            rest = self.left(line)
            if rest > 0:
                line.refunded += rest
                line.cancelled = True
                line.waiting.append((line.net, None))  # no refund reference: a cancellation
                self.refunds += rest
        o.status = "cancelled"

    def hold_back(self, o: OrderModel, case: CaseModel) -> None:
        """A refund only before dispatch: the goods are not sent. Their reservation is
        released (latest allocations first); every unsent shipment of a warehouse that
        lost goods is cancelled and replaced by one of what is left there."""
        touched = set()
        for sku, quantity in case.lines:
            line = o.line(sku)
            line.held_back += quantity
            for a in reversed(line.allocations):
                take = min(quantity, a[1])
                if take:
                    a[1] -= take
                    quantity -= take
                    self.levels[(sku, a[0])][1] -= take
                    touched.add(a[0])
            line.allocations = [a for a in line.allocations if a[1]]
        for s in self.order_shipments(o):
            if s.warehouse in touched and s.status != "cancelled":
                s.status = "cancelled"
        for w in sorted(touched):
            goods = {line.sku: sum(q for x, q in line.allocations if x == w)
                     for line in o.lines}
            goods = {sku: q for sku, q in goods.items() if q}
            if goods:
                self.shipments.append(ShipmentModel("order", o.order_id, w, goods))

    # -- the process managers, the time rules, the money ---------------------------------

    def move(self, who: str, source: str, target: str | None, amount: int) -> None:
        self.wallets[who][source] -= amount
        if target is not None:
            self.wallets[who][target] += amount

    def run_policies(self) -> None:
        """Accrual of paid orders' commission, then each refund's reversal, in order."""
        for o in self.orders.values():
            for line in o.lines:
                if o.distributor is not None and line.net > 0 and not line.accrued:
                    line.accrued = True
                    line.reversed = {level: 0 for level in line.commission}
                    for who, amount in line.commission.values():
                        self.wallets[who]["pending"] += amount
                        self.expense += amount
                        self.earned += amount
                for total, reference in line.waiting:
                    if line.accrued and total > line.reversed_for:
                        self.reverse(line, total, reference)
                line.waiting.clear()

    def reverse(self, line: LineModel, total: int, reference: str | None) -> None:
        """Each level's half-up share of `total` refunded of the net, less what earlier
        refunds reversed: all of it, once the whole net is refunded."""
        for level, (who, amount) in sorted(line.commission.items()):
            target = amount if total == line.net else half_up(amount, total, line.net)
            delta = target - line.reversed[level]
            if delta:
                self.move(who, "available" if line.matured else "pending", None, delta)
                self.expense -= delta
                self.reversed[who] += delta
                line.reversed[level] += delta
                line.reversals.append((level, delta, line.matured, total, reference))
        line.reversed_for = total

    def tick(self) -> dict[str, int]:
        """Completion of orders delivered a return window ago with no after-sales case
        still open (one could still move money: it waits); maturity of the lines of
        orders completed a freeze ago that still have some commission pending."""
        maturing = [line for o in self.orders.values()
                    if o.status == "completed" and o.completed_at + FREEZE <= self.now
                    for line in o.lines
                    if line.accrued and not line.matured and any(
                        line.reversed[level] < amount
                        for level, (_, amount) in line.commission.items())]
        completing = [o for o in self.orders.values()
                      if o.status == "delivered" and
                      o.delivered_at + RETURN_WINDOW <= self.now and
                      not any(c.order_id == o.order_id and c.status not in SETTLED
                              for c in self.cases.values())]
        for o in completing:
            o.status, o.completed_at = "completed", self.now
        for line in maturing:
            for level, (who, amount) in line.commission.items():
                self.move(who, "pending", "available", amount - line.reversed[level])
            line.matured = True
        return {"completed": len(completing), "matured": len(maturing)}

    def withdrawal_refusals(self, who: str, amount: int) -> set[str]:
        if amount < MIN_WITHDRAWAL:
            return {"below_minimum"}
        if amount > self.wallets[who]["available"]:  # a negative balance refuses all
            return {"insufficient_balance"}
        return set()


def make_machine(url: str, compensation_reverses: bool) -> type[RuleBasedStateMachine]:
    class AfterSalesMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            wipe(url)
            self.model = Model(compensation_reverses)
            self.app = Fenxiao(Settings(
                database_url=url, shipping_fee_minor=SHIPPING_FEE,
                free_shipping_min_minor=FREE_SHIPPING_MIN, rate_limit=None,
                auth_failure_limit=None,
                compensation_reverses_commission=compensation_reverses,
                four_eyes_min_minor=10**12))  # one approver: four eyes has its own tests
            self.app.clock = lambda: self.model.now
            self.projections = [CommissionsProjection(), LedgerProjection(),
                                OrdersProjection(), AfterSalesProjection()]
            self.runner = ProjectionRunner(self.app, self.projections,
                                           process_managers=all_process_managers())
            self.counter = 0
            self.cache: dict[UUID, Any] = {}
            self.caught_up_to: dict[str, int] = {}
            app = self.app
            for w, region in WAREHOUSES.items():
                self.run(lambda: app.open_warehouse(w, w, region))
            for sku, price in PRICES.items():
                self.run(lambda: app.add_product(sku, sku, "", price))
            for sku, w, quantity in INITIAL_STOCK:
                self.run(lambda: app.receive_stock(sku, w, quantity, "PO-0"))
                self.model.receive(sku, w, quantity)
            codes: dict[str, str] = {}
            for d, (phone, referrer) in DISTRIBUTORS.items():
                self.run(lambda: app.apply_distributor(d, phone, codes.get(referrer), d))
                codes[d] = self.run(lambda: app.approve_distributor(d))["referral_code"]
            for sku, (kind, l1, l2) in RULES.items():
                if sku is not None:
                    self.run(lambda: app.set_commission_rule(sku, kind, l1, l2))
            self.run(lambda: app.issue_coupon(CouponTerms(code=COUPON,
                                                          amount_off_minor=COUPON_OFF)))
            self.run(lambda: app.add_threshold_promotion(TIERS, promotion_id="TP1"))
            self.run(lambda: app.add_carrier(RateCard("SF", "SF Express", 1000, 100, 2,
                                                      {"east": 1})))
            first = self.place(*FIRST)
            self.deliver(first)
            compensation = self.request(None, first, "compensation", [("P1999", 2)],
                                        FIRST_COMPENSATION)
            self.decide(compensation, True)
            self.refund(None, compensation, "all")  # (a compensation pays its amount)
            assert compensation.status == "compensated"
            self.policies()
            for _ in range(2):  # O1 completes, then its commission matures
                self.advance(RETURN_WINDOW, with_policies=False)
            assert first.status == "completed" and all(x.matured for x in first.lines)
            second = self.place(*SECOND)
            self.deliver(second)
            self.decide(self.request(None, second, "exchange", SECOND_EXCHANGE), True)
            self.place(*THIRD)
            self.policies()

        def teardown(self) -> None:
            if hasattr(self, "app"):
                self.app.close()

        def run(self, command: Callable[[], dict[str, Any]],
                refusals: Iterable[str] = ()) -> dict[str, Any] | None:
            """Run `command`: refused exactly when the model names a rule it breaks, then
            with one of those codes and with nothing recorded."""
            refusals = set(refusals)
            # (only a refusal the model predicted gets as far as comparing positions)
            before = self.app.last_position() if refusals else None
            try:
                body = self.app.execute(command).body
            except DomainError as error:
                assert error.code in refusals, \
                    f"refused ({error.code}: {error.message}); the model expected " \
                    f"{sorted(refusals) or 'acceptance'}"
                assert self.app.last_position() == before, "a refusal recorded something"
                return None
            assert not refusals, f"accepted; the model expected {sorted(refusals)}"
            return body

        def aggregates(self, ids: list[UUID]) -> list[Any]:
            """The aggregates `ids` as they stand now (None: no such one). Their state is a
            function of their version, so one is loaded again only when its log grew."""
            events = self.app.recorder.events_record_cls.__table__  # type: ignore
            with self.app.datastore.transaction(commit=False) as session:
                versions = dict(session.connection().execute(
                    select(events.c.originator_id, func.max(events.c.originator_version))
                    .where(events.c.originator_id.in_(ids))
                    .group_by(events.c.originator_id)).all())
            for i in ids:
                cached = self.cache.get(i)
                if i in versions and (cached is None or cached.version != versions[i]):
                    self.cache[i] = self.app.find(i)
            return [self.cache.get(i) if i in versions else None for i in ids]

        def catch_up(self, names: list[str]) -> None:
            """The read models `names`, up to the head of the log (those that no new
            event concerns are current already, whatever their tracking position says)."""
            events = self.app.recorder.events_record_cls.__table__  # type: ignore
            with self.app.engine.connect() as conn:
                head = conn.execute(select(func.max(events.c.id))).scalar()
                behind = [name for name in names if conn.execute(
                    select(events.c.id).where(
                        events.c.id > self.caught_up_to.get(name, 0),
                        events.c.topic.in_(self.runner.projections[name].topics()))
                    .limit(1)).first() is not None]
            self.runner.catch_up(behind)
            self.caught_up_to.update((name, head) for name in names)

        def fresh(self, prefix: str) -> str:
            self.counter += 1
            return f"{prefix}{self.counter}"

        def adopt_shipment_ids(self, o: OrderModel) -> None:
            """Name the model's new shipments of `o` by the ids the application gave them
            (one unsent shipment per warehouse at a time)."""
            known = {s.shipment_id for s in self.model.shipments}
            order = self.app.order(o.order_id)
            for s in self.model.order_shipments(o):
                if s.shipment_id is None:
                    [s.shipment_id] = [sid for sid, x in order.shipments.items()
                                       if sid not in known and
                                       x["warehouse_id"] == s.warehouse]

        # -- orders and their fulfilment --------------------------------------------------

        def place(self, customer: str, lines: list[tuple[str, int]],
                  coupon: str | None) -> OrderModel | None:
            """Place and pay an order (None: refused for want of stock)."""
            order_id = self.fresh("O")
            phone, region, seller = CUSTOMERS[customer]
            expected = self.model.place_and_pay(order_id, customer, lines, coupon)
            address = {"region": region, "city": "City", "line1": "1 Road"}
            body = self.run(lambda: self.app.place_order(
                customer, "Li Lei", phone, address, lines, order_id=order_id,
                coupon_code=coupon, distributor_id=seller),
                () if expected else {"insufficient_stock"})
            if expected is None:
                return None
            assert [x["net"] for x in body["lines"]] == [x.net for x in expected.lines]
            assert body["total"] == expected.total
            paid = self.run(lambda: self.app.pay_order(order_id, expected.total,
                                                       f"PAY-{order_id}"))
            assert paid["status"] == "fulfilling"
            self.adopt_shipment_ids(expected)
            return expected

        @precondition(lambda self: len(self.model.orders) < MAX_ORDERS)
        @rule(customer=st.sampled_from(sorted(CUSTOMERS)),
              lines=st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 3)),
                             min_size=1, max_size=3, unique_by=lambda line: line[0]),
              coupon=st.sampled_from([None, COUPON]))
        def place_order(self, customer: str, lines: list[tuple[str, int]],
                        coupon: str | None) -> None:
            self.place(customer, lines, coupon)

        @rule(sku=st.sampled_from(SKUS), w=st.sampled_from(sorted(WAREHOUSES)),
              quantity=st.integers(1, 3))
        def receive_stock(self, sku: str, w: str, quantity: int) -> None:
            self.run(lambda: self.app.receive_stock(sku, w, quantity, "PO"))
            self.model.receive(sku, w, quantity)

        def deliver(self, o: OrderModel) -> None:
            for s in self.model.order_shipments(o):
                self.warehouse(s, "all")
                self.carrier(s, "delivered")

        def moving(self) -> list[ShipmentModel]:
            return [s for s in self.model.shipments
                    if s.status not in ("cancelled", "delivered")]

        @precondition(lambda self: self.moving())
        @rule(data=st.data(), action=st.sampled_from(
            ["next", "next", "next", "pick", "pack", "dispatch", "in_transit"]))
        def shipment_step(self, data: st.DataObject, action: str) -> None:
            """A shipment (an order's, an exchange's, a repair's) a natural step on: sent
            through the warehouse, or delivered by the carrier; or a step out of turn."""
            s = data.draw(st.sampled_from(self.moving()))
            if action == "in_transit" and s.sent:
                self.carrier(s, "in_transit")
            elif action == "next" and s.sent:
                self.carrier(s, "delivered")
            else:
                self.warehouse(s, "all" if action in ("next", "in_transit") else action)

        def warehouse(self, s: ShipmentModel, action: str) -> None:
            """`action`: pick, pack, dispatch, or all (the steps left up to dispatch)."""
            steps = ["pick", "pack", "dispatch"][RANK[s.status]:] if action == "all" \
                else [action]
            for step in steps:
                needs = {"pick": "created", "pack": "picked", "dispatch": "packed"}[step]
                refusals = () if s.status == needs else {"invalid_transition"}
                command = {"pick": self.app.pick_shipment, "pack": self.app.pack_shipment,
                           "dispatch": self.app.dispatch_shipment}[step]
                body = self.run(lambda: command(s.shipment_id), refusals)
                if body is None:
                    return
                if step == "dispatch":
                    self.model.dispatch(s, body["carrier"], body["tracking_number"])
                else:
                    s.status = "picked" if step == "pick" else "packed"
                assert body["status"] == s.status

        def carrier(self, s: ShipmentModel, status: str) -> None:
            applied = RANK[status] > RANK[s.status]
            body = self.run(lambda: self.app.record_carrier_event(
                s.carrier, self.fresh("E"), s.tracking, status, self.model.now))
            assert body["result"] == ("applied" if applied else "late")
            if applied and status == "delivered":
                self.model.deliver(s)
            elif applied:
                s.status = status

        # -- after-sales ------------------------------------------------------------------

        def fitting_lines(self, data: st.DataObject, o: OrderModel, type: str
                          ) -> list[tuple[str, int]]:
            """One or two lines of `o` with quantities the model says `type` may take
            (a line nothing is left of gets one unit: refused)."""
            skus = [x.sku for x in o.lines]
            open_skus = [sku for sku in skus if self.model.eligible(o, sku, type)]
            chosen = data.draw(st.lists(st.sampled_from(open_skus or skus), min_size=1,
                                        max_size=2, unique=True))
            return [(sku, data.draw(st.one_of(  # often one unit: more cases per line
                st.just(1), st.integers(1, max(self.model.eligible(o, sku, type), 1)))))
                for sku in chosen]

        @precondition(lambda self: self.model.orders)
        @rule(data=st.data(), type=st.sampled_from(TYPES),
              how=st.sampled_from(["fits", "too_many", "foreign"]),
              amount=st.sampled_from(["some", "all", "one", "too_much"]))
        def request_case(self, data: st.DataObject, type: str, how: str, amount: str) -> None:
            """A case on a random order: lines that fit, one unit too many, or a SKU the
            order does not have; a compensation of a random amount, or too much."""
            o = self.model.orders[data.draw(st.sampled_from(sorted(self.model.orders)))]
            lines = self.fitting_lines(data, o, type)
            if how == "too_many":
                sku, _ = lines[-1]
                lines[-1] = (sku, self.model.eligible(o, sku, type) + 1)
            elif how == "foreign":
                lines.append((next((s for s in SKUS if o.line(s) is None), "NOPE"), 1))
            self.request(data, o, type, lines, amount)

        def request(self, data: st.DataObject | None, o: OrderModel, type: str,
                    lines: list[tuple[str, int]], amount: str | int = "some"
                    ) -> CaseModel | None:
            """The case requested (None: refused). `amount` (a compensation's): one, all
            (what its lines were paid), too_much, some (within what a refund of its
            quantities may pay), or a number."""
            known = [(sku, q) for sku, q in lines if o.line(sku) is not None]
            paid = sum(o.line(sku).net for sku, _ in known)
            caps = sum(-(-o.line(sku).net * q // o.line(sku).quantity) for sku, q in known)
            money = None
            if type == "compensation":  # some: within what a refund of them may pay
                money = amount if isinstance(amount, int) else {
                    "one": 1, "all": max(caps, 1), "too_much": max(paid, caps) + 1,
                    "some": data.draw(st.integers(1, max(caps, 1)))}[amount]
            refusals = self.model.request_refusals(o, type, lines, money)
            case_id = self.fresh("K")
            body = self.run(lambda: self.app.request_case(
                o.order_id, type, lines, "stateful test", money, case_id=case_id), refusals)
            if body is None:
                return None
            case = self.model.cases[case_id] = CaseModel(case_id, o.order_id, type, lines,
                                                         money)
            o.cases[case_id] = (type, dict(lines))
            assert body["status"] == "requested"
            return case

        @precondition(lambda self: self.model.cases)
        @rule(data=st.data(), action=st.sampled_from(
            ["approve", "reject", "receive", "refund", "ship", "close"]),
            w=st.sampled_from(["W1", "W2", "W9"]), restock=st.booleans(),
            how=st.sampled_from(["all", "part", "one", "left", "left_plus_one", "to_half",
                                 "too_much", "other_amount", "nothing"]))
        def case_out_of_turn(self, data: st.DataObject, action: str, w: str, restock: bool,
                             how: str) -> None:
            """Any step on any case, with any warehouse, restock flag or amount: mostly
            refused, each refusal with the code the model gives."""
            case = self.model.cases[data.draw(st.sampled_from(sorted(self.model.cases)))]
            if action in ("approve", "reject"):
                self.decide(case, action == "approve")
            elif action == "receive":
                self.receive(case, w, restock)
            elif action == "refund":
                self.refund(data, case, how)
            elif action == "ship":
                self.ship(case)
            else:
                self.close(case)

        def decide(self, case: CaseModel, approve: bool) -> None:
            refusals = () if case.status == "requested" else {"invalid_transition"}
            command = self.app.approve_case if approve else self.app.reject_case
            if self.run(lambda: command(case.case_id, "checked"), refusals):
                case.status = "approved" if approve else "rejected"
                if not approve:
                    self.model.orders[case.order_id].cases.pop(case.case_id)

        def receive(self, case: CaseModel, w: str, restock: bool) -> None:
            refusals = set()
            if case.status != "approved" or case.type not in RETURNS:
                refusals.add("invalid_transition")
            if w not in WAREHOUSES:
                refusals.add("not_found")
            if restock and case.type == "repair":
                refusals.add("not_restockable")
            if self.run(lambda: self.app.receive_case(case.case_id, w, restock), refusals):
                case.status, case.warehouse = "received", w
                if restock:
                    for sku, quantity in case.lines:
                        self.model.receive(sku, w, quantity)

        def refund(self, data: st.DataObject, case: CaseModel, how: str) -> None:
            """`how`: all (what the case's goods were paid), part, one (fen), left (what
            is left of that after earlier cases), left_plus_one, to_half (what brings the
            first line's refunds to half its net, where the rounding of an odd commission
            ties), too_much (one more than all), other_amount (a compensation's amount plus
            one), nothing (zero: refused unless the case's goods were paid nothing)."""
            o = self.model.orders[case.order_id]
            caps = sum(self.model.caps(case))
            left = sum(min(cap, self.model.left(o.line(sku)))
                       for cap, (sku, _) in zip(self.model.caps(case), case.lines))
            if case.type == "compensation":
                amount = case.amount + (how in ("other_amount", "too_much", "left_plus_one"))
            else:
                amount = {"all": max(caps, 1), "one": 1, "too_much": caps + 1,
                          "other_amount": max(caps, 1), "left": max(left, 1),
                          "left_plus_one": left + 1,
                          "to_half": max(o.line(case.lines[0][0]).net // 2 -
                                         o.line(case.lines[0][0]).refunded, 1),
                          "nothing": 0,
                          "part": data.draw(st.integers(1, max(caps, 1)))}[how]
            reference = self.fresh("R")
            refusals = self.model.refund_refusals(case, amount)
            body = self.run(lambda: self.app.refund_case(case.case_id, amount, reference),
                            refusals)
            if body is not None:
                self.model.refund(case, amount, reference)
                assert (body["status"], body["refunded"]) == (case.status, case.refunded)
                self.adopt_shipment_ids(self.model.orders[case.order_id])

        def ship(self, case: CaseModel) -> None:
            """An exchange's replacement (which may be out of stock) or a repair's goods
            sent."""
            body = self.run(lambda: self.app.ship_case(case.case_id),
                            self.model.ship_refusals(case))
            if body is not None:
                self.model.ship(case)
                assert body["status"] == case.status
                sent = self.model.case_shipments(case)
                assert sorted((x["warehouse_id"], sorted((y["sku"], y["quantity"])
                                                         for y in x["lines"]))
                              for x in body["shipments"]) == \
                    sorted((s.warehouse, sorted(s.lines.items())) for s in sent)
                for s in sent:
                    [s.shipment_id] = [x["shipment_id"] for x in body["shipments"]
                                       if x["warehouse_id"] == s.warehouse]

        def close(self, case: CaseModel) -> None:
            if self.run(lambda: self.app.close_case(case.case_id),
                        () if case.status in CLOSABLE else {"invalid_transition"}):
                case.status = "closed"

        # The natural step has four names, so that it is drawn often and cases live to
        # their end.

        @precondition(lambda self: self.model.orders)
        @rule(data=st.data())
        def case_step(self, data: st.DataObject) -> None:
            self.step_on(data)

        @precondition(lambda self: self.model.orders)
        @rule(data=st.data())
        def case_step_more(self, data: st.DataObject) -> None:
            self.step_on(data)

        @precondition(lambda self: self.model.orders)
        @rule(data=st.data())
        def case_step_further(self, data: st.DataObject) -> None:
            self.step_on(data)

        @precondition(lambda self: self.model.orders)
        @rule(data=st.data())
        def case_step_to_the_end(self, data: st.DataObject) -> None:
            self.step_on(data)

        def step_on(self, data: st.DataObject) -> None:
            """Take a random open case one to three natural steps on, or open a new one
            that fits."""
            live = sorted(c for c, case in self.model.cases.items()
                          if case.status != "closed" and not self.model.stuck(case))
            if not live or data.draw(st.integers(0, 3)) == 0:
                self.request_fitting(data)
                return
            case = self.model.cases[data.draw(st.sampled_from(live))]
            for _ in range(data.draw(st.integers(1, 3))):
                if case.status != "closed":
                    self.case_step_on(data, case)
            if data.draw(st.booleans()):
                self.policies()  # or not: the worker lags

        def request_fitting(self, data: st.DataObject) -> None:
            """A case the model expects to be accepted: often one more refund of a line
            refunded in part already (the rounding of a line's reversals is cumulative,
            and its last refund reverses exactly the rest)."""
            m = self.model
            again = [(o.order_id, line.sku, type) for o in m.orders.values()
                     for line in o.lines for type in ("refund_only", "return_refund")
                     if 0 < line.refunded and m.left(line) > 0 and
                     m.eligible(o, line.sku, type) and
                     not m.request_refusals(o, type, [(line.sku, 1)], None)]
            if again and data.draw(st.booleans()):
                order_id, sku, type = data.draw(st.sampled_from(sorted(again)))
                o = m.orders[order_id]
                quantity = data.draw(st.integers(1, m.eligible(o, sku, type)))
                self.request(data, o, type, [(sku, quantity)])
                return
            type = data.draw(st.sampled_from(TYPES + ("return_refund", "compensation")))
            open_orders = sorted(o.order_id for o in m.orders.values() if any(
                m.eligible(o, x.sku, type) for x in o.lines) and not m.request_refusals(
                    o, type, [(o.lines[0].sku, 0)], 0))
            o = m.orders[data.draw(st.sampled_from(open_orders or sorted(m.orders)))]
            self.request(data, o, type, self.fitting_lines(data, o, type))

        def case_step_on(self, data: st.DataObject, case: CaseModel) -> None:
            if case.status == "requested":
                self.decide(case, data.draw(st.sampled_from([True, True, True, False])))
            elif case.status == "approved" and case.type in RETURNS:
                w = data.draw(st.sampled_from(sorted(WAREHOUSES)))
                if case.type == "repair" and data.draw(st.booleans()):
                    self.receive(case, w, True)  # refused: a repair is not restocked
                self.receive(case, w, case.type != "repair" and data.draw(st.booleans()))
            elif case.status == "approved" or (case.status == "received" and
                                               case.type == "return_refund"):
                how = data.draw(st.sampled_from(["all", "part", "left", "to_half"]))
                if how == "left":
                    self.refund(data, case, "left_plus_one")  # mostly refused: too much
                self.refund(data, case, how)
            elif case.status == "received" and case.type == "exchange" and (
                    self.model.ship_refusals(case) or data.draw(st.integers(0, 3)) == 0):
                if self.model.ship_refusals(case):
                    self.ship(case)  # refused: no replacement in stock
                self.refund(data, case, data.draw(st.sampled_from(["part", "left"])))
            elif case.status == "received":
                self.ship(case)
            else:
                if case.status in ("refunded", "compensated") and data.draw(st.booleans()):
                    self.refund(data, case, "one")  # refused: a case pays once
                self.close(case)

        # -- the worker, time, withdrawals --------------------------------------------------

        def policies(self) -> None:
            """What the worker does between commands: the process managers."""
            self.runner.catch_up(["commission_policy", "backorder_policy"])
            before = self.app.last_position()
            self.runner.catch_up(["commission_policy", "backorder_policy"])
            assert self.app.last_position() == before  # a second pass finds nothing to do
            self.model.run_policies()

        @rule(delta=st.sampled_from([DAY, DAY, 2 * DAY, RETURN_WINDOW, None]),
              with_policies=st.booleans())
        def time_passes(self, delta: timedelta | None, with_policies: bool) -> None:
            """A day or a few, a return window, or (None) exactly up to the next deadline:
            an order's return window closing, else its commission's freeze ending."""
            if delta is None:
                m = self.model
                windows = [o.delivered_at + RETURN_WINDOW for o in m.orders.values()
                           if o.status == "delivered"]
                freezes = [o.completed_at + FREEZE for o in m.orders.values()
                           if o.status == "completed"]
                delta = min((d - m.now for d in windows or freezes if d > m.now), default=DAY)
            self.advance(delta, with_policies)
            closing = [(o, line.sku) for o in self.model.orders.values() for line in o.lines
                       if o.delivered_at is not None and
                       o.delivered_at + RETURN_WINDOW == self.model.now and
                       self.model.eligible(o, line.sku, "return_refund")]
            if closing:  # its window closed this instant: a return it could take is refused
                o, sku = closing[0]
                self.request(None, o, "return_refund", [(sku, 1)])

        def advance(self, delta: timedelta, with_policies: bool) -> None:
            """Time passes and the worker ticks (maybe after running the policies)."""
            self.model.now += delta
            if with_policies:
                self.policies()
            self.read_models_agree()  # and they are what the tick reads
            result = tick(self.app, self.model.now)
            expected = self.model.tick()
            assert {k: result[k] for k in expected} == expected

        @rule(who=st.sampled_from(DIDS), share=st.integers(0, 120))
        def withdraw(self, who: str, share: int) -> None:
            """A share of what the model says is available (over 100 %: too much; a
            negative or empty balance refuses any amount)."""
            available = self.model.wallets[who]["available"]
            amount = max(available * share // 100, 1) if available > 0 else MIN_WITHDRAWAL
            withdrawal_id = self.fresh("W")  # (not a random one: draws depend on ids)
            body = self.run(lambda: self.app.request_withdrawal(who, amount, withdrawal_id),
                            self.model.withdrawal_refusals(who, amount))
            if body is not None:
                self.model.withdrawals[withdrawal_id] = WithdrawalModel(who, amount)
                self.model.move(who, "available", "withdrawing", amount)

        @precondition(lambda self: self.model.withdrawals)
        @rule(data=st.data(), pay=st.booleans())
        def decide_withdrawal(self, data: st.DataObject, pay: bool) -> None:
            w = data.draw(st.sampled_from(sorted(self.model.withdrawals)))
            withdrawal = self.model.withdrawals[w]
            refusals = () if withdrawal.status == "requested" else {"invalid_transition"}
            decided = self.run(lambda: self.app.approve_withdrawal(w, f"BANK-{w}") if pay else
                               self.app.reject_withdrawal(w, "checked"), refusals)
            if decided:
                withdrawal.status = "paid" if pay else "rejected"
                self.model.move(withdrawal.who, "withdrawing", None if pay else "available",
                                withdrawal.amount)
                if pay:
                    self.model.paid_out += withdrawal.amount

        # -- invariants -----------------------------------------------------------------

        @invariant()
        def the_laws_hold(self) -> None:
            if not hasattr(self, "app"):
                return
            orders = list(self.model.orders.values())
            keys = [(sku, w) for sku in SKUS for w in WAREHOUSES]
            accrued = [(o, line) for o in orders for line in o.lines if line.accrued]
            found = iter(self.aggregates(
                [Order.create_id(o.order_id) for o in orders] +
                [StockItem.create_id(sku, w) for sku, w in keys] +
                [Wallet.create_id(d) for d in DIDS] +
                [LineCommission.create_id(o.order_id, line.line_no) for o, line in accrued]))
            self.lines_never_pay_back_more_than_they_were_paid(
                [(o, next(found)) for o in orders])
            self.stock_is_what_the_model_says([(key, next(found)) for key in keys])
            self.the_books_balance([(d, next(found)) for d in DIDS])
            self.commission_follows_the_refunds([(x, next(found)) for x in accrued])

        def lines_never_pay_back_more_than_they_were_paid(self, orders: list[Any]) -> None:
            for o, order in orders:
                assert order.status == o.status, o.order_id
                for x, line in zip(order.lines, o.lines):
                    assert x["refunded_minor"] + x["compensated_minor"] <= x["paid_minor"]
                    assert (x["sku"], x["paid_minor"], x["refunded_minor"],
                            x["compensated_minor"]) == \
                        (line.sku, line.net, line.refunded, line.compensated), o.order_id
                    assert [[a["warehouse_id"], a["quantity"]] for a in x["allocations"]] \
                        == line.allocations, o.order_id
                shipments = sorted((x["warehouse_id"], x["status"], sorted(
                    (y["sku"], y["quantity"]) for y in x["lines"]))
                    for x in order.shipments.values())
                on_order = {"picked": "created", "packed": "created",
                            "in_transit": "dispatched"}
                assert shipments == sorted(
                    (s.warehouse, on_order.get(s.status, s.status), sorted(s.lines.items()))
                    for s in self.model.order_shipments(o)), o.order_id

        def stock_is_what_the_model_says(self, items: list[Any]) -> None:
            """Every item the model's; reserved exactly what unsent shipments hold."""
            held: dict[tuple[str, str], int] = {}
            for s in self.model.shipments:
                if s.holds_stock:
                    for sku, quantity in s.lines.items():
                        held[(sku, s.warehouse)] = held.get((sku, s.warehouse), 0) + quantity
            for (sku, w), item in items:
                if (sku, w) not in self.model.levels:
                    assert item is None, (sku, w)
                    continue
                on_hand, reserved = self.model.levels[(sku, w)]
                assert item.on_hand >= 0 and 0 <= item.reserved <= item.on_hand
                assert (item.on_hand, item.reserved) == (on_hand, reserved), (sku, w)
                assert reserved == held.get((sku, w), 0), (sku, w)

        def the_books_balance(self, wallets: list[Any]) -> None:
            """The journal sums to 0; every account, wallet and earnings figure is the
            model's; no process manager's command was refused."""
            m = self.model
            self.catch_up(["ledger"])
            with self.app.engine.connect() as conn:
                books = {r.account: r.debit_minor - r.credit_minor
                         for r in conn.execute(select(balances))}
                rows = {r.distributor_id: r for r in conn.execute(select(earnings))}
                parked = conn.execute(select(func.count()).select_from(parked_events)).scalar()
            assert sum(books.values()) == 0
            expected = {"merchant:cash": m.paid - m.refunds - m.paid_out,
                        "merchant:sales": -m.paid, "merchant:refunds": m.refunds,
                        "merchant:commission_expense": m.expense}
            for d, wallet in m.wallets.items():
                for bucket, amount in wallet.items():
                    expected[f"distributor:{d}:{bucket}"] = -amount
            assert {k: v for k, v in books.items() if v} == \
                {k: v for k, v in expected.items() if v}
            for d, app_wallet in wallets:
                wallet = m.wallets[d]
                assert ({"pending": app_wallet.pending, "available": app_wallet.available,
                         "withdrawing": app_wallet.withdrawing} == wallet) \
                    if app_wallet else not any(wallet.values()), d
                row = rows.get(d)
                seen = {b: getattr(row, b) if row else 0
                        for b in ("pending", "available", "withdrawing", "reversed")}
                assert seen == {**wallet, "reversed": m.reversed[d]}, d
            assert sum(r.lifetime_earned for r in rows.values()) == m.earned
            assert sum(r.paid_out for r in rows.values()) == m.paid_out
            assert parked == 0, "a process manager's command was refused"

        def commission_follows_the_refunds(self, commissions: list[Any]) -> None:
            """Per line and level, what the model accrued and reversed; once the reversal
            policy has caught up, accrued − reversed is accrued − half_up(accrued ×
            refunded / net), and 0 for a line refunded in full."""
            for (o, line), commission in commissions:
                assert {a["level"]: (a["distributor_id"], a["amount_minor"])
                        for a in commission.accruals} == line.commission
                assert commission.reversed_by_level == line.reversed, \
                    (o.order_id, line.line_no)
                if line.waiting:
                    continue
                # (a cancellation reverses all the rest, whatever compensations paid)
                basis = line.net if line.cancelled else line.refunded
                for level, (_, amount) in line.commission.items():
                    left = amount - commission.reversed_by_level[level]
                    assert left == amount - half_up(amount, basis, line.net)
                    if basis == line.net:
                        assert left == 0

        def read_models_agree(self) -> None:
            """Commission entries (with each reversal and the refund behind it), the
            orders' refunded totals and the cases, as the model says."""
            m = self.model
            self.catch_up([p.name for p in self.projections])
            with self.app.engine.connect() as conn:
                entries = {(r.order_id, r.line_no, r.level): r
                           for r in conn.execute(select(rm_commissions))}
                steps: dict[str, list[tuple[Any, ...]]] = {}
                for r in conn.execute(select(rm_reversals).order_by(
                        rm_reversals.c.line_uuid, rm_reversals.c.version,
                        rm_reversals.c.level)):
                    steps.setdefault(r.line_uuid, []).append(
                        (r.level, r.amount_minor, r.source == "available",
                         r.refunded_total_minor, r.refund_reference))
                refunded = dict(conn.execute(select(rm_orders.c.order_id,
                                                    rm_orders.c.refunded_minor)).all())
                cases = {r.case_id: (r.status, r.refunded_minor)
                         for r in conn.execute(select(rm_cases))}
            assert len(entries) == sum(len(line.commission) for o in m.orders.values()
                                       for line in o.lines if line.accrued)
            for o in m.orders.values():
                assert refunded[o.order_id] == o.shipping_refunded + sum(
                    x.refunded + x.compensated for x in o.lines)
                for line in o.lines:
                    if line.accrued:
                        uuid = str(LineCommission.create_id(o.order_id, line.line_no))
                        assert steps.get(uuid, []) == line.reversals
                    for level, (who, amount) in line.commission.items():
                        entry = entries.get((o.order_id, line.line_no, level))
                        assert (entry is not None) == line.accrued
                        if entry is not None:
                            assert (entry.distributor_id, entry.amount_minor,
                                    entry.reversed_minor) == \
                                (who, amount, line.reversed[level]), (o.order_id, line.line_no)
            assert cases == {c.case_id: (c.status, c.refunded) for c in m.cases.values()}

    return AfterSalesMachine


@pytest.mark.parametrize("compensation_reverses", [False, True],
                         ids=["compensation_keeps_commission",
                              "compensation_reverses_commission"])
def test_refunds_returns_exchanges_and_commission_reversal(
        database_url: str, compensation_reverses: bool) -> None:
    machine = make_machine(database_url, compensation_reverses)
    examples = min(20, max(10, settings.default.max_examples // 3)) \
        if not compensation_reverses else min(8, max(4, settings.default.max_examples // 8))
    # A failure is reported as found, not shrunk: shrinking a machine this long takes
    # longer than the test timeout, and a timeout would hide the failure itself.
    machine.TestCase.settings = settings(
        settings.default, max_examples=examples, stateful_step_count=100,
        phases=[Phase.explicit, Phase.reuse, Phase.generate])
    machine.TestCase().runTest()
