"""After-sales cases: request, approve or reject, receive the goods back (restocked or
scrapped), refund or compensate, ship an exchange's replacement or a repair's goods back,
close.

Every command saves the case with all it touches in one `record`: the order (which
guards the quantities of every case and what each line can still pay back, so two
concurrent cases or refunds collide on its version and the loser is judged again), the
stock restocked, the journal entry of the money (refunds against cash, keyed by the
case). The commission is reversed by the process manager that follows
OrderLineRefunded (projections/policies.py); a compensation is recorded as
OrderLineCompensated, which it does not follow, unless
FENXIAO_COMPENSATION_REVERSES_COMMISSION=1 makes it a refund.
"""
from __future__ import annotations

from typing import Any, Sequence

from commands.app import Pending, current_actor
from commands.ledger import Postings
from commands.fulfilment import shipment_view
from commands.orders import (SECONDS_PER_DAY, OrderService, _candidates, _distinct, _reserve,
                             iso)
from domain.approvals import AWAITING
from domain.aftersales import RETURNS, Case, case_shipment_source
from domain.allocation import plan_allocation, require_covered
from domain.accruals import RefundExceedsPaid
from domain.errors import Duplicate, InvalidCommand
from domain.fulfilment import Shipment, ShipmentPlan, plan_shipments, shipment_id_for
from domain.ledger import refund_lines
from domain.orders import AmountMismatch, Order


class AfterSalesService(OrderService):
    def case(self, case_id: str) -> Case:
        return self.load(Case.create_id(case_id), f"case {case_id}", case_id=case_id)

    def request_case(self, order_id: str, type: str, lines: Sequence[tuple[str, int]],
                     reason: str, amount_minor: int | None = None,
                     case_id: str | None = None) -> dict[str, Any]:
        case_id = case_id or self._new_id("AS")
        if self.exists(Case.create_id(case_id)):
            raise Duplicate(f"case {case_id} already exists", case_id=case_id)
        order = self.load(Order.create_id(order_id), f"order {order_id}", order_id=order_id)
        at = self.clock()
        lines = [(sku, quantity) for sku, quantity in lines]
        case = Case.request(case_id, order_id, order.distributor_id, type, lines, reason,
                            amount_minor, order.currency, current_actor(), at)
        if amount_minor is not None:  # the cap its refund will have (refund_case)
            paid = sum(_share(order.line_of(sku)["paid_minor"], quantity,
                              order.line_of(sku)["quantity"]) for sku, quantity in lines)
            if amount_minor > paid:
                raise RefundExceedsPaid(f"a compensation of {amount_minor} is more than "
                                        f"its goods were paid ({paid})", paid=paid,
                                        requested=amount_minor)
        order.open_case(case_id, type, lines, at,
                        self.settings.return_window_days * SECONDS_PER_DAY)
        return {**case_view(case), "position": self.record(case, order)}

    def approve_case(self, case_id: str, reason: str | None = None) -> dict[str, Any]:
        case = self.case(case_id)
        case.approve(current_actor(), self.clock(), reason)
        return {**case_view(case), "position": self.record(case)}

    def reject_case(self, case_id: str, reason: str | None = None) -> dict[str, Any]:
        """A rejected case gives its quantities back to the order for later cases."""
        case = self.case(case_id)
        at = self.clock()
        case.reject(current_actor(), at, reason)
        order = self.load(Order.create_id(case.order_id), f"order {case.order_id}")
        order.release_case(case_id, at)
        return {**case_view(case), "position": self.record(case, order)}

    def receive_case(self, case_id: str, warehouse_id: str, restock: bool) -> dict[str, Any]:
        """The goods are back in `warehouse_id`: restocked there, or scrapped."""
        case = self.case(case_id)
        self.warehouse(warehouse_id)  # 404 for an unknown warehouse
        case.receive(warehouse_id, restock, current_actor(), self.clock())
        changed: list[Any] = [case]
        if restock:
            for line in case.lines:
                item, product = self._stock_item(line["sku"], warehouse_id)
                item.restock(line["quantity"], f"aftersales:{case_id}")
                changed.extend(filter(None, [item, product]))
        return {**case_view(case), "position": self.record(*changed)}

    def refund_case(self, case_id: str, amount_minor: int,
                    refund_reference: str) -> dict[str, Any]:
        """Pay `amount_minor` back, spread over the case's lines in proportion to what
        their quantities were paid; each line's share is refunded on the order (never
        beyond what the line was paid, across all cases), refunds against cash."""
        case = self.case(case_id)
        case.require_refundable()  # a case in the wrong state says so before any amount
        order = self.load(Order.create_id(case.order_id), f"order {case.order_id}")
        at = self.clock()
        if case.type == "compensation" and amount_minor != case.amount_minor:
            raise AmountMismatch(f"case {case_id} compensates {case.amount_minor}, not "
                                 f"{amount_minor}", expected=case.amount_minor,
                                 received=amount_minor)
        lines = [order.line_of(x["sku"]) for x in case.lines]
        caps = [_share(line["paid_minor"], x["quantity"], line["quantity"])
                for line, x in zip(lines, case.lines)]
        if amount_minor > sum(caps):
            raise RefundExceedsPaid(f"case {case_id}'s goods were paid {sum(caps)}; "
                                    f"{amount_minor} is too much", paid=sum(caps),
                                    requested=amount_minor)
        splits = case.refund_splits(amount_minor, caps)
        reference = refund_reference.strip()
        if not reference:
            raise InvalidCommand("a refund reference is required", field="refund_reference")
        if case.needs_second_approval(amount_minor, reference, current_actor(),
                                      self.settings.four_eyes_min_minor):
            case.approve_refund(amount_minor, reference, current_actor(), at)
            return Pending(case_view(case), position=self.record(case))
        pays_as_refund = case.type != "compensation" or \
            self.settings.compensation_reverses_commission
        for line, share in zip(lines, splits):
            if share and pays_as_refund:
                order.refund(line["line_no"], share, reference, at)
            elif share:
                order.compensate(line["line_no"], share, reference, at)
        case.refund(amount_minor, reference,
                    [{"line_no": line["line_no"], "sku": line["sku"], "amount_minor": share}
                     for line, share in zip(lines, splits)], current_actor(), at, sum(caps))
        held_back = self._hold_back(case, order, at) \
            if case.type == "refund_only" and not order.is_dispatched() else []
        postings = Postings(self, at)
        if amount_minor:  # goods paid nothing are refunded with nothing: no money moves
            postings.post(f"aftersales:{case_id}:refunded", "refund",
                          refund_lines(amount_minor),
                          f"after-sales {case.type} {case_id} of order {case.order_id}, "
                          f"reference {reference}")
        if held_back and not order.allocated_stock() and not order.backorders():
            held_back.extend(self._cancel_emptied(order, case_id, postings, at))
        return {**case_view(case),
                "position": self.record(case, order, *held_back, *postings.aggregates())}

    def _cancel_emptied(self, order: Order, case_id: str, postings: Postings,
                        at: Any) -> list[Any]:
        """Every unit of the order was refunded before dispatch: nothing is left to send,
        so the order is cancelled with it, as a cancellation would (what is left of the
        payment, the shipping fee, refunded; the coupon given back). Its commission is
        reversed by the line refunds already."""
        order.cancel(f"refunded in full before dispatch (after-sales case {case_id})", at)
        if order.refund_due_minor:
            postings.post(f"order:{order.order_id}:cancelled", "refund",
                          refund_lines(order.refund_due_minor),
                          f"refund of cancelled order {order.order_id}")
        return self._give_back(order, [], [], "cancelled", at)

    def _hold_back(self, case: Case, order: Order, at: Any) -> list[Any]:
        """A refund only before dispatch: the goods are not sent. Their reservation is
        released and the shipments that carried them are replaced (Order.release_for_case)."""
        released, cancelled, plans = order.release_for_case(
            case.case_id, [(x["sku"], x["quantity"]) for x in case.lines], at)
        changed: list[Any] = []
        for sku, warehouse_id, quantity in released:
            item = self.stock_item(sku, warehouse_id)
            item.release(quantity, order.order_id)
            changed.append(item)
        for shipment_id in cancelled:
            shipment = self._shipment(shipment_id)
            shipment.cancel(f"after-sales {case.case_id}: refunded before dispatch", at)
            changed.append(shipment)
        region = order.shipping_address["region"]
        changed.extend(Shipment.create(plan, "order", order.order_id, region, at)
                       for plan in plans)
        return changed

    def ship_case(self, case_id: str) -> dict[str, Any]:
        """Send an exchange's replacement (reserved like an order's: the customer's region
        first, then most available, split; InsufficientStock and nothing reserved when
        short, and the case may then be refunded instead) or a repair's goods back (from
        the warehouse that received them; no stock moves). The shipments follow the
        orders' path: pick, pack, dispatch (which issues an exchange's stock), carriers."""
        case = self.case(case_id)
        case.require_shippable()
        order = self.load(Order.create_id(case.order_id), f"order {case.order_id}")
        at = self.clock()
        region = order.shipping_address["region"]
        source = case_shipment_source(case_id)
        lines = [(x["sku"], x["quantity"]) for x in case.lines]
        reserved: list[Any] = []
        if case.type == "exchange":
            products = {sku: self.product(sku) for sku, _ in lines}
            items = self._stock_items(products.values())
            queues, served = self._serve_queues(products.values(), items, at)
            plans = plan_allocation(lines, region, _candidates(products, items))
            require_covered(plans)
            reserved = [*queues.values(), *served,
                        *_reserve(items, source, ((p.sku, p.allocations) for p in plans))]
            shipping = plan_shipments(source, [(p.sku, w, q) for p in plans
                                               for w, q in p.allocations])
        else:
            warehouse_id = case.received_at_warehouse
            shipping = [ShipmentPlan(shipment_id_for(source, warehouse_id), warehouse_id,
                                     tuple(sorted(lines)))]
        shipments = [Shipment.create(plan, case.type, case_id, region, at)
                     for plan in shipping]
        case.ship([plan.as_dict() for plan in shipping], current_actor(), at)
        return {**case_view(case, shipments),
                "position": self.record(*_distinct([case, *shipments, *reserved]))}

    def close_case(self, case_id: str) -> dict[str, Any]:
        case = self.case(case_id)
        case.close(current_actor(), self.clock())
        shipments = [self._shipment(sid) for sid in case.shipment_ids]
        return {**case_view(case, shipments), "position": self.record(case)}


def _share(paid_minor: int, quantity: int, of_quantity: int) -> int:
    """What `quantity` of a line's `of_quantity` units was paid, rounded up (so the units
    of several cases can together take the whole line; the order caps the total)."""
    return -(-paid_minor * quantity // of_quantity)


def _refund_approval(case: Case) -> dict[str, Any] | None:
    """The first approval of a refund waiting for its second (what the second names)."""
    first = case.refund_approval
    if case.status != AWAITING or first is None:
        return None
    return {"amount": first["amount_minor"], "refund_reference": first["reference"],
            "approved_by": [first["actor"]]}


def case_view(case: Case, shipments: Sequence[Shipment] = ()) -> dict[str, Any]:
    """A case as its commands answer (the GET view adds each shipment's history)."""
    return {"case_id": case.case_id, "order_id": case.order_id, "type": case.type,
            "status": case.status,
            "lines": [{"sku": x["sku"], "quantity": x["quantity"]} for x in case.lines],
            "reason": case.reason, "amount": case.amount_minor,
            "refunded": case.refunded_minor, "currency": case.currency,
            "history": [{"status": h["status"], "at": iso(h["at"]), "actor": h["actor"]}
                        for h in case.history],
            "refund_approval": _refund_approval(case),
            "shipments": [shipment_view(s) for s in shipments]}


__all__ = ["AfterSalesService", "case_view", "RETURNS"]
