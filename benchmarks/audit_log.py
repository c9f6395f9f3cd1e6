"""Generate a realistic audit log: months of a distribution business, through the
application's own commands.

    python -m benchmarks.audit_log [--events 20000] [--database-url URL] [--seed 1]
                                   [--group 200] [--via-sqlite] [--yes-wipe]

What it records (every event comes from a command of commands/, none is made by hand):
warehouses in four regions, a catalog with wholesale prices, per-SKU commission rules,
carriers, coupons and a spend-threshold promotion; stock receipts, replenishment,
count adjustments and transfers; a network of distributors who apply with a referrer's
code and are approved (a few rejected, suspended, reinstated or re-parented); consumer
orders placed with referral codes, coupons and backorders, paid (a few cancelled before
or after payment, a few left unpaid until their reservation expires), picked, packed,
dispatched, tracked by the carrier (now and then an exception, a repeated or late
carrier event) and delivered; completion when the return window closes and commission
maturity when the freeze period ends (the commands the tick issues, with the tick as
their cause); commissions accrued and reversed by the commission process manager and
backorders filled by the backorder process manager, run the way the worker runs them;
after-sales returns, refunds only and compensations; withdrawals requested, paid or
rejected; B2B purchase orders; price changes. Time is simulated: the application clock
moves through the days the log covers, so every time in it is coherent. The same seed
gives the same business (the same commands in the same order).

How it stays fast and faithful: commands go straight to `app.execute` (no HTTP), each with
the command context the API would give it (actor, idempotency key on orders and
payments, correlation id); `--group` commands share one database transaction (a group
commit: the commit, not Python, is the unit cost of a command); the aggregate cache is
not fast-forwarded on each load (this is the only writer, so what it holds is current:
a query per load saved). Nothing else differs: the aggregates, the rules, the events and
their metadata are the application's. A refused command records nothing, as it would
through the API; refusals are counted on stderr.

A million events, measured on the 2-core development machine: recorded in PostgreSQL,
13 min of this process's CPU and 3 min of the server's (62 min of wall clock on a machine
busy with other work); recorded in SQLite, 9 min. Hence `--via-sqlite`: record into a
temporary SQLite file, then copy what was stored (the log with its positions, snapshots,
the process managers' positions and parked events, idempotency replies, store facts) row
for row into `--database-url`: 10 min in all for PostgreSQL, for the same business.

It stops at the first group commit after the log reaches `--events`, and prints JSON lines
like `python -m benchmarks`: the events written, the time taken, events/s and commands/s,
and the CPU seconds of this process and (PostgreSQL on this machine) of the server. It
WIPES the target database first (same guard as `python -m benchmarks`).
"""
from __future__ import annotations

import argparse
import heapq
import itertools
import os
import random
import resource
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from benchmarks.__main__ import Report, note, prepare
from eventsourcing.application import LRUCache
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from commands import Fenxiao
from commands.app import CommandContext
from commands.settings import Settings
from commands.storage import idempotency, parked_events, store_facts, tracking
from commands.tick import mature_due
from domain.carriers import RateCard
from domain.errors import DomainError
from domain.promotions import CouponTerms
from projections.policies import all_process_managers
from projections.runner import ProjectionRunner

START = datetime(2026, 1, 5, tzinfo=timezone.utc)
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
REGIONS = ("east", "south", "north", "west")
CARRIERS = (RateCard("SF", "SF Express", 1200, 100, 3, {"east": 1, "south": 2, "north": 2}),
            RateCard("YTO", "YTO Express", 800, 50, 4, {"east": 2, "south": 3}),
            RateCard("ZTO", "ZTO Express", 700, 60, 5, {"north": 3, "west": 3}))
CACHE_SIZE = 100_000  # aggregates: every order and shipment still moving, and then some
EVENTS_PER_ORDER = 40  # measured: what one order's life adds to the log, all included


@dataclass(frozen=True)
class Sizes:
    """How big the business is for a log of `events` events."""

    events: int

    @property
    def orders_per_day(self) -> float:
        # About 90 simulated days for a million events; never fewer than 20 orders a day,
        # so a small log still has orders at every stage of their life.
        return max(20.0, self.events / EVENTS_PER_ORDER / 90)

    @property
    def skus(self) -> int:
        return int(min(300, max(12, self.events / 4000)))

    @property
    def distributors(self) -> int:
        return int(min(3000, max(12, self.events / 400)))

    @property
    def customers(self) -> int:
        return int(max(50, self.events / 60))


@dataclass
class OrderState:
    order_id: str
    lines: list[dict[str, Any]]  # from the placing reply: line_no, sku, quantity, net
    credited: bool  # attributed to a distributor
    shipments: set[str] = field(default_factory=set)
    delivered: set[str] = field(default_factory=set)


class Commands:
    """Runs commands through `app.execute`, `group` of them per database transaction,
    and after each group runs the process managers over what it recorded, as the worker
    does (their commands and tracking positions are grouped the same way)."""

    def __init__(self, app: Fenxiao, group: int) -> None:
        self.app = app
        self.group = group
        self.runner = ProjectionRunner(app, [], process_managers=all_process_managers())
        self.managers = list(self.runner.process_managers.values())
        for manager in self.managers:  # create their tracking rows outside any group
            self.runner._start_position(manager.name)
        self.done: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self._transaction: Any = None
        self._in_group = 0

    def __call__(self, actor: str, method: Callable[..., dict[str, Any]], *args: Any,
                 key: str | None = None, correlation: str | None = None, **kwargs: Any
                 ) -> dict[str, Any] | None:
        """`method(*args, **kwargs)`'s reply, or None if it was refused (it recorded
        nothing)."""
        name = method.__name__
        command = lambda: method(*args, **kwargs)  # noqa: E731
        self._begin()
        try:
            body = self.app.execute(command, context=CommandContext(
                actor=actor, idempotency_key=key, correlation_id=correlation)).body
        except DomainError as refusal:
            self.refused[f"{name}:{refusal.code}"] += 1
            return None
        finally:
            self._in_group += 1
        self.done[name] += 1
        if self._in_group >= self.group:
            self.flush()
        return body

    def _begin(self) -> None:
        if self._transaction is None:
            self._transaction = self.app.datastore.transaction(commit=True)
            self._transaction.__enter__()

    def _commit(self) -> None:
        if self._transaction is not None:
            transaction, self._transaction = self._transaction, None
            transaction.__exit__(None, None, None)
        self._in_group = 0

    def flush(self) -> None:
        """Commit the group, then let the process managers catch up with it."""
        self._commit()
        while True:
            self._begin()
            moved = sum(self.runner.run_process_batch(m) for m in self.managers)
            self._commit()
            if not moved:
                return

    def abort(self) -> None:
        if self._transaction is not None:
            transaction, self._transaction = self._transaction, None
            transaction.__exit__(RuntimeError, RuntimeError("aborted"), None)


class Business:
    """The simulated business: a queue of timed actions, each issuing one command with
    the application clock set to its time."""

    def __init__(self, app: Fenxiao, run: Commands, sizes: Sizes, rng: random.Random
                 ) -> None:
        self.app, self.run, self.sizes, self.rng = app, run, sizes, rng
        self.now = START
        app.clock = lambda: self.now
        self._queue: list[tuple[datetime, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.skus: list[str] = []
        self.listed: dict[str, bool] = {}
        self.stocked: dict[str, list[str]] = {}  # sku -> its warehouses
        self.warehouses: list[str] = []
        self.active: list[str] = []  # active distributors
        self.codes: dict[str, str] = {}  # distributor -> referral code
        self.suspended: list[str] = []
        self.coupons: list[str] = []
        self.orders = 0
        self.names = itertools.count(1)

    # -- the clock and the queue --------------------------------------------------------

    def at(self, delay_s: float, action: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._queue, (self.now + timedelta(seconds=delay_s),
                                     next(self._seq), action, args))

    def step(self) -> None:
        when, _, action, args = heapq.heappop(self._queue)
        self.now = max(self.now, when)
        action(*args)

    def uniform(self, low: float, high: float) -> float:
        return self.rng.uniform(low, high)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self.names):07d}"

    # -- set-up ---------------------------------------------------------------------------

    def open(self) -> None:
        """Warehouses, catalog, rules, carriers, promotions, opening stock, network."""
        run, rng = self.run, self.rng
        for n in range(8):
            warehouse_id, region = f"WH-{n + 1:02d}", REGIONS[n % len(REGIONS)]
            run("admin", self.app.open_warehouse, warehouse_id, f"Warehouse {n + 1}", region)
            self.warehouses.append(warehouse_id)
        for n in range(self.sizes.skus):
            sku, price = f"SKU-{n:04d}", rng.randrange(990, 59900, 10)
            run("admin", self.app.add_product, sku, f"Product {n}", "1 unit", price,
                price * 6 // 10)
            self.skus.append(sku)
            self.listed[sku] = True
            self.stocked[sku] = rng.sample(self.warehouses, rng.choice((1, 2, 2, 3)))
            for warehouse_id in self.stocked[sku]:
                self.receive(sku, warehouse_id, rng.randrange(200, 2000))
        for sku in rng.sample(self.skus, max(1, len(self.skus) // 10)):
            level1, level2 = rng.choice(((1500, 500), (800, 300), (1200, 0)))
            run("admin", self.app.set_commission_rule, sku, "rate", level1, level2)
        for card in CARRIERS:
            run("admin", self.app.add_carrier, card)
        for n, (off, spend) in enumerate(((1000, 10000), (2000, 30000), (500, 0))):
            code = f"WELCOME{n}"
            run("admin", self.app.issue_coupon,
                CouponTerms(code, amount_off_minor=off, min_spend_minor=spend))
            self.coupons.append(code)
        run("admin", self.app.add_threshold_promotion, [(50000, 3000), (100000, 8000)])
        for _ in range(self.sizes.distributors):
            self.apply()
        self.run.flush()

    def receive(self, sku: str, warehouse_id: str, quantity: int) -> None:
        self.run("warehouse", self.app.receive_stock,
                 sku, warehouse_id, quantity, self.new_id("GRN-"))

    def start(self) -> None:
        """The recurring actions; orders arrive one after another from now."""
        self.at(0, self.next_order)
        self.at(HOUR, self.daily)

    # -- the network ----------------------------------------------------------------------

    def apply(self) -> None:
        distributor_id = self.new_id("D")
        referrer = self.rng.choice(self.active) if self.active and self.chance(0.85) \
            else None
        code = self.codes.get(referrer) if referrer else None
        phone = f"13{self.rng.randrange(10**9):09d}"
        if self.run("integration", self.app.apply_distributor,
                    f"Distributor {distributor_id}", phone, code, distributor_id) is None:
            return
        if self.chance(0.9):
            approved = self.run("operator", self.app.approve_distributor, distributor_id)
            if approved:
                self.active.append(distributor_id)
                self.codes[distributor_id] = approved["referral_code"]
        else:
            self.run("operator", self.app.reject_distributor,
                     distributor_id, "incomplete documents")

    def network_changes(self) -> None:
        rng = self.rng
        if self.suspended and self.chance(0.5):
            distributor_id = self.suspended.pop(rng.randrange(len(self.suspended)))
            if self.run("operator", self.app.reinstate_distributor,
                        distributor_id, "documents received"):
                self.active.append(distributor_id)
        if len(self.active) > 10 and self.chance(0.3):
            distributor_id = self.active.pop(rng.randrange(len(self.active)))
            if self.run("operator", self.app.suspend_distributor,
                        distributor_id, "complaint under review"):
                self.suspended.append(distributor_id)
            else:
                self.active.append(distributor_id)
        if len(self.active) > 10 and self.chance(0.2):
            moved, upline = rng.sample(self.active, 2)
            self.run("operator", self.app.change_upline, moved, upline, "team merge")

    # -- orders -------------------------------------------------------------------------

    def next_order(self) -> None:
        self.place()
        self.at(self.rng.expovariate(self.sizes.orders_per_day / DAY), self.next_order)

    def customer(self) -> tuple[str, str, dict[str, str]]:
        """A third of the orders come from the regulars (a twentieth of the customers)."""
        customers = self.sizes.customers
        n = self.rng.randrange(max(1, customers // 20)) if self.chance(0.3) else \
            self.rng.randrange(customers)
        address = {"region": REGIONS[n % len(REGIONS)], "city": f"City {n % 97}",
                   "line1": f"{n % 400} Long Road"}
        return f"C{n:06d}", f"15{n:09d}", address

    def place(self) -> None:
        rng = self.rng
        customer_id, phone, address = self.customer()
        listed = [s for s in self.skus if self.listed[s]]
        picks = rng.sample(listed, min(len(listed), rng.choice((1, 1, 2, 2, 2, 3))))
        lines = [(sku, rng.choice((1, 1, 1, 2, 3))) for sku in picks]
        referral = distributor = None
        if self.active and self.chance(0.55):
            referral = self.codes[rng.choice(self.active)]
        elif self.active and self.chance(0.15):
            distributor = rng.choice(self.active)
        coupon = rng.choice(self.coupons) if self.chance(0.1) else None
        order_id = self.new_id("O")
        placed = self.run("integration", self.app.place_order, customer_id,
                          f"Customer {customer_id}", phone, address, lines,
                          order_id=order_id, distributor_id=distributor,
                          referral_code=referral, coupon_code=coupon,
                          allow_backorder=self.chance(0.3), key=f"place-{order_id}",
                          correlation=order_id)
        if placed is None:
            return
        self.orders += 1
        order = OrderState(order_id, placed["lines"], placed["distributor_id"] is not None)
        fate = rng.random()
        if fate < 0.04:  # never paid: the reservation expires
            self.at(1800 + self.uniform(60, 2 * HOUR), self.expire, order)
        elif fate < 0.06:
            self.at(self.uniform(MINUTE, 25 * MINUTE), self.cancel, order, "changed my mind")
        else:
            self.at(self.uniform(20, 20 * MINUTE), self.pay, order, placed["total"])

    def pay(self, order: OrderState, total: int) -> None:
        paid = self.run("integration", self.app.pay_order,
                        order.order_id, total, f"PAY-{order.order_id}",
                        key=f"pay-{order.order_id}", correlation=order.order_id)
        if paid is None:
            return
        if self.chance(0.03):
            self.at(self.uniform(10 * MINUTE, 2 * HOUR), self.cancel, order, "out of patience")
            return
        self.follow(order, paid)

    def follow(self, order: OrderState, view: dict[str, Any]) -> None:
        """Ship what the order has; a backordered one is looked at again tomorrow."""
        if view["status"] == "backordered":
            self.at(DAY, self.look_again, order)
            return
        for shipment in view["shipments"]:
            if shipment["shipment_id"] not in order.shipments and \
                    shipment["status"] == "created":
                order.shipments.add(shipment["shipment_id"])
                self.at(self.uniform(HOUR, 20 * HOUR), self.pick, order,
                        shipment["shipment_id"])

    def look_again(self, order: OrderState) -> None:
        found = self.app.order(order.order_id)
        if found.status in ("backordered", "fulfilling"):
            self.follow(order, {"status": found.status, "shipments": [
                {"shipment_id": sid, "status": s["status"]}
                for sid, s in sorted(found.shipments.items())]})

    def cancel(self, order: OrderState, reason: str) -> None:
        self.run("operator", self.app.cancel_order, order.order_id, reason,
                 correlation=order.order_id)

    def expire(self, order: OrderState) -> None:
        self.tick(self.app.expire_order, order.order_id, self.now)

    def tick(self, method: Callable[..., dict[str, Any]], *args: Any) -> None:
        """A command of the time rules, stamped as the tick stamps it."""
        self.run("tick", method, *args, correlation=f"tick-{self.now:%Y%m%d%H%M}")

    # -- fulfilment -----------------------------------------------------------------------

    def pick(self, order: OrderState | None, shipment_id: str) -> None:
        if self.run("warehouse", self.app.pick_shipment, shipment_id):
            self.at(self.uniform(10 * MINUTE, 2 * HOUR), self.pack, order, shipment_id)

    def pack(self, order: OrderState | None, shipment_id: str) -> None:
        if self.run("warehouse", self.app.pack_shipment, shipment_id):
            self.at(self.uniform(10 * MINUTE, 3 * HOUR), self.dispatch, order, shipment_id)

    def dispatch(self, order: OrderState | None, shipment_id: str) -> None:
        sent = self.run("warehouse", self.app.dispatch_shipment, shipment_id)
        if sent is None or order is None:
            return
        self.at(self.uniform(2 * HOUR, 10 * HOUR), self.carrier, order, sent, "in_transit", 0)

    def carrier(self, order: OrderState, sent: dict[str, Any], status: str, n: int) -> None:
        carrier, number = sent["carrier"], sent["tracking_number"]
        event_id = f"{carrier}-{number}-{n}"
        occurred = self.now - timedelta(seconds=self.uniform(0, 20 * MINUTE))
        reply = self.run("integration", self.app.record_carrier_event,
                         carrier, event_id, number, status, occurred, f"hub {n}",
                         correlation=order.order_id)
        if reply is None:
            return
        if self.chance(0.01):  # the carrier sends it twice: recorded once
            self.run("integration", self.app.record_carrier_event,
                     carrier, event_id, number, status, occurred, f"hub {n}")
        if status == "in_transit":
            following = "exception" if self.chance(0.02) else "delivered"
            self.at(self.uniform(12 * HOUR, 3 * DAY), self.carrier, order, sent, following,
                    n + 1)
        elif status == "exception":
            self.at(self.uniform(HOUR, DAY), self.carrier, order, sent, "delivered", n + 1)
        elif status == "delivered":
            if self.chance(0.01):  # a late scan, kept in the history, changing nothing
                self.at(HOUR, self.late_scan, order, sent, n + 1, occurred)
            order.delivered.add(sent["shipment_id"])
            if order.delivered == order.shipments:
                self.delivered(order)

    def late_scan(self, order: OrderState, sent: dict[str, Any], n: int,
                  delivered_at: datetime) -> None:
        carrier, number = sent["carrier"], sent["tracking_number"]
        self.run("integration", self.app.record_carrier_event,
                 carrier, f"{carrier}-{number}-{n}", number, "in_transit",
                 delivered_at - timedelta(hours=3), "sorting centre")

    def delivered(self, order: OrderState) -> None:
        window = self.app.settings.return_window_days * DAY
        if self.chance(0.06):
            self.at(self.uniform(HOUR, window / 2), self.after_sales, order)
        self.at(window + self.uniform(MINUTE, HOUR), self.complete, order)

    def complete(self, order: OrderState) -> None:
        self.tick(self.app.complete_order, order.order_id, self.now)
        if order.credited:
            freeze = self.app.settings.commission_freeze_days * DAY
            self.at(freeze + self.uniform(MINUTE, HOUR), self.mature, order)

    def mature(self, order: OrderState) -> None:
        line_nos = [line["line_no"] for line in order.lines]
        self.tick(mature_due, self.app, order.order_id, line_nos, self.now)

    # -- after-sales ----------------------------------------------------------------------

    def after_sales(self, order: OrderState) -> None:
        line = self.rng.choice(order.lines)
        kind = self.rng.choice(("return_refund", "return_refund", "refund_only",
                                "compensation"))
        share = -(-line["net"] // line["quantity"])  # what one unit was paid, rounded up
        amount = max(1, share // 5) if kind == "compensation" else None
        case_id = self.new_id("AS")
        if self.run("integration", self.app.request_case,
                    order.order_id, kind, [(line["sku"], 1)], "damaged in transit", amount,
                    case_id, correlation=order.order_id) is None:
            return
        if self.chance(0.1):
            self.at(self.uniform(HOUR, DAY), self.case_step, "reject", case_id, kind, share)
        else:
            self.at(self.uniform(HOUR, DAY), self.case_step, "approve", case_id, kind,
                    amount or share)

    def case_step(self, step: str, case_id: str, kind: str, amount: int) -> None:
        app, after = self.app, self.uniform(HOUR, DAY)
        if step == "approve":
            self.run("operator", app.approve_case, case_id)
            self.at(after, self.case_step,
                    "receive" if kind == "return_refund" else "refund", case_id, kind, amount)
        elif step == "reject":
            self.run("operator", app.reject_case, case_id, "outside policy")
            self.at(after, self.case_step, "close", case_id, kind, amount)
        elif step == "receive":
            warehouse_id = self.rng.choice(self.warehouses)
            self.run("warehouse", app.receive_case, case_id, warehouse_id, self.chance(0.8))
            self.at(after, self.case_step, "refund", case_id, kind, amount)
        elif step == "refund":
            self.run("operator", app.refund_case, case_id, amount, f"RF-{case_id}")
            self.at(after, self.case_step, "close", case_id, kind, amount)
        else:
            self.run("operator", app.close_case, case_id)

    # -- once a day -----------------------------------------------------------------------

    def daily(self) -> None:
        self.replenish()
        self.withdrawals()
        for _ in range(max(1, int(self.sizes.distributors / 60))):
            self.apply()
        self.network_changes()
        self.purchase_orders()
        self.catalog_changes()
        self.at(DAY, self.daily)

    def replenish(self) -> None:
        """Refill what runs low; count corrections; a transfer between warehouses."""
        rng = self.rng
        for sku in self.skus:
            for warehouse_id in self.stocked[sku]:
                item = self.app.stock_item(sku, warehouse_id)
                if item.available < 150:
                    self.receive(sku, warehouse_id, rng.randrange(300, 2000))
        for sku in rng.sample(self.skus, min(3, len(self.skus))):
            warehouse_id = self.stocked[sku][0]
            self.run("warehouse", self.app.adjust_stock,
                     sku, warehouse_id, rng.choice((-2, -1, 1)), "cycle count")
        sku = rng.choice([s for s in self.skus if len(self.stocked[s]) > 1] or [None])
        if sku is not None:
            source, target = rng.sample(self.stocked[sku], 2)
            self.run("warehouse", self.app.transfer_stock, sku, source, target, 20)

    def withdrawals(self) -> None:
        rng = self.rng
        for distributor_id in rng.sample(self.active, min(len(self.active),
                                                          max(1, len(self.active) // 20))):
            available = self.app.wallet(distributor_id).available
            if available >= 1000:
                amount = rng.randrange(1000, available + 1)
                withdrawal_id = self.new_id("W")
                if self.run(f"distributor-{distributor_id}", self.app.request_withdrawal,
                            distributor_id, amount, withdrawal_id):
                    self.at(self.uniform(HOUR, DAY), self.decide_withdrawal, withdrawal_id)

    def decide_withdrawal(self, withdrawal_id: str) -> None:
        if self.chance(0.9):
            self.run("operator", self.app.approve_withdrawal,
                     withdrawal_id, f"BANK-{withdrawal_id}")
        else:
            self.run("operator", self.app.reject_withdrawal,
                     withdrawal_id, "bank details do not match")

    def purchase_orders(self) -> None:
        rng = self.rng
        for _ in range(max(1, int(self.sizes.orders_per_day / 50))):
            if not self.active:
                return
            distributor_id = rng.choice(self.active)
            lines = [(sku, rng.randrange(5, 30)) for sku in rng.sample(self.skus, 2)]
            purchase_order_id = self.new_id("PO")
            if self.run(f"distributor-{distributor_id}", self.app.request_purchase_order,
                        distributor_id, lines, purchase_order_id):
                self.at(self.uniform(HOUR, 8 * HOUR), self.approve_po, purchase_order_id)

    def approve_po(self, purchase_order_id: str) -> None:
        approved = self.run("operator", self.app.approve_purchase_order, purchase_order_id)
        if approved is None:
            return
        for shipment in approved["shipments"]:
            self.at(self.uniform(HOUR, 10 * HOUR), self.pick, None, shipment["shipment_id"])
        self.at(3 * DAY, self.receive_po, purchase_order_id)

    def receive_po(self, purchase_order_id: str) -> None:
        self.run("integration", self.app.receive_purchase_order, purchase_order_id)

    def catalog_changes(self) -> None:
        rng = self.rng
        if self.chance(0.3):
            sku = rng.choice(self.skus)
            price = rng.randrange(990, 59900, 10)
            self.run("admin", self.app.change_price, sku, price)
        if self.chance(0.1):
            sku = rng.choice(self.skus)
            if self.listed[sku] and sum(self.listed.values()) > 3:
                if self.run("admin", self.app.delist_product, sku):
                    self.listed[sku] = False
            elif not self.listed[sku]:
                if self.run("admin", self.app.list_product, sku):
                    self.listed[sku] = True


def process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def database_cpu_s(engine: Engine) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL server process serving this database, when
    the server runs on this machine (read from /proc); empty otherwise (SQLite works
    inside this process)."""
    if engine.dialect.name != "postgresql":
        return {}
    with engine.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = "
                                 "current_database()")).scalars().all()
    ticks, found = os.sysconf("SC_CLK_TCK"), {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # another machine's, or gone
        found[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return found


def generate(url: str, events: int, seed: int = 1, group: int = 200,
             progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Record a log of at least `events` events into the (empty, migrated) database at
    `url`; return what was done: events, seconds (and CPU seconds of this process and of
    the database server's processes), commands, refusals."""
    app = Fenxiao(Settings.from_env(database_url=url, rate_limit=None))
    # The only writer: every aggregate in the cache is current, so loading one needs no
    # query for newer events (what fast-forwarding guards against is other writers).
    app.repository.fastforward = False
    app.repository.cache = LRUCache(maxsize=CACHE_SIZE)
    run = Commands(app, group)
    business = Business(app, run, Sizes(events), random.Random(seed))
    started, started_cpu = time.perf_counter(), process_cpu_s()
    database_before = database_cpu_s(app.engine)
    try:
        business.open()
        business.start()
        head = app.last_position()
        while head < events:
            for _ in range(group):
                business.step()
            run.flush()
            head = app.last_position()
            if progress:
                progress(head)
        seconds, cpu = time.perf_counter() - started, process_cpu_s() - started_cpu
        database_after = database_cpu_s(app.engine)  # the pool's servers are still up
    except BaseException:
        run.abort()
        raise
    finally:
        app.close()
    database_cpu = sum(after - database_before.get(pid, 0.0)
                       for pid, after in database_after.items())
    return {"events": head, "seconds": seconds, "cpu": cpu,
            "database_cpu": database_cpu if database_after else None,
            "orders": business.orders,
            "days": (business.now - START) / timedelta(days=1),
            "commands": sum(run.done.values()), "done": dict(run.done),
            "refused": dict(run.refused)}


def copy_log(source_url: str, target_url: str, chunk: int = 5000) -> int:
    """Copy what the write side stored in `source_url` (the event log with its positions,
    snapshots, process managers' tracking positions and parked events, idempotency
    replies, store facts) into the empty, migrated `target_url`, row by row as stored,
    streaming `chunk` rows at a time; return the events copied. The read models are not
    copied: they are the log's to rebuild."""
    source = Fenxiao(Settings.from_env(database_url=source_url, rate_limit=None))
    target = Fenxiao(Settings.from_env(database_url=target_url, rate_limit=None))
    events = source.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
    tables = [events, source.snapshots.recorder.events_record_cls.__table__,  # type: ignore
              tracking, parked_events, idempotency, store_facts]
    try:
        with source.engine.connect() as reading, target.engine.begin() as writing:
            for table in tables:
                query = select(table).order_by(events.c.id) if table is events else \
                    select(table)
                rows = reading.execution_options(stream_results=True, yield_per=chunk) \
                    .execute(query)
                for part in rows.mappings().partitions(chunk):
                    writing.execute(table.insert(), [dict(row) for row in part])
            if writing.dialect.name == "postgresql":  # later events continue the log
                writing.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{events.name}', 'id'), "
                    f"(SELECT max(id) FROM {events.name}))"))
        return target.last_position()
    finally:
        source.close()
        target.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audit_log",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: a fresh temporary SQLite file")
    parser.add_argument("--events", type=int, default=20_000,
                        help="events to record, at least (default 20000; 1000000 for the "
                             "audit benchmarks)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--group", type=int, default=200,
                        help="commands per database transaction (default 200)")
    parser.add_argument("--via-sqlite", action="store_true",
                        help="record into a temporary SQLite file, then copy what was "
                             "stored into --database-url (about twice as fast for "
                             "PostgreSQL)")
    parser.add_argument("--yes-wipe", action="store_true",
                        help="wipe the database even if its name has no 'bench' or 'test'")
    args = parser.parse_args(argv)
    if args.events < 1 or args.group < 1:
        parser.error("--events and --group must be positive")
    scratch = tempfile.TemporaryDirectory(prefix="fenxiao-bench-")
    url = args.database_url or f"sqlite:///{Path(scratch.name) / 'bench.db'}"
    first = f"sqlite:///{Path(scratch.name) / 'first.db'}" if args.via_sqlite else url
    try:
        prepare(url, args.yes_wipe, fresh=args.database_url is None)
        if first != url:
            prepare(first, False, fresh=True)
        stats = generate(first, args.events, args.seed, args.group,
                         progress=Progress(args.events))
        note(f"{stats['orders']} orders over {stats['days']:.1f} simulated days; commands "
             f"{stats['done']}; refused {stats['refused']}")
        busy = stats["cpu"] + (stats["database_cpu"] or 0)
        note(f"{stats['seconds']:.0f} s; CPU: {stats['cpu']:.0f} s here, "
             f"{stats['database_cpu'] or 0:.0f} s in the database server: about "
             f"{stats['events'] / busy:,.0f} events/s on a machine doing nothing else")
        copy_seconds = 0.0
        if first != url:
            started = time.perf_counter()
            copied = copy_log(first, url)
            copy_seconds = time.perf_counter() - started
            note(f"copied {copied} events into {url} in {copy_seconds:.0f} s")
        seconds = stats["seconds"] + copy_seconds
        report = Report()
        report.emit("audit_log_events", stats["events"], "events")
        report.emit("audit_log_generation_time", seconds, "s")
        report.emit("audit_log_generation", stats["events"] / seconds, "events/s")
        report.emit("audit_log_commands", stats["commands"] / stats["seconds"], "commands/s")
        report.emit("audit_log_generation_cpu", stats["cpu"], "s")
        if stats["database_cpu"] is not None:
            report.emit("audit_log_generation_database_cpu", stats["database_cpu"], "s")
        if first != url:
            report.emit("audit_log_copy_time", copy_seconds, "s")
    finally:
        scratch.cleanup()


class Progress:
    """A line on stderr every tenth of the way."""

    def __init__(self, total: int) -> None:
        self.total, self.next, self.started = total, total / 10, time.perf_counter()

    def __call__(self, head: int) -> None:
        if head >= self.next:
            self.next += self.total / 10
            seconds = time.perf_counter() - self.started
            note(f"  {head:,} events, {seconds:.0f} s ({head / seconds:,.0f} events/s)")


if __name__ == "__main__":
    main()
