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
from typing import Callable

import pytest
from sqlalchemy import MetaData, Table, create_engine, func, select

from tests.conftest import POSTGRES_URL, SKIP_POSTGRES, wipe
from tests.test_server import alive, children, cli, free_port, start, wait_for, wait_until_up

pytestmark = pytest.mark.server

CLIENTS = 8
ORDERS_PER_CLIENT = 100
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


def _server_env() -> dict[str, str]:
    from migrations import upgrade
    upgrade(POSTGRES_URL)
    wipe(POSTGRES_URL)
    return {**os.environ, "FENXIAO_DATABASE_URL": POSTGRES_URL, "FENXIAO_RATE_LIMIT": "off",
            "FENXIAO_AUTH_FAILURE_LIMIT": "off"}


def _seed(port: int, token: str) -> None:
    for path, body in (("/warehouses", {"warehouse_id": "W1", "name": "W1",
                                        "region": "east"}),
                       ("/products", {"sku": "HOT", "name": "Hot",
                                      "price": {"amount": 100, "currency": "CNY"}}),
                       ("/stock/receipts", {"sku": "HOT", "warehouse_id": "W1",
                                            "quantity": STOCK, "reference": "PO"})):
        status, _ = _send_json(port, token, path, body)
        assert status == 201


def _orders_while(port: int, token: str, kill: Callable[[], None], kills: int = 3,
                  every_s: float = 0.3, orders: int = ORDERS_PER_CLIENT) -> None:
    """CLIENTS clients place their orders, each retrying its key until a 201, while
    `kill` kills a process `kills` times (and brings the server back); then every key
    must have placed exactly one order."""
    acknowledged: dict[str, str] = {}  # key -> order id, from the first 201 a key got
    stuck: list[str] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        for n in range(orders):
            key, body = f"c{c}-o{n}", _order(c, n)
            deadline, answer = time.monotonic() + 60, None
            while time.monotonic() < deadline:
                answer = _send(port, token, key, body)
                if answer is not None and answer[0] == 201:
                    with lock:
                        earlier = acknowledged.setdefault(key, answer[1]["order_id"])
                    assert earlier == answer[1]["order_id"], "a retry got another order"
                    break
                time.sleep(0.05)  # down, restarting, or the outcome unknown: retry the key
            else:
                stuck.append(f"{key} was never answered: the last answer {answer}")
                return

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for thread in threads:
        thread.start()
    done = 0
    while any(thread.is_alive() for thread in threads) and done < kills:
        time.sleep(every_s)
        if any(thread.is_alive() for thread in threads):
            kill()  # mid-write: batches are in flight
            done += 1
    for thread in threads:
        thread.join()

    assert not stuck
    assert done >= 1
    assert len(acknowledged) == CLIENTS * orders
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


@pytest.mark.skipif(SKIP_POSTGRES, reason="FENXIAO_SKIP_POSTGRES=1 leaves PostgreSQL out")
def test_kill_9_mid_batch_loses_nothing_acknowledged_and_repeats_nothing(
        processes) -> None:
    env = _server_env()
    port = free_port()
    token = cli(env, "token", "create", "--role", "admin", "--name", "kill-test")
    base = f"http://127.0.0.1:{port}/api/v1"
    args = ("serve", "--port", str(port), "--no-worker", "--threads", "16")
    server = start(env, *args)
    processes.append(server)
    wait_until_up(base, server)
    _seed(port, token)

    def kill_the_server() -> None:
        nonlocal server
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        server = start(env, *args)
        processes.append(server)
        wait_until_up(base, server)

    _orders_while(port, token, kill_the_server)


@pytest.mark.skipif(SKIP_POSTGRES, reason="FENXIAO_SKIP_POSTGRES=1 leaves PostgreSQL out")
def test_kill_9_of_the_shared_writer_loses_nothing_and_repeats_nothing(processes) -> None:
    """`serve --workers 2`: the API processes send their commands to one writer process.
    Killed mid-batch, its in-flight requests are answered 503 (outcome unknown), the
    master starts another, the API processes decide alone meanwhile; every key still
    places exactly one order."""
    env = _server_env()
    port = free_port()
    token = cli(env, "token", "create", "--role", "admin", "--name", "kill-test")
    base = f"http://127.0.0.1:{port}/api/v1"
    server = start(env, "serve", "--port", str(port), "--no-worker", "--workers", "2",
                   "--threads", "8")
    processes.append(server)
    wait_until_up(base, server)
    _seed(port, token)
    killed: list[int] = []

    def writer() -> int | None:
        found = [pid for pid, cmdline in children(server.pid)
                 if cmdline[-1:] == ["writer"] and pid not in killed and alive(pid)]
        return found[0] if found else None

    def kill_the_writer() -> None:
        pid = wait_for(writer, "the writer process")
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    wait_for(writer, "the writer process")
    _orders_while(port, token, kill_the_writer, every_s=0.25)
    back = wait_for(writer, "the master to start another writer")
    time.sleep(2)
    assert alive(back)  # it came back, and it stays (its socket's path is free again)
    status, _ = _send_json(port, token, "/stock/receipts", {
        "sku": "HOT", "warehouse_id": "W1", "quantity": 1, "reference": "after"})
    assert status == 201


def _send_json(port: int, token: str, path: str, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/api/v1" + path, body=json.dumps(body).encode(), headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())
