"""Read models: distributors with their direct downline, customer bindings, commission
rules in force. Every new customer is bound here, so a batch is folded into rows and
written with a few statements (projections/batching.py)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Sequence

from sqlalchemy import Column, DateTime, Index, Integer, String, Table, func, select, tuple_
from sqlalchemy.engine import Connection

from commands.views import iso, utc
from commands.storage import metadata, upsert
from commands.views import rule_view
from domain.commissions import CommissionRules
from domain.distributors import CustomerBinding, Distributor
from projections.batching import FoldingProjection, Rows

distributors = Table(
    "rm_distributors", metadata,
    Column("distributor_id", String(64), primary_key=True),
    Column("distributor_uuid", String(36), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("referral_code", String(20), nullable=True, unique=True),
    Column("referrer_id", String(64), nullable=True),
    Column("upline_id", String(64), nullable=True, index=True),
    Column("downline_count", Integer, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
    Index("rm_distributors_queue_idx", "status", "applied_at", "distributor_id"),
)

bindings = Table(
    "rm_customer_bindings", metadata,
    Column("customer_id", String(64), primary_key=True),
    Column("binding_uuid", String(36), nullable=False, unique=True),
    Column("distributor_id", String(64), nullable=False, index=True),
    Column("bound_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
)

commission_rules = Table(
    "rm_commission_rules", metadata,
    Column("scope", String(64), primary_key=True),  # "*" for the default rule, else a sku
    Column("kind", String(10), nullable=False),
    Column("level1", Integer, nullable=False),
    Column("level2", Integer, nullable=False),
    Column("version", Integer, nullable=False),
)

DEFAULT_SCOPE = "*"


class _Batch:
    """A batch folded into rows (projections/batching.py): the distributors and bindings
    it touches read in one query each, changed in memory in log order, written once."""

    def __init__(self, conn: Connection, events: Sequence[Any]) -> None:
        self.conn = conn
        self.distributors = Rows(distributors, "distributor_id", also=["distributor_uuid"])
        self.bindings = Rows(bindings, "customer_id", also=["binding_uuid"])
        self.distributors.load(conn, [str(e.originator_id) for e in events
                                      if type(e) in _DISTRIBUTOR_MOVES], "distributor_uuid")
        self.distributors.load(conn, [upline for e in events for upline in _uplines(e)])
        self.bindings.load(conn, [str(e.originator_id) for e in events
                                  if type(e) is CustomerBinding.CustomerRebound],
                           "binding_uuid")

    def this(self, e: Any, **values: Any) -> None:
        """Set columns of the event's distributor."""
        self.distributors.update(self.conn, str(e.originator_id), "distributor_uuid",
                                 **values)

    def count(self, distributor_id: str | None, change: int) -> None:
        if distributor_id is not None:
            self.distributors.add(self.conn, distributor_id, downline_count=change)

    def write(self) -> None:
        self.distributors.write(self.conn)
        self.bindings.write(self.conn)


def _uplines(e: Any) -> list[str]:
    """The distributors whose downline count the event changes."""
    if type(e) is Distributor.DistributorApproved:
        return [e.upline_id] if e.upline_id is not None else []
    if type(e) is Distributor.UplineChanged:
        return [u for u in (e.old_upline_id, e.new_upline_id) if u is not None]
    return []


def _applied(batch: _Batch, e: Any) -> None:
    batch.distributors.insert({
        "distributor_id": e.distributor_id, "distributor_uuid": str(e.originator_id),
        "name": e.name, "status": "pending", "referral_code": None,
        "referrer_id": e.referrer_id, "upline_id": None, "downline_count": 0,
        "applied_at": e.applied_at})


def _status(status: str) -> Callable[[_Batch, Any], None]:
    def fold(batch: _Batch, e: Any) -> None:
        batch.this(e, status=status)
    return fold


def _approved(batch: _Batch, e: Any) -> None:
    batch.this(e, status="active", referral_code=e.referral_code, upline_id=e.upline_id)
    batch.count(e.upline_id, +1)


def _upline_changed(batch: _Batch, e: Any) -> None:
    batch.this(e, upline_id=e.new_upline_id)
    batch.count(e.old_upline_id, -1)
    batch.count(e.new_upline_id, +1)


def _bound(batch: _Batch, e: Any) -> None:
    batch.bindings.insert({
        "customer_id": e.customer_id, "binding_uuid": str(e.originator_id),
        "distributor_id": e.distributor_id, "bound_at": e.bound_at,
        "expires_at": e.expires_at})


def _rebound(batch: _Batch, e: Any) -> None:
    batch.bindings.update(batch.conn, str(e.originator_id), "binding_uuid",
                          distributor_id=e.distributor_id, bound_at=e.bound_at,
                          expires_at=e.expires_at)


def _rule_set(batch: _Batch, e: Any) -> None:
    """Rare: written at once (only rule events touch rm_commission_rules)."""
    row = {"kind": e.kind, "level1": e.level1, "level2": e.level2, "version": e.version}
    upsert(batch.conn, commission_rules, [{"scope": e.sku or DEFAULT_SCOPE, **row}],
           ["scope"], row)


# event class -> what it does to the batch's rows
_FOLD = {
    Distributor.DistributorApplied: _applied,
    Distributor.DistributorApproved: _approved,
    Distributor.DistributorRejected: _status("rejected"),
    Distributor.DistributorSuspended: _status("suspended"),
    Distributor.DistributorReinstated: _status("active"),
    Distributor.UplineChanged: _upline_changed,
    CustomerBinding.CustomerBound: _bound,
    CustomerBinding.CustomerRebound: _rebound,
    CommissionRules.CommissionRuleSet: _rule_set,
}
_DISTRIBUTOR_MOVES = {Distributor.DistributorApproved, Distributor.DistributorRejected,
                      Distributor.DistributorSuspended, Distributor.DistributorReinstated,
                      Distributor.UplineChanged}


class DistributorsProjection(FoldingProjection):
    name = "distributors"
    tables = (distributors, bindings, commission_rules)
    fold = _FOLD
    batch_class = _Batch


def _distributor_view(row: Any) -> dict[str, Any]:
    return {"distributor_id": row.distributor_id, "name": row.name, "status": row.status,
            "referral_code": row.referral_code, "upline_id": row.upline_id,
            "downline_count": row.downline_count}


def get_distributor(conn: Connection, distributor_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(distributors)
                       .where(distributors.c.distributor_id == distributor_id)).first()
    return _distributor_view(row) if row else None


def direct_downline(conn: Connection, distributor_id: str, after: str | None,
                    limit: int) -> list[dict[str, Any]]:
    query = (select(distributors).where(distributors.c.upline_id == distributor_id)
             .order_by(distributors.c.distributor_id).limit(limit))
    if after is not None:
        query = query.where(distributors.c.distributor_id > after)
    return [_distributor_view(r) for r in conn.execute(query)]


def list_distributors(conn: Connection, status: str | None, upline_id: str | None,
                      after: list[str] | None, limit: int) -> list[dict[str, Any]]:
    """The review queue and the network: oldest application first."""
    d = distributors.c
    query = select(distributors).order_by(d.applied_at, d.distributor_id).limit(limit)
    if status is not None:
        query = query.where(d.status == status)
    if upline_id is not None:
        query = query.where(d.upline_id == upline_id)
    if after is not None:
        at, distributor_id = after
        query = query.where(tuple_(d.applied_at, d.distributor_id)
                            > tuple_(utc(datetime.fromisoformat(at)), distributor_id))
    return [{"distributor_id": r.distributor_id, "name": r.name, "status": r.status,
             "referral_code": r.referral_code, "upline_id": r.upline_id,
             "applied_at": iso(r.applied_at)} for r in conn.execute(query)]


def status_counts(conn: Connection) -> dict[str, int]:
    return dict(conn.execute(select(distributors.c.status, func.count())
                             .group_by(distributors.c.status)).all())


def commission_rules_in_force(conn: Connection) -> list[dict[str, Any]]:
    """The default rule (level 1 = 1000 bp, level 2 = 500 bp until one is set), then the
    per-SKU rules."""
    rows = {r.scope: r for r in conn.execute(select(commission_rules))}
    default = rows.pop(DEFAULT_SCOPE, None)
    views = [rule_view(None, default.kind, default.level1, default.level2, default.version)
             if default else rule_view(None, "rate", 1000, 500, 0)]
    views += [rule_view(scope, r.kind, r.level1, r.level2, r.version)
              for scope, r in sorted(rows.items())]
    return views

