"""Read model: commission entries per order line and level, as each distributor sees them,
and every reversal of each entry with the refund behind it (which refund reversed how much)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (Column, DateTime, Integer, String, Table, and_, select,
                        tuple_, update)
from sqlalchemy.engine import Connection

from commands.storage import BIGINT as MINOR, metadata
from commands.views import iso
from domain.accruals import LineCommission
from projections.base import Projection

commissions = Table(
    "rm_commissions", metadata,
    Column("line_uuid", String(36), primary_key=True),
    Column("level", Integer, primary_key=True),
    Column("distributor_id", String(64), nullable=False, index=True),
    Column("order_id", String(64), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("sku", String(64), nullable=False),
    Column("base_minor", MINOR, nullable=False),
    Column("rate_bp", Integer, nullable=True),
    Column("fixed_per_unit", MINOR, nullable=True),
    Column("amount_minor", MINOR, nullable=False),
    Column("reversed_minor", MINOR, nullable=False),
    Column("status", String(20), nullable=False),  # pending, available, reversed, forfeited
    Column("forfeit_reason", String(40), nullable=True),
    Column("rule_kind", String(10), nullable=True),
    Column("rule_version", Integer, nullable=True),
    Column("currency", String(3), nullable=False),
    Column("accrued_at", DateTime(timezone=True), nullable=False),
)

# One row per reversal of one entry: `version` is the CommissionReversed event's.
reversals = Table(
    "rm_commission_reversals", metadata,
    Column("line_uuid", String(36), primary_key=True),
    Column("level", Integer, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("amount_minor", MINOR, nullable=False),
    Column("source", String(20), nullable=False),  # pending (reversed), available (clawed back)
    Column("refunded_total_minor", MINOR, nullable=False),  # the line's refunds so far
    Column("refund_reference", String(200), nullable=True),  # None: a cancellation
    Column("cause", String(200), nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
)


def _accrued(conn: Connection, e: Any) -> None:
    common = {"line_uuid": str(e.originator_id), "order_id": e.order_id,
              "line_no": e.line_no, "sku": e.sku, "currency": e.currency,
              "accrued_at": e.at, "reversed_minor": 0}
    rows = [{**common, "level": a["level"], "distributor_id": a["distributor_id"],
             "base_minor": a["base_minor"], "rate_bp": a.get("rate_bp"),
             "fixed_per_unit": a.get("fixed_per_unit"), "amount_minor": a["amount_minor"],
             "status": "pending", "forfeit_reason": None, "rule_kind": a.get("rule_kind"),
             "rule_version": a.get("rule_version")} for a in e.accruals]
    rows += [{**common, "level": f["level"], "distributor_id": f["distributor_id"],
              "base_minor": e.net_minor, "rate_bp": None, "fixed_per_unit": None,
              "amount_minor": f["amount_minor"], "status": "forfeited",
              "forfeit_reason": f["reason"], "rule_kind": None, "rule_version": None}
             for f in e.forfeits]
    if rows:
        conn.execute(commissions.insert(), rows)


def _matured(conn: Connection, e: Any) -> None:
    conn.execute(update(commissions)
                 .where(commissions.c.line_uuid == str(e.originator_id),
                        commissions.c.status == "pending")
                 .values(status="available"))


def _reversed(conn: Connection, e: Any) -> None:
    if e.reversals:
        conn.execute(reversals.insert(), [
            {"line_uuid": str(e.originator_id), "level": r["level"],
             "version": e.originator_version, "amount_minor": r["amount_minor"],
             "source": r["source"], "refunded_total_minor": e.refunded_total_minor,
             "refund_reference": e.refund_reference, "cause": e.cause, "at": e.at}
            for r in e.reversals])
    for r in e.reversals:
        this = and_(commissions.c.line_uuid == str(e.originator_id),
                    commissions.c.level == r["level"])
        conn.execute(update(commissions).where(this).values(
            reversed_minor=commissions.c.reversed_minor + r["amount_minor"]))
        conn.execute(update(commissions)
                     .where(this, commissions.c.reversed_minor == commissions.c.amount_minor)
                     .values(status="reversed"))


class CommissionsProjection(Projection):
    name = "commissions"
    tables = (commissions, reversals)
    handlers = {
        LineCommission.CommissionAccrued: _accrued,
        LineCommission.CommissionMatured: _matured,
        LineCommission.CommissionReversed: _reversed,
    }


def commission_view(row: Any, reversed_by: list[dict[str, Any]] | None = None
                    ) -> dict[str, Any]:
    rule = None
    if row.rule_kind:
        rule = {"kind": row.rule_kind, "version": row.rule_version,
                "fixed_per_unit": row.fixed_per_unit}
    return {"cursor": [row.accrued_at.isoformat(), row.line_uuid, row.level],
            "order_id": row.order_id, "line_no": row.line_no, "sku": row.sku,
            "level": row.level, "base": row.base_minor, "rate_bp": row.rate_bp,
            "amount": row.amount_minor, "reversed": row.reversed_minor,
            "status": row.status, "forfeit_reason": row.forfeit_reason, "rule": rule,
            "currency": row.currency, "reversals": reversed_by or []}


def commissions_of(conn: Connection, distributor_id: str, after: list | None,
                   limit: int) -> list[dict[str, Any]]:
    query = (select(commissions).where(commissions.c.distributor_id == distributor_id)
             .order_by(commissions.c.accrued_at, commissions.c.line_uuid, commissions.c.level)
             .limit(limit))
    if after:
        at, line_uuid, level = after
        query = query.where(tuple_(commissions.c.accrued_at, commissions.c.line_uuid,
                                   commissions.c.level)
                            > tuple_(datetime.fromisoformat(at), line_uuid, level))
    rows = conn.execute(query).all()
    found: dict[tuple[str, int], list[dict[str, Any]]] = {}
    if rows:
        query = (select(reversals)
                 .where(tuple_(reversals.c.line_uuid, reversals.c.level)
                        .in_([(r.line_uuid, r.level) for r in rows]))
                 .order_by(reversals.c.line_uuid, reversals.c.level, reversals.c.version))
        for r in conn.execute(query):
            found.setdefault((r.line_uuid, r.level), []).append({
                "amount": r.amount_minor, "clawback": r.source == "available",
                "refunded_total": r.refunded_total_minor,
                "refund_reference": r.refund_reference, "cause": r.cause, "at": iso(r.at)})
    return [commission_view(r, found.get((r.line_uuid, r.level))) for r in rows]
