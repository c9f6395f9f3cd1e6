"""A kill -9 of the server while its writer has batches in flight loses no acknowledged
command and applies none twice (PostgreSQL, a real server, concurrent clients that retry
with their Idempotency-Keys as an integration would)."""
from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time

import pytest
from sqlalchemy import MetaData, Table, create_engine, func, select

from tests.conftest import POSTGRES_URL, SKIP_POSTGRES, wipe
from tests.test_server import cli, free_port, start, wait_until_up

pytestmark = pytest.mark.server

CLIENTS = 8
ORDERS_PER_CLIENT = 25
STOCK = 1_000


def _order(client: int, n: int) -> bytes:
    # No order_id: the server makes one, so only the key can tell a retry from a new
    # order; a retry that acted twice would place a second order.
    return json.dumps({
        "customer": {"customer_id": f"C{client}", "name": "Buyer", "phone": "13800138000"},
        "shipping_address": {"region": "east", "city": "Shanghai", "line1": "1 Rd"},
        "lines": [{"sku": "HOT", "quantity": 1}]}).encode()


def _send(port: int, token: str, key: str, body: bytes) -> tuple[int, dict] | None:
    """One try; None when the server was not there to answer."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/api/v1/orders", body=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Idempotency-Key": key})
        response = conn.getresponse()
        reply = json.loads(response.read())
        conn.close()
        return response.status, reply
    except (OSError, http.client.HTTPException, ValueError):
        return None


@pytest.mark.skipif(SKIP_POSTGRES, reason="FENXIAO_SKIP_POSTGRES=1 leaves PostgreSQL out")
def test_kill_9_mid_batch_loses_nothing_acknowledged_and_repeats_nothing(
        processes) -> None:
    from migrations import upgrade
    upgrade(POSTGRES_URL)
    wipe(POSTGRES_URL)
    port = free_port()
    env = {**os.environ, "FENXIAO_DATABASE_URL": POSTGRES_URL, "FENXIAO_RATE_LIMIT": "off",
           "FENXIAO_AUTH_FAILURE_LIMIT": "off"}
    token = cli(env, "token", "create", "--role", "admin", "--name", "kill-test")
    base = f"http://127.0.0.1:{port}/api/v1"
    server = start(env, "serve", "--port", str(port), "--no-worker", "--threads", "16")
    processes.append(server)
    wait_until_up(base, server)
    for path, body in (("/warehouses", {"warehouse_id": "W1", "name": "W1",
                                        "region": "east"}),
                       ("/products", {"sku": "HOT", "name": "Hot",
                                      "price": {"amount": 100, "currency": "CNY"}}),
                       ("/stock/receipts", {"sku": "HOT", "warehouse_id": "W1",
                                            "quantity": STOCK, "reference": "PO"})):
        status, _ = _send_json(port, token, path, body)
        assert status == 201

    acknowledged: dict[str, str] = {}  # key -> order id, from the first 201 a key got
    lock = threading.Lock()

    def client(c: int) -> None:
        for n in range(ORDERS_PER_CLIENT):
            key, body = f"c{c}-o{n}", _order(c, n)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                answer = _send(port, token, key, body)
                if answer is not None and answer[0] == 201:
                    with lock:
                        earlier = acknowledged.setdefault(key, answer[1]["order_id"])
                    assert earlier == answer[1]["order_id"], "a retry got another order"
                    break
                time.sleep(0.05)  # the server is down (or restarting): retry the key
            else:
                raise AssertionError(f"{key} was never answered")

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for thread in threads:
        thread.start()
    kills = 0
    while any(thread.is_alive() for thread in threads) and kills < 3:
        time.sleep(0.6)
        os.kill(server.pid, signal.SIGKILL)  # mid-write: batches are in flight
        server.wait()
        kills += 1
        server = start(env, "serve", "--port", str(port), "--no-worker", "--threads", "16")
        processes.append(server)
        wait_until_up(base, server)
    for thread in threads:
        thread.join()

    assert kills >= 1
    assert len(acknowledged) == CLIENTS * ORDERS_PER_CLIENT
    assert len(set(acknowledged.values())) == len(acknowledged)
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            events = Table("fenxiao_events", MetaData(), autoload_with=conn)
            placed = conn.execute(select(func.count()).select_from(events).where(
                events.c.topic == "domain.orders:Order.OrderPlaced")).scalar()
    finally:
        engine.dispose()
    # Every key placed exactly one order: none lost, none placed twice.
    assert placed == len(acknowledged)


def _send_json(port: int, token: str, path: str, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/api/v1" + path, body=json.dumps(body).encode(), headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())
