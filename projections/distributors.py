"""Read models: distributors with their direct downline, customer bindings, commission
rules in force."""
from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import Column, DateTime, Integer, String, Table, select, update
from sqlalchemy.engine import Connection

from commands.storage import metadata, upsert
from commands.views import rule_view
from domain.commissions import CommissionRules
from domain.distributors import CustomerBinding, Distributor
from projections.base import Projection

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


def _applied(conn: Connection, e: Any) -> None:
    conn.execute(distributors.insert().values(
        distributor_id=e.distributor_id, distributor_uuid=str(e.originator_id), name=e.name,
        status="pending", referrer_id=e.referrer_id, downline_count=0,
        applied_at=e.applied_at))


def _this(e: Any) -> Any:
    return distributors.c.distributor_uuid == str(e.originator_id)


def _status(status: str) -> Callable[[Connection, Any], None]:
    def handler(conn: Connection, e: Any) -> None:
        conn.execute(update(distributors).where(_this(e)).values(status=status))
    return handler


def _count(conn: Connection, distributor_id: str | None, change: int) -> None:
    if distributor_id is not None:
        conn.execute(update(distributors)
                     .where(distributors.c.distributor_id == distributor_id)
                     .values(downline_count=distributors.c.downline_count + change))


def _approved(conn: Connection, e: Any) -> None:
    conn.execute(update(distributors).where(_this(e)).values(
        status="active", referral_code=e.referral_code, upline_id=e.upline_id))
    _count(conn, e.upline_id, +1)


def _upline_changed(conn: Connection, e: Any) -> None:
    conn.execute(update(distributors).where(_this(e)).values(upline_id=e.new_upline_id))
    _count(conn, e.old_upline_id, -1)
    _count(conn, e.new_upline_id, +1)


def _bound(conn: Connection, e: Any) -> None:
    conn.execute(bindings.insert().values(
        customer_id=e.customer_id, binding_uuid=str(e.originator_id),
        distributor_id=e.distributor_id, bound_at=e.bound_at, expires_at=e.expires_at))


def _rebound(conn: Connection, e: Any) -> None:
    conn.execute(update(bindings).where(bindings.c.binding_uuid == str(e.originator_id))
                 .values(distributor_id=e.distributor_id, bound_at=e.bound_at,
                         expires_at=e.expires_at))


def _rule_set(conn: Connection, e: Any) -> None:
    row = {"kind": e.kind, "level1": e.level1, "level2": e.level2, "version": e.version}
    upsert(conn, commission_rules, [{"scope": e.sku or DEFAULT_SCOPE, **row}], ["scope"], row)


class DistributorsProjection(Projection):
    name = "distributors"
    tables = (distributors, bindings, commission_rules)
    handlers = {
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

