"""Audit over HTTP (both databases): the event history with its metadata and masking, and
balances, orders and earnings as of a past position or time, computed from the log. The
as-of figures are checked against a fold of the log written here, against the live views
at the head, and against what the story below makes true at each hour."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from api import create_app
from commands import Fenxiao
from commands.audit import event_types
from commands.settings import Settings
from domain.ledger import JournalEntry
from domain.orders import Order
from domain.stock import StockItem
from projections import audit_checkpoints
from projections.audit_checkpoints import (AuditCheckpointsProjection, checkpoints,
                                           full_checkpoints)
from projections.ledger import balances
from projections.runner import ProjectionRunner
from tests.api_support import Api, assert_rebuild_equals_live, tables_of
from tests.test_api_distributors import network

UTC = timezone.utc
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)  # catalog, stock, distributors
T1 = T0 + timedelta(hours=1)  # O1 placed and paid, its commission accrued
T2 = T0 + timedelta(hours=2)  # O1's commission matured and 100 withdrawn; O2 paid, accrued
T3 = T0 + timedelta(hours=3)  # O2 cancelled and refunded, its commission reversed
CUSTOMER = {"customer_id": "C-1", "name": "Wang Fang", "phone": "13912345678"}
ADDRESS = {"region": "east", "city": "Suzhou", "line1": "8 Canal Road", "postcode": "215000"}
FORBIDDEN = ("operator", "integration", "warehouse", "distributor")


def app_of(api: Api) -> Fenxiao:
    return api.client.application.extensions["fenxiao"]


def ok(reply: Any) -> dict[str, Any]:
    assert reply.status_code in (200, 201), reply.get_json()
    return reply.get_json()


def order(api: Api, order_id: str, sku: str, quantity: int) -> int:
    """Place and pay an order credited to D1; return its total."""
    placed = ok(api.post("/orders", {
        "order_id": order_id, "customer": CUSTOMER, "shipping_address": ADDRESS,
        "lines": [{"sku": sku, "quantity": quantity}], "distributor_id": "D1"},
        role="integration"))
    ok(api.post(f"/orders/{order_id}/payments",
                {"amount": {"amount": placed["total"], "currency": "CNY"},
                 "payment_reference": f"PAY-{order_id}"}, role="integration",
                **{"Idempotency-Key": f"pay-{order_id}",
                   "X-Correlation-Id": f"corr-{order_id}"}))
    return placed["total"]


def story(api: Api) -> dict[datetime, int]:
    """The history the tests read, one hour at a time on the application's clock; returns
    the log position at the end of each hour."""
    app = app_of(api)
    ends = {}
    app.clock = lambda: T0
    api.seed()
    network(api)
    ends[T0] = app.last_position()
    app.clock = lambda: T1
    order(api, "O1", "TEA", 2)  # 39.98: D1 earns 10 %, 3.998, rounded half up: 4.00
    app.execute(lambda: app.accrue_commission("O1", 1, "TEA", 2, 3998, "D1"))
    ends[T1] = app.last_position()
    app.clock = lambda: T2
    app.execute(lambda: app.mature_commission("O1", 1))
    ok(api.post("/distributors/D1/withdrawals",
                {"amount": {"amount": 100, "currency": "CNY"}, "withdrawal_id": "WD1"}))
    ok(api.post("/withdrawals/WD1/approve", {"payment_reference": "BANK-1"}))
    order(api, "O2", "CUP", 1)  # 9.90: D1 earns 0.99
    app.execute(lambda: app.accrue_commission("O2", 1, "CUP", 1, 990, "D1"))
    ends[T2] = app.last_position()
    app.clock = lambda: T3
    ok(api.post("/orders/O2/cancel", {"reason": "changed mind"}))
    app.execute(lambda: app.reverse_order_commission("O2", [1], "cancelled:O2"))
    ends[T3] = app.last_position()
    return ends


def events(api: Api, role: str = "admin", **params: Any) -> list[dict[str, Any]]:
    """Every event the listing gives, page after page."""
    found, cursor = [], None
    while True:
        page = ok(api.get("/audit/events", role=role, **params,
                          **({"cursor": cursor} if cursor else {})))
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def without_as_of(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "as_of"}


def error_fields(reply: Any) -> set[str]:
    assert reply.status_code == 422, reply.get_json()
    return set(reply.get_json()["error"]["details"])


# -- history ------------------------------------------------------------------------------

def test_history_carries_the_metadata_and_the_application_clock(api: Api) -> None:
    ends = story(api)
    o1 = events(api, order_id="O1")
    assert [e["position"] for e in o1] == sorted(e["position"] for e in o1)
    assert [e["version"] for e in o1] == list(range(1, len(o1) + 1))
    assert [e["type"] for e in o1[:2]] == ["Order.OrderPlaced", "Order.OrderPaid"]
    placed, paid = o1[0], o1[1]
    assert placed["aggregate_id"] == str(Order.create_id("O1"))
    assert placed["actor"] == "test-integration" and placed["timestamp"] == T1.isoformat()
    assert placed["data"]["order_id"] == "O1" and placed["data"]["total_minor"] == 3998
    assert paid["idempotency_key"] == "pay-O1" and paid["correlation_id"] == "corr-O1"
    assert paid["command_id"] and paid["causation_id"] is None
    assert events(api, aggregate_id=placed["aggregate_id"]) == o1
    # One clock: every event carries the time the application's clock gave its save.
    everything = events(api)
    assert {e["timestamp"] for e in everything} == {t.isoformat() for t in (T0, T1, T2, T3)}
    for e in everything:
        hour = next(t for t in sorted(ends) if e["position"] <= ends[t])
        assert e["timestamp"] == hour.isoformat(), e
    reply = api.get("/audit/events", role="auditor", limit=1)
    assert reply.headers["X-Fenxiao-Position"] == str(ends[T3])
    # Every event of the log is one the checkpoints read and the type filter knows.
    known = set(event_types())
    assert {e["type"] for e in everything} <= known
    assert "Order.OrderPaid" in known and "Order.Created" not in known


def test_an_event_saved_without_the_clock_stamp_shows_the_library_timestamp(
        api: Api) -> None:
    app = app_of(api)
    item = StockItem(sku="OLD", warehouse_id="W9")
    (opened,) = item.collect_events()
    opened.__dict__["meta"] = {"actor": "before-the-stamp"}  # as events were stored then
    app.save(opened)
    (found,) = events(api, type="StockItem.StockItemOpened")
    assert found["actor"] == "before-the-stamp" and found["command_id"] is None
    assert found["timestamp"] == opened.timestamp.astimezone(UTC).isoformat()


def test_personal_data_is_clear_to_admins_and_masked_for_auditors(api: Api) -> None:
    story(api)
    clear = {e["type"]: e for e in events(api, role="admin")}
    masked_list = events(api, role="auditor")
    masked = {e["type"]: e for e in masked_list}
    assert [e["position"] for e in masked_list] == sorted(
        e["position"] for e in events(api, role="admin"))
    placed = clear["Order.OrderPlaced"]["data"]
    assert placed["customer"]["name"] == "Wang Fang"
    assert placed["customer"]["phone"].endswith("13912345678")
    assert placed["shipping_address"] == ADDRESS
    hidden = masked["Order.OrderPlaced"]["data"]
    assert hidden["customer"]["customer_id"] == "C-1" and hidden["customer"]["name"] == "W**"
    assert hidden["customer"]["phone"].endswith("*5678")
    assert set(hidden["customer"]["phone"][:-4]) == {"*"}
    assert hidden["shipping_address"] == {"region": "east", "city": "***", "line1": "***",
                                          "postcode": "***"}
    assert hidden["lines"] == placed["lines"]  # what was sold is not personal
    applied = masked["Distributor.DistributorApplied"]["data"]
    assert applied["name"] == "T**" and applied["phone"].endswith("*0003")  # D3, "Three"
    assert masked["Warehouse.WarehouseOpened"]["data"]["name"] == "South"  # not a person
    text = json.dumps(masked_list)
    for secret in ("Wang Fang", "13912345678", "8 Canal Road", "Suzhou", "215000",
                   "13800000001", '"One"'):
        assert secret not in text, secret


def test_filters_pages_and_bad_queries(api: Api) -> None:
    ends = story(api)
    everything = events(api, limit=500)
    assert [e["position"] for e in everything] == sorted(e["position"] for e in everything)
    assert everything[-1]["position"] == ends[T3]
    assert events(api, limit=7) == everything
    assert events(api, after=ends[T1]) == [e for e in everything
                                           if e["position"] > ends[T1]]
    paid = events(api, type="Order.OrderPaid")
    assert [e["data"]["payment_reference"] for e in paid] == ["PAY-O1", "PAY-O2"]
    in_range = events(api, **{"from": T1.isoformat(), "to": T2.isoformat()})
    assert in_range == [e for e in everything
                        if e["timestamp"] in (T1.isoformat(), T2.isoformat())]
    assert events(api, **{"from": (T2 + timedelta(minutes=1)).isoformat()}) == [
        e for e in everything if e["timestamp"] == T3.isoformat()]
    assert events(api, to=(T0 - timedelta(seconds=1)).isoformat()) == []
    assert events(api, order_id="O1", type="Order.OrderPaid") == paid[:1]
    other = str(Order.create_id("O2"))
    assert events(api, order_id="O1", aggregate_id=other) == []
    # Pages continue from a cursor; `after` and a cursor together start at the later one.
    first = ok(api.get("/audit/events", limit=3))
    resumed = ok(api.get("/audit/events", limit=3, cursor=first["next_cursor"], after=1))
    assert resumed["items"] == everything[3:6]

    def forged(parts: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()
    for cursor in ("nope", forged(["x"]), forged([1, 2]), forged({"p": 1}), forged([True])):
        assert error_fields(api.get("/audit/events", cursor=cursor)) == {"cursor"}, cursor
    for bad in ({"type": "Order.Nope"}, {"aggregate_id": "O1"}, {"limit": 0},
                {"limit": 501}, {"after": -1}, {"from": "2026-03-01T09:00:00"},
                {"to": "yesterday"}, {"from": "0001-01-01T00:00:00+23:59"},
                {"min_position": ends[T3] + 1}):
        assert set(bad) <= error_fields(api.get("/audit/events", **bad)), bad


# -- point in time --------------------------------------------------------------------------

def fold(app: Fenxiao) -> list[dict[str, list[int]]]:
    """The trial balance after every position, by reading the whole log here:
    account -> [debit, credit]."""
    totals: dict[str, list[int]] = {}
    after = [dict(totals)]
    for stored in app.recorder.select_notifications(start=None, limit=1_000_000):
        while len(after) < stored.id:  # positions the log skipped
            after.append({k: list(v) for k, v in totals.items()})
        event = app.mapper.to_domain_event(stored)
        if isinstance(event, JournalEntry.EntryPosted):
            for line in event.lines:
                pair = totals.setdefault(line["account"], [0, 0])
                pair[0 if line["amount"] > 0 else 1] += abs(line["amount"])
        after.append({k: list(v) for k, v in totals.items()})
    return after


def accounts_of(body: dict[str, Any]) -> dict[str, list[int]]:
    assert body["total"] == 0 and body["currency"] == "CNY"
    for a in body["accounts"]:
        assert a["balance"] == a["debit"] - a["credit"]
    return {a["account"]: [a["debit"], a["credit"]] for a in body["accounts"]}


@pytest.fixture(params=[7, 10**9], ids=["full-checkpoints", "no-full-checkpoints"])
def checkpoint_every_3(monkeypatch: pytest.MonkeyPatch, request: Any) -> None:
    """Checkpoints every 3 positions, so a short story crosses many of them; a full one
    past every multiple of 7 positions, or none (as checkpoints built before full ones
    existed: every account looked up on its own)."""
    monkeypatch.setattr(audit_checkpoints, "CHECKPOINT_EVERY", 3)
    monkeypatch.setattr(audit_checkpoints, "FULL_SPAN", request.param)


@pytest.mark.usefixtures("checkpoint_every_3")
def test_as_of_every_position_and_every_hour_equals_a_fold_of_the_log(api: Api) -> None:
    app = app_of(api)
    ends = story(api)
    expected = fold(app)
    # Right whether the checkpoints have caught up or not: first as they are, then built.
    for position in (0, ends[T0], ends[T1], ends[T3]):
        reply = ok(api.get("/audit/trial-balance", role="auditor", as_of=position))
        assert accounts_of(reply) == expected[position]
    # Rebuilt in batches of two (the worker may have built them in one): a full checkpoint
    # then lists accounts its batch did not touch.
    ProjectionRunner(app, [AuditCheckpointsProjection()], batch_size=2).rebuild(
        AuditCheckpointsProjection.name)
    with app.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(checkpoints)).scalar() >= 10
        fulls = conn.execute(select(func.count()).select_from(full_checkpoints)).scalar()
        assert (fulls >= 3) if audit_checkpoints.FULL_SPAN == 7 else fulls == 0
    for position in range(ends[T3] + 1):
        reply = ok(api.get("/audit/trial-balance", role="auditor", as_of=position))
        assert reply["as_of"]["position"] == position
        assert accounts_of(reply) == expected[position], position
        cash = ok(api.get("/audit/accounts/merchant:cash/balance", as_of=position))
        debit, credit = expected[position].get("merchant:cash", [0, 0])
        assert (cash["debit"], cash["credit"], cash["balance"]) == (debit, credit,
                                                                   debit - credit)
    for hour, end in ends.items():
        by_time = ok(api.get("/audit/trial-balance", as_of=hour.isoformat()))
        assert by_time["as_of"]["time"] == hour.isoformat()
        position = by_time["as_of"]["position"]
        assert position >= end  # and nothing was recorded between the two:
        assert all(e["position"] <= end or e["position"] > position for e in events(api))
        assert accounts_of(by_time) == expected[end]
        later = ok(api.get("/audit/trial-balance",
                           as_of=(hour + timedelta(minutes=30)).isoformat()))
        assert later["as_of"]["position"] == position
    before = ok(api.get("/audit/trial-balance", as_of=(T0 - timedelta(days=1)).isoformat()))
    assert before["as_of"]["position"] == 0 and before["accounts"] == []


@pytest.mark.usefixtures("checkpoint_every_3")
def test_checkpoints_rebuild_to_the_same_rows_whatever_the_batches(api: Api) -> None:
    app = app_of(api)
    story(api)
    projection = AuditCheckpointsProjection()
    ProjectionRunner(app, [projection], batch_size=5).catch_up()
    live = tables_of(app, projection)
    ProjectionRunner(app, [projection], batch_size=2).rebuild(projection.name)
    assert tables_of(app, projection) == live
    # (no full checkpoints: their table stays empty)
    assert_rebuild_equals_live(app, projection,
                               every_table=audit_checkpoints.FULL_SPAN == 7)


def test_at_the_head_every_view_equals_the_live_one_and_the_past_is_right(
        api: Api) -> None:
    ends = story(api)
    head = ends[T3]
    # Earnings, worked by hand: O1 accrued 400 (10 % of 3998, rounded half up), matured,
    # 100 withdrawn and paid; O2 accrued 99 (10 % of 990), reversed while still pending.
    at_head = ok(api.get("/audit/distributors/D1/earnings", role="auditor"))
    assert without_as_of(at_head) == {
        "distributor_id": "D1", "currency": "CNY", "pending": 0, "available": 300,
        "withdrawing": 0, "paid_out": 100, "reversed": 99, "lifetime_earned": 499}
    live = ok(api.get("/distributors/D1/earnings", role="auditor", min_position=head))
    assert without_as_of(at_head) == live
    assert without_as_of(ok(api.get("/audit/distributors/D2/earnings"))) == ok(
        api.get("/distributors/D2/earnings", min_position=head))
    for order_id in ("O1", "O2"):
        assert without_as_of(ok(api.get(f"/audit/orders/{order_id}"))) == ok(
            api.get(f"/orders/{order_id}", min_position=head))
    trial = ok(api.get("/audit/trial-balance", role="auditor"))
    assert trial["as_of"] == {"position": head, "time": T3.isoformat()}
    with app_of(api).engine.connect() as conn:
        rows = conn.execute(select(balances)).all()
    assert accounts_of(trial) == {r.account: [r.debit_minor, r.credit_minor] for r in rows}
    # Before the cancellation: O2 paid and not refunded, no refund in the books, its
    # commission still pending.
    then = ok(api.get("/audit/orders/O2", as_of=T2.isoformat()))
    now = ok(api.get("/audit/orders/O2"))
    assert (then["status"], then["refunded"], then["cancelled_at"]) != (
        now["status"], now["refunded"], now["cancelled_at"])
    assert then["paid"] == 990 and then["refunded"] == 0 and then["cancelled_at"] is None
    assert now["status"] == "cancelled" and now["refunded"] == 990
    assert now["cancelled_at"] == T3.isoformat()
    books_then = accounts_of(ok(api.get("/audit/trial-balance", as_of=T2.isoformat())))
    assert "merchant:refunds" not in books_then
    assert books_then["merchant:cash"] == [3998 + 990, 100]
    assert accounts_of(trial)["merchant:refunds"] == [990, 0]
    earned_then = ok(api.get("/audit/distributors/D1/earnings", as_of=T2.isoformat()))
    assert without_as_of(earned_then) == {
        "distributor_id": "D1", "currency": "CNY", "pending": 99, "available": 300,
        "withdrawing": 0, "paid_out": 100, "reversed": 0, "lifetime_earned": 499}
    first_hour = ok(api.get("/audit/distributors/D1/earnings", as_of=ends[T1]))
    assert (first_hour["pending"], first_hour["available"], first_hour["paid_out"]) == (
        400, 0, 0)
    placed_at = events(api, order_id="O1")[0]["position"]
    o1_placed = ok(api.get("/audit/orders/O1", as_of=placed_at))
    assert o1_placed["status"] == "placed" and o1_placed["paid"] == 0
    pending = ok(api.get("/audit/accounts/distributor:D1:pending/balance", as_of=ends[T1]))
    assert pending == {"account": "distributor:D1:pending", "currency": "CNY",
                       "debit": 0, "credit": 400, "balance": -400,
                       "as_of": {"position": ends[T1], "time": T1.isoformat()}}


def test_unknown_objects_404_and_bad_as_of_422(api: Api) -> None:
    ends = story(api)
    for path in ("/audit/orders/NOPE", "/audit/distributors/NOPE/earnings",
                 "/audit/accounts/merchant:nope/balance", "/audit/accounts/cash/balance"):
        assert api.get(path).status_code == 404, path
    # Not placed, not applied yet as of then.
    assert api.get("/audit/orders/O2", as_of=ends[T1]).status_code == 404
    assert api.get("/audit/orders/O1", as_of=T0.isoformat()).status_code == 404
    assert api.get("/audit/distributors/D1/earnings", as_of=0).status_code == 404
    nothing = ok(api.get("/audit/accounts/distributor:D9:pending/balance"))
    assert (nothing["debit"], nothing["credit"], nothing["balance"]) == (0, 0, 0)
    for as_of in ("abc", "-1", "2026-13-01T00:00:00Z", "2026-03-01T09:00:00",
                  "2026-03-01", "9" * 20, str(ends[T3] + 1), "",
                  "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"):
        for path in ("/audit/trial-balance", "/audit/orders/O1",
                     "/audit/accounts/merchant:cash/balance",
                     "/audit/distributors/D1/earnings"):
            assert error_fields(api.get(path, as_of=as_of)) == {"as_of"}, (path, as_of)
    assert "min_position" in error_fields(api.get("/audit/trial-balance",
                                                  min_position=ends[T3] + 1))


def test_only_auditors_and_admins_may_read(api: Api) -> None:
    story(api)
    paths = ("/audit/events", "/audit/trial-balance", "/audit/orders/O1",
             "/audit/accounts/distributor:D1:pending/balance",
             "/audit/distributors/D1/earnings")
    for path in paths:
        for role in ("auditor", "admin"):
            assert api.get(path, role=role).status_code == 200, (path, role)
        for role in FORBIDDEN:  # O1 and the account are D1's: the distributor's own
            assert api.get(path, role=role).status_code == 403, (path, role)
        assert api.get(path, role=None).status_code == 401, path
    spec = api.client.get("/api/v1/openapi.json").get_json()["paths"]
    for template in ("/audit/events", "/audit/trial-balance", "/audit/orders/{order_id}",
                     "/audit/accounts/{account}/balance",
                     "/audit/distributors/{distributor_id}/earnings"):
        assert spec[f"/api/v1{template}"]["get"]["x-roles"] == ["auditor", "admin"]


@pytest.mark.usefixtures("checkpoint_every_3")
def test_an_encrypted_log_reads_the_same(db_url: str) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    app = Fenxiao(Settings(database_url=db_url, cipher_key=key, rate_limit=None,
                           auth_failure_limit=None))
    try:
        api = Api(create_app(app.settings, application=app).test_client(), app.engine)
        api.seed()
        network(api)
        order(api, "O1", "TEA", 1)
        stored = app.recorder.select_events(Order.create_id("O1"))
        assert b"Wang Fang" not in stored[0].state  # encrypted at rest
        ProjectionRunner(app, [AuditCheckpointsProjection()]).catch_up()
        placed = events(api, order_id="O1")[0]
        assert placed["data"]["customer"]["name"] == "Wang Fang"
        expected = fold(app)
        for position in range(app.last_position() + 1):
            reply = ok(api.get("/audit/trial-balance", as_of=position))
            assert accounts_of(reply) == expected[position]
        assert ok(api.get("/audit/orders/O1"))["paid"] == 1999
    finally:
        app.close()


def test_the_as_of_benchmark_prints_its_figures() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.audit_asof", "--events", "600",
         "--distributors", "20", "--queries", "3"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {row["metric"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert rows["audit_checkpoints_catch_up"]["unit"] == "events/s"
    for query in ("trial_balance", "account_balance_merchant",
                  "account_balance_distributor"):
        for by in ("position", "time"):
            p50 = rows[f"audit_asof_{query}_by_{by}_p50"]
            assert p50["unit"] == "ms" and 0 < p50["value"] <= rows[
                f"audit_asof_{query}_by_{by}_max"]["value"]
