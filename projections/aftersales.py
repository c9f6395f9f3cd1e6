"""Read model: after-sales cases as `GET /after-sales` shows them (the operators' queue),
with their history (status, time, actor) and what was refunded. Their shipments (an
exchange's replacement, a repair's return) are in the shipments read model, by case.

A case moves through several events, each appending to its history, so a batch is folded
into rows and written with a few statements (projections/batching.py), not a read and a
write per event."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import JSON, Column, DateTime, Index, String, Table, Text, select, tuple_
from sqlalchemy.engine import Connection

from commands.views import utc as _utc
from commands.orders import iso
from commands.storage import BIGINT, metadata
from domain.approvals import AWAITING
from domain.aftersales import Case
from projections.batching import FoldingProjection, Rows

cases = Table(
    "rm_aftersales_cases", metadata,
    Column("case_id", String(64), primary_key=True),
    Column("case_uuid", String(36), nullable=False, unique=True),
    Column("order_id", String(64), nullable=False, index=True),
    Column("distributor_id", String(64), nullable=True),
    Column("type", String(20), nullable=False),
    Column("status", String(40), nullable=False),
    Column("reason", Text, nullable=False),
    Column("amount_minor", BIGINT, nullable=True),
    Column("refunded_minor", BIGINT, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("lines", JSON, nullable=False),  # [{sku, quantity}]
    Column("history", JSON, nullable=False),  # [{status, at (ISO, UTC), actor}]
    # While a refund waits for its second approval: {amount, refund_reference, approved_by}
    Column("refund_approval", JSON, nullable=True),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Index("ix_rm_aftersales_cases_status_requested_at", "status", "requested_at"),
    Index("ix_rm_aftersales_cases_requested_at_case_id", "requested_at", "case_id"),
)


class _Batch:
    """A batch folded into rows (projections/batching.py): the cases it moves read in one
    query, changed in memory in log order (a case requested earlier in the batch too),
    and written back once."""

    def __init__(self, conn: Connection, events: Sequence[Any]) -> None:
        self.conn = conn
        self.cases = Rows(cases, "case_id", also=["case_uuid"])
        self.cases.load(conn, [str(e.originator_id) for e in events
                               if type(e) is not Case.CaseRequested], "case_uuid")

    def write(self) -> None:
        self.cases.write(self.conn)


def _requested(batch: _Batch, e: Any) -> None:
    batch.cases.insert({
        "case_id": e.case_id, "case_uuid": str(e.originator_id), "order_id": e.order_id,
        "distributor_id": e.distributor_id, "type": e.case_type, "status": "requested",
        "reason": e.reason, "amount_minor": e.amount_minor, "refunded_minor": 0,
        "currency": e.currency, "lines": [dict(x) for x in e.lines],
        "history": [{"status": "requested", "at": iso(e.at), "actor": e.actor}],
        "refund_approval": None,
        "requested_at": _utc(e.at)})


def _moved(status: str | None) -> Any:
    """A transition to `status` (None: the status the event names) of a case that must
    exist."""
    def fold(batch: _Batch, e: Any) -> None:
        to = status or e.status
        case_uuid = str(e.originator_id)
        row = batch.cases.one(batch.conn, case_uuid, "case_uuid")
        values: dict[str, Any] = {
            "status": to,
            "history": [*row["history"], {"status": to, "at": iso(e.at), "actor": e.actor}]}
        if isinstance(e, Case.CaseRefunded):
            values["refunded_minor"] = row["refunded_minor"] + e.amount_minor
            values["refund_approval"] = None
        if isinstance(e, Case.CaseRefundApproved):
            values["refund_approval"] = refund_approval(e.amount_minor, e.reference, e.actor)
        batch.cases.update(batch.conn, case_uuid, "case_uuid", **values)
    return fold


def refund_approval(amount_minor: int, reference: str, actor: str) -> dict[str, Any]:
    """A refund's first approval as cases show it: what the second must name."""
    return {"amount": amount_minor, "refund_reference": reference, "approved_by": [actor]}


class AfterSalesProjection(FoldingProjection):
    name = "aftersales"
    tables = (cases,)
    fold = {
        Case.CaseRequested: _requested,
        Case.CaseApproved: _moved("approved"),
        Case.CaseRejected: _moved("rejected"),
        Case.CaseGoodsReceived: _moved("received"),
        Case.CaseRefundApproved: _moved(AWAITING),  # the first of two approvals
        Case.CaseRefunded: _moved(None),
        Case.CaseShipped: _moved(None),
        Case.CaseClosed: _moved("closed"),
    }
    batch_class = _Batch


# -- queries ------------------------------------------------------------------------------

def _view(row: Any) -> dict[str, Any]:
    return {"case_id": row.case_id, "order_id": row.order_id, "type": row.type,
            "status": row.status,
            "lines": [{"sku": x["sku"], "quantity": x["quantity"]} for x in row.lines],
            "reason": row.reason, "amount": row.amount_minor,
            "refunded": row.refunded_minor, "currency": row.currency,
            "history": [dict(h) for h in row.history],
            "refund_approval": row.refund_approval}


def get_case(conn: Connection, case_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(cases).where(cases.c.case_id == case_id)).first()
    return _view(row) if row else None


def list_cases(conn: Connection, *, status: str | None, order_id: str | None,
               after: list[Any] | None, limit: int) -> list[dict[str, Any]]:
    """Oldest first (the queue's order), by (requested_at, case_id); each item carries its
    sort key under "cursor"."""
    query = select(cases).order_by(cases.c.requested_at, cases.c.case_id).limit(limit)
    if status is not None:
        query = query.where(cases.c.status == status)
    if order_id is not None:
        query = query.where(cases.c.order_id == order_id)
    if after:
        at, case_id = after
        query = query.where(tuple_(cases.c.requested_at, cases.c.case_id)
                            > tuple_(_utc(datetime.fromisoformat(at)), case_id))
    return [{**_view(r), "cursor": [iso(r.requested_at), r.case_id]}
            for r in conn.execute(query).all()]
