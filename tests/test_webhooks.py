"""Webhooks, on both databases, with real HTTP receivers on loopback: every event type
arrives once per endpoint, signed; failures are retried on the schedule and then given
up on; a dead or hung receiver never delays a healthy one; rotation signs with both
secrets during the grace period; SSRF attempts are refused at registration and at
delivery; the endpoint's rules, both sides; replays; and (PostgreSQL) kill -9 of the
worker mid-delivery loses nothing and repeats only with the same webhook-id."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from commands.feed import PUBLIC_TYPE_NAMES
from commands.storage import idempotency
from projections.webhook_sender import MAX_ATTEMPTS, RETRY_DELAYS_S, WebhookSender
from tests.api_support import Api
from tests.test_fulfilment_api import seed, the_app
from tests.webhook_support import (Receiver, every_public_event, feed_pages, ok, register,
                                   verify)

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def code_of(reply: Any) -> str:
    return reply.get_json()["error"]["code"]


def order(api: Api, order_id: str) -> int:
    return ok(api.post("/orders", {
        "order_id": order_id, "lines": [{"sku": "TEA", "quantity": 1}],
        "customer": {"customer_id": "C-1", "name": "Li Lei", "phone": "13800138000"},
        "shipping_address": {"region": "east", "city": "Hangzhou", "line1": "1 Rd"}},
        role="integration"), 201)["position"]


def more_tea(api: Api) -> None:
    ok(api.post("/stock/receipts", {"sku": "TEA", "warehouse_id": "W1", "quantity": 500,
                                    "reference": "PO-MORE"}), 201)


def deliveries(api: Api, webhook_id: str, **query: Any) -> list[dict[str, Any]]:
    return ok(api.get(f"/webhooks/{webhook_id}/deliveries", limit=500, **query))["items"]


def test_every_event_type_arrives_once_per_endpoint_signed(hooks_api: Api) -> None:
    api = hooks_api
    sender = WebhookSender(the_app(api)).start()
    try:
        with Receiver() as everything, Receiver() as money:
            all_types = register(api, everything.url, description="ERP")
            some = register(api, money.url, types=["order.paid", "commission.accrued",
                                                   "withdrawal.paid"])
            start = the_app(api).last_position()
            every_public_event(api)
            feed = list(feed_pages(api, after=start))
            assert {e["type"] for e in feed} == set(PUBLIC_TYPE_NAMES)
            wanted = [e for e in feed if e["type"] in some["types"]]
            assert everything.wait_for(len(feed)) == feed  # in log order, as the feed has
            assert money.wait_for(len(wanted)) == wanted
            time.sleep(0.3)  # and nothing more: once each
            assert len(everything.received) == len(feed) and len(money.received) == 3
            for receiver, secret in ((everything, all_types["secret"]),
                                     (money, some["secret"])):
                for headers, body in receiver.received:
                    assert verify(secret, headers, body)
                    assert headers["webhook-id"] == json.loads(body)["id"]
                    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
                assert not verify(all_types["secret"] if receiver is money
                                  else some["secret"], *receiver.received[0])
    finally:
        sender.stop()
    attempts = deliveries(api, all_types["webhook_id"])
    assert [(a["event_id"], a["attempt"], a["status"], a["status_code"]) for a in attempts] \
        == [(e["id"], 1, "delivered", 200) for e in feed]
    shown = ok(api.get(f"/webhooks/{all_types['webhook_id']}"))
    assert (shown["failing_since"], shown["status"]) == (None, "enabled")
    assert shown["cursor"] >= feed[-1]["position"]  # past the events it does not take too
    assert "secret" not in shown


def test_a_failed_delivery_is_retried_on_the_schedule_then_given_up(bare_api: Api) -> None:
    api = bare_api
    app = the_app(api)
    seed(api)
    clock = Clock()
    sender = WebhookSender(app, clock=clock)
    # 500 then 200: retried 5 s later, with the same webhook-id.
    with Receiver(lambda n, _h: 500 if n == 1 else 200) as flaky:
        hook = register(api, flaky.url, types=["order.placed"])
        order(api, "O-1")
        sender.run_once()
        sender.run_once()  # not due yet: nothing sent
        assert len(flaky.received) == 1
        clock.advance(RETRY_DELAYS_S[0])
        sender.run_once()
        first, second = flaky.received
        assert first[0]["webhook-id"] == second[0]["webhook-id"] and first[1] == second[1]
        assert [(a["attempt"], a["status"], a["status_code"])
                for a in deliveries(api, hook["webhook_id"])] == [
            (1, "retrying", 500), (2, "delivered", 200)]
        assert ok(api.get(f"/webhooks/{hook['webhook_id']}"))["failing_since"] is None
    # Always 500: attempts at 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, then failed, and
    # the next event goes out at once.
    with Receiver(lambda _n, _h: 500) as dead:
        hook = register(api, dead.url, types=["order.placed"])
        order(api, "O-2")
        order(api, "O-3")
        sender.run_once()
        for delay in RETRY_DELAYS_S:
            clock.advance(delay - 1)
            sender.run_once()  # a second early: nothing
            clock.advance(1)
            sender.run_once()
        attempts = deliveries(api, hook["webhook_id"])
        o2 = [a for a in attempts if a["position"] == attempts[0]["position"]]
        assert [a["attempt"] for a in o2] == list(range(1, MAX_ATTEMPTS + 1))
        assert [a["status"] for a in o2] == ["retrying"] * 7 + ["failed"]
        times = [datetime.fromisoformat(a["at"]) for a in o2]
        assert [(b - a).total_seconds() for a, b in zip(times, times[1:])] == \
            list(RETRY_DELAYS_S)
        assert attempts[len(o2)]["position"] > o2[0]["position"]  # O-3 at once
        assert attempts[len(o2)]["attempt"] == 1
        shown = ok(api.get(f"/webhooks/{hook['webhook_id']}", role="admin"))
        assert shown["failing_since"] is not None and shown["status"] == "enabled"
        assert len(ok(api.get(f"/webhooks/{hook['webhook_id']}/deliveries",
                              status="failed"))["items"]) == 1


def test_an_endpoint_failing_for_too_long_is_disabled_and_operators_told(db_url: str) -> None:
    from api import create_app
    from commands import Fenxiao
    from commands.settings import Settings

    app = Fenxiao(Settings(database_url=db_url, rate_limit=None, auth_failure_limit=None,
                           webhook_allow_private=True, webhook_disable_after_s=3600))
    flask = create_app(app.settings, application=app, start_worker=True)
    api = Api(flask.test_client(), app.engine)
    try:
        seed(api)
        clock = Clock()
        sender = WebhookSender(app, clock=clock)
        with Receiver(lambda _n, _h: 503) as down:
            hook = register(api, down.url, types=["order.placed"])
            order(api, "O-1")
            sender.run_once()
            for delay in RETRY_DELAYS_S[:3]:  # 5 s, 5 min, 30 min: under the hour
                clock.advance(delay)
                sender.run_once()
            assert ok(api.get(f"/webhooks/{hook['webhook_id']}"))["status"] == "enabled"
            clock.advance(RETRY_DELAYS_S[3])  # 2 h later: failing for more than an hour
            sender.run_once()
            shown = ok(api.get(f"/webhooks/{hook['webhook_id']}"))
            assert shown["status"] == "disabled" and "every delivery failed" in \
                shown["disabled_reason"]
            sent = len(down.received)
            clock.advance(RETRY_DELAYS_S[4])
            sender.run_once()
            assert len(down.received) == sent  # disabled: nothing more is sent
        notices = ok(api.get("/notifications", min_position=app.last_position()))["items"]
        assert [(n["kind"], n["order_id"]) for n in notices] == [("webhook_disabled", None)]
        # Enabled again: deliveries resume from the cursor, retries afresh (attempt 1).
        assert ok(api.post(f"/webhooks/{hook['webhook_id']}/enable"))["status"] == "enabled"
        before = deliveries(api, hook["webhook_id"])
        sender.run_once()  # the receiver is gone now: refused, a first attempt again
        (again,) = deliveries(api, hook["webhook_id"])[len(before):]
        assert (again["attempt"], again["position"]) == (1, before[-1]["position"])
    finally:
        flask.extensions["fenxiao_runner"].stop()
        app.close()


def test_a_dead_or_hung_receiver_never_delays_a_healthy_one(bare_api: Api) -> None:
    api = bare_api
    seed(api)
    hung = socket.socket()  # accepts connections (the kernel does) and never answers
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    dead = socket.socket()  # nothing listens there: refused at once
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    sender = WebhookSender(the_app(api)).start()
    try:
        with Receiver() as healthy:
            register(api, f"http://127.0.0.1:{hung.getsockname()[1]}/x", types=["order.placed"])
            register(api, f"http://127.0.0.1:{dead_port}/x", types=["order.placed"])
            register(api, healthy.url, types=["order.placed"])
            more_tea(api)
            started = time.monotonic()
            for n in range(20):
                order(api, f"O-{n}")
            assert len(healthy.wait_for(20, timeout_s=10)) == 20
            assert time.monotonic() - started < 5  # not held by the 15 s time-out
    finally:
        hung.close()
        sender.stop()


def test_a_rotated_secret_signs_with_both_during_the_grace_period(bare_api: Api) -> None:
    api = bare_api
    clock = Clock()
    the_app(api).clock = clock  # the one clock: of the rotation's grace and of the sender
    sender = WebhookSender(the_app(api), clock=clock)
    with Receiver() as receiver:
        hook = register(api, receiver.url, types=["order.placed"])
        old = hook["secret"]
        rotated = ok(api.post(f"/webhooks/{hook['webhook_id']}/rotate-secret",
                              {"grace_s": 3600}))
        new = rotated["secret"]
        assert new.startswith("whsec_") and new != old
        ok(api.post(f"/webhooks/{hook['webhook_id']}/ping"))
        sender.run_once()
        headers, body = receiver.received[-1]
        assert json.loads(body)["type"] == "webhook.ping"
        assert len(headers["webhook-signature"].split(" ")) == 2
        assert verify(old, headers, body) and verify(new, headers, body)
        clock.advance(3600)  # the grace period is over: only the new secret signs
        ok(api.post(f"/webhooks/{hook['webhook_id']}/ping"))
        sender.run_once()
        headers, body = receiver.received[-1]
        assert verify(new, headers, body) and not verify(old, headers, body)
        assert len(headers["webhook-signature"].split(" ")) == 1
        # grace_s 0: the old secret stops at once
        newest = ok(api.post(f"/webhooks/{hook['webhook_id']}/rotate-secret",
                             {"grace_s": 0}))["secret"]
        ok(api.post(f"/webhooks/{hook['webhook_id']}/ping"))
        sender.run_once()
        headers, body = receiver.received[-1]
        assert verify(newest, headers, body) and not verify(new, headers, body)


def test_replay_sends_again_with_the_same_ids(bare_api: Api) -> None:
    api = bare_api
    seed(api)
    sender = WebhookSender(the_app(api), clock=Clock())
    with Receiver() as receiver:
        hook = register(api, receiver.url, types=["order.placed", "order.cancelled"])
        order(api, "O-1")
        ok(api.post("/orders/O-1/cancel", {"reason": "no"}, role="integration"))
        sender.run_once()
        sent = [h["webhook-id"] for h, _ in receiver.received]
        assert len(sent) == 2
        first = json.loads(receiver.received[0][1])["position"]
        replayed = ok(api.post(f"/webhooks/{hook['webhook_id']}/replay",
                               {"from_position": first - 1}), 202)
        assert replayed["from_position"] == first - 1
        sender.run_once()
        assert [h["webhook-id"] for h, _ in receiver.received] == sent + sent
        # From before the registration: the earlier events are sent too.
        ok(api.post(f"/webhooks/{hook['webhook_id']}/replay", {"from_position": 0}), 202)
        sender.run_once()
        assert [h["webhook-id"] for h, _ in receiver.received] == sent * 3


def test_ssrf_attempts_are_refused_at_registration_and_at_delivery(api: Api,
                                                                   monkeypatch) -> None:
    """Without FENXIAO_WEBHOOK_ALLOW_PRIVATE (the plain `api` fixture)."""
    app = the_app(api)
    for url in ("http://127.0.0.1:8000/hook", "http://169.254.169.254/latest/meta-data",
                "http://localhost/hook", "http://[::1]/hook", "http://10.0.0.7/x",
                "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x",
                "http://no-such-host.invalid/x"):
        reply = api.post("/webhooks", {"url": url, "types": ["order.paid"]})
        assert reply.status_code == 409 and code_of(reply) == "webhook_url_refused", url
    for url in ("ftp://example.com/x", "http://user:pw@example.com/x", "file:///etc/passwd",
                "http://example.com/x#frag", "javascript:alert(1)", "example.com"):
        reply = api.post("/webhooks", {"url": url, "types": ["order.paid"]})
        assert reply.status_code == 422 and "url" in reply.get_json()["error"]["details"], url
    assert app.last_position() == 0
    # A name that resolved to a public address at registration and to a private one at
    # delivery (DNS rebinding): refused at delivery, nothing sent.
    import commands.webhooks as hooks

    answers = {"hooks.example.com": "93.184.216.34"}
    real = hooks.socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(hooks.socket, "getaddrinfo", getaddrinfo)
    seed(api)
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        hook = register(api, f"http://hooks.example.com:{port}/x", types=["order.placed"])
        answers["hooks.example.com"] = "127.0.0.1"
        order(api, "O-1")
        WebhookSender(app, clock=Clock()).run_once()
        assert receiver.received == []
    (attempt,) = deliveries(api, hook["webhook_id"])
    assert attempt["status"] == "retrying" and attempt["status_code"] is None
    assert "127.0.0.1 is a loopback address" in attempt["error"]


def test_the_endpoint_rules_both_sides(bare_api: Api) -> None:
    api = bare_api
    app = the_app(api)
    hook = register(api, "http://127.0.0.1:9/x", types=["order.paid"])
    webhook_id = hook["webhook_id"]
    assert hook["status"] == "enabled" and hook["secret"].startswith("whsec_")

    def refused(path: str, body: Any, status: int, code: str) -> None:
        before = app.last_position()
        reply = api.post(path, body)
        assert reply.status_code == status and code_of(reply) == code, reply.get_json()
        assert app.last_position() == before  # nothing recorded

    base = f"/webhooks/{webhook_id}"
    refused(f"{base}/enable", None, 409, "invalid_transition")  # already enabled
    assert ok(api.post(f"{base}/disable", {"reason": "maintenance"}))["status"] == "disabled"
    refused(f"{base}/disable", None, 409, "invalid_transition")  # already disabled
    refused(f"{base}/ping", None, 409, "invalid_transition")  # nobody would send it
    assert ok(api.post(f"{base}/enable"))["status"] == "enabled"
    assert ok(api.post(f"{base}/ping"))["status"] == "enabled"
    refused(f"{base}/replay", {"from_position": app.last_position() + 1}, 409,
            "position_beyond_log_head")
    refused(f"{base}/replay", {"from_position": -1}, 422, "validation_error")
    refused(f"{base}/rotate-secret", {"grace_s": 8 * 24 * 3600}, 422, "validation_error")
    refused("/webhooks/wh_nope/enable", None, 404, "not_found")
    refused("/webhooks", {"url": "http://127.0.0.1:9/x", "types": []}, 422,
            "validation_error")
    refused("/webhooks", {"url": "http://127.0.0.1:9/x", "types": ["Order.OrderPaid"]}, 422,
            "validation_error")
    for role in ("operator", "integration", "auditor", "distributor", "warehouse"):
        assert api.post(f"{base}/disable", role=role).status_code == 403
        assert api.get("/webhooks", role=role).status_code == 403
    assert api.get("/webhooks/wh_nope").status_code == 404
    listed = ok(api.get("/webhooks"))["items"]
    assert [(w["webhook_id"], w["types"]) for w in listed] == [(webhook_id, ["order.paid"])]
    # The secret is shown once and kept nowhere in clear but the (encrypted) event: the
    # audit history redacts it, the idempotency store never held it.
    again = api.post("/webhooks", {"url": "http://127.0.0.1:9/y", "types": ["order.paid"]},
                     **{"Idempotency-Key": "reg-1"})
    repeat = api.post("/webhooks", {"url": "http://127.0.0.1:9/y", "types": ["order.paid"]},
                      **{"Idempotency-Key": "reg-1"})
    assert again.get_json() == repeat.get_json() and again.status_code == 201
    secret = again.get_json()["secret"]
    with app.engine.connect() as conn:
        stored = " ".join(conn.execute(select(idempotency.c.body)).scalars())
    assert "whsec_" not in stored and secret not in stored
    history = json.dumps(ok(api.get("/audit/events", limit=500))["items"])
    assert secret not in history and hook["secret"] not in history
    assert "whsec_********" in history


def test_the_secret_is_encrypted_at_rest_with_the_stores_key(db_url: str) -> None:
    """Kept only in the endpoint's events: with FENXIAO_CIPHER_KEY, never in clear."""
    import base64

    from commands import Fenxiao
    from commands.settings import Settings

    app = Fenxiao(Settings(database_url=db_url, webhook_allow_private=True,
                           cipher_key=base64.b64encode(os.urandom(32)).decode()))
    try:
        made = app.execute(lambda: app.register_webhook("http://127.0.0.1:9/x",
                                                        ["order.paid"], ""), status=201).body
        rotated = app.execute(lambda: app.rotate_webhook_secret(made["webhook_id"], 60)).body
        assert "secret" not in made and "secret" not in rotated  # replies never hold it
        endpoint = app.webhook(made["webhook_id"])
        stored = b"".join(e.state for e in app.recorder.select_events(endpoint.id))
        assert endpoint.secret.startswith("whsec_") and endpoint.previous_secret
        for secret in (endpoint.secret, endpoint.previous_secret):
            assert secret.encode() not in stored
            assert secret.removeprefix("whsec_").encode() not in stored
    finally:
        app.close()


@pytest.mark.skipif(os.environ.get("FENXIAO_SKIP_POSTGRES") == "1", reason="PostgreSQL")
def test_kill_9_of_the_worker_mid_delivery_loses_nothing(db_url: str, processes) -> None:
    """Two `fenxiao worker` processes: one sends (the advisory lock), one stands by; the
    sender is killed mid-delivery and the standby takes over. Every event arrives, in
    log order of first arrival, and any repeat carries the same webhook-id and body."""
    if not db_url.startswith("postgresql"):
        pytest.skip("one worker process per SQLite store")
    from api import create_app
    from commands import Fenxiao
    from commands.settings import Settings

    app = Fenxiao(Settings(database_url=db_url, rate_limit=None, auth_failure_limit=None,
                           webhook_allow_private=True))
    api = Api(create_app(app.settings, application=app).test_client(), app.engine)
    env = {**os.environ, "FENXIAO_DATABASE_URL": db_url,
           "FENXIAO_WEBHOOK_ALLOW_PRIVATE": "1"}
    worker = [str(Path(os.sys.executable).with_name("fenxiao")), "worker"]
    try:
        with Receiver(delay_s=0.02) as receiver:
            seed(api)
            more_tea(api)
            register(api, receiver.url, types=["order.placed"])
            for n in range(120):
                order(api, f"O-{n}")
            expected = [e for e in feed_pages(api, types="order.placed")]
            first = subprocess.Popen(worker, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            processes.append(first)
            receiver.wait_for(30, timeout_s=30)
            standby = subprocess.Popen(worker, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            processes.append(standby)
            time.sleep(0.3)
            first.send_signal(signal.SIGKILL)
            first.wait()
            at_kill = len({h["webhook-id"] for h, _ in receiver.received})
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and \
                    len({h["webhook-id"] for h, _ in receiver.received}) < len(expected):
                time.sleep(0.05)
            got = list(receiver.received)
    finally:
        app.close()
    by_id: dict[str, bytes] = {}
    order_seen = []
    for headers, body in got:
        if headers["webhook-id"] in by_id:
            assert by_id[headers["webhook-id"]] == body  # a repeat is the same message
        else:
            by_id[headers["webhook-id"]] = body
            order_seen.append(headers["webhook-id"])
    assert 30 <= at_kill < len(expected)  # killed mid-delivery, the rest by the standby
    assert order_seen == [e["id"] for e in expected]  # nothing lost, in log order
    assert len(got) - len(expected) <= 60  # repeats: at most what was in flight
