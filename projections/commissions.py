"""Read model: commission entries per order line and level, as each distributor sees them,
and every reversal of each entry with the refund behind it (which refund reversed how much).

Every paid line accrues, matures and is reversed by events of its own, so a batch is folded
into rows and written with a few statements (projections/batching.py), not a statement or
three per event."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator, Sequence

from sqlalchemy import (Column, DateTime, Integer, String, Table, delete, select, tuple_,
                        update)
from sqlalchemy.engine import Connection

from commands.storage import BIGINT as MINOR, metadata
from commands.views import iso
from domain.accruals import LineCommission
from projections.batching import FoldingProjection, insert

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


class _Batch:
    """A batch folded into rows (projections/batching.py). A reversal adds to its line's
    entries, so the lines the batch reverses are read (one query), changed in memory in
    log order, and written back whole: their rows deleted, then inserted with the entries
    the batch created. Maturity needs no read: the lines the batch only matures stay in
    the table, and one UPDATE moves their pending entries as the handler's own UPDATE did.
    It runs before the new entries are inserted: those, like the lines read, were matured
    in memory, in log order."""

    def __init__(self, conn: Connection, events: Sequence[Any]) -> None:
        self.conn = conn
        self.lines: dict[str, dict[int, dict[str, Any]]] = {}  # line -> level -> entry
        self.read = {str(e.originator_id) for e in events  # the lines reversed
                     if type(e) is LineCommission.CommissionReversed}
        self.stored: dict[str, list[dict[str, Any]]] = {}  # line read -> its rows
        self.created: list[dict[str, Any]] = []
        self.changed: set[str] = set()  # lines with an entry changed in memory
        self.matured: set[str] = set()  # lines not read that the batch matures
        self.reversals: list[dict[str, Any]] = []
        for chunk in _chunks(sorted(self.read)):
            for row in conn.execute(select(commissions)
                                    .where(commissions.c.line_uuid.in_(chunk))):
                entry = dict(row._mapping)
                self.stored.setdefault(entry["line_uuid"], []).append(entry)
                self.lines.setdefault(entry["line_uuid"], {})[entry["level"]] = entry

    def create(self, entry: dict[str, Any]) -> None:
        """A new entry. If its (line, level) exists already, the INSERT fails, as the
        handler's own INSERT would have; the entry known stays the first."""
        self.created.append(entry)
        self.lines.setdefault(entry["line_uuid"], {}).setdefault(entry["level"], entry)

    def line(self, line_uuid: str) -> dict[int, dict[str, Any]]:
        """The line's entries in memory by level, as the events so far left them."""
        return self.lines.get(line_uuid, {})

    def write(self) -> None:
        for chunk in _chunks(sorted(self.matured)):
            self.conn.execute(update(commissions)
                              .where(commissions.c.line_uuid.in_(chunk),
                                     commissions.c.status == "pending")
                              .values(status="available"))
        changed = sorted(self.changed & self.stored.keys())  # created entries: inserted
        for chunk in _chunks(changed):
            self.conn.execute(delete(commissions).where(commissions.c.line_uuid.in_(chunk)))
        insert(self.conn, commissions,
               [*(row for line in changed for row in self.stored[line]), *self.created])
        insert(self.conn, reversals, self.reversals)


def _chunks(keys: list[str]) -> Iterator[list[str]]:
    """A few hundred keys at a time, for a WHERE ... IN: well below every driver's limit
    of parameters."""
    for start in range(0, len(keys), 500):
        yield keys[start:start + 500]


def _accrued(batch: _Batch, e: Any) -> None:
    common = {"line_uuid": str(e.originator_id), "order_id": e.order_id,
              "line_no": e.line_no, "sku": e.sku, "currency": e.currency,
              "accrued_at": e.at, "reversed_minor": 0}
    for a in e.accruals:
        batch.create({
            **common, "level": a["level"], "distributor_id": a["distributor_id"],
            "base_minor": a["base_minor"], "rate_bp": a.get("rate_bp"),
            "fixed_per_unit": a.get("fixed_per_unit"), "amount_minor": a["amount_minor"],
            "status": "pending", "forfeit_reason": None, "rule_kind": a.get("rule_kind"),
            "rule_version": a.get("rule_version")})
    for f in e.forfeits:
        batch.create({
            **common, "level": f["level"], "distributor_id": f["distributor_id"],
            "base_minor": e.net_minor, "rate_bp": None, "fixed_per_unit": None,
            "amount_minor": f["amount_minor"], "status": "forfeited",
            "forfeit_reason": f["reason"], "rule_kind": None, "rule_version": None})


def _matured(batch: _Batch, e: Any) -> None:
    line_uuid = str(e.originator_id)
    if line_uuid not in batch.read:
        batch.matured.add(line_uuid)  # its rows in the table: by the batch's UPDATE
    for entry in batch.line(line_uuid).values():
        if entry["status"] == "pending":
            entry["status"] = "available"
            batch.changed.add(line_uuid)


def _reversed(batch: _Batch, e: Any) -> None:
    line_uuid = str(e.originator_id)
    for r in e.reversals:
        batch.reversals.append({
            "line_uuid": line_uuid, "level": r["level"], "version": e.originator_version,
            "amount_minor": r["amount_minor"], "source": r["source"],
            "refunded_total_minor": e.refunded_total_minor,
            "refund_reference": e.refund_reference, "cause": e.cause, "at": e.at})
    for r in e.reversals:
        entry = batch.line(line_uuid).get(r["level"])
        if entry is not None:
            entry["reversed_minor"] += r["amount_minor"]
            if entry["reversed_minor"] == entry["amount_minor"]:
                entry["status"] = "reversed"
            batch.changed.add(line_uuid)


class CommissionsProjection(FoldingProjection):
    name = "commissions"
    tables = (commissions, reversals)
    fold = {
        LineCommission.CommissionAccrued: _accrued,
        LineCommission.CommissionMatured: _matured,
        LineCommission.CommissionReversed: _reversed,
    }
    batch_class = _Batch


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
