"""JSON shapes shared by command replies and queries (aggregates and read-model rows
carry the same attribute names, so one function serves both)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def utc(at: datetime) -> datetime:
    """Aware, in UTC; a naive time (SQLite gives them back so) is UTC already."""
    if at.tzinfo is None:
        return at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc)


def iso(at: datetime | None) -> str | None:
    """UTC, ISO 8601."""
    return None if at is None else utc(at).isoformat()


def money(amount_minor: int | None, currency: str) -> dict[str, Any] | None:
    return None if amount_minor is None else {"amount": amount_minor, "currency": currency}


def warehouse_view(w: Any) -> dict[str, Any]:
    return {"warehouse_id": w.warehouse_id, "name": w.name, "region": w.region}


def product_view(p: Any) -> dict[str, Any]:
    return {
        "sku": p.sku, "name": p.name, "spec": p.spec,
        "price": money(p.price_minor, p.currency),
        "wholesale_price": money(p.wholesale_price_minor, p.currency),
        "listed": bool(p.listed),
    }


def stock_view(s: Any) -> dict[str, Any]:
    return {"sku": s.sku, "warehouse_id": s.warehouse_id, "on_hand": s.on_hand,
            "reserved": s.reserved, "available": s.on_hand - s.reserved}


def rule_view(sku: str | None, kind: str, level1: int, level2: int,
              version: int) -> dict[str, Any]:
    names = ("level1_rate_bp", "level2_rate_bp") if kind == "rate" else (
        "level1_fixed", "level2_fixed")
    return {"sku": sku, "kind": kind, "version": version, names[0]: level1, names[1]: level2}
