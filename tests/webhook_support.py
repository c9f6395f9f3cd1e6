"""Helpers for the feed and webhook tests: a real HTTP receiver on loopback that verifies
Standard Webhooks signatures as an integrator would, and a shop history that records every
public event type at least once."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

from commands import Fenxiao
from commands.settings import Settings
from projections.policies import all_process_managers
from projections.runner import ProjectionRunner, wait_for_position
from tests.api_support import Api
from tests.test_api_distributors import network
from tests.test_fulfilment_api import (LATER, NOW, carrier_event, dispatched, paid_order, seed,
                                       set_clock, the_app)


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What the README shows integrators: any of the signatures made with `secret`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(sig.partition(",")[2], expected)
               for sig in headers["webhook-signature"].split(" "))


class Receiver:
    """An HTTP server on 127.0.0.1 recording every request; `answer(n, headers)` gives
    the status of the n-th request (default 200), `delay_s` slows every answer."""

    def __init__(self, answer: Callable[[int, dict[str, str]], int] | None = None,
                 delay_s: float = 0.0) -> None:
        self.answer = answer or (lambda _n, _headers: 200)
        self.delay_s = delay_s
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

            def do_POST(self) -> None:  # noqa: N802 (the server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.received.append((headers, body))
                    n = len(receiver.received)
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                status = receiver.answer(n, headers)
                reply = b"ok" if status < 300 else b"nope"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _headers, body in self.received]

    def wait_for(self, count: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.events()


def register(api: Api, url: str, types: list[str] | None = None, **extra: Any
             ) -> dict[str, Any]:
    from commands.feed import PUBLIC_TYPE_NAMES

    reply = api.post("/webhooks", {"url": url, "types": types or list(PUBLIC_TYPE_NAMES),
                                   **extra})
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def settle(api: Api) -> int:
    """The process managers' commands (commission, backorders) and the read models the
    time rules read, caught up with the whole log."""
    app = the_app(api)
    ProjectionRunner(app, [], process_managers=all_process_managers()).catch_up()
    head = app.last_position()
    assert wait_for_position(app, ["orders", "commissions", "ledger", "aftersales"], head,
                             20.0) is not None
    return head


def ok(reply: Any, status: int = 200) -> dict[str, Any]:
    assert reply.status_code == status, reply.get_json()
    return reply.get_json()


FOUR_EYES_MIN = 99  # 1.00 yuan: the history's refund and first payout need two people


def every_public_event(api: Api) -> None:
    """A shop's history with every public type of the vocabulary in it: D2 (upline D1)
    sells 2 TEA (O-1), delivered; one is returned and refunded; the order completes, its
    commission matures, D2 withdraws twice (paid, rejected); the refund and the payout are
    approved by two people (above the four-eyes threshold); O-2 is cancelled, O-3
    expires, O-4 waits for CUP and is filled when stock arrives."""
    app = the_app(api)
    seed(api)
    network(api)
    shipments = paid_order(api, "O-1", [("TEA", 2)], distributor_id="D2")
    for n, shipment_id in enumerate(shipments):
        sent = dispatched(api, shipment_id)
        ok(carrier_event(api, sent["carrier"], f"E-{n}", sent["tracking_number"],
                         "delivered", "2026-11-26T10:00:00+08:00"))
    set_clock(api, LATER)
    order = {"customer": {"customer_id": "C-9", "name": "Han Meimei", "phone": "13900139000"},
             "shipping_address": {"region": "east", "city": "Hangzhou", "line1": "2 Rd"}}
    ok(api.post("/orders", {**order, "order_id": "O-2", "lines": [{"sku": "TEA", "quantity": 1}],
                            "distributor_id": "D2"}, role="integration"), 201)
    ok(api.post("/orders/O-2/cancel", {"reason": "changed mind"}, role="integration"))
    ok(api.post("/orders", {**order, "order_id": "O-3", "lines": [{"sku": "TEA", "quantity": 1}]},
                role="integration"), 201)
    ok(api.post("/orders", {**order, "order_id": "O-4", "allow_backorder": True,
                            "lines": [{"sku": "CUP", "quantity": 7}]}, role="integration"), 201)
    ok(api.post("/stock/receipts", {"sku": "CUP", "warehouse_id": "W2", "quantity": 5,
                                    "reference": "PO-9"}), 201)
    settle(api)  # commission accrued; O-4's backorder filled
    ok(api.post("/after-sales", {"order_id": "O-1", "type": "return_refund",
                                 "lines": [{"sku": "TEA", "quantity": 1}], "reason": "broken",
                                 "case_id": "AS-1"}, role="integration"), 201)
    ok(api.post("/after-sales/AS-1/approve", role="operator"))
    ok(api.post("/after-sales/AS-1/receive", {"restock": True, "warehouse_id": "W1"},
                role="warehouse"))
    refund = {"amount": {"amount": 1999, "currency": "CNY"}, "refund_reference": "R-1"}
    ok(api.post("/after-sales/AS-1/refund", refund, role="operator"), 202)  # four eyes:
    ok(api.post("/after-sales/AS-1/refund", refund, role="admin"))  # a second person pays
    settle(api)  # commission reversed
    for day in (4, 11):  # O-1 completes (and O-3 expires), then its commission matures
        set_clock(api, NOW.replace(day=1, month=12) + timedelta(days=day - 1, hours=3))
        ok(api.post("/admin/tick", role="admin"))
        settle(api)
    ok(api.post("/distributors/D2/withdrawals", {"amount": {"amount": 100, "currency": "CNY"},
                                                  "withdrawal_id": "WD-1"}), 201)
    ok(api.post("/withdrawals/WD-1/approve", {"payment_reference": "BANK-1"}, role="operator"),
       202)
    ok(api.post("/withdrawals/WD-1/approve", {"payment_reference": "BANK-1"}))
    ok(api.post("/distributors/D2/withdrawals", {"amount": {"amount": 100, "currency": "CNY"},
                                                  "withdrawal_id": "WD-2"}), 201)
    ok(api.post("/withdrawals/WD-2/reject", {"reason": "KYC"}))
    del app


def feed_pages(api: Api, role: str = "integration", **query: Any) -> Iterator[dict[str, Any]]:
    """Every event of the feed from `after` (default 0), page by page."""
    after = query.pop("after", 0)
    while True:
        page = ok(api.get("/events", role=role, after=after, **query))
        yield from page["items"]
        if page["next_after"] == after:
            return
        after = page["next_after"]


def hooks_api_on(db_url: str, worker: bool = True) -> Iterator[Api]:
    """For a fixture: the HTTP API (with the projection worker unless not `worker`), on an
    application that may call private addresses (these tests' receivers are on loopback)."""
    from api import create_app

    application = Fenxiao(Settings(database_url=db_url, rate_limit=None,
                                   auth_failure_limit=None, webhook_allow_private=True,
                                   four_eyes_min_minor=FOUR_EYES_MIN))
    flask = create_app(application.settings, application=application, start_worker=worker)
    yield Api(flask.test_client(), application.engine)
    if worker:
        flask.extensions["fenxiao_runner"].stop()
    application.close()

