"""The consumer order: a snapshot of what was sold, at what price, from which warehouses,
and what has happened to it since.

Status transitions (command: from -> to); any other command in any other status raises
InvalidTransition and records nothing:

    place             (new)                                -> placed | backordered
    fill_backorder    backordered                          -> backordered | placed | paid
    pay               placed | backordered (unpaid)        -> paid | backordered
    expire            placed | backordered (unpaid, due)   -> cancelled
    cancel            placed | backordered | paid | fulfilling, no shipment dispatched
                                                           -> cancelled
    start_fulfilment  paid                                 -> fulfilling
    record_dispatch   fulfilling                           -> fulfilling | shipped
    record_delivery   fulfilling | shipped                 -> same | delivered
    complete          delivered, return window over        -> completed
    refund            any status once paid, except cancelled -> unchanged
    compensate        any status once paid, except cancelled -> unchanged
    open_case         any status once paid, except cancelled -> unchanged (after-sales)
    release_case      (a rejected case)                    -> unchanged
    release_for_case  no shipment dispatched, not cancelled -> unchanged (a refund only
                      before dispatch: its reservation released, its shipments replaced)

`backordered` means some line waits for stock, paid or not (`is_paid` tells). `shipped`
means every shipment has been dispatched, `delivered` that every one was delivered.

The money, fixed at placement: line net = gross − discount; total = Σ line nets +
shipping fee. Payment must equal the total; each line is then paid its net and shipping
is paid separately. A line is never refunded beyond what was paid for it.
"""
from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.accruals import RefundExceedsPaid
from domain.aftersales import AFTER_WINDOW, TAKES_GOODS, ExceedsDelivered, ReturnWindowClosed
from domain.allocation import LinePlan, require_covered
from domain.checks import ensure
from domain.commissions import PaidLine
from domain.errors import DomainError, InvalidCommand, InvalidTransition
from domain.fulfilment import ShipmentPlan, plan_shipments
from domain.ids import natural_id
from domain.pricing import PricedOrder, check_address, check_customer

UNPAID_OPEN = ("placed", "backordered")
CANCELLABLE = ("placed", "backordered", "paid", "fulfilling")


class AmountMismatch(DomainError):
    code = "amount_mismatch"


class DuplicateLine(DomainError):
    """Two lines of one order name the same SKU (a rule no request schema can state)."""

    code = "duplicate_line"


def check_one_line_per_sku(skus: Sequence[str]) -> None:
    repeated = sorted({sku for sku in skus if skus.count(sku) > 1})
    if repeated:
        raise DuplicateLine(f"each sku may appear on one line only; {repeated[0]} appears "
                            "more than once", sku=repeated[0], skus=repeated)


class AttributionConflict(DomainError):
    """An order names a distributor and a referral code of another distributor."""

    code = "attribution_conflict"


class Order(Aggregate):
    @staticmethod
    def create_id(order_id: str) -> UUID:
        return natural_id("order", order_id)

    @classmethod
    def place(cls, order_id: str, customer_id: str, customer_name: str, customer_phone: str,
              shipping_address: Mapping[str, str | None], priced: PricedOrder,
              plans: Sequence[LinePlan], allow_backorder: bool, distributor_id: str | None,
              placed_at: datetime) -> "Order":
        """A new order from its priced lines and their allocation plans (same order, same
        SKUs and quantities). Uncovered quantities are backordered if `allow_backorder`,
        else InsufficientStock; bad customer or address data is InvalidCommand."""
        customer = check_customer(customer_id, customer_name, customer_phone)
        address = check_address(shipping_address)
        _check_money(priced)
        ensure([(p.sku, p.requested) for p in plans] ==
               [(line.sku, line.quantity) for line in priced.lines], "plans do not match lines")
        if not allow_backorder:
            require_covered(plans)
        lines = [dict(line.as_dict(), backordered=plan.uncovered,
                      allocations=[{"warehouse_id": w, "quantity": q}
                                   for w, q in plan.allocations])
                 for line, plan in zip(priced.lines, plans)]
        return cls(order_id=order_id, customer=customer, shipping_address=address,
                   lines=lines, subtotal_minor=priced.subtotal_minor,
                   discount_minor=priced.discount_minor,
                   shipping_fee_minor=priced.shipping_fee_minor,
                   total_minor=priced.total_minor, currency=priced.currency,
                   distributor_id=distributor_id, promotions=priced.promotions(),
                   status="backordered" if any(p.uncovered for p in plans) else "placed",
                   placed_at=placed_at)

    @event("OrderPlaced")
    def __init__(self, order_id: str, customer: dict[str, str],
                 shipping_address: dict[str, str | None], lines: list[dict[str, Any]],
                 subtotal_minor: int, discount_minor: int, shipping_fee_minor: int,
                 total_minor: int, currency: str, distributor_id: str | None,
                 promotions: dict[str, Any], status: str, placed_at: datetime) -> None:
        self.order_id = order_id
        self.customer = dict(customer)
        self.customer_id = customer["customer_id"]
        self.shipping_address = dict(shipping_address)
        self.lines = [dict(line, allocations=[dict(a) for a in line["allocations"]],
                           paid_minor=0, refunded_minor=0, compensated_minor=0)
                      for line in lines]
        self.subtotal_minor = subtotal_minor
        self.discount_minor = discount_minor
        self.shipping_fee_minor = shipping_fee_minor
        self.total_minor = total_minor
        self.currency = currency
        self.distributor_id = distributor_id
        self.promotions = dict(promotions)
        self.coupon_code: str | None = promotions.get("coupon_code")
        self.status = status
        self.placed_at = placed_at
        self.paid_at: datetime | None = None
        self.payment_reference: str | None = None
        self.shipping_paid_minor = 0
        self.shipping_refunded_minor = 0
        # shipment id -> {"warehouse_id", "lines", "status": created|dispatched|delivered}
        self.shipments: dict[str, dict[str, Any]] = {}
        self.delivered_at: datetime | None = None
        self.completed_at: datetime | None = None
        self.cancelled_at: datetime | None = None
        self.cancel_reason: str | None = None
        self.refund_due_minor = 0
        # after-sales case id -> {"type", "lines": {sku: quantity}}, released on rejection
        self.cases: dict[str, dict[str, Any]] = {}

    # -- queries ------------------------------------------------------------------

    @property
    def is_paid(self) -> bool:
        return self.paid_at is not None

    @property
    def paid_minor(self) -> int:
        return sum(line["paid_minor"] for line in self.lines) + self.shipping_paid_minor

    @property
    def refunded_minor(self) -> int:
        """Paid back in all: refunds, compensations and refunded shipping."""
        return sum(line["refunded_minor"] + line.get("compensated_minor", 0)
                   for line in self.lines) + self.shipping_refunded_minor

    def line(self, line_no: int) -> dict[str, Any]:
        """A copy of line `line_no` (1-based); InvalidCommand if there is none."""
        return copy.deepcopy(self._line(line_no))

    def _line(self, line_no: int) -> dict[str, Any]:
        if type(line_no) is not int or not 1 <= line_no <= len(self.lines):
            raise InvalidCommand(f"order {self.order_id} has no line {line_no}",
                                 field="line_no")
        return self.lines[line_no - 1]

    def allocated_stock(self) -> list[tuple[str, str, int]]:
        """(sku, warehouse_id, quantity) held for this order, reference = order id."""
        held: dict[tuple[str, str], int] = {}
        for line in self.lines:
            for a in line["allocations"]:
                key = (line["sku"], a["warehouse_id"])
                held[key] = held.get(key, 0) + a["quantity"]
        return [(sku, w, q) for (sku, w), q in sorted(held.items())]

    def backorders(self) -> list[tuple[int, str, int]]:
        """(line_no, sku, quantity waiting) of every line still waiting for stock."""
        return [(line["line_no"], line["sku"], line["backordered"])
                for line in self.lines if line["backordered"]]

    def paid_lines(self) -> list[PaidLine]:
        """The commission bases of a paid order: lines with a positive net."""
        return [PaidLine(order_id=self.order_id, line_no=line["line_no"], sku=line["sku"],
                         quantity=line["quantity"], net_minor=line["paid_minor"],
                         currency=self.currency)
                for line in self.lines if line["paid_minor"] > 0]

    def shipment_plans(self) -> list[ShipmentPlan]:
        """The shipments recorded by start_fulfilment, for creating Shipment aggregates."""
        return [ShipmentPlan(shipment_id=sid, warehouse_id=s["warehouse_id"],
                             lines=tuple((x["sku"], x["quantity"]) for x in s["lines"]))
                for sid, s in sorted(self.shipments.items())]

    def expires_at(self, timeout_s: int) -> datetime:
        return self.placed_at + timedelta(seconds=timeout_s)

    def is_expirable(self, now: datetime, timeout_s: int) -> bool:
        return self.status in UNPAID_OPEN and not self.is_paid and \
            now >= self.expires_at(timeout_s)

    def completes_at(self, return_window_s: int) -> datetime | None:
        return None if self.delivered_at is None else \
            self.delivered_at + timedelta(seconds=return_window_s)

    def is_completable(self, now: datetime, return_window_s: int,
                       open_cases: Sequence[str] = ()) -> bool:
        due = self.completes_at(return_window_s)
        return self.status == "delivered" and due is not None and now >= due \
            and not open_cases

    # -- commands -----------------------------------------------------------------

    def _require(self, statuses: Sequence[str], doing: str) -> None:
        if self.status not in statuses:
            raise InvalidTransition(f"order {self.order_id} is {self.status}; it cannot be "
                                    f"{doing}", status=self.status)

    def fill_backorder(self, line_no: int, allocations: Sequence[tuple[str, int]],
                       at: datetime) -> None:
        """Allocate (warehouse_id, quantity) pairs to line `line_no`'s backordered quantity
        (the stock is reserved by the caller in the same save). Partial fills allowed."""
        self._require(("backordered",), "filled from stock")
        line = self._line(line_no)
        if not allocations or any(q <= 0 for _, q in allocations):
            raise InvalidCommand("a fill needs positive quantities", field="allocations")
        filled = sum(q for _, q in allocations)
        if filled > line["backordered"]:
            raise InvalidCommand(f"line {line_no} waits for {line['backordered']}, not "
                                 f"{filled}", field="allocations")
        left = line["backordered"] - filled
        waiting = left or any(x["backordered"] for x in self.lines if x is not line)
        self._backorder_filled(
            line_no=line_no, sku=line["sku"], backordered=left, at=at,
            allocations=[{"warehouse_id": w, "quantity": q} for w, q in allocations],
            status="backordered" if waiting else "paid" if self.is_paid else "placed")

    @event("BackorderFilled")
    def _backorder_filled(self, line_no: int, sku: str, allocations: list[dict[str, Any]],
                          backordered: int, status: str, at: datetime) -> None:
        line = self.lines[line_no - 1]
        line["allocations"].extend(dict(a) for a in allocations)
        line["backordered"] = backordered
        self.status = status

    def pay(self, amount_minor: int, payment_reference: str, at: datetime,
            commission_basis: dict[str, Any] | None = None) -> None:
        """Record the payment: it must equal the total (AmountMismatch). Each line is paid
        its net; shipping is paid separately. `commission_basis` is what the commission
        accrual computes from, as it stands at payment (None: nobody earns on this order);
        the event keeps it as given."""
        if self.is_paid:
            raise InvalidTransition(f"order {self.order_id} is already paid",
                                    status=self.status)
        self._require(UNPAID_OPEN, "paid")
        if not payment_reference.strip():
            raise InvalidCommand("a payment reference is required", field="payment_reference")
        if amount_minor != self.total_minor:
            raise AmountMismatch(f"order {self.order_id} totals {self.total_minor}, not "
                                 f"{amount_minor}", expected=self.total_minor,
                                 received=amount_minor)
        self._paid(amount_minor=amount_minor, payment_reference=payment_reference.strip(),
                   line_payments=[{"line_no": x["line_no"], "amount_minor": x["net_minor"]}
                                  for x in self.lines],
                   shipping_paid_minor=self.shipping_fee_minor,
                   status="paid" if self.status == "placed" else "backordered", at=at,
                   commission_basis=copy.deepcopy(commission_basis))

    @event("OrderPaid")
    def _paid(self, amount_minor: int, payment_reference: str,
              line_payments: list[dict[str, int]], shipping_paid_minor: int, status: str,
              at: datetime, commission_basis: dict[str, Any] | None = None) -> None:
        for payment in line_payments:
            self.lines[payment["line_no"] - 1]["paid_minor"] = payment["amount_minor"]
        self.shipping_paid_minor = shipping_paid_minor
        self.payment_reference = payment_reference
        self.paid_at = at
        self.status = status

    def cancel(self, reason: str, at: datetime) -> None:
        """Cancel before any shipment is dispatched. The caller releases `allocated_stock()`,
        the coupon and any created shipments; `refund_due_minor` is what was paid and not
        yet refunded (0 if unpaid), now refunded in full, line by line."""
        self._require(CANCELLABLE, "cancelled")
        if any(s["status"] not in ("created", "cancelled")
               for s in self.shipments.values()):
            raise InvalidTransition(f"order {self.order_id} has a dispatched shipment; "
                                    "open an after-sales case instead", status=self.status)
        if not reason.strip():
            raise InvalidCommand("a reason is required", field="reason")
        refunds = [{"line_no": x["line_no"], "amount_minor": _refundable(x)}
                   for x in self.lines if _refundable(x) > 0]
        shipping = self.shipping_paid_minor - self.shipping_refunded_minor
        self._cancelled(reason=reason, line_refunds=refunds, shipping_refund_minor=shipping,
                        refund_due_minor=sum(r["amount_minor"] for r in refunds) + shipping,
                        released=_stock_dicts(self.allocated_stock()),
                        shipment_ids=sorted(self.shipments), at=at)

    @event("OrderCancelled")
    def _cancelled(self, reason: str, line_refunds: list[dict[str, int]],
                   shipping_refund_minor: int, refund_due_minor: int,
                   released: list[dict[str, Any]], shipment_ids: list[str],
                   at: datetime) -> None:
        for refund in line_refunds:
            self.lines[refund["line_no"] - 1]["refunded_minor"] += refund["amount_minor"]
        self.shipping_refunded_minor += shipping_refund_minor
        self.refund_due_minor = refund_due_minor
        self._close(reason, at)

    def expire(self, now: datetime, timeout_s: int) -> None:
        """Cancel an unpaid order whose reservation timed out (placed_at + timeout_s <=
        now); the caller releases `allocated_stock()` and the coupon."""
        self._require(UNPAID_OPEN, "expired")
        if self.is_paid:
            raise InvalidTransition(f"order {self.order_id} is paid; it does not expire",
                                    status=self.status)
        if now < self.expires_at(timeout_s):
            raise InvalidTransition(f"order {self.order_id}'s reservation runs until "
                                    f"{self.expires_at(timeout_s).isoformat()}",
                                    due_at=self.expires_at(timeout_s).isoformat())
        self._expired(timeout_s=timeout_s, released=_stock_dicts(self.allocated_stock()),
                      at=now)

    @event("OrderExpired")
    def _expired(self, timeout_s: int, released: list[dict[str, Any]], at: datetime) -> None:
        self._close("reservation_expired", at)

    def _close(self, reason: str, at: datetime) -> None:
        self.status = "cancelled"
        self.cancel_reason = reason
        self.cancelled_at = at
        for shipment in self.shipments.values():
            shipment["status"] = "cancelled"

    def start_fulfilment(self, at: datetime) -> list[ShipmentPlan]:
        """One shipment per warehouse of the allocations; returns their plans for the
        caller to create the Shipment aggregates in the same save."""
        self._require(("paid",), "fulfilled")
        plans = plan_shipments(self.order_id, self.allocated_stock())
        self._fulfilment_started(shipments=[p.as_dict() for p in plans], at=at)
        return plans

    @event("FulfilmentStarted")
    def _fulfilment_started(self, shipments: list[dict[str, Any]], at: datetime) -> None:
        for s in shipments:
            self.shipments[s["shipment_id"]] = {
                "warehouse_id": s["warehouse_id"], "status": "created",
                "lines": [dict(x) for x in s["lines"]]}
        self.status = "fulfilling"

    def record_dispatch(self, shipment_id: str, carrier: str, tracking_number: str,
                        at: datetime) -> None:
        """A shipment left its warehouse; the order is shipped once all have."""
        self._require(("fulfilling",), "dispatched")
        self._require_shipment(shipment_id, "created")
        others = [s for sid, s in self.shipments.items() if sid != shipment_id]
        done = all(s["status"] != "created" for s in others)
        self._shipment_dispatched(shipment_id=shipment_id, carrier=carrier,
                                  tracking_number=tracking_number,
                                  status="shipped" if done else "fulfilling", at=at)

    @event("OrderShipmentDispatched")
    def _shipment_dispatched(self, shipment_id: str, carrier: str, tracking_number: str,
                             status: str, at: datetime) -> None:
        self.shipments[shipment_id]["status"] = "dispatched"
        self.status = status

    def record_delivery(self, shipment_id: str, at: datetime) -> None:
        """A dispatched shipment was delivered (`at`: when, per the carrier); the order is
        delivered once every shipment is, and its return window starts then."""
        self._require(("fulfilling", "shipped"), "delivered")
        self._require_shipment(shipment_id, "dispatched")
        others = [s for sid, s in self.shipments.items() if sid != shipment_id]
        done = all(s["status"] in ("delivered", "cancelled") for s in others)
        self._shipment_delivered(shipment_id=shipment_id,
                                 status="delivered" if done else self.status, at=at)

    @event("OrderShipmentDelivered")
    def _shipment_delivered(self, shipment_id: str, status: str, at: datetime) -> None:
        self.shipments[shipment_id]["status"] = "delivered"
        self.status = status
        if status == "delivered":
            self.delivered_at = at

    def _require_shipment(self, shipment_id: str, status: str) -> None:
        shipment = self.shipments.get(shipment_id)
        if shipment is None:
            raise InvalidCommand(f"order {self.order_id} has no shipment {shipment_id}",
                                 field="shipment_id")
        if shipment["status"] != status:
            raise InvalidTransition(f"shipment {shipment_id} of order {self.order_id} is "
                                    f"{shipment['status']}, not {status}",
                                    status=shipment["status"])

    def complete(self, now: datetime, return_window_s: int,
                 open_cases: Sequence[str] = ()) -> None:
        """Delivered, the return window (seconds after delivery) is over, and no
        after-sales case of it is still open (`open_cases`: their ids): completing starts
        the commission's freeze, and a refund after it would claw back paid-out money."""
        self._require(("delivered",), "completed")
        due = self.completes_at(return_window_s)
        if due is None or now < due:
            raise InvalidTransition(f"order {self.order_id}'s return window runs until "
                                    f"{due.isoformat()}", due_at=due.isoformat())
        if open_cases:
            raise InvalidTransition(f"order {self.order_id} has open after-sales cases: "
                                    f"{', '.join(open_cases)}", open_cases=list(open_cases))
        self._completed(at=now)

    @event("OrderCompleted")
    def _completed(self, at: datetime) -> None:
        self.status = "completed"
        self.completed_at = at

    def refund(self, line_no: int, amount_minor: int, reference: str, at: datetime) -> int:
        """Refund part of what was paid for a line; returns the line's refunded total
        (what LineCommission.reverse takes). RefundExceedsPaid beyond the line's paid."""
        if not self.is_paid or self.status == "cancelled":
            raise InvalidTransition(f"order {self.order_id} is {self.status}; there is no "
                                    "payment left to refund", status=self.status)
        line = self._line(line_no)
        if amount_minor <= 0:
            raise InvalidCommand("a refund must be positive", field="amount")
        if not reference.strip():
            raise InvalidCommand("a refund reference is required", field="refund_reference")
        total = line["refunded_minor"] + amount_minor
        if amount_minor > _refundable(line):
            raise RefundExceedsPaid(
                f"line {line_no} of {self.order_id} was paid {line['paid_minor']} and has "
                f"been refunded {line['refunded_minor']}; {amount_minor} more is too much",
                line_no=line_no, paid=line["paid_minor"], refunded=line["refunded_minor"],
                requested=amount_minor)
        self._line_refunded(line_no=line_no, sku=line["sku"], amount_minor=amount_minor,
                            refunded_total_minor=total, reference=reference, at=at)
        return total

    @event("OrderLineRefunded")
    def _line_refunded(self, line_no: int, sku: str, amount_minor: int,
                       refunded_total_minor: int, reference: str, at: datetime) -> None:
        self.lines[line_no - 1]["refunded_minor"] = refunded_total_minor

    # -- after-sales ----------------------------------------------------------------

    def line_of(self, sku: str) -> dict[str, Any]:
        """A copy of the line selling `sku` (one per sku); ExceedsDelivered if none."""
        for line in self.lines:
            if line["sku"] == sku:
                return copy.deepcopy(line)
        raise ExceedsDelivered(f"order {self.order_id} has no line of {sku}", sku=sku,
                               eligible=0)

    def case_quantities(self, sku: str, shipped_only: bool = False) -> int:
        """How many of `sku` earlier cases have taken back (rejected ones released); with
        `shipped_only`, not counting the goods refunded before dispatch and so held back
        (they were never delivered, so they do not reduce what was)."""
        return sum(c["lines"].get(sku, 0) for c in self.cases.values()
                   if c["type"] in TAKES_GOODS and not (shipped_only and c.get("held_back")))

    def eligible_quantity(self, sku: str, case_type: str) -> int:
        """What a new case of `case_type` may name of `sku`: what was delivered (or,
        before any dispatch, for a refund only or a compensation, what was ordered), net
        of what earlier cases took back."""
        line = self.line_of(sku)
        dispatched = any(s["status"] in ("dispatched", "delivered")
                         for s in self.shipments.values())
        ordered = case_type == "compensation" or (case_type == "refund_only"
                                                  and not dispatched)
        if ordered:
            base = line["quantity"]
        else:
            base = sum(x["quantity"] for s in self.shipments.values()
                       if s["status"] == "delivered" for x in s["lines"] if x["sku"] == sku)
        taken = self.case_quantities(sku, shipped_only=not ordered) \
            if case_type in TAKES_GOODS else 0
        return max(base - taken, 0)

    def open_case(self, case_id: str, case_type: str, lines: Sequence[tuple[str, int]],
                  now: datetime, return_window_s: int) -> None:
        """An after-sales case names goods of this order: paid, not cancelled, inside
        the return window (except repair and compensation), never more of a SKU than
        `eligible_quantity`. Recorded here so the order guards every case at once."""
        if not self.is_paid or self.status == "cancelled":
            raise InvalidTransition(f"order {self.order_id} is {self.status}; it has no "
                                    "paid goods for after-sales", status=self.status)
        check_one_line_per_sku([sku for sku, _ in lines])
        due = self.completes_at(return_window_s)
        # Completed is closed, whatever `now` says: a tick run ahead of the clock
        # (`fenxiao tick --now`) has judged the window over.
        if case_type not in AFTER_WINDOW and (
                self.status == "completed" or (due is not None and now >= due)):
            closed = self.completed_at if self.status == "completed" else due
            raise ReturnWindowClosed(f"order {self.order_id}'s return window closed at "
                                     f"{closed.isoformat()}", closed_at=closed.isoformat())
        for sku, quantity in lines:
            eligible = self.eligible_quantity(sku, case_type)
            if quantity > eligible:
                raise ExceedsDelivered(f"order {self.order_id} can take back {eligible} of "
                                       f"{sku}, not {quantity}", sku=sku, eligible=eligible,
                                       requested=quantity)
        self._case_opened(case_id=case_id, case_type=case_type,
                          lines=[{"sku": s, "quantity": q} for s, q in lines], at=now)

    @event("AfterSalesCaseOpened")
    def _case_opened(self, case_id: str, case_type: str, lines: list[dict[str, Any]],
                     at: datetime) -> None:
        self.cases[case_id] = {"type": case_type,
                               "lines": {x["sku"]: x["quantity"] for x in lines}}

    def is_dispatched(self) -> bool:
        return any(s["status"] in ("dispatched", "delivered") for s in self.shipments.values())

    def release_for_case(self, case_id: str, lines: Sequence[tuple[str, int]],
                         at: datetime) -> tuple[list[tuple[str, str, int]], list[str],
                                                list[ShipmentPlan]]:
        """A refund only before dispatch: the case's goods are not sent. Their
        reservation is released (latest allocations first) and every shipment whose
        warehouse lost goods is cancelled and, if goods remain there, replaced by a new
        one. Returns (released (sku, warehouse, quantity), cancelled shipment ids, new
        shipment plans) for the caller to apply to the stock and shipments in the same
        save."""
        ensure(case_id in self.cases, f"order {self.order_id} has no case {case_id}")
        if self.is_dispatched() or self.status == "cancelled":
            raise InvalidTransition(f"order {self.order_id} is {self.status}; its goods "
                                    "can no longer be held back", status=self.status)
        released: list[tuple[str, str, int]] = []
        for sku, quantity in lines:
            line = self.line_of(sku)
            held = sum(a["quantity"] for a in line["allocations"])
            if quantity > held:
                raise InvalidTransition(f"line {line['line_no']} of {self.order_id} holds "
                                        f"{held} of {sku}, not {quantity}; backordered "
                                        "goods cannot be refunded before they are "
                                        "allocated", held=held, requested=quantity)
            for a in reversed(line["allocations"]):
                take = min(quantity, a["quantity"])
                if take:
                    released.append((sku, a["warehouse_id"], take))
                    quantity -= take
        touched = {w for _, w, _ in released}
        cancelled = sorted(sid for sid, s in self.shipments.items()
                           if s["status"] == "created" and s["warehouse_id"] in touched)
        left = _without(self.allocated_stock(), released)
        plans = [plan for plan in plan_shipments(f"{self.order_id}:{case_id}", left)
                 if plan.warehouse_id in touched] if cancelled else []
        self._case_stock_released(case_id=case_id, released=_stock_dicts(released),
                                  cancelled_shipment_ids=cancelled,
                                  shipments=[p.as_dict() for p in plans], at=at)
        return released, cancelled, plans

    @event("AfterSalesStockReleased")
    def _case_stock_released(self, case_id: str, released: list[dict[str, Any]],
                             cancelled_shipment_ids: list[str],
                             shipments: list[dict[str, Any]], at: datetime) -> None:
        self.cases[case_id]["held_back"] = True
        for r in released:
            line = next(x for x in self.lines if x["sku"] == r["sku"])
            a = next(a for a in reversed(line["allocations"])
                     if a["warehouse_id"] == r["warehouse_id"] and a["quantity"])
            a["quantity"] -= r["quantity"]
            line["allocations"] = [x for x in line["allocations"] if x["quantity"]]
        for sid in cancelled_shipment_ids:
            self.shipments[sid]["status"] = "cancelled"
        for s in shipments:
            self.shipments[s["shipment_id"]] = {
                "warehouse_id": s["warehouse_id"], "status": "created",
                "lines": [dict(x) for x in s["lines"]]}

    def release_case(self, case_id: str, at: datetime) -> None:
        """A rejected case gives its quantities back."""
        ensure(case_id in self.cases, f"order {self.order_id} has no case {case_id}")
        self._case_released(case_id=case_id, at=at)

    @event("AfterSalesCaseReleased")
    def _case_released(self, case_id: str, at: datetime) -> None:
        self.cases.pop(case_id, None)

    def compensate(self, line_no: int, amount_minor: int, reference: str,
                   at: datetime) -> None:
        """Pay a customer back part of a line without a refund of goods: what the
        commission reversal does not follow (unless the caller refunds instead). Never
        beyond what is left of the line's payment (RefundExceedsPaid)."""
        if not self.is_paid or self.status == "cancelled":
            raise InvalidTransition(f"order {self.order_id} is {self.status}; there is no "
                                    "payment left to compensate", status=self.status)
        line = self._line(line_no)
        if amount_minor <= 0:
            raise InvalidCommand("a compensation must be positive", field="amount")
        if amount_minor > _refundable(line):
            raise RefundExceedsPaid(
                f"line {line_no} of {self.order_id} has {_refundable(line)} left to pay "
                f"back, not {amount_minor}", line_no=line_no, paid=line["paid_minor"],
                refunded=line["refunded_minor"] + line["compensated_minor"],
                requested=amount_minor)
        self._line_compensated(line_no=line_no, sku=line["sku"], amount_minor=amount_minor,
                               reference=reference, at=at)

    @event("OrderLineCompensated")
    def _line_compensated(self, line_no: int, sku: str, amount_minor: int, reference: str,
                          at: datetime) -> None:
        self.lines[line_no - 1]["compensated_minor"] += amount_minor


def _without(held: list[tuple[str, str, int]], taken: list[tuple[str, str, int]]
             ) -> list[tuple[str, str, int]]:
    left = {(sku, w): q for sku, w, q in held}
    for sku, w, q in taken:
        left[(sku, w)] -= q
    return [(sku, w, q) for (sku, w), q in sorted(left.items()) if q > 0]


def _refundable(line: Mapping[str, Any]) -> int:
    """What is left of a line's payment to pay back (refunds and compensations)."""
    return line["paid_minor"] - line["refunded_minor"] - line.get("compensated_minor", 0)


def _check_money(priced: PricedOrder) -> None:
    """The money law of every line; the order's totals are sums of the lines."""
    for line in priced.lines:
        ensure(line.gross_minor == line.quantity * line.unit_price_minor and
               0 <= line.discount_minor <= line.gross_minor and
               line.net_minor == line.gross_minor - line.discount_minor,
               f"line {line.line_no} breaks gross = quantity × price, net = gross − discount")
    ensure(priced.shipping_fee_minor >= 0, "the shipping fee is negative")


def _stock_dicts(held: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    return [{"sku": sku, "warehouse_id": w, "quantity": q} for sku, w, q in held]


class PaymentReference(Aggregate):
    """Index: a payment reference pays one order, once; a second use collides here."""

    @staticmethod
    def create_id(payment_reference: str) -> UUID:
        return natural_id("payment_reference", payment_reference.strip())

    @event("PaymentReferenceUsed")
    def __init__(self, payment_reference: str, order_id: str) -> None:
        self.payment_reference = payment_reference.strip()
        self.order_id = order_id


class BackorderQueue(Aggregate):
    """Index: the orders waiting for stock of one SKU, first come first served. An order
    joins in the save that places it and leaves in the save that fills its line or
    cancels it, so the queue and the orders never disagree."""

    @staticmethod
    def create_id(sku: str) -> UUID:
        return natural_id("backorder_queue", sku)

    @event("BackorderQueueOpened")
    def __init__(self, sku: str) -> None:
        self.sku = sku
        self.waiting: list[str] = []  # order ids, oldest first

    def join(self, order_id: str) -> None:
        if order_id in self.waiting:
            raise InvalidTransition(f"order {order_id} already waits for {self.sku}",
                                    order_id=order_id)
        self._joined(order_id=order_id)

    @event("BackorderQueueJoined")
    def _joined(self, order_id: str) -> None:
        self.waiting.append(order_id)

    def leave(self, order_id: str, reason: str) -> None:
        """`reason`: filled, cancelled or expired."""
        if order_id not in self.waiting:
            raise InvalidTransition(f"order {order_id} does not wait for {self.sku}",
                                    order_id=order_id)
        self._left(order_id=order_id, reason=reason)

    @event("BackorderQueueLeft")
    def _left(self, order_id: str, reason: str) -> None:
        self.waiting.remove(order_id)
