"""After-sales cases: refund only, return and refund, exchange, repair, compensation.

Status transitions (command: from -> to); any other raises InvalidTransition and records
nothing:

    request     (new)                                        -> requested
    approve     requested                                    -> approved
    reject      requested                                    -> rejected
    receive     approved (return_refund, exchange, repair)   -> received
    refund      approved (refund_only)                       -> refunded
                received (return_refund; an exchange whose replacement cannot be sent)
                                                             -> refunded
                approved (compensation)                      -> compensated
    ship        received (exchange: the replacement)         -> exchanged
                received (repair: the customer's goods back) -> repaired
    close       refunded | compensated | rejected | exchanged | repaired -> closed

The rules that need the order (quantities delivered and already taken by earlier cases,
the return window, what was paid per line) live on the Order (domain/orders.py
`open_case`, `refund`), which the service saves with the case: the order is the guard
across cases and concurrent requests. A shipment of a case (domain/fulfilment.py, source
"exchange" or "repair") goes through the same pick, pack, dispatch and carrier steps as an
order's; an exchange's reserves and issues stock, a repair's carries the customer's own
goods and touches no stock (so a repair's goods are never restocked).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.approvals import AWAITING, check_second, first_approval, needs_two
from domain.checks import ensure
from domain.errors import DomainError, InvalidCommand, InvalidTransition
from domain.ids import natural_id

TYPES = ("refund_only", "return_refund", "exchange", "repair", "compensation")
STATUSES = ("requested", "approved", "rejected", "received", AWAITING, "refunded",
            "exchanged", "repaired", "compensated", "closed")
RETURNS = ("return_refund", "exchange", "repair")  # goods come back to a warehouse
# Types whose quantities are taken from the order for good (counted against later cases).
TAKES_GOODS = ("refund_only", "return_refund", "exchange")
# Types a request may make after the return window has closed.
AFTER_WINDOW = ("repair", "compensation")
CLOSABLE = ("refunded", "compensated", "rejected", "exchanged", "repaired")
SETTLED = (*CLOSABLE, "closed")  # nothing more can move money or goods
SHIPS = {"exchange": "exchanged", "repair": "repaired"}  # type -> status once shipped


def case_shipment_source(case_id: str) -> str:
    """What a case's shipment ids and stock reservations are keyed by: "/" is in no id,
    so a case never shares them with an order or a purchase order of the same id."""
    return f"AS/{case_id}"


class ReturnWindowClosed(DomainError):
    code = "return_window_closed"


class NotRestockable(DomainError):
    """A repair's goods are the customer's: they come back to the customer, not to stock."""

    code = "not_restockable"


class ExceedsDelivered(DomainError):
    """A case names more of a SKU than the order can still take back."""

    code = "exceeds_delivered"


class Case(Aggregate):
    @staticmethod
    def create_id(case_id: str) -> UUID:
        return natural_id("aftersales_case", case_id)

    @classmethod
    def request(cls, case_id: str, order_id: str, distributor_id: str | None, type: str,
                lines: Sequence[tuple[str, int]], reason: str, amount_minor: int | None,
                currency: str, actor: str, at: datetime) -> "Case":
        """A new case. The order has already checked the lines against what it can give
        back (Order.open_case); here only what the case alone can judge."""
        if type not in TYPES:
            raise InvalidCommand(f"{type!r} is not a case type", field="type")
        if not lines or any(q <= 0 for _, q in lines):
            raise InvalidCommand("a case needs lines with positive quantities", field="lines")
        if not reason.strip():
            raise InvalidCommand("a reason is required", field="reason")
        if type == "compensation" and not amount_minor:
            raise InvalidCommand("a compensation needs a positive amount", field="amount")
        if type != "compensation" and amount_minor is not None:
            raise InvalidCommand("only a compensation names an amount", field="amount")
        return cls(case_id=case_id, order_id=order_id, distributor_id=distributor_id,
                   case_type=type, lines=[{"sku": s, "quantity": q} for s, q in lines],
                   reason=reason, amount_minor=amount_minor, currency=currency,
                   actor=actor, at=at)

    @event("CaseRequested")
    def __init__(self, case_id: str, order_id: str, distributor_id: str | None,
                 case_type: str, lines: list[dict[str, Any]], reason: str,
                 amount_minor: int | None, currency: str, actor: str, at: datetime) -> None:
        self.case_id = case_id
        self.order_id = order_id
        self.distributor_id = distributor_id
        self.type = case_type
        self.lines = [dict(x) for x in lines]
        self.reason = reason
        self.amount_minor = amount_minor
        self.currency = currency
        self.status = "requested"
        self.refunded_minor = 0
        self.received_at_warehouse: str | None = None
        self.shipment_ids: list[str] = []
        self.history = [{"status": "requested", "at": at, "actor": actor}]
        self.refund_approval: dict[str, Any] | None = None

    def is_open(self) -> bool:
        """Still able to move money or goods: its order must not complete yet."""
        return self.status not in SETTLED

    def _require(self, statuses: Sequence[str], doing: str,
                 types: Sequence[str] = TYPES) -> None:
        if self.status not in statuses or self.type not in types:
            raise InvalidTransition(f"case {self.case_id} ({self.type}) is {self.status}; "
                                    f"it cannot be {doing}", status=self.status,
                                    type=self.type)

    def _move(self, status: str, actor: str, at: datetime) -> None:
        self.status = status
        self.history.append({"status": status, "at": at, "actor": actor})

    def approve(self, actor: str, at: datetime, reason: str | None = None) -> None:
        self._require(("requested",), "approved")
        self._approved(reason=reason, actor=actor, at=at)

    @event("CaseApproved")
    def _approved(self, reason: str | None, actor: str, at: datetime) -> None:
        self._move("approved", actor, at)

    def reject(self, actor: str, at: datetime, reason: str | None = None) -> None:
        self._require(("requested",), "rejected")
        self._rejected(reason=reason, actor=actor, at=at)

    @event("CaseRejected")
    def _rejected(self, reason: str | None, actor: str, at: datetime) -> None:
        self._move("rejected", actor, at)

    def receive(self, warehouse_id: str, restock: bool, actor: str, at: datetime) -> None:
        """The goods came back and were inspected: restocked into `warehouse_id`, or
        scrapped there (recorded either way)."""
        self._require(("approved",), "received", RETURNS)
        if restock and self.type == "repair":
            raise NotRestockable(f"case {self.case_id} is a repair: the goods go back to "
                                 "the customer and cannot be restocked", type=self.type)
        self._received(warehouse_id=warehouse_id, restock=restock, actor=actor, at=at)

    @event("CaseGoodsReceived")
    def _received(self, warehouse_id: str, restock: bool, actor: str, at: datetime) -> None:
        self.received_at_warehouse = warehouse_id
        self._move("received", actor, at)

    def require_shippable(self) -> None:
        """InvalidTransition unless the case is a received exchange or repair."""
        self._require(("received",), "shipped", tuple(SHIPS))

    def ship(self, shipments: Sequence[dict[str, Any]], actor: str, at: datetime) -> None:
        """The replacement of an exchange, or a repair's goods, are on their way in
        `shipments` ({shipment_id, warehouse_id, lines}: created by the caller in the
        same save)."""
        self.require_shippable()
        ensure(bool(shipments), "a case ships in at least one shipment")
        self._shipped(shipments=[dict(x) for x in shipments], status=SHIPS[self.type],
                      actor=actor, at=at)

    @event("CaseShipped")
    def _shipped(self, shipments: list[dict[str, Any]], status: str, actor: str,
                 at: datetime) -> None:
        self.shipment_ids.extend(x["shipment_id"] for x in shipments)
        self._move(status, actor, at)

    def refund_splits(self, amount_minor: int, caps: Sequence[int]) -> list[int]:
        """`amount_minor` spread over the case's lines in proportion to `caps` (what each
        line's quantity was paid, per line, in case order), largest remainder last."""
        total = sum(caps)
        if total <= 0:
            return [0 for _ in caps]
        shares = [amount_minor * c // total for c in caps]
        rests = sorted(range(len(caps)), key=lambda i: (-(amount_minor * caps[i] % total), i))
        for i in rests[:amount_minor - sum(shares)]:
            shares[i] += 1
        return shares

    def require_refundable(self) -> None:
        """InvalidTransition unless the case is where its type is paid back (or waits
        for the second approval of its refund)."""
        if self.status == AWAITING:
            return
        if self.type == "compensation":
            self._require(("approved",), "compensated")
        elif self.type == "refund_only":
            self._require(("approved",), "refunded")
        else:
            self._require(("received",), "refunded", ("return_refund", "exchange"))

    def needs_second_approval(self, amount_minor: int, reference: str, actor: str,
                              four_eyes_min_minor: int) -> bool:
        """Four eyes (domain/approvals.py): True when this refund must first be approved
        by `actor` and then by someone else; refused when it is that second approval but
        from the same person or for another amount or reference."""
        if self.status == AWAITING:
            check_second(self.refund_approval, actor, amount_minor, reference.strip(),
                         f"the refund of case {self.case_id}")
            return False
        return needs_two(amount_minor, four_eyes_min_minor)

    def approve_refund(self, amount_minor: int, reference: str, actor: str,
                       at: datetime) -> None:
        """The first of two approvals of a refund above the four-eyes threshold."""
        self.require_refundable()
        if not reference.strip():
            raise InvalidCommand("a refund reference is required", field="refund_reference")
        self._refund_approved(amount_minor=amount_minor, reference=reference.strip(),
                              actor=actor, at=at)

    @event("CaseRefundApproved")
    def _refund_approved(self, amount_minor: int, reference: str, actor: str,
                         at: datetime) -> None:
        self.refund_approval = first_approval(actor, amount_minor, reference)
        self._move(AWAITING, actor, at)

    def refund(self, amount_minor: int, reference: str, line_refunds: list[dict[str, Any]],
               actor: str, at: datetime, refundable_minor: int) -> None:
        """Record the refund (the order recorded each line's share in the same save).
        `refundable_minor`: what the case's goods were paid. Goods paid nothing (a line
        discounted to zero, a free gift) are refunded with nothing, so that their case
        still moves on (and a refund only before dispatch still holds them back); any
        other refund must be positive."""
        self.require_refundable()
        if amount_minor < 0 or (amount_minor == 0 and refundable_minor > 0):
            raise InvalidCommand("a refund must be positive (zero only for goods paid "
                                 "nothing)", field="amount")
        if not reference.strip():
            raise InvalidCommand("a refund reference is required", field="refund_reference")
        self._refunded(amount_minor=amount_minor, reference=reference.strip(),
                       line_refunds=[dict(x) for x in line_refunds],
                       status="compensated" if self.type == "compensation" else "refunded",
                       actor=actor, at=at)

    @event("CaseRefunded")
    def _refunded(self, amount_minor: int, reference: str, line_refunds: list[dict[str, Any]],
                  status: str, actor: str, at: datetime) -> None:
        self.refunded_minor += amount_minor
        self._move(status, actor, at)

    def close(self, actor: str, at: datetime) -> None:
        self._require(CLOSABLE, "closed")
        self._closed(actor=actor, at=at)

    @event("CaseClosed")
    def _closed(self, actor: str, at: datetime) -> None:
        self._move("closed", actor, at)
