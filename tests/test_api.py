"""The HTTP contract of ../shared/API.md for catalog and stock, through Flask's client."""
from __future__ import annotations

import pytest

from tests.api_support import Api

RECEIPT = {"sku": "TEA", "warehouse_id": "W1", "quantity": 3, "reference": "PO-9"}


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def test_products_and_inventory_round_trip(api: Api) -> None:
    position = api.seed()
    product = api.get("/products/TEA", role="distributor", min_position=position)
    assert product.status_code == 200
    assert product.get_json()["price"] == {"amount": 1999, "currency": "CNY"}
    assert int(product.headers["X-Fenxiao-Position"]) >= position
    moved = api.post("/stock/transfers", {"sku": "TEA", "from_warehouse_id": "W1",
                                          "to_warehouse_id": "W2", "quantity": 4},
                     role="warehouse")
    assert moved.status_code == 201
    tea = api.get("/inventory/TEA", role="operator", min_position=moved.get_json()["position"])
    assert tea.get_json() == {
        "sku": "TEA", "on_hand": 10, "reserved": 0, "available": 10, "warehouses": [
            {"sku": "TEA", "warehouse_id": "W1", "on_hand": 6, "reserved": 0, "available": 6},
            {"sku": "TEA", "warehouse_id": "W2", "on_hand": 4, "reserved": 0, "available": 4}]}
    listing = api.get("/inventory", role="auditor", warehouse_id="W2",
                      min_position=moved.get_json()["position"]).get_json()
    assert [(i["sku"], i["on_hand"]) for i in listing["items"]] == [("CUP", 5), ("TEA", 4)]


def test_price_change_delist_and_list(api: Api) -> None:
    api.seed()
    changed = api.post("/products/TEA/price", {"price": {"amount": 2500, "currency": "CNY"}},
                       role="operator")
    assert changed.status_code == 200 and changed.get_json()["price"]["amount"] == 2500
    assert api.post("/products/TEA/delist").get_json()["listed"] is False
    assert error_code(api.post("/products/TEA/delist")) == "invalid_transition"
    relisted = api.post("/products/TEA/list")
    assert relisted.get_json()["listed"] is True
    got = api.get("/products/TEA", min_position=relisted.get_json()["position"]).get_json()
    assert (got["price"]["amount"], got["listed"]) == (2500, True)
    assert api.get("/products/NOPE").status_code == 404


def test_pagination(api: Api) -> None:
    last = 0
    for n in range(7):
        last = api.post("/products", {"sku": f"P{n}", "name": "x",
                                      "price": {"amount": 1, "currency": "CNY"}}
                        ).get_json()["position"]
    seen, cursor = [], None
    while True:
        params = {"limit": 3, "min_position": last}
        if cursor:
            params["cursor"] = cursor
        body = api.get("/products", **params).get_json()
        seen += [p["sku"] for p in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"P{n}" for n in range(7)]
    assert api.get("/products", limit=501).status_code == 422
    assert error_code(api.get("/products", cursor="!!")) == "validation_error"


def test_adjustments_need_a_reason_and_cannot_overdraw(api: Api) -> None:
    api.seed()
    ok = api.post("/stock/adjustments", {"sku": "TEA", "warehouse_id": "W1", "delta": -2,
                                         "reason": "damaged"}, role="warehouse")
    assert ok.status_code == 201 and ok.get_json()["on_hand"] == 8
    too_much = api.post("/stock/adjustments", {"sku": "TEA", "warehouse_id": "W1",
                                               "delta": -9, "reason": "lost"})
    assert too_much.status_code == 409 and error_code(too_much) == "insufficient_stock"
    assert too_much.get_json()["error"]["details"]["available"] == 8
    zero = api.post("/stock/adjustments", {"sku": "TEA", "warehouse_id": "W1", "delta": 0,
                                           "reason": "x"})
    assert zero.status_code == 422 and "delta" in zero.get_json()["error"]["details"]


@pytest.mark.parametrize("body, field", [
    ({**RECEIPT, "quantity": 0}, "quantity"),
    ({**RECEIPT, "quantity": -5}, "quantity"),
    ({**RECEIPT, "quantity": 2.5}, "quantity"),
    ({**RECEIPT, "quantity": "3"}, "quantity"),
    ({**RECEIPT, "quantity": True}, "quantity"),
    ({**RECEIPT, "colour": "red"}, "colour"),
    ({k: v for k, v in RECEIPT.items() if k != "reference"}, "reference"),
    ({**RECEIPT, "sku": "has space"}, "sku"),
    ({**RECEIPT, "sku": "x" * 65}, "sku"),
])
def test_bad_input_is_refused_and_records_nothing(api: Api, body: dict, field: str) -> None:
    position = api.seed()
    response = api.post("/stock/receipts", body)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]
    assert api.client.application.extensions["fenxiao"].last_position() == position


def test_malformed_json_wrong_currency_oversize_and_unknown_references(api: Api) -> None:
    api.seed()
    app = api.client.application.extensions["fenxiao"]
    before = app.last_position()
    raw = api.client.post("/api/v1/stock/receipts", data="{not json",
                          headers={**api.headers("admin"), "Content-Type": "application/json"})
    assert raw.status_code == 400 and error_code(raw) == "bad_request"
    usd = api.post("/products", {"sku": "X", "name": "x",
                                 "price": {"amount": 1, "currency": "USD"}})
    assert usd.status_code == 422 and "price" in usd.get_json()["error"]["details"]
    huge = api.post("/stock/receipts", {**RECEIPT, "reference": "x" * (2 << 20)})
    assert huge.status_code == 413 and error_code(huge) == "payload_too_large"
    unknown = api.post("/stock/receipts", {**RECEIPT, "warehouse_id": "W9"})
    assert unknown.status_code == 404 and error_code(unknown) == "not_found"
    dup = api.post("/warehouses", {"warehouse_id": "W1", "name": "again", "region": "x"})
    assert dup.status_code == 409 and error_code(dup) == "duplicate"
    same = api.post("/stock/transfers", {"sku": "TEA", "from_warehouse_id": "W1",
                                         "to_warehouse_id": "W1", "quantity": 1})
    assert same.status_code == 409 and error_code(same) == "same_warehouse"
    assert app.last_position() == before


def test_authentication_and_roles(api: Api) -> None:
    api.seed()
    assert error_code(api.post("/stock/receipts", RECEIPT, role=None)) == "unauthorized"
    assert api.post("/stock/receipts", RECEIPT, role="not-a-token").status_code == 401
    # auth comes before validation: an anonymous bad body is still 401
    assert api.post("/stock/receipts", {"junk": 1}, role=None).status_code == 401
    for role in ("operator", "auditor", "integration", "distributor"):
        refused = api.post("/stock/receipts", RECEIPT, role=role)
        assert refused.status_code == 403 and error_code(refused) == "forbidden"
    assert api.post("/warehouses", {"warehouse_id": "W5", "name": "n", "region": "r"},
                    role="operator").status_code == 403
    assert api.get("/inventory", role="distributor").status_code == 403
    assert api.get("/products", role="distributor").status_code == 200
    assert api.get("/products", role=None).status_code == 401


def test_admin_token_from_the_environment(app) -> None:
    from dataclasses import replace

    from api import create_app

    app.settings = replace(app.settings, admin_token="let-me-in")
    flask = create_app(app.settings, application=app)
    client = flask.test_client()
    ok = client.post("/api/v1/warehouses", json={"warehouse_id": "W1", "name": "E",
                                                 "region": "e"},
                     headers={"Authorization": "Bearer let-me-in"})
    assert ok.status_code == 201


def test_idempotency_key(api: Api) -> None:
    api.seed()
    first = api.post("/stock/receipts", RECEIPT, role="warehouse", **{"Idempotency-Key": "r-1"})
    again = api.post("/stock/receipts", RECEIPT, role="warehouse", **{"Idempotency-Key": "r-1"})
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert first.get_json()["on_hand"] == 13
    changed = api.post("/stock/receipts", {**RECEIPT, "quantity": 4}, role="warehouse",
                       **{"Idempotency-Key": "r-1"})
    assert changed.status_code == 409 and error_code(changed) == "idempotency_key_reused"
    assert api.post("/stock/receipts", RECEIPT, **{"Idempotency-Key": ""}).status_code == 422
    assert api.post("/stock/receipts", RECEIPT,
                    **{"Idempotency-Key": "k" * 256}).status_code == 422
    tea = api.get("/inventory/TEA", min_position=first.get_json()["position"]).get_json()
    assert tea["on_hand"] == 13


def test_min_position_times_out_with_503_and_retry_after(app) -> None:
    from dataclasses import replace

    from api import create_app
    from tests.api_support import Api as Client

    app.settings = replace(app.settings, min_position_timeout_s=0.2)
    client = Client(create_app(app.settings, application=app).test_client(), app.engine)
    position = client.seed()  # no worker runs: the projections stay behind
    lagging = client.get("/products", min_position=position)
    assert lagging.status_code == 503 and error_code(lagging) == "projection_lagging"
    assert lagging.headers["Retry-After"] == "1"


def test_health_and_openapi(api: Api) -> None:
    position = api.seed()
    api.get("/inventory", min_position=position)
    api.get("/products", min_position=position)
    health = api.client.get("/api/v1/health").get_json()
    assert health["status"] == "ok"
    projections = {p["name"]: p for p in health["projections"]}
    from projections import all_projections
    from projections.policies import all_process_managers

    assert set(projections) == {p.name for p in [*all_projections(), *all_process_managers()]}
    assert {"catalog", "inventory", "orders", "shipments", "commission_policy"} <= set(projections)
    assert projections["catalog"]["lag"] == projections["inventory"]["lag"] == 0
    spec = api.client.get("/api/v1/openapi.json").get_json()
    for path in ("/api/v1/products", "/api/v1/stock/receipts", "/api/v1/inventory/{sku}",
                 "/api/v1/warehouses", "/api/v1/stock/transfers", "/api/v1/health"):
        assert path in spec["paths"], path


def test_rate_limit_answers_429_in_the_envelope(app) -> None:
    from dataclasses import replace

    from api import create_app
    from tests.api_support import Api as Client

    flask = create_app(replace(app.settings, rate_limit="3 per minute"), application=app)
    client = Client(flask.test_client(), app.engine)
    statuses = [client.get("/products").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = client.get("/products")
    assert limited.get_json()["error"]["code"] == "rate_limited"
    assert "Retry-After" in limited.headers
    assert client.get("/products", role="auditor").status_code == 200  # another caller
    assert flask.test_client().get("/api/v1/health").status_code == 200


def test_rate_limit_headers_on_every_limited_request_and_none_on_health(app) -> None:
    from dataclasses import replace

    from api import create_app
    from tests.api_support import Api as Client

    flask = create_app(replace(app.settings, rate_limit="50 per minute"), application=app)
    client = Client(flask.test_client(), app.engine)
    first, second = client.get("/products"), client.get("/products")
    assert first.headers["X-RateLimit-Limit"] == second.headers["X-RateLimit-Limit"] == "50"
    assert int(first.headers["X-RateLimit-Remaining"]) == 49
    assert int(second.headers["X-RateLimit-Remaining"]) == 48
    assert int(second.headers["X-RateLimit-Reset"]) > 0
    health = flask.test_client().get("/api/v1/health")
    assert health.status_code == 200 and "X-RateLimit-Limit" not in health.headers


def test_the_rate_counters_start_no_thread_per_request_and_stale_ones_go() -> None:
    import time

    from limits import parse
    from limits.strategies import FixedWindowRateLimiter

    from api.guards import QuietMemoryStorage

    storage = QuietMemoryStorage()
    first = storage.timer  # limits starts one when the storage is made
    first.join()
    window = FixedWindowRateLimiter(storage)
    assert [window.hit(parse("2 per second"), "caller") for _ in range(3)] == [
        True, True, False]
    assert storage.timer is first  # limits' own storage starts another after a hit
    storage.incr("stale", expiry=0.001)
    time.sleep(0.01)
    storage._next_purge = 0.0  # due now
    window.hit(parse("2 per second"), "another")
    assert "stale" not in storage.storage


def test_health_reports_an_unreachable_database_with_503() -> None:
    from api import create_app
    from commands import Fenxiao
    from commands.settings import Settings

    settings = Settings(database_url="postgresql+psycopg2://postgres@127.0.0.1:1/nowhere")
    app = Fenxiao(settings)
    try:
        response = create_app(settings, application=app).test_client().get("/api/v1/health")
        assert response.status_code == 503
        assert response.get_json()["status"] == "unavailable"
    finally:
        app.close()


def test_large_amounts_fit_the_read_models(api: Api) -> None:
    made = api.post("/products", {"sku": "GOLD", "name": "Gold bar",
                                  "price": {"amount": 10**12, "currency": "CNY"}})
    assert made.status_code == 201
    got = api.get("/products/GOLD", min_position=made.get_json()["position"])
    assert got.status_code == 200 and got.get_json()["price"]["amount"] == 10**12
