"""Random order lifecycles through the application, against an independent model.

Orders are placed (with and without a distributor, named by id or by referral code or
found through the customer's binding; with and without a coupon; the threshold promotion
always in force; with and without backorders), paid (right and wrong amounts, reused and
blank references), cancelled, expired, picked, packed, dispatched, delivered by carrier
events (repeats and late ones too), completed and their commission matured by ticks with
an explicit `now`; stock is received; distributors are suspended, reinstated and
re-parented; commission rules change. The process managers (commission accrual and
reversal, backorder fills) run when a rule says so, so their lag is part of the test.

The model re-states DESIGN.md's rules in plain Python: its own pricing (threshold tier,
coupon, largest-remainder spread, free shipping), its own allocation (the customer's region
first, then most available, split), its own backorder queue (first come first served), its
own two-level commission (half-up per line and level, capped at the net, forfeits for a
suspended beneficiary or a self-purchase) and its own clock rules. Nothing it predicts is
asked of the code under test. It predicts every refusal's code, and a refused command must
leave the log untouched.

After every step: every stock item holds what the model says (on_hand >= 0,
0 <= reserved <= on_hand, and its reservations are exactly the open orders' undispatched
allocations); every order holds the model's lines, money, status and shipments, and its
total is the sum of its line nets plus shipping; the backorder queues and coupon
redemptions are the model's; the journal balances, and cash, sales, refunds and each
distributor's pending and available (in the wallets and in the earnings read model) are
what the model's paid, not-cancelled, accrued orders give; nothing is parked.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from typing import Any, Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)
from sqlalchemy import func, select

from tests.api_support import deterministic_ids, event_log

from commands import Fenxiao
from commands.settings import Settings
from commands.storage import parked_events
from commands.tick import mature_due, tick
from domain.carriers import RateCard
from domain.coupons import Coupon
from domain.errors import DomainError
from domain.fulfilment import Shipment
from domain.orders import BackorderQueue
from domain.promotions import CouponTerms
from domain.stock import StockItem
from projections import all_projections
from projections.ledger import earnings, journal
from projections.orders import orders as rm_orders
from projections.policies import all_process_managers
from projections.runner import ProjectionRunner
from tests.conftest import wipe

T0 = datetime(2026, 3, 2, 8, tzinfo=timezone.utc)
TIMEOUT = timedelta(seconds=1800)  # the default reservation timeout
RETURN_WINDOW = timedelta(days=7)  # the default return window
FREEZE = timedelta(days=7)  # the default commission freeze
# A×2 + B, B×5, A + B×3 are exactly the free-shipping minimum.
SHIPPING_FEE, FREE_SHIPPING_MIN = 800, 2500
BP = 10_000

PRICES = {"A": 1000, "B": 500, "C": 12_345}  # A = B×2, A×2 = B×4...: remainders tie
SKUS = sorted(PRICES)
WAREHOUSES = {"W1": "east", "W2": "east", "W3": "south"}
REGIONS = ["east", "south", "west"]  # nothing is stocked in the west
INITIAL_STOCK = [("A", "W1", 5), ("A", "W3", 3), ("B", "W2", 8), ("B", "W3", 2)]  # no C
# id -> (phone, referrer): D1 <- D2 <- D3 (D1 is beyond level 2 for D3's sales); D4 alone.
# D1 starts suspended (its level 2 on D2's sales is forfeited until it is reinstated).
DISTRIBUTORS = {"D1": ("13800000001", None), "D2": ("13800000002", "D1"),
                "D3": ("13800000003", "D2"), "D4": ("13800000004", None)}
DIDS = sorted(DISTRIBUTORS)
# C3 has D2's phone (written another way) and customer "D3" is D3: self-purchases.
CUSTOMERS = {"C1": "13900000001", "C2": "139 0000 0002", "C3": "+86 138-0000-0002",
             "D3": "13900000005"}
# (min spend, discount); odd discounts, so tied lines cannot share them evenly
TIERS = [(3000, 201), (10_000, 1201), (30_000, 4999)]


@dataclass(frozen=True)
class CouponModel:
    amount_off: int | None = None
    percent_bp: int | None = None
    min_spend: int = 0
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    total_limit: int | None = None
    per_customer: int | None = None
    skus: frozenset[str] | None = None


COUPONS = {
    "SAVE": CouponModel(amount_off=500, min_spend=2000, total_limit=2, per_customer=1),
    "PCT": CouponModel(percent_bp=1250, valid_to=T0 + timedelta(days=5),
                       skus=frozenset({"A", "C"})),
    "LATER": CouponModel(amount_off=1000, valid_from=T0 + timedelta(days=1),
                         skus=frozenset({"B"})),
}
# B's fixed 350 + 100 per unit of a 500 price: a discount on B makes the cap bite.
INITIAL_RULES: dict[str | None, tuple[str, int, int]] = {
    None: ("rate", 1000, 500), "A": ("rate", 3333, 1667), "B": ("fixed", 350, 100)}

LADDER = ["created", "picked", "packed", "dispatched", "in_transit", "out_for_delivery",
          "delivered"]
RANK = {status: rank for rank, status in enumerate(LADDER)}
ON_ORDER = {"created": "created", "picked": "created", "packed": "created",
            "dispatched": "dispatched", "in_transit": "dispatched",
            "out_for_delivery": "dispatched", "delivered": "delivered",
            "cancelled": "cancelled"}


# Baskets on the edges: exactly the free-shipping minimum (A×2 + B, B×5), exactly the
# first tier (A×3), equal grosses sharing an odd discount (A×2 and B×4, either order).
EDGE_BASKETS = [[("A", 2), ("B", 1)], [("B", 5)], [("A", 3)], [("A", 2), ("B", 4)],
                [("B", 4), ("A", 2)], [("A", 1), ("B", 2), ("C", 1)], [("C", 1)]]
ANY_BASKET = st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 6)), min_size=1,
                      max_size=3, unique_by=lambda line: line[0])
PLACING = dict(
    customer=st.sampled_from(sorted(CUSTOMERS)), region=st.sampled_from(REGIONS),
    lines=st.one_of(ANY_BASKET, ANY_BASKET, st.sampled_from(EDGE_BASKETS)),
    # by id, by referral code, by both (agreeing or not); None: the binding, if any
    named=st.sampled_from([None, None, None, None, ("id", "D1"), ("id", "D2"), ("id", "D3"),
                           ("id", "D4"), ("code", "D2"), ("code", "D3"),
                           ("both", "D3", "D3"), ("both", "D2", "D3")]),
    coupon=st.sampled_from([None, None, None, None, None, "SAVE", "SAVE", " save", "PCT",
                            "LATER", "NOPE"]),
    backorder=st.sampled_from([True, True, False]))


class Refusal(Exception):
    """The model's prediction that a command is refused, with the code it must carry."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def spread(amounts: list[int], discount: int) -> list[int]:
    """`discount` over `amounts` in proportion, largest remainder (ties: earlier first)."""
    total = sum(amounts)
    if discount == 0:
        return [0] * len(amounts)
    exact = [Fraction(discount * a, total) for a in amounts]
    parts = [int(e) for e in exact]  # floors: everything here is non-negative
    order = sorted(range(len(amounts)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:discount - sum(parts)]:
        parts[i] += 1
    return parts


def phone_key(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())[-11:]


@dataclass
class ShipmentModel:
    order_id: str
    warehouse: str
    lines: dict[str, int]
    status: str = "created"
    progress: int = 0
    carrier: str | None = None
    tracking: str | None = None
    events: dict[str, str] = field(default_factory=dict)  # event id -> result
    said: dict[str, str] = field(default_factory=dict)  # event id -> its status


@dataclass
class LineModel:
    sku: str
    quantity: int
    gross: int
    discount: int
    net: int
    allocations: list[tuple[str, int]]
    backordered: int


@dataclass
class OrderModel:
    order_id: str
    customer: str
    region: str
    placed_at: datetime
    lines: list[LineModel]
    shipping: int
    total: int
    distributor: str | None
    coupon: str | None
    status: str  # placed, backordered, fulfilling, shipped, delivered, completed, cancelled
    paid: bool = False
    refunded: int = 0
    commission: dict[int, dict[str, int]] = field(default_factory=dict)  # at payment
    accrual_posted: bool = False
    reversal_posted: bool = False
    matured: set[int] = field(default_factory=set)  # line numbers
    shipments: dict[str, ShipmentModel] = field(default_factory=dict)  # by warehouse
    delivered_at: datetime | None = None
    completed_at: datetime | None = None


class Model:
    """What the rules say, kept without asking the application."""

    def __init__(self) -> None:
        self.now = T0
        self.levels: dict[tuple[str, str], list[int]] = {}  # (sku, w) -> [on_hand, reserved]
        self.status = {d: "active" for d in DIDS}
        self.uplines = {d: referrer for d, (_, referrer) in DISTRIBUTORS.items()}
        self.bindings: dict[str, str] = {}  # customer -> distributor, for good
        self.rules = dict(INITIAL_RULES)
        self.orders: dict[str, OrderModel] = {}
        self.queues: dict[str, list[str]] = {sku: [] for sku in SKUS}
        self.redemptions: dict[str, dict[str, str]] = {code: {} for code in COUPONS}
        self.references: set[str] = set()
        self.triggers: set[str] = set()  # SKUs whose stock arrived since the policies ran

    # -- stock ------------------------------------------------------------------

    def available(self, sku: str, w: str) -> int:
        on_hand, reserved = self.levels[(sku, w)]
        return on_hand - reserved

    def receive(self, sku: str, w: str, quantity: int) -> None:
        self.levels.setdefault((sku, w), [0, 0])[0] += quantity
        self.triggers.add(sku)

    def plan(self, sku: str, quantity: int, region: str) -> tuple[list[tuple[str, int]], int]:
        """The customer's region first, then most available, then warehouse id; split."""
        candidates = sorted(((w, self.available(s, w)) for s, w in self.levels if s == sku),
                            key=lambda c: (WAREHOUSES[c[0]] != region, -c[1], c[0]))
        picks, wanted = [], quantity
        for w, available in candidates:
            if wanted == 0:
                break
            if available > 0:
                take = min(wanted, available)
                picks.append((w, take))
                wanted -= take
        return picks, wanted

    def reserve(self, sku: str, picks: list[tuple[str, int]]) -> None:
        for w, quantity in picks:
            self.levels[(sku, w)][1] += quantity

    def holds(self) -> dict[tuple[str, str], dict[str, int]]:
        """Derived from the orders alone: what each open order still holds per item."""
        held: dict[tuple[str, str], dict[str, int]] = {key: {} for key in self.levels}
        for o in self.orders.values():
            if o.status == "cancelled":
                continue
            for line in o.lines:
                for w, quantity in line.allocations:
                    shipment = o.shipments.get(w)
                    if shipment is not None and shipment.progress >= RANK["dispatched"]:
                        continue  # issued
                    mine = held[(line.sku, w)]
                    mine[o.order_id] = mine.get(o.order_id, 0) + quantity
        return held

    # -- placing ------------------------------------------------------------------

    def price(self, lines: list[tuple[str, int]], code: str | None
              ) -> tuple[list[int], list[int], int]:
        """Gross and discount per line, and the shipping fee; Refusal for a coupon that
        does not apply."""
        grosses = [PRICES[sku] * quantity for sku, quantity in lines]
        subtotal = sum(grosses)
        reached = [off for spend, off in TIERS if spend <= subtotal]
        discounts = spread(grosses, min(max(reached), subtotal) if reached else 0)
        if code is not None:
            coupon = COUPONS[code]
            if coupon.valid_from is not None and self.now < coupon.valid_from:
                raise Refusal("coupon_not_yet_valid")
            if coupon.valid_to is not None and self.now >= coupon.valid_to:
                raise Refusal("coupon_expired")
            scope = [i for i, (sku, _) in enumerate(lines)
                     if coupon.skus is None or sku in coupon.skus]
            eligible = sum(grosses[i] for i in scope)
            if not scope or eligible < coupon.min_spend:
                raise Refusal("coupon_not_applicable")
            value = (min(coupon.amount_off, eligible) if coupon.amount_off is not None
                     else (eligible * coupon.percent_bp + BP // 2) // BP)
            left = [grosses[i] - discounts[i] for i in scope]
            value = min(value, sum(left))
            if value <= 0:
                raise Refusal("coupon_not_applicable")
            for i, part in zip(scope, spread(left, value)):
                discounts[i] += part
        goods = subtotal - sum(discounts)
        return grosses, discounts, 0 if goods >= FREE_SHIPPING_MIN else SHIPPING_FEE

    def place(self, order_id: str, customer: str, region: str, lines: list[tuple[str, int]],
              named: tuple[str, ...] | None, code: str | None, backorder: bool
              ) -> OrderModel:
        """The placed order, applied to the model; Refusal (model untouched) if refused.
        The orders waiting for its SKUs are served first, whether or not the policy ran
        since stock arrived: in the placement's save, so a refusal undoes them too."""
        before = copy.deepcopy(self.__dict__)
        try:
            return self._place(order_id, customer, region, lines, named, code, backorder)
        except Refusal:
            self.__dict__ = before
            raise

    def _place(self, order_id: str, customer: str, region: str, lines: list[tuple[str, int]],
               named: tuple[str, ...] | None, code: str | None, backorder: bool
               ) -> OrderModel:
        """The checks come in the order the command makes them."""
        coupon = code.strip().upper() if code is not None else None
        if coupon is not None and coupon not in COUPONS:
            raise Refusal("not_found")
        grosses, discounts, shipping = self.price(lines, coupon)
        distributor = None
        if named is not None:
            mode, *who = named
            if mode == "both" and who[0] != who[1]:
                raise Refusal("attribution_conflict")
            distributor = who[0]
            if self.status[distributor] != "active":
                raise Refusal("distributor_inactive")
        credited = distributor or self.bindings.get(customer)
        for sku, _ in lines:
            self.fill(sku)
        plans = [self.plan(sku, quantity, region) for sku, quantity in lines]
        if not backorder and any(uncovered for _, uncovered in plans):
            raise Refusal("insufficient_stock")
        if coupon is not None:
            terms, live = COUPONS[coupon], self.redemptions[coupon]
            if terms.total_limit is not None and len(live) >= terms.total_limit:
                raise Refusal("coupon_exhausted")
            if terms.per_customer is not None and \
                    sum(1 for c in live.values() if c == customer) >= terms.per_customer:
                raise Refusal("coupon_limit_reached")
            live[order_id] = customer
        if credited is not None and customer not in self.bindings and \
                self.status[credited] == "active":
            self.bindings[customer] = credited
        order = OrderModel(
            order_id=order_id, customer=customer, region=region, placed_at=self.now,
            lines=[LineModel(sku, quantity, gross, discount, gross - discount, list(picks),
                             uncovered)
                   for (sku, quantity), gross, discount, (picks, uncovered)
                   in zip(lines, grosses, discounts, plans)],
            shipping=shipping, total=sum(grosses) - sum(discounts) + shipping,
            distributor=credited, coupon=coupon,
            status="backordered" if any(u for _, u in plans) else "placed")
        for (sku, _), (picks, uncovered) in zip(lines, plans):
            self.reserve(sku, picks)
            if uncovered:
                self.queues[sku].append(order_id)
        self.orders[order_id] = order
        return order

    # -- paying, fulfilling -----------------------------------------------------------

    def pay_refusal(self, o: OrderModel, amount: int, reference: str) -> str | None:
        if o.paid or o.status not in ("placed", "backordered"):
            return "invalid_transition"
        if not reference.strip():
            return "validation_error"
        if amount != o.total:
            return "amount_mismatch"
        if reference.strip() in self.references:
            return "duplicate"
        return None

    def pay(self, o: OrderModel, reference: str) -> None:
        o.paid = True
        self.references.add(reference.strip())
        o.commission = self.commission(o)
        if o.status == "placed":
            self.start_fulfilment(o)

    def commission(self, o: OrderModel) -> dict[int, dict[str, int]]:
        """Each line's commission as the network and the rules stand now: level 1 to the
        seller, level 2 to its upline, nobody above; rates half-up per line and level,
        fixed amounts per unit; level 1 capped at the net, level 2 at what is left; a
        suspended beneficiary's share and a self-purchase's level 1 are forfeited."""
        seller = o.distributor
        if seller is None:
            return {}
        upline = self.uplines[seller]
        self_purchase = o.customer == seller or \
            phone_key(CUSTOMERS[o.customer]) == phone_key(DISTRIBUTORS[seller][0])
        earned: dict[int, dict[str, int]] = {}
        for line_no, line in enumerate(o.lines, start=1):
            if line.net <= 0:
                continue
            kind, l1, l2 = self.rules.get(line.sku, self.rules[None])
            raw = ([(line.net * bp + BP // 2) // BP for bp in (l1, l2)] if kind == "rate"
                   else [fixed * line.quantity for fixed in (l1, l2)])
            first = min(raw[0], line.net)
            second = min(raw[1], line.net - first)
            got: dict[str, int] = {}
            if first > 0 and self.status[seller] == "active" and not self_purchase:
                got[seller] = first
            if upline is not None and second > 0 and self.status[upline] == "active":
                got[upline] = second
            earned[line_no] = got
        return earned

    def start_fulfilment(self, o: OrderModel) -> None:
        """One shipment per warehouse of the allocations, the same SKU's parts summed."""
        o.status = "fulfilling"
        for line in o.lines:
            for w, quantity in line.allocations:
                shipment = o.shipments.setdefault(w, ShipmentModel(o.order_id, w, {}))
                shipment.lines[line.sku] = shipment.lines.get(line.sku, 0) + quantity

    def dispatch(self, shipment: ShipmentModel, carrier: str, tracking: str) -> None:
        shipment.status, shipment.progress = "dispatched", RANK["dispatched"]
        shipment.carrier, shipment.tracking = carrier, tracking
        for sku, quantity in shipment.lines.items():
            level = self.levels[(sku, shipment.warehouse)]
            level[0] -= quantity
            level[1] -= quantity
        o = self.orders[shipment.order_id]
        if all(s.progress >= RANK["dispatched"] for s in o.shipments.values()):
            o.status = "shipped"

    def carrier_event(self, shipment: ShipmentModel, event_id: str, status: str) -> str:
        """The result, "duplicate" for the same id and status again, or "reused" (a
        refusal) for the same id with another status."""
        if event_id in shipment.events:
            return "duplicate" if shipment.said[event_id] == status else "reused"
        shipment.said[event_id] = status
        applied = RANK[status] > shipment.progress
        shipment.events[event_id] = "applied" if applied else "late"
        if applied:
            shipment.status, shipment.progress = status, RANK[status]
            o = self.orders[shipment.order_id]
            if status == "delivered" and \
                    all(s.status == "delivered" for s in o.shipments.values()):
                o.status, o.delivered_at = "delivered", self.now
        return shipment.events[event_id]

    # -- closing ----------------------------------------------------------------------

    def cancel_refusal(self, o: OrderModel, reason: str) -> str | None:
        if o.status not in ("placed", "backordered", "fulfilling"):
            return "invalid_transition"
        if any(s.progress >= RANK["dispatched"] for s in o.shipments.values()):
            return "invalid_transition"
        if not reason.strip():
            return "validation_error"
        return None

    def close(self, o: OrderModel) -> None:
        """Cancelled or expired: the stock, the coupon and the queue places go back; a
        paid order is refunded in full."""
        for (sku, w), by_order in self.holds().items():
            if by_order.get(o.order_id):
                self.levels[(sku, w)][1] -= by_order[o.order_id]
                self.triggers.add(sku)  # a release: the backorder policy looks again
        if o.coupon is not None:
            self.redemptions[o.coupon].pop(o.order_id, None)
        for queue in self.queues.values():
            if o.order_id in queue:
                queue.remove(o.order_id)
        for shipment in o.shipments.values():
            shipment.status = "cancelled"
        if o.paid:
            o.refunded = o.total
        o.status = "cancelled"

    # -- the process managers, the time rules -------------------------------------------

    def run_policies(self) -> None:
        """Commission accrual for paid orders (reversed at once if cancelled since),
        reversal for cancelled ones, then backorders filled where stock arrived."""
        for o in self.orders.values():
            if o.paid and not o.accrual_posted:
                o.accrual_posted = True
                o.reversal_posted = o.status == "cancelled"
            elif o.accrual_posted and o.status == "cancelled":
                o.reversal_posted = True
        for sku in sorted(self.triggers):
            self.fill(sku)
        self.triggers.clear()

    def fill(self, sku: str) -> None:
        """First come first served; the first may take it all; partial fills wait on."""
        queue = self.queues[sku]
        for order_id in list(queue):
            if not any(self.available(s, w) > 0 for s, w in self.levels if s == sku):
                break
            o = self.orders[order_id]
            line = next(x for x in o.lines if x.sku == sku)
            picks, left = self.plan(sku, line.backordered, o.region)
            self.reserve(sku, picks)
            line.allocations.extend(picks)
            line.backordered = left
            if not left:
                queue.remove(order_id)
            if not any(x.backordered for x in o.lines):
                if o.paid:
                    self.start_fulfilment(o)
                else:
                    o.status = "placed"

    def due(self, o: OrderModel, now: datetime | None = None) -> dict[str, Any]:
        """Which time rules `o` is due for at `now` (default: the clock's); "mature":
        the lines whose commission would mature (every line the policy accrued, whether
        or not it earned anyone anything), "pending": those with money still pending."""
        now = self.now if now is None else now
        frozen = o.status == "completed" and o.completed_at + FREEZE <= now and \
            o.accrual_posted
        mature = [n for n in sorted(o.commission) if n not in o.matured] if frozen else []
        return {
            "expire": o.status in ("placed", "backordered") and not o.paid
            and o.placed_at + TIMEOUT <= now,
            "complete": o.status == "delivered" and o.delivered_at + RETURN_WINDOW <= now,
            "mature": mature, "pending": [n for n in mature if o.commission[n]]}

    def tick(self) -> dict[str, int]:
        """The tick finds its candidates in the read models: for maturity, the lines
        with a pending commission row."""
        due = {o.order_id: self.due(o) for o in self.orders.values()}
        expiring = [o for o in self.orders.values() if due[o.order_id]["expire"]]
        completing = [o for o in self.orders.values() if due[o.order_id]["complete"]]
        for o in expiring:
            self.close(o)
        for o in completing:
            o.status, o.completed_at = "completed", self.now
        for o in self.orders.values():
            o.matured.update(due[o.order_id]["pending"])
        return {"expired": len(expiring), "completed": len(completing),
                "matured": sum(len(d["pending"]) for d in due.values())}

    # -- the money -----------------------------------------------------------------

    def wallets(self) -> dict[str, dict[str, int]]:
        owed = {d: {"pending": 0, "available": 0, "withdrawing": 0} for d in DIDS}
        for o in self.orders.values():
            if o.accrual_posted and not o.reversal_posted:
                for line_no, got in o.commission.items():
                    bucket = "available" if line_no in o.matured else "pending"
                    for d, amount in got.items():
                        owed[d][bucket] += amount
        return owed


def make_machine(url: str, writer: bool = False,
                 logs: list[Any] | None = None) -> type[RuleBasedStateMachine]:
    """`writer`: every command (the process managers' too) goes through the writer;
    `logs`: each example's event log is appended there at its end."""
    class OrdersMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            wipe(url)
            self.model = Model()
            self.app = Fenxiao(Settings(
                database_url=url, shipping_fee_minor=SHIPPING_FEE,
                free_shipping_min_minor=FREE_SHIPPING_MIN, rate_limit=None,
                auth_failure_limit=None))
            self.app.clock = lambda: self.model.now
            if writer:
                self.app.start_writer()
            if logs is not None:  # the same ids in both runs: draw them from one seed
                self.patches = deterministic_ids()
            self.runner = ProjectionRunner(self.app, all_projections(),
                                           process_managers=all_process_managers())
            self.projection_names = [p.name for p in all_projections()]
            self.codes: dict[str, str] = {}
            self.orders_placed = 0
            app = self.app
            for w, region in WAREHOUSES.items():
                self.run(lambda: app.open_warehouse(w, w, region))
            for sku, price in PRICES.items():
                self.run(lambda: app.add_product(sku, sku, "", price))
            for sku, w, quantity in INITIAL_STOCK:
                self.run(lambda: app.receive_stock(sku, w, quantity, "PO-0"))
                self.model.receive(sku, w, quantity)
            for d, (phone, referrer) in DISTRIBUTORS.items():
                code = self.codes[referrer] if referrer else None
                self.run(lambda: app.apply_distributor(d, phone, code, d))
                self.codes[d] = self.run(lambda: app.approve_distributor(d))["referral_code"]
            # D1 starts suspended: D2's sales forfeit its level 2 until it is reinstated.
            self.run(lambda: app.suspend_distributor("D1", "stateful test"))
            self.model.status["D1"] = "suspended"
            for sku, (kind, l1, l2) in INITIAL_RULES.items():
                if sku is not None:
                    self.run(lambda: app.set_commission_rule(sku, kind, l1, l2))
            for code, c in COUPONS.items():
                self.run(lambda: app.issue_coupon(CouponTerms(
                    code=code, amount_off_minor=c.amount_off, percent_off_bp=c.percent_bp,
                    min_spend_minor=c.min_spend, valid_from=c.valid_from,
                    valid_to=c.valid_to, total_limit=c.total_limit,
                    per_customer_limit=c.per_customer,
                    skus=tuple(sorted(c.skus)) if c.skus else None)))
            self.run(lambda: app.add_threshold_promotion(TIERS, promotion_id="TP1"))
            self.run(lambda: app.add_carrier(RateCard("SF", "SF Express", 1000, 100, 2,
                                                      {"east": 1})))
            self.runner.catch_up()
            self.model.run_policies()  # nothing waits yet: the receipts fill nothing

        def teardown(self) -> None:
            if hasattr(self, "app"):
                if logs is not None:
                    logs.append(event_log(self.app))
                    for patch in self.patches:
                        patch.stop()
                self.app.close()

        def run(self, command: Callable[[], dict[str, Any]], refused: str | None = None,
                records: bool = True) -> dict[str, Any] | None:
            """Run `command`; `refused`: the code the model predicts (None: accepted);
            `records`: whether an accepted command must record something."""
            before = self.app.last_position()
            try:
                body = self.app.execute(command).body
            except DomainError as error:
                assert error.code == refused, \
                    f"refused ({error.code}: {error.message}); the model expected {refused}"
                assert self.app.last_position() == before, "a refusal recorded something"
                return None
            assert refused is None, f"accepted; the model expected {refused}"
            assert (self.app.last_position() > before) == records, \
                f"position {before} -> {self.app.last_position()}; records={records}"
            return body

        def shipment_id(self, s: ShipmentModel) -> str:
            order = self.app.order(s.order_id)
            return next(sid for sid, x in order.shipments.items()
                        if x["warehouse_id"] == s.warehouse)

        # -- rules --------------------------------------------------------------------
        # Rules are drawn uniformly: a rule given two or four names is drawn that much
        # more often (placing, and taking an order a step on, make the long lives).

        @rule(**PLACING)
        def place(self, **placing: Any) -> None:
            self.place_order(**placing)

        @rule(**PLACING)
        def place_another(self, **placing: Any) -> None:
            self.place_order(**placing)

        def place_order(self, customer: str, region: str, lines: list[tuple[str, int]],
                        named: tuple[str, ...] | None, coupon: str | None,
                        backorder: bool) -> None:
            self.orders_placed += 1
            order_id = f"O{self.orders_placed}"
            try:
                expected, refused = self.model.place(order_id, customer, region, lines,
                                                     named, coupon, backorder), None
            except Refusal as refusal:
                expected, refused = None, refusal.code
            who: dict[str, str | None] = {"distributor_id": None, "referral_code": None}
            if named is not None:
                mode, *ds = named
                if mode in ("id", "both"):
                    who["distributor_id"] = ds[0]
                if mode in ("code", "both"):
                    who["referral_code"] = self.codes[ds[-1]]
            address = {"region": region, "city": "City", "line1": "1 Road"}
            body = self.run(lambda: self.app.place_order(
                customer, "Li Lei", CUSTOMERS[customer], address, lines, order_id=order_id,
                coupon_code=coupon, allow_backorder=backorder, **who), refused)
            if expected is None:
                return
            assert (body["status"], body["distributor_id"], body["coupon_code"]) == \
                (expected.status, expected.distributor, expected.coupon)
            assert (body["subtotal"], body["discount"], body["shipping_fee"],
                    body["total"]) == (sum(x.gross for x in expected.lines),
                                       sum(x.discount for x in expected.lines),
                                       expected.shipping, expected.total)

        @precondition(lambda self: self.model.orders)
        @rule(data=st.data(), unpaid=st.booleans(),
              amount=st.sampled_from(["right", "right", "right", "one_more",
                                      "without_shipping"]),
              reference=st.sampled_from(["fresh", "fresh", "fresh", "reused", "blank"]))
        def pay(self, data: st.DataObject, unpaid: bool, amount: str, reference: str) -> None:
            waiting = [o for o in self.model.orders
                       if not self.model.orders[o].paid
                       and self.model.orders[o].status != "cancelled"]
            order_id = data.draw(st.sampled_from(waiting if unpaid and waiting
                                                 else sorted(self.model.orders)))
            self.pay_order(order_id, amount, reference)

        def pay_order(self, order_id: str, amount: str = "right",
                      reference: str = "fresh") -> None:
            o = self.model.orders[order_id]
            paying = {"right": o.total, "one_more": o.total + 1,
                      "without_shipping": o.total - o.shipping}[amount]
            ref = {"fresh": f"PAY-{len(self.model.references)}-{order_id}",
                   "reused": min(self.model.references, default="PAY-X"),
                   "blank": "  "}[reference]
            refused = self.model.pay_refusal(o, paying, ref)
            body = self.run(lambda: self.app.pay_order(order_id, paying, ref), refused)
            if body is not None:
                self.model.pay(o, ref)
                assert body["status"] == o.status

        @precondition(lambda self: self.model.orders)
        @rule(data=st.data(), which=st.sampled_from(["any", "cancellable", "paid"]),
              reason=st.sampled_from(["changed my mind"] * 4 + [" "]))
        def cancel(self, data: st.DataObject, which: str, reason: str) -> None:
            """Any order (most are refused), or one that can be (a paid one: refunded)."""
            candidates = sorted(o.order_id for o in self.model.orders.values()
                                if which == "any" or (
                                    self.model.cancel_refusal(o, "reason") is None
                                    and (which == "cancellable" or o.paid)))
            order_id = data.draw(st.sampled_from(candidates or sorted(self.model.orders)))
            o = self.model.orders[order_id]
            refused = self.model.cancel_refusal(o, reason)
            if self.run(lambda: self.app.cancel_order(order_id, reason), refused):
                self.model.close(o)

        @rule(sku=st.sampled_from(SKUS), w=st.sampled_from(sorted(WAREHOUSES)),
              quantity=st.integers(1, 8))
        def receive(self, sku: str, w: str, quantity: int) -> None:
            self.run(lambda: self.app.receive_stock(sku, w, quantity, "PO"))
            self.model.receive(sku, w, quantity)

        def waiting_skus(self) -> list[str]:
            return [sku for sku, queue in self.model.queues.items() if queue]

        @precondition(lambda self: self.waiting_skus())
        @rule(data=st.data(), w=st.sampled_from(sorted(WAREHOUSES)))
        def partial_receipt(self, data: st.DataObject, w: str) -> None:
            """At most what the first order waiting for a SKU needs, and the policies
            run: first come, first served decides who gets it."""
            sku = data.draw(st.sampled_from(self.waiting_skus()))
            first = self.model.orders[self.model.queues[sku][0]]
            need = next(x.backordered for x in first.lines if x.sku == sku)
            quantity = data.draw(st.integers(1, need))
            self.run(lambda: self.app.receive_stock(sku, w, quantity, "PO"))
            self.model.receive(sku, w, quantity)
            self.policies()

        @rule()
        def run_policies(self) -> None:
            self.policies()

        def policies(self) -> None:
            """What the worker does between commands: the process managers."""
            self.runner.catch_up(["commission_policy", "backorder_policy"])
            before = self.app.last_position()
            self.runner.catch_up(["commission_policy", "backorder_policy"])
            assert self.app.last_position() == before  # a second pass finds nothing to do
            self.model.run_policies()

        def shipments(self) -> list[ShipmentModel]:
            return [s for o in self.model.orders.values() for s in o.shipments.values()]

        @precondition(lambda self: self.shipments())
        @rule(data=st.data(), action=st.sampled_from(["next", "next", "next", "all",
                                                      "pick", "pack", "dispatch"]))
        def warehouse_step(self, data: st.DataObject, action: str) -> None:
            self.warehouse(data.draw(st.sampled_from(self.shipments())), action)

        def warehouse(self, shipment: ShipmentModel, action: str) -> None:
            """`action`: pick, pack, dispatch; next (the step the shipment is due for);
            all (every step up to dispatch)."""
            shipment_id = self.shipment_id(shipment)
            due = {"created": "pick", "picked": "pack", "packed": "dispatch"}
            steps = [action]
            if action == "next":
                steps = [due.get(shipment.status, "pick")]
            elif action == "all":
                steps = ["pick", "pack", "dispatch"][RANK[shipment.status]:] \
                    if shipment.status in due else ["pick"]
            for step in steps:
                needs = {"pick": "created", "pack": "picked", "dispatch": "packed"}[step]
                refused = None if shipment.status == needs else "invalid_transition"
                command = {"pick": self.app.pick_shipment, "pack": self.app.pack_shipment,
                           "dispatch": self.app.dispatch_shipment}[step]
                body = self.run(lambda: command(shipment_id), refused)
                if body is None:
                    return
                if step == "dispatch":
                    self.model.dispatch(shipment, body["carrier"], body["tracking_number"])
                else:
                    shipment.status = "picked" if step == "pick" else "packed"
                    shipment.progress = RANK[shipment.status]
                assert body["status"] == shipment.status

        def dispatched(self) -> list[ShipmentModel]:
            return [s for s in self.shipments() if s.tracking is not None]

        @precondition(lambda self: self.dispatched())
        @rule(data=st.data(),
              status=st.sampled_from(["delivered", "delivered", "in_transit",
                                      "out_for_delivery"]),
              which=st.sampled_from(["new", "new", "repeat", "repeat", "unknown_number"]))
        def carrier_event(self, data: st.DataObject, status: str, which: str) -> None:
            shipment = data.draw(st.sampled_from(self.dispatched()))
            event_id = None
            if which == "repeat" and shipment.events:
                event_id = data.draw(st.sampled_from(sorted(shipment.events)))
            self.carrier(shipment, status, event_id, which == "unknown_number")

        def carrier(self, shipment: ShipmentModel, status: str, event_id: str | None = None,
                    unknown_number: bool = False) -> None:
            if event_id is None:
                event_id = f"E{sum(len(s.events) for s in self.shipments())}"
            if unknown_number:
                self.run(lambda: self.app.record_carrier_event(
                    shipment.carrier, event_id, "NO-SUCH-NUMBER", status, self.model.now),
                    "not_found")
                return
            first = shipment.events.get(event_id)
            result = self.model.carrier_event(shipment, event_id, status)
            body = self.run(lambda: self.app.record_carrier_event(
                shipment.carrier, event_id, shipment.tracking, status, self.model.now),
                "event_id_reused" if result == "reused" else None,
                records=result != "duplicate")
            if body is not None:
                assert body["result"] == (first if result == "duplicate" else result)

        # Exactly the timeout, the return window, the freeze: the boundaries are hit.
        @rule(delta=st.sampled_from([timedelta(0), timedelta(minutes=1), TIMEOUT, TIMEOUT,
                                     timedelta(days=1), RETURN_WINDOW]),
              ticks=st.booleans(), with_policies=st.booleans())
        def time_passes(self, delta: timedelta, ticks: bool, with_policies: bool) -> None:
            self.model.now += delta
            if ticks:
                self.tick(with_policies)

        def tick(self, with_policies: bool) -> None:
            """The worker's tick: read models current (and, maybe, the process managers
            run first), then the time rules as of now."""
            if with_policies:
                self.policies()
            self.runner.catch_up(self.projection_names)
            with self.app.engine.connect() as conn:  # what the tick will read
                rows = conn.execute(select(rm_orders.c.order_id, rm_orders.c.status,
                                           rm_orders.c.total_minor, rm_orders.c.paid_minor,
                                           rm_orders.c.refunded_minor)).all()
            assert {r.order_id: (r.status, r.total_minor, r.paid_minor, r.refunded_minor)
                    for r in rows} == {
                o.order_id: (o.status, o.total, o.total if o.paid else 0, o.refunded)
                for o in self.model.orders.values()}
            before = self.app.last_position()
            result = tick(self.app, self.model.now)
            expected = self.model.tick()
            assert {k: result[k] for k in expected} == expected
            assert (result["position"] is None) == (self.app.last_position() == before)
            assert (result["position"] is None) == (not any(expected.values()))

        @precondition(lambda self: self.model.orders)
        @rule(data=st.data(), kind=st.sampled_from(["any", "unpaid", "paid", "delivered",
                                                    "completed"]),
              ahead=st.sampled_from([timedelta(0), TIMEOUT, RETURN_WINDOW]))
        def time_rules_by_hand(self, data: st.DataObject, kind: str,
                               ahead: timedelta) -> None:
            """What a stale or repeated tick candidate meets: expiry, completion and
            maturity of one order as of an explicit `now` (the clock's, or later, as
            `fenxiao tick --now` may give), each a no-op (nothing recorded) unless the
            model says it is due. Mostly an order of a kind some time rule concerns
            (an unpaid or a paid waiting one, a delivered one, a completed one)."""
            kinds = {"any": lambda o: True,
                     "unpaid": lambda o: o.status in ("placed", "backordered") and not o.paid,
                     "paid": lambda o: o.status == "backordered" and o.paid,
                     "delivered": lambda o: o.status == "delivered",
                     "completed": lambda o: o.status == "completed"}
            concerned = sorted(o.order_id for o in self.model.orders.values()
                               if kinds[kind](o))
            o = self.model.orders[data.draw(st.sampled_from(
                concerned or sorted(self.model.orders)))]
            now = self.model.now + ahead
            due = self.model.due(o, now)
            expired = self.run(lambda: self.app.expire_order(o.order_id, now),
                               records=due["expire"])
            assert expired["expired"] == due["expire"]
            if due["expire"]:
                self.model.close(o)
            completed = self.run(lambda: self.app.complete_order(o.order_id, now),
                                 records=due["complete"])
            assert completed["completed"] == due["complete"]
            if due["complete"]:
                o.status, o.completed_at = "completed", now
            line_nos = list(range(1, len(o.lines) + 1))
            matured = self.run(lambda: mature_due(self.app, o.order_id, line_nos, now),
                               records=bool(due["mature"]))
            assert matured["matured"] == due["mature"]
            o.matured.update(due["mature"])

        @rule(d=st.sampled_from(DIDS), what=st.sampled_from(["suspension", "rule", "upline"]),
              upline=st.sampled_from([None, *DIDS]), sku=st.sampled_from([None, *SKUS]),
              kind=st.sampled_from(["rate", "fixed"]), l1=st.integers(0, 6000),
              l2=st.one_of(st.integers(0, 6000), st.none()))
        def network_changes(self, d: str, what: str, upline: str | None, sku: str | None,
                            kind: str, l1: int, l2: int | None) -> None:
            """A distributor suspended or reinstated, or re-parented (never into a loop),
            or a commission rule set (l2 None: whatever makes 100 %, where half-up on both
            levels can overshoot the net). Orders paid before keep what they recorded."""
            if what == "suspension":
                suspend = self.model.status[d] == "active"
                action = self.app.suspend_distributor if suspend else \
                    self.app.reinstate_distributor
                self.run(lambda: action(d, "stateful test"))
                self.model.status[d] = "suspended" if suspend else "active"
            elif what == "upline":
                above, chain = upline, []
                while above is not None:
                    chain.append(above)
                    above = self.model.uplines[above]
                refused = ("invalid_transition" if upline == self.model.uplines[d] else
                           "cycle" if d in chain else None)
                if self.run(lambda: self.app.change_upline(d, upline, "stateful test"),
                            refused):
                    self.model.uplines[d] = upline
            else:
                l2 = BP - l1 if l2 is None else l2
                too_much = l1 + l2 > (BP if kind == "rate" else
                                      PRICES[sku] if sku is not None else l1 + l2)
                refused = "rule_exceeds_net" if too_much else None
                if self.run(lambda: self.app.set_commission_rule(sku, kind, l1, l2),
                            refused):
                    self.model.rules[sku] = (kind, l1, l2)

        @rule(d=st.sampled_from(DIDS))
        def suspend_again(self, d: str) -> None:
            """A refused suspension or reinstatement (the distributor is not in that
            state): nothing recorded."""
            suspend = self.model.status[d] != "active"
            action = self.app.suspend_distributor if suspend else \
                self.app.reinstate_distributor
            self.run(lambda: action(d, "stateful test"), "invalid_transition")

        @precondition(lambda self: self.model.orders)
        @rule(data=st.data())
        def progress(self, data: st.DataObject) -> None:
            self.step_on(data)

        @precondition(lambda self: self.model.orders)
        @rule(data=st.data())
        def progress_more(self, data: st.DataObject) -> None:
            self.step_on(data)

        @precondition(lambda self: self.model.orders)
        @rule(data=st.data())
        def progress_further(self, data: st.DataObject) -> None:
            self.step_on(data)

        @precondition(lambda self: self.model.orders)
        @rule(data=st.data())
        def progress_to_the_end(self, data: st.DataObject) -> None:
            self.step_on(data)

        def step_on(self, data: st.DataObject) -> None:
            """Take a random order one natural step on (the other rules mostly make
            trouble; this one lets orders live long enough to complete and mature)."""
            live = sorted(o.order_id for o in self.model.orders.values()
                          if o.status != "cancelled" and not (
                              o.status == "completed" and
                              all(n in o.matured for n, got in o.commission.items()
                                  if got)))
            if not live:
                return
            o = self.model.orders[data.draw(st.sampled_from(live))]
            if not o.paid:
                self.pay_order(o.order_id)
            elif o.status == "backordered":  # some of what it waits for arrives
                line = next(x for x in o.lines if x.backordered)
                w = data.draw(st.sampled_from(sorted(WAREHOUSES)))
                quantity = data.draw(st.integers(1, line.backordered))
                self.run(lambda: self.app.receive_stock(line.sku, w, quantity, "PO"))
                self.model.receive(line.sku, w, quantity)
                if data.draw(st.booleans()):
                    self.policies()
            elif o.status in ("fulfilling", "shipped"):
                shipment = data.draw(st.sampled_from(
                    [s for s in o.shipments.values() if s.status != "delivered"]))
                if shipment.tracking is None:
                    self.warehouse(shipment, "all")
                else:
                    self.carrier(shipment, "delivered")
            else:  # delivered: complete it; completed: mature its commission
                self.model.now += RETURN_WINDOW
                self.tick(with_policies=True)

        # -- invariants -----------------------------------------------------------------

        @invariant()
        def stock_is_what_the_open_orders_hold(self) -> None:
            if not hasattr(self, "app"):
                return
            holds = self.model.holds()
            for (sku, w), (on_hand, reserved) in self.model.levels.items():
                item = self.app.find(StockItem.create_id(sku, w))
                assert item.on_hand >= 0 and 0 <= item.reserved <= item.on_hand
                assert (item.on_hand, item.reserved) == (on_hand, reserved), (sku, w)
                assert item.reservations == holds[(sku, w)], (sku, w)
                assert reserved == sum(holds[(sku, w)].values()), (sku, w)

        @invariant()
        def orders_are_what_the_model_says(self) -> None:
            if not hasattr(self, "app"):
                return
            for o in self.model.orders.values():
                order = self.app.order(o.order_id)
                assert order.status == o.status, o.order_id
                assert order.total_minor == \
                    sum(x["net_minor"] for x in order.lines) + order.shipping_fee_minor
                assert order.discount_minor == sum(x["discount_minor"] for x in order.lines)
                for x in order.lines:
                    assert x["net_minor"] == x["gross_minor"] - x["discount_minor"] >= 0
                assert [(x["sku"], x["quantity"], x["gross_minor"], x["discount_minor"],
                         x["net_minor"], x["backordered"],
                         [(a["warehouse_id"], a["quantity"]) for a in x["allocations"]])
                        for x in order.lines] == \
                    [(x.sku, x.quantity, x.gross, x.discount, x.net, x.backordered,
                      x.allocations) for x in o.lines], o.order_id
                assert (order.total_minor, order.shipping_fee_minor, order.distributor_id,
                        order.paid_minor, order.refunded_minor) == \
                    (o.total, o.shipping, o.distributor, o.total if o.paid else 0,
                     o.refunded), o.order_id
                on_order = {s["warehouse_id"]: (s["status"], sorted(
                    (x["sku"], x["quantity"]) for x in s["lines"]))
                    for s in order.shipments.values()}
                assert on_order == {w: (ON_ORDER[s.status], sorted(s.lines.items()))
                                    for w, s in o.shipments.items()}, o.order_id
                for shipment_id, s in order.shipments.items():
                    shipment = self.app.find(Shipment.create_id(shipment_id))
                    assert shipment.status == o.shipments[s["warehouse_id"]].status

        @invariant()
        def queues_and_coupons_are_the_models(self) -> None:
            if not hasattr(self, "app"):
                return
            for sku, waiting in self.model.queues.items():
                queue = self.app.find(BackorderQueue.create_id(sku))
                assert (queue.waiting if queue else []) == waiting, sku
            for code, live in self.model.redemptions.items():
                assert self.app.find(Coupon.create_id(code)).redemptions == live, code

        @invariant()
        def the_books_balance_and_earnings_follow_the_rules(self) -> None:
            if not hasattr(self, "app"):
                return
            self.runner.catch_up(["ledger"])
            owed = self.model.wallets()
            paid = sum(o.total for o in self.model.orders.values() if o.paid)
            refunded = sum(o.refunded for o in self.model.orders.values())
            commission = sum(sum(buckets.values()) for buckets in owed.values())
            with self.app.engine.connect() as conn:
                totals = dict(conn.execute(
                    select(journal.c.account, func.sum(journal.c.amount_minor))
                    .group_by(journal.c.account)).all())
                rows = {row.distributor_id: row for row in conn.execute(select(earnings))}
                parked = conn.execute(select(func.count()).select_from(parked_events)).scalar()
            assert sum(totals.values()) == 0
            assert {k: v for k, v in totals.items() if v and k.startswith("merchant:")} == {
                k: v for k, v in {"merchant:cash": paid - refunded, "merchant:sales": -paid,
                                  "merchant:refunds": refunded,
                                  "merchant:commission_expense": commission}.items() if v}
            for d, buckets in owed.items():
                wallet = self.app.wallet(d)
                assert {"pending": wallet.pending, "available": wallet.available,
                        "withdrawing": wallet.withdrawing} == buckets, d
                row = rows.get(d)
                seen = {b: getattr(row, b) if row else 0 for b in buckets}
                assert seen == buckets, d
            assert parked == 0, "a process manager's command was refused"

    return OrdersMachine


def test_the_writer_decides_as_commands_one_at_a_time_event_for_event(
        database_url: str) -> None:
    """The same command sequences (the same seed) run one at a time and through the
    writer record the same events, one for one, in the same order."""
    logs: dict[bool, list[Any]] = {False: [], True: []}
    for writer in (False, True):
        machine = make_machine(database_url, writer=writer, logs=logs[writer])
        machine.TestCase.settings = settings(
            settings.default, max_examples=max(4, settings.default.max_examples // 15),
            stateful_step_count=50, derandomize=True, database=None)
        machine.TestCase().runTest()
    assert len(logs[True]) == len(logs[False]) > 0
    for through_writer, one_at_a_time in zip(logs[True], logs[False]):
        assert through_writer == one_at_a_time


def test_orders_stock_and_ledger_laws(database_url: str) -> None:
    machine = make_machine(database_url)
    machine.TestCase.settings = settings(
        settings.default, max_examples=max(10, settings.default.max_examples // 6),
        stateful_step_count=80)
    machine.TestCase().runTest()
