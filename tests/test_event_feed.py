"""The public event feed (GET /events), on both databases: every public type once, replay
from 0 equal to the log's public events, stable ids, a distributor's own events only,
masking, long polls, and bad parameters refused."""
from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from commands import feed
from tests.api_support import Api
from tests.test_fulfilment_api import the_app
from tests.webhook_support import every_public_event, feed_pages, ok


def test_every_public_type_in_log_order_and_replay_equals_the_log(hooks_api: Api) -> None:
    api = hooks_api
    every_public_event(api)
    events = list(feed_pages(api, limit=7))
    assert {e["type"] for e in events} == set(feed.PUBLIC_TYPE_NAMES)
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    # Replay from 0 equals the log's public events, one for one, whatever the page size.
    app = the_app(api)
    with app.engine.connect() as conn:
        rows = conn.execute(feed.select(feed.event_log).order_by(feed.event_log.c.id)).all()
    public = [row.id for row in rows if row.topic in feed.TOPIC_TYPES]
    assert positions == public
    assert list(feed_pages(api, limit=500)) == events  # same ids, same payloads
    assert len({e["id"] for e in events}) == len(events)
    print(Counter(e["type"] for e in events))


def test_a_distributor_sees_only_its_own_orders_and_earnings(hooks_api: Api) -> None:
    from api.auth import create_token

    api = hooks_api
    every_public_event(api)
    api.tokens["d2"] = create_token(the_app(api).engine, "distributor", name="test-d2",
                                    distributor_id="D2")
    everything = list(feed_pages(api, role="admin"))

    def concerns(event: dict[str, Any], who: str) -> bool:
        data = event["data"]
        return data.get("distributor_id") == who or any(
            a["distributor_id"] == who for a in data.get("amounts", ()))

    for role, who in (("d2", "D2"), ("distributor", "D1")):
        seen = list(feed_pages(api, role=role))
        assert [e["id"] for e in seen] == [e["id"] for e in everything if concerns(e, who)]
        assert seen, role
        for event in seen:  # of a commission line, only its own amounts
            assert all(a["distributor_id"] == who for a in event["data"].get("amounts", ()))
    d2_types = {e["type"] for e in feed_pages(api, role="d2")}
    assert {"order.placed", "order.paid", "shipment.delivered", "aftersales.refunded",
            "commission.accrued", "withdrawal.paid"} <= d2_types
    # D1 is D2's upline: it hears of its level-2 commission, never of D2's orders.
    d1_types = {e["type"] for e in feed_pages(api, role="distributor")}
    assert d1_types == {"commission.accrued", "commission.matured", "commission.reversed"}


def test_personal_data_is_masked_for_all_but_admin(hooks_api: Api) -> None:
    api = hooks_api
    every_public_event(api)
    for role in ("admin", "integration", "auditor"):
        placed = next(e for e in feed_pages(api, role=role, types="order.placed"))
        customer, address = placed["data"]["customer"], placed["data"]["shipping_address"]
        if role == "admin":
            assert (customer["name"], customer["phone"]) == ("Li Lei", "+8613800138000")
            assert address["line1"] == "1 Beishan Rd"
        else:
            assert (customer["name"], customer["phone"]) == ("L**", "**********8000")
            assert (address["region"], address["line1"], address["city"]) == (
                "east", "***", "***")


def test_types_filter_and_pages(hooks_api: Api) -> None:
    api = hooks_api
    every_public_event(api)
    everything = list(feed_pages(api))
    wanted = {"order.paid", "withdrawal.rejected"}
    chosen = list(feed_pages(api, types="order.paid,withdrawal.rejected", limit=1))
    assert chosen == [e for e in everything if e["type"] in wanted] and len(chosen) == 2
    middle = everything[5]["position"]
    assert list(feed_pages(api, after=middle)) == [e for e in everything
                                                   if e["position"] > middle]
    page = ok(api.get("/events", role="integration", after=everything[-1]["position"]))
    assert page == {"items": [], "next_after": the_app(api).last_position()}


def test_long_poll_answers_when_the_next_event_is_recorded(bare_api: Api) -> None:
    api = bare_api
    from tests.test_fulfilment_api import seed

    seed(api)
    head = the_app(api).last_position()
    started = time.monotonic()
    assert ok(api.get("/events", role="integration", after=head))["items"] == []
    assert time.monotonic() - started < 0.5  # an empty page answers at once
    started = time.monotonic()
    assert ok(api.get("/events", role="integration", after=head, wait=1))["items"] == []
    assert 0.9 < time.monotonic() - started < 3

    def place_soon() -> None:
        time.sleep(0.5)
        ok(api.post("/orders", {"order_id": "O-LP", "lines": [{"sku": "TEA", "quantity": 1}],
                                "customer": {"customer_id": "C", "name": "N",
                                             "phone": "13800138000"},
                                "shipping_address": {"region": "east", "city": "X",
                                                     "line1": "Y"}}, role="integration"), 201)

    placing = threading.Thread(target=place_soon)
    placing.start()
    started = time.monotonic()
    page = ok(api.get("/events", role="integration", after=head, wait=20))
    waited = time.monotonic() - started
    placing.join()
    assert [e["type"] for e in page["items"]] == ["order.placed"]
    assert 0.4 < waited < 5


def test_bad_parameters_and_roles_are_refused_and_change_nothing(bare_api: Api) -> None:
    api = bare_api
    app = the_app(api)
    for params, field in (({"after": -1}, "after"), ({"types": "order.nope"}, "types"),
                          ({"types": "Order.OrderPaid"}, "types"), ({"limit": 0}, "limit"),
                          ({"limit": 501}, "limit"), ({"wait": 31}, "wait"),
                          ({"wait": "soon"}, "wait"), ({"after": "x"}, "after"),
                          ({"after": 1, "wait": 5}, "after")):  # beyond the head: no wait
        reply = api.get("/events", role="integration", **params)
        assert reply.status_code == 422, (params, reply.get_json())
        error = reply.get_json()["error"]
        assert error["code"] == "validation_error" and field in error["details"], error
    for role in ("operator", "warehouse"):
        assert api.get("/events", role=role).status_code == 403
    assert api.get("/events", role=None).status_code == 401
    for role in ("integration", "admin", "auditor", "distributor"):
        assert ok(api.get("/events", role=role)) == {"items": [], "next_after": 0}
    assert app.last_position() == 0


def test_a_long_poll_is_woken_by_a_commit_of_another_process(bare_api: Api, db_url: str,
                                                            monkeypatch) -> None:
    """On PostgreSQL by the NOTIFY of the commit (the other application here has its own
    engine and commit listeners, as another process would); elsewhere (and should a
    notification be lost) by looking at the log again every second."""
    from commands import Fenxiao
    from commands.settings import Settings

    api = bare_api
    from tests.test_fulfilment_api import seed

    if db_url.startswith("postgresql"):  # only the notification can wake it in time
        monkeypatch.setattr("api.webhooks.LOOK_AGAIN_S", 30.0)
    seed(api)
    head = the_app(api).last_position()
    other = Fenxiao(Settings(database_url=db_url, rate_limit=None))

    def place_elsewhere() -> None:
        time.sleep(0.5)
        other.execute(lambda: other.place_order(
            "C", "N", "13800138000", {"region": "east", "city": "X", "line1": "Y"},
            [("TEA", 1)], order_id="O-ELSE"), status=201)

    placing = threading.Thread(target=place_elsewhere)
    placing.start()
    started = time.monotonic()
    try:
        page = ok(api.get("/events", role="integration", after=head, wait=20))
    finally:
        placing.join()
        other.close()
    assert [e["type"] for e in page["items"]] == ["order.placed"]
    assert time.monotonic() - started < 3
