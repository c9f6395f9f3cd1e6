"""Regression tests for inputs that once broke the API: control characters, lone
surrogates, deep or huge JSON, NUL in paths, forged cursors, min_position beyond the head,
bodies that are not JSON, missing security headers, token guessing."""
from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from dataclasses import replace

import pytest

from api import create_app
from tests.api_support import Api

CNY = {"amount": 100, "currency": "CNY"}


def code_of(response) -> str:
    return response.get_json()["error"]["code"]


def last_position(api: Api) -> int:
    return api.client.application.extensions["fenxiao"].last_position()


# Each text field that was accepted with a NUL in it, with a valid body around it.
TEXT_FIELDS = [
    ("/warehouses", {"warehouse_id": "W9", "region": "east"}, "name"),
    ("/products", {"sku": "NEW", "price": CNY}, "name"),
    ("/distributors/applications", {"phone": "13900000001"}, "name"),
    ("/stock/receipts", {"sku": "TEA", "warehouse_id": "W1", "quantity": 1}, "reference"),
    ("/stock/adjustments", {"sku": "TEA", "warehouse_id": "W1", "delta": 1}, "reason"),
]


# NUL, lone surrogates, an escape sequence, blanks; zero-width characters only, a bidi
# override (a name that reads backwards), an invisible soft hyphen or joiner inside.
@pytest.mark.parametrize("bad", ["a\u0000b", "\ud800", "a\udfffb", "\x1b[31m", "   ", "\u3000",
                                 "\u200b\u200c\u200d", "Li\u202eieL", "Wang\u00adFang",
                                 "\u2066x\u2069", "a\ufeff"])
def test_text_fields_refuse_control_characters_surrogates_and_blanks(api: Api, bad: str
                                                                     ) -> None:
    api.seed()
    before = last_position(api)
    for path, body, field in TEXT_FIELDS:
        reply = api.post(path, {**body, field: bad})
        assert reply.status_code == 422, (path, bad, reply.get_json())
        assert field in reply.get_json()["error"]["details"], (path, reply.get_json())
    api.post("/distributors/applications", {"name": "D", "phone": "13900000002",
                                            "distributor_id": "D9"})
    suspended = api.post("/distributors/D9/reject", {"reason": bad})
    assert suspended.status_code == 422 and "reason" in suspended.get_json()["error"]["details"]
    assert last_position(api) == before + 2  # the application alone was recorded


def test_free_text_keeps_tabs_and_newlines_but_names_do_not(api: Api) -> None:
    api.seed()
    reason = api.post("/stock/adjustments", {"sku": "TEA", "warehouse_id": "W1", "delta": -1,
                                             "reason": "dropped\tin aisle 3\nbox crushed"})
    assert reply_ok(reply=reason)
    name = api.post("/warehouses", {"warehouse_id": "W9", "name": "North\nDepot",
                                    "region": "north"})
    assert name.status_code == 422 and "name" in name.get_json()["error"]["details"]
    trailing = api.post("/warehouses", {"warehouse_id": "W9\n", "name": "North",
                                        "region": "north"})
    assert trailing.status_code == 422  # an id pattern must match the whole value


def reply_ok(reply) -> bool:
    return 200 <= reply.status_code < 300


def test_deep_json_huge_integers_and_non_objects_answer_4xx(api: Api) -> None:
    headers = {**api.headers("admin"), "Content-Type": "application/json"}
    deep = api.client.post("/api/v1/warehouses", data="[" * 100_000 + "]" * 100_000,
                           headers=headers)
    assert deep.status_code == 400 and code_of(deep) == "bad_request"
    huge = api.client.post("/api/v1/stock/receipts", headers=headers, data=(
        '{"sku": "TEA", "warehouse_id": "W1", "reference": "x", "quantity": '
        + "9" * 5000 + "}"))
    assert huge.status_code in (400, 422) and "error" in huge.get_json()
    big = api.post("/stock/receipts", {"sku": "TEA", "warehouse_id": "W1",
                                       "reference": "x", "quantity": 10 ** 4000})
    assert big.status_code == 422
    for body in ([], 1, "text", None):
        reply = api.client.post("/api/v1/warehouses", data=json.dumps(body), headers=headers)
        assert reply.status_code == 422, (body, reply.get_json())
    fraction = api.post("/stock/receipts", {"sku": "TEA", "warehouse_id": "W1",
                                            "reference": "x", "quantity": 1.5})
    assert fraction.status_code == 422
    # A key given twice is refused, not taken last-wins, at any depth.
    for text, key in (('{"warehouse_id": "W1", "name": "a", "region": "east", '
                       '"warehouse_id": "W2"}', "warehouse_id"),
                      ('{"order_id": "O-1", "customer": {"customer_id": "C", "name": "a", '
                       '"phone": "13800138000", "name": "b"}}', "name")):
        twice = api.client.post("/api/v1/warehouses", data=text, headers=headers)
        assert (twice.status_code, code_of(twice)) == (422, "validation_error")
        assert twice.get_json()["error"]["details"] == {key: ["given more than once"]}
    assert last_position(api) == 0
    once = api.client.post("/api/v1/warehouses", headers=headers, data=(
        '{"warehouse_id": "W1", "name": "East", "region": "east"}'))
    assert once.status_code == 201


def test_nul_and_control_characters_in_path_parameters_are_404(api: Api) -> None:
    api.seed()
    for path in ("/products/%00", "/inventory/%00", "/distributors/%00",
                 "/distributors/%00/earnings", "/distributors/a%00b/commissions",
                 "/products/%1B"):
        reply = api.get(path)
        assert reply.status_code == 404 and code_of(reply) == "not_found", path
    for path in ("/products/%00/delist", "/distributors/%00/approve",
                 "/withdrawals/%00/reject"):
        reply = api.post(path, {} if "delist" in path or "approve" in path
                         else {"reason": "r"})
        assert reply.status_code == 404, (path, reply.get_json())


@pytest.mark.parametrize("cursor", ["WzFd", "e30=", "!!!", "bm90IGpzb24", "W251bGxd",
                                    base64.urlsafe_b64encode(b'["a","b","c"]').decode(),
                                    base64.urlsafe_b64encode(b"[" * 5000).decode()])
def test_forged_cursors_are_422(api: Api, cursor: str) -> None:
    for path in ("/products", "/inventory", "/distributors/D1/commissions"):
        reply = api.get(path, cursor=cursor)
        if path.startswith("/distributors"):
            assert reply.status_code in (404, 422), reply.get_json()  # D1 does not exist
            continue
        assert reply.status_code == 422 and "cursor" in reply.get_json()["error"]["details"]


def test_issued_cursors_still_page(api: Api) -> None:
    position = api.seed()
    first = api.get("/products", limit=1, min_position=position).get_json()
    second = api.get("/products", limit=1, cursor=first["next_cursor"]).get_json()
    assert [p["sku"] for p in first["items"] + second["items"]] == ["CUP", "TEA"]


def test_min_position_beyond_the_head_is_422_at_once(api: Api) -> None:
    position = api.seed()
    started = time.monotonic()
    reply = api.get("/products", min_position=position + 1)
    assert time.monotonic() - started < 1
    assert reply.status_code == 422 and code_of(reply) == "validation_error"
    assert reply.get_json()["error"]["details"]["head"] == position
    assert api.get("/products", min_position=2 ** 63).status_code == 422


def test_waiting_reads_are_bounded_and_never_starve_the_server(app) -> None:
    from api.http import MAX_WAITERS

    app.settings = replace(app.settings, min_position_timeout_s=3)
    flask = create_app(app.settings, application=app)  # no worker: nothing catches up
    client = Api(flask.test_client(), app.engine)
    position = client.seed()
    statuses: list[int] = []
    waiters = [threading.Thread(target=lambda: statuses.append(
        client.get("/products", min_position=position).status_code))
        for _ in range(MAX_WAITERS)]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.5)
    started = time.monotonic()
    extra = client.get("/inventory", min_position=position)
    assert extra.status_code == 503 and extra.headers["Retry-After"] == "1"
    assert client.client.get("/api/v1/health").status_code == 200
    assert time.monotonic() - started < 1
    for waiter in waiters:
        waiter.join()
    assert statuses == [503] * MAX_WAITERS


def test_bodies_that_are_not_json_are_415_and_bodiless_commands_refuse_fields(api: Api
                                                                               ) -> None:
    api.seed()
    before = last_position(api)
    form = api.client.post("/api/v1/warehouses", data={"warehouse_id": "W9", "name": "N",
                                                       "region": "r"},
                           headers=api.headers("admin"))
    assert form.status_code == 415 and code_of(form) == "unsupported_media_type"
    text = api.client.post("/api/v1/warehouses", data='{"warehouse_id": "W9"}',
                           headers={**api.headers("admin"), "Content-Type": "text/plain"})
    assert text.status_code == 415
    extra = api.post("/products/TEA/delist", {"force": True})
    assert extra.status_code == 422 and "force" in extra.get_json()["error"]["details"]
    assert last_position(api) == before
    assert api.post("/products/TEA/delist").status_code == 200  # no body at all is fine
    assert api.post("/products/TEA/list", {}).status_code == 200


def test_security_headers_and_retry_after_only_where_it_means_something(app) -> None:
    flask = create_app(replace(app.settings, rate_limit="100 per minute"), application=app)
    client = Api(flask.test_client(), app.engine)
    for reply in (client.get("/products"), client.post("/warehouses", {}),
                  client.get("/products", role=None), flask.test_client().get("/api/v1/health")):
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Cache-Control"] == "no-store"
        assert "Retry-After" not in reply.headers


def test_failed_authentication_is_limited_per_address(app) -> None:
    flask = create_app(replace(app.settings, auth_failure_limit="5 per minute"),
                       application=app)
    client = Api(flask.test_client(), app.engine)
    statuses = [client.get("/products", role=f"guess-{n}").status_code for n in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    limited = client.get("/products", role="guess-9")
    assert code_of(limited) == "rate_limited" and int(limited.headers["Retry-After"]) > 0
    other = flask.test_client().get("/api/v1/products", environ_base={
        "REMOTE_ADDR": "10.0.0.2"}, headers=client.headers("admin"))
    assert other.status_code == 200  # another address is not held up
    # Nor a valid token from the same address: one client behind a shared address (a
    # NAT, a proxy) cannot lock out another, nor the payment callbacks.
    for role in ("admin", "integration", "operator"):
        assert client.get("/products", role=role).status_code == 200
    # A forwarded address from an untrusted peer changes nothing: still limited.
    spoofed = client.client.get("/api/v1/products", headers={
        **client.headers("guess-10"), "X-Forwarded-For": "203.0.113.9"})
    assert spoofed.status_code == 429


def test_forwarded_addresses_count_only_from_trusted_proxies(app) -> None:
    """Behind a trusted proxy each client is limited on its own address; what a client
    writes to the left of the proxy's entry is never read."""
    flask = create_app(replace(app.settings, auth_failure_limit="2 per minute",
                               trusted_proxies=("10.9.0.0/16",)), application=app)
    client = Api(flask.test_client(), app.engine)

    def via_proxy(role: str, forwarded: str, peer: str = "10.9.0.1") -> int:
        return client.client.get("/api/v1/products", environ_base={"REMOTE_ADDR": peer},
                                 headers={**client.headers(role),
                                          "X-Forwarded-For": forwarded}).status_code

    assert [via_proxy("guess", "198.51.100.7") for _ in range(3)] == [401, 401, 429]
    assert via_proxy("guess", "198.51.100.8") == 401  # another client behind the proxy
    # A client cannot pose as another by writing its own X-Forwarded-For entry: the
    # proxy appends what it saw, and that is what counts.
    assert via_proxy("guess", "198.51.100.8, 198.51.100.7") == 429
    assert via_proxy("guess", "1.2.3.4, 198.51.100.7, 10.9.0.2") == 429  # two proxies
    assert via_proxy("admin", "198.51.100.7") == 200
    with pytest.raises(ValueError, match="trusted_proxies"):
        replace(app.settings, trusted_proxies=("not-a-network",))


def test_the_openapi_document_declares_our_errors_and_headers(api: Api) -> None:
    spec = api.client.get("/api/v1/openapi.json").get_json()
    assert spec["components"]["schemas"]["Error"]["required"] == ["error"]
    health = spec["paths"]["/api/v1/health"]["get"]
    assert health["security"] == [] and set(health["responses"]) == {"200", "503"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method not in ("get", "post") or path.endswith("/health"):
                continue
            assert {"401", "403", "404", "422", "429"} <= set(operation["responses"]), path
            if method == "post":
                assert {"400", "409", "413", "415"} <= set(operation["responses"]), path
                assert any(p["name"] == "Idempotency-Key" for p in operation["parameters"])
            else:
                assert "503" in operation["responses"], path


def test_every_request_has_an_id_and_one_access_log_line(api: Api, caplog) -> None:
    """The id is answered in X-Request-Id (the client's own when sensible, else a new
    one), recorded on the events the request's command caused, and ends its access-log
    line (Apache's combined format, the token's name as the user)."""
    caplog.set_level(logging.INFO, logger="fenxiao.access")
    mine = api.post("/warehouses", {"warehouse_id": "W7", "name": "North",
                                    "region": "north"}, **{"X-Request-Id": "shop-42"})
    assert mine.status_code == 201 and mine.headers["X-Request-Id"] == "shop-42"
    events = api.get("/audit/events", after=mine.get_json()["position"] - 1).get_json()
    assert [e["request_id"] for e in events["items"]] == ["shop-42"]
    assert events["items"][0]["actor"] == "test-admin"
    forged = api.client.get("/api/v1/products", headers={
        **api.headers("admin"), "X-Request-Id": 'a b" 200 forged'})
    made = forged.headers["X-Request-Id"]
    assert made != 'a b" 200 forged' and len(made) == 32
    unauthorized = api.get("/products", role=None)
    assert unauthorized.status_code == 401 and unauthorized.headers["X-Request-Id"]
    lines = [r.getMessage() for r in caplog.records if r.name == "fenxiao.access"]
    assert re.fullmatch(r'127\.0\.0\.1 - test-admin \[[^]]+\] "POST /api/v1/warehouses '
                        r'HTTP/1\.1" 201 \d+ "-" "[^"]*" \d+\.\dms shop-42', lines[0]), lines[0]
    assert lines[2].endswith(f" {made}") and lines[3].split()[2] == "-"  # (1: the audit)
    assert all("\n" not in line for line in lines)
