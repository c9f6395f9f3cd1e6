"""Concurrent repeats of one idempotent command execute once (both databases)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from domain.stock import StockItem
from tests.api_support import Api

RECEIPT = {"sku": "TEA", "warehouse_id": "W1", "quantity": 3, "reference": "PO-9"}


def test_concurrent_repeats_with_one_key_execute_once(api: Api) -> None:
    api.seed()
    flask = api.client.application
    app = flask.extensions["fenxiao"]
    headers = api.headers("warehouse", **{"Idempotency-Key": "retry-storm"})

    def send(_: int):
        response = flask.test_client().post("/api/v1/stock/receipts", json=RECEIPT,
                                            headers=headers)
        return response.status_code, response.get_json()

    with ThreadPoolExecutor(max_workers=12) as pool:
        replies = list(pool.map(send, range(24)))
    assert {status for status, _ in replies} == {201}
    assert len({str(body) for _, body in replies}) == 1
    assert app.repository.get(StockItem.create_id("TEA", "W1")).on_hand == 13


def test_concurrent_distinct_commands_all_land(api: Api) -> None:
    api.seed()
    flask = api.client.application
    app = flask.extensions["fenxiao"]

    def send(n: int) -> int:
        return flask.test_client().post(
            "/api/v1/stock/receipts", json={**RECEIPT, "quantity": 1},
            headers=api.headers("warehouse", **{"Idempotency-Key": f"k-{n}"})).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert set(pool.map(send, range(30))) == {201}
    assert app.repository.get(StockItem.create_id("TEA", "W1")).on_hand == 40
