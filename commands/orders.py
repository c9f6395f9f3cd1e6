"""Orders: placement (pricing, promotions, attribution, allocation and reservation in one
atomic save), payment, cancellation, backorder fills, expiry and completion.

Every command saves all it touches in one `record`: the order, the stock items it
reserves or releases, the coupon it redeems or gives back, the customer's binding, the
backorder queues it joins or leaves, the journal entry of its money and the shipments it
starts. Concurrent commands on any of them collide on a version and are retried, so the
stock, the coupon limits and the queues hold under any concurrency.
"""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from commands.catalog import StockService
from commands.ledger import LedgerService, Postings
from commands.views import iso
from domain.accruals import is_self_purchase
from domain.aftersales import Case
from domain.allocation import StockCandidate, plan_allocation, plan_line
from domain.catalog import Product
from domain.coupons import Coupon, ThresholdPromotions
from domain.distributors import Distributor
from domain.errors import Duplicate
from domain.fulfilment import Shipment
from domain.ledger import payment_lines, refund_lines
from domain.orders import (AttributionConflict, BackorderQueue, Order, PaymentReference,
                           check_one_line_per_sku)
from domain.pricing import (CatalogEntry, ShippingFeeRule, check_address, check_customer,
                            check_requested_lines, price_order)
from domain.promotions import normalize_code
from domain.stock import StockItem

SECONDS_PER_DAY = 86_400


class OrderService(StockService, LedgerService):
    """Consumer orders."""

    def order(self, order_id: str) -> Order:
        return self.load(Order.create_id(order_id), f"order {order_id}", order_id=order_id)

    # -- placing ----------------------------------------------------------------------

    def place_order(self, customer_id: str, name: str, phone: str,
                    shipping_address: Mapping[str, str | None],
                    lines: Sequence[tuple[str, int]], *, order_id: str | None = None,
                    distributor_id: str | None = None, referral_code: str | None = None,
                    coupon_code: str | None = None, allow_backorder: bool = False
                    ) -> dict[str, Any]:
        """Price `lines` ((sku, quantity) pairs) at today's catalog prices, apply the
        coupon and the best threshold tier, attribute the order, reserve its stock (the
        customer's region first, then most available) and, with `allow_backorder`,
        queue what is short; else refuse the order if anything is short."""
        if order_id is not None and self.exists(Order.create_id(order_id)):
            raise Duplicate(f"order {order_id} already exists", order_id=order_id)
        # A new id is not looked up (a round trip a placement): should it ever name an
        # order already there, the store refuses the second one's first version and the
        # command runs again, drawing another id.
        order_id = order_id or self._new_id("O")
        lines = [(sku, quantity) for sku, quantity in lines]
        check_one_line_per_sku([sku for sku, _ in lines])
        check_requested_lines(lines)
        customer = check_customer(customer_id, name, phone)
        address = check_address(shipping_address)
        at = self.clock()
        products = {sku: self.product(sku) for sku, _ in lines}
        coupon = self._coupon(coupon_code) if coupon_code is not None else None
        priced = price_order(lines, _catalog(products.values()), self.settings.currency, at,
                             coupon.terms if coupon else None, self._thresholds(at),
                             ShippingFeeRule(self.settings.shipping_fee_minor,
                                             self.settings.free_shipping_min_minor))
        credited, binding = self._attribute(customer["customer_id"], distributor_id,
                                            referral_code)
        items = self._stock_items(products.values())
        queues, served = self._serve_queues(products.values(), items, at)
        plans = plan_allocation(lines, address["region"], _candidates(products, items))
        order = Order.place(order_id, customer["customer_id"], customer["name"],
                            customer["phone"], address, priced, plans, allow_backorder,
                            credited, at)
        reserved = _reserve(items, order_id, ((p.sku, p.allocations) for p in plans))
        if coupon is not None:
            coupon.redeem(order_id, order.customer_id, priced.coupon_discount_minor, at)
        for _, sku, _ in order.backorders():
            queues[sku] = queues.get(sku) or BackorderQueue(sku=sku)
            queues[sku].join(order_id)
        changed = [order, *served, *reserved, *queues.values(),
                   *filter(None, [coupon, binding])]
        return {**order_view(order), "position": self.record(*_distinct(changed))}

    def _coupon(self, code: str) -> Coupon:
        return self.load(Coupon.create_id(code), f"coupon {normalize_code(code)}",
                         coupon_code=normalize_code(code))

    def _thresholds(self, at: datetime) -> list[Any]:
        promotions = self.find(ThresholdPromotions.create_id())
        return promotions.active(at) if promotions is not None else []

    def _attribute(self, customer_id: str, distributor_id: str | None,
                   referral_code: str | None) -> tuple[str | None, Any]:
        """A named distributor must be active; a referral code given with a distributor
        id must be that distributor's."""
        if distributor_id is not None and referral_code is not None:
            referred = self._referrer(referral_code)
            if referred != distributor_id:
                raise AttributionConflict(
                    f"referral code {referral_code} is not distributor {distributor_id}'s",
                    distributor_id=distributor_id, referral_code=referral_code)
        return self.attribution(customer_id, distributor_id, referral_code,
                                require_active=True)

    def _stock_items(self, products: Iterable[Product]) -> dict[tuple[str, str], StockItem]:
        """Every stock item of these products, found through the write-side index."""
        items = {}
        for product in products:
            for warehouse_id in sorted(product.stocked_at):
                item = self.find(StockItem.create_id(product.sku, warehouse_id))
                if item is not None:
                    items[(product.sku, warehouse_id)] = item
        return items

    def _backorder_queue(self, sku: str) -> BackorderQueue:
        return self.find(BackorderQueue.create_id(sku)) or BackorderQueue(sku=sku)

    def _serve_queues(self, products: Iterable[Product],
                      items: Mapping[tuple[str, str], StockItem], at: datetime
                      ) -> tuple[dict[str, BackorderQueue], list[Any]]:
        """Before a command reserves stock of these products for itself: the orders
        waiting for them take what is available first, first come first served, in the
        command's own save. Stock arrives (a receipt, a release, a transfer) in one save
        and the backorder policy fills the queue in a later one; a placement in between
        would otherwise take stock an earlier order was promised. Returns the products'
        existing queues, by SKU, and what the fills changed (orders, the shipments of
        those now complete and paid, stock items)."""
        queues: dict[str, BackorderQueue] = {}
        changed: list[Any] = []
        waiting_orders: dict[str, Order] = {}  # each loaded once, whatever it waits for
        for product in products:
            queue = self.find(BackorderQueue.create_id(product.sku))
            if queue is None:
                continue
            queues[product.sku] = queue
            here = {w: item for (sku, w), item in items.items() if sku == product.sku}
            changed += self._fill_queue(queue, product, here, at, waiting_orders)[1]
        return queues, changed

    # -- paying -----------------------------------------------------------------------

    def pay_order(self, order_id: str, amount_minor: int,
                  payment_reference: str) -> dict[str, Any]:
        """The payment must equal the total and its reference must be new. Posts cash
        against sales, records the commission basis as it stands now and, when every
        line is allocated, starts fulfilment: all in one save."""
        order = self.order(order_id)
        at = self.clock()
        order.pay(amount_minor, payment_reference, at, self._commission_basis(order))
        reference = self._payment_reference(payment_reference, order_id)
        postings = Postings(self, at)
        if amount_minor:
            postings.post(f"order:{order_id}:paid", "payment", payment_lines(amount_minor),
                          f"payment of order {order_id}, reference {reference.payment_reference}")
        shipments = self._start_fulfilment(order, at) if order.status == "paid" else []
        return {**order_view(order),
                "position": self.record(order, reference, *postings.aggregates(),
                                        *shipments)}

    def _payment_reference(self, payment_reference: str, order_id: str) -> PaymentReference:
        if self.exists(PaymentReference.create_id(payment_reference)):
            raise Duplicate(f"payment reference {payment_reference.strip()} was already used",
                            payment_reference=payment_reference.strip())
        return PaymentReference(payment_reference=payment_reference, order_id=order_id)

    def _commission_basis(self, order: Order) -> dict[str, Any] | None:
        """What the commission accrual computes from, as it stands at payment: the lines
        with a positive net, the seller and its upline (status then), the rule terms of
        each SKU then, and whether the buyer is the seller. None for an order nobody is
        credited with."""
        if order.distributor_id is None:
            return None
        seller = self.distributor(order.distributor_id)
        upline = self.distributor(seller.upline_id) if seller.upline_id else None
        rules = self.commission_rules()
        paid = [line for line in order.lines if line["net_minor"] > 0]
        return {
            "order_id": order.order_id, "currency": order.currency,
            "lines": [{"line_no": x["line_no"], "sku": x["sku"], "quantity": x["quantity"],
                       "net_minor": x["net_minor"]} for x in paid],
            "seller": _party(seller), "upline": _party(upline) if upline else None,
            "rules": {x["sku"]: asdict(rules.rule_for(x["sku"])) for x in paid},
            "default_rule": asdict(rules.rule_for(None)),
            "self_purchase": is_self_purchase(order.customer_id, order.customer["phone"],
                                              seller.distributor_id, seller.phone),
        }

    def _start_fulfilment(self, order: Order, at: datetime) -> list[Shipment]:
        """One shipment per warehouse of a paid order whose lines are all allocated."""
        region = order.shipping_address["region"]
        return [Shipment.create(plan, "order", order.order_id, region, at)
                for plan in order.start_fulfilment(at)]

    # -- cancelling and expiring ------------------------------------------------------

    def cancel_order(self, order_id: str, reason: str) -> dict[str, Any]:
        """Before any shipment is dispatched: release the stock, the coupon and the
        backorder places, cancel the shipments not yet dispatched and, if it was paid,
        refund the payment in full (refunds against cash). The commission is reversed
        by the process manager that follows OrderCancelled."""
        order = self.order(order_id)
        at = self.clock()
        held, waiting = order.allocated_stock(), order.backorders()
        open_shipments = [sid for sid, s in sorted(order.shipments.items())
                          if s["status"] != "cancelled"]  # replaced ones are cancelled
        order.cancel(reason, at)
        shipments = [self._shipment(shipment_id) for shipment_id in open_shipments]
        for shipment in shipments:
            shipment.cancel(reason, at)
        postings = Postings(self, at)
        if order.refund_due_minor:
            postings.post(f"order:{order_id}:cancelled", "refund",
                          refund_lines(order.refund_due_minor),
                          f"refund of cancelled order {order_id}")
        released = self._give_back(order, held, waiting, "cancelled", at)
        return {**order_view(order),
                "position": self.record(order, *released, *shipments,
                                        *postings.aggregates())}

    def expire_order(self, order_id: str, now: datetime) -> dict[str, Any]:
        """Cancel an unpaid order whose reservation has timed out; a no-op (position
        None) when it is not, or no longer, due."""
        order = self.order(order_id)
        timeout_s = self.settings.reservation_timeout_s
        if not order.is_expirable(now, timeout_s):
            return {**order_view(order), "expired": False, "position": None}
        held, waiting = order.allocated_stock(), order.backorders()
        order.expire(now, timeout_s)
        released = self._give_back(order, held, waiting, "expired", now)
        return {**order_view(order), "expired": True,
                "position": self.record(order, *released)}

    def _give_back(self, order: Order, held: list[tuple[str, str, int]],
                   waiting: list[tuple[int, str, int]], reason: str, at: datetime
                   ) -> list[Any]:
        """What a closed order held, released: its reservations, its coupon redemption,
        its places in the backorder queues."""
        released: list[Any] = []
        for sku, warehouse_id, quantity in held:
            item = self.load(StockItem.create_id(sku, warehouse_id),
                             f"stock of {sku} in {warehouse_id}")
            item.release(quantity, order.order_id)
            released.append(item)
        if order.coupon_code is not None:
            coupon = self._coupon(order.coupon_code)
            if coupon.redeemed_by(order.order_id):
                coupon.release(order.order_id, reason, at)
                released.append(coupon)
        for _, sku, _ in waiting:
            queue = self._backorder_queue(sku)
            if order.order_id in queue.waiting:
                queue.leave(order.order_id, reason)
                released.append(queue)
        return released

    def _shipment(self, shipment_id: str) -> Shipment:
        return self.load(Shipment.create_id(shipment_id), f"shipment {shipment_id}",
                         shipment_id=shipment_id)

    # -- completing -------------------------------------------------------------------

    def complete_order(self, order_id: str, now: datetime) -> dict[str, Any]:
        """Complete a delivered order whose return window is over and whose after-sales
        cases are all settled; a no-op (position None) when it is not, or no longer, due
        (the tick tries again next time)."""
        order = self.order(order_id)
        window_s = self.settings.return_window_days * SECONDS_PER_DAY
        open_cases = [case_id for case_id in sorted(order.cases)
                      if (case := self.find(Case.create_id(case_id))) is not None
                      and case.is_open()]
        if not order.is_completable(now, window_s, open_cases):
            return {**order_view(order), "completed": False, "position": None}
        order.complete(now, window_s, open_cases)
        return {**order_view(order), "completed": True, "position": self.record(order)}

    # -- backorders -------------------------------------------------------------------

    def fill_backorders(self, sku: str) -> dict[str, Any]:
        """Allocate the available stock of `sku` to the orders waiting for it, first
        come first served (the first may take it all); a paid order whose last line is
        filled starts its fulfilment in the same save. A no-op (position None) when
        nothing waits or nothing is available."""
        queue = self.find(BackorderQueue.create_id(sku))
        if queue is None or not queue.waiting:
            return {"sku": sku, "filled": [], "position": None}
        product = self.product(sku)
        items = {w: item for (_, w), item in self._stock_items([product]).items()}
        filled, changed = self._fill_queue(queue, product, items, self.clock(), {})
        return {"sku": sku, "filled": filled, "position": self.record(queue, *changed)}

    def _fill_queue(self, queue: BackorderQueue, product: Product,
                    items: Mapping[str, StockItem], at: datetime,
                    loaded: dict[str, Order]) -> tuple[list[dict[str, Any]], list[Any]]:
        """Fill the orders in `queue` from `items` (by warehouse), oldest first, while
        anything is available; `loaded` holds the orders this command loaded already.
        Returns the fills and what they changed besides the queue."""
        filled: list[dict[str, Any]] = []
        changed: list[Any] = []
        for order_id in list(queue.waiting):
            if not any(item.available > 0 for item in items.values()):
                break
            order = loaded.get(order_id) or loaded.setdefault(order_id,
                                                              self.order(order_id))
            fill = self._fill(order, product, items, at)
            if fill is None:  # no longer waiting for this sku: a stale place in the queue
                queue.leave(order_id, "not_waiting")
                continue
            filled.append(fill)
            if not fill["backordered"]:
                queue.leave(order_id, "filled")
            changed.append(order)
            if order.status == "paid":
                changed.extend(self._start_fulfilment(order, at))
        reserved = {a["warehouse_id"] for fill in filled for a in fill["allocations"]}
        changed.extend(items[w] for w in sorted(reserved))
        return filled, _distinct(changed)

    def _fill(self, order: Order, product: Product, items: dict[str, StockItem],
              at: datetime) -> dict[str, Any] | None:
        """Fill what `order` waits for of `product` from `items`; None if it waits for
        none of it."""
        waiting = [(no, q) for no, s, q in order.backorders() if s == product.sku]
        if order.status != "backordered" or not waiting:
            return None
        line_no, quantity = waiting[0]
        candidates = [StockCandidate(w, product.stocked_at[w], item.available)
                      for w, item in items.items()]
        plan = plan_line(product.sku, quantity, order.shipping_address["region"], candidates)
        for warehouse_id, taken in plan.allocations:
            items[warehouse_id].reserve(taken, order.order_id)
        order.fill_backorder(line_no, plan.allocations, at)
        return {"order_id": order.order_id, "line_no": line_no,
                "allocations": [{"warehouse_id": w, "quantity": q}
                                for w, q in plan.allocations],
                "backordered": plan.uncovered, "status": order.status}


def _catalog(products: Iterable[Product]) -> dict[str, CatalogEntry]:
    return {p.sku: CatalogEntry(p.sku, p.name, p.price_minor, p.listed) for p in products}


def _candidates(products: Mapping[str, Product],
                items: Mapping[tuple[str, str], StockItem]
                ) -> dict[str, list[StockCandidate]]:
    return {sku: [StockCandidate(w, products[sku].stocked_at[w], item.available)
                  for (s, w), item in items.items() if s == sku]
            for sku in products}


def _distinct(aggregates: Iterable[Any]) -> list[Any]:
    """Each aggregate once, in the order first given (a save takes each once)."""
    return list({id(a): a for a in aggregates}.values())


def _reserve(items: Mapping[tuple[str, str], StockItem], order_id: str,
             allocations: Iterable[tuple[str, Iterable[tuple[str, int]]]]
             ) -> list[StockItem]:
    reserved = []
    for sku, picks in allocations:
        for warehouse_id, quantity in picks:
            item = items[(sku, warehouse_id)]
            item.reserve(quantity, order_id)
            reserved.append(item)
    return reserved


def _party(d: Distributor) -> dict[str, Any]:
    return {"distributor_id": d.distributor_id, "status": d.status,
            "upline_id": d.upline_id}


# -- the order as clients see it (the read model gives the same shape) ------------------

def line_view(line: Mapping[str, Any]) -> dict[str, Any]:
    return {"line_no": line["line_no"], "sku": line["sku"], "name": line["name"],
            "quantity": line["quantity"], "unit_price": line["unit_price_minor"],
            "gross": line["gross_minor"], "discount": line["discount_minor"],
            "net": line["net_minor"],
            "allocations": [{"warehouse_id": a["warehouse_id"], "quantity": a["quantity"]}
                            for a in line["allocations"]],
            "backordered": line["backordered"], "paid": line["paid_minor"],
            "refunded": line["refunded_minor"] + line.get("compensated_minor", 0)}


def order_view(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id, "status": order.status,
        "distributor_id": order.distributor_id, "customer_id": order.customer_id,
        "currency": order.currency, "lines": [line_view(x) for x in order.lines],
        "subtotal": order.subtotal_minor, "discount": order.discount_minor,
        "shipping_fee": order.shipping_fee_minor, "total": order.total_minor,
        "paid": order.paid_minor, "refunded": order.refunded_minor,
        "coupon_code": order.coupon_code,
        "shipments": [{"shipment_id": sid, "warehouse_id": s["warehouse_id"],
                       "status": s["status"]} for sid, s in sorted(order.shipments.items())],
        "created_at": iso(order.placed_at), "paid_at": iso(order.paid_at),
        "delivered_at": iso(order.delivered_at), "completed_at": iso(order.completed_at),
        "cancelled_at": iso(order.cancelled_at), "cancel_reason": order.cancel_reason,
    }
