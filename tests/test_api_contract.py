"""Every command endpoint in the OpenAPI document: no token is 401, a bad body is 422, a
missing object is 404, and none of them records anything."""
from __future__ import annotations

import re

from tests.api_support import Api


def command_endpoints(api: Api) -> list[tuple[str, str]]:
    """(path with a made-up id, a staff role the operation lets in) of every command."""
    spec = api.client.get("/api/v1/openapi.json").get_json()
    found = []
    for path, operations in sorted(spec["paths"].items()):
        if "post" in operations:
            roles = operations["post"]["x-roles"]
            found.append((re.sub(r"\{[^}]+\}", "NOPE-1", path).removeprefix("/api/v1"),
                          "admin" if "admin" in roles else roles[0]))
    return found


def test_every_command_refuses_bad_calls_and_records_nothing(api: Api) -> None:
    app = api.client.application.extensions["fenxiao"]
    endpoints = command_endpoints(api)
    assert len(endpoints) >= 32  # a new command endpoint joins this test by itself
    for path, role in endpoints:
        assert api.post(path, {}, role=None).status_code == 401, path
        assert api.post(path, {}, role="not-a-token").status_code == 401, path
        junk = api.post(path, {"unexpected_field": 1}, role=role)
        assert junk.status_code in (404, 422), (path, junk.get_json())
        if junk.status_code == 422:  # else the object in the path does not exist
            assert "unexpected_field" in junk.get_json()["error"]["details"], path
        raw = api.client.post(f"/api/v1{path}", data="{oops", headers={
            **api.headers(role), "Content-Type": "application/json"})
        assert raw.status_code == 400, path  # before anything else is looked at
    assert app.last_position() == 0


def test_a_body_may_be_left_out_exactly_where_the_document_says(api: Api) -> None:
    """A command sent with no body at all: 422 where the document requires a body, taken
    as `{}` where it does not (a fuzzer found one it accepted while requiring a body)."""
    spec = api.client.get("/api/v1/openapi.json").get_json()
    for template, operations in sorted(spec["paths"].items()):
        operation = operations.get("post")
        if operation is None or "requestBody" not in operation:
            continue
        roles = operation["x-roles"]
        path = re.sub(r"\{[^}]+\}", "NOPE-1", template)
        reply = api.client.post(path, headers=api.headers(
            "admin" if "admin" in roles else roles[0]))
        required = operation["requestBody"].get("required", False)
        assert (reply.status_code == 422) == required, (template, reply.get_json())


def test_roles_are_enforced_on_every_command(api: Api) -> None:
    app = api.client.application.extensions["fenxiao"]
    refused = {}
    for path, _ in command_endpoints(api):
        refused[path] = api.post(path, {}, role="auditor").status_code
    assert set(refused.values()) == {403}, refused  # the auditor only reads
    assert app.last_position() == 0


# The endpoints of ../shared/API.md this codebase implements so far (catalog and stock,
# distributors and commissions, orders, fulfilment, purchasing, promotions, notifications,
# after-sales, operations), as method and path.
API_MD = """
POST /warehouses; POST /products; POST /products/{sku}/price; POST /products/{sku}/delist;
POST /products/{sku}/list; GET /products; GET /products/{sku}; POST /stock/receipts;
POST /stock/adjustments; POST /stock/transfers; GET /inventory; GET /inventory/{sku};
POST /distributors/applications; POST /distributors/{distributor_id}/approve;
POST /distributors/{distributor_id}/reject; POST /distributors/{distributor_id}/suspend;
POST /distributors/{distributor_id}/reinstate; POST /distributors/{distributor_id}/upline;
GET /distributors/{distributor_id}; GET /distributors/{distributor_id}/downline;
GET /distributors/{distributor_id}/earnings; GET /distributors/{distributor_id}/commissions;
POST /commission-rules; GET /commission-rules; POST /distributors/{distributor_id}/withdrawals;
POST /withdrawals/{withdrawal_id}/approve; POST /withdrawals/{withdrawal_id}/reject;
GET /distributors; GET /withdrawals;
POST /orders; POST /orders/{order_id}/payments; POST /orders/{order_id}/cancel;
GET /orders/{order_id}; GET /orders; POST /shipments/{shipment_id}/pick;
POST /shipments/{shipment_id}/pack; POST /shipments/{shipment_id}/dispatch; POST /carriers;
POST /carriers/{carrier}/events; GET /orders/{order_id}/tracking; GET /shipments/{shipment_id};
POST /purchase-orders; POST /purchase-orders/{purchase_order_id}/approve;
POST /purchase-orders/{purchase_order_id}/receive; GET /purchase-orders/{purchase_order_id};
GET /purchase-orders; GET /notifications; POST /coupons; POST /promotions/threshold;
GET /coupons; GET /coupons/{code}; GET /promotions;
POST /after-sales; POST /after-sales/{case_id}/approve; POST /after-sales/{case_id}/reject;
POST /after-sales/{case_id}/receive; POST /after-sales/{case_id}/refund;
POST /after-sales/{case_id}/close; GET /after-sales/{case_id}; GET /after-sales;
POST /after-sales/{case_id}/ship;
GET /health; POST /admin/tick;
GET /audit/exports/journal.csv; GET /audit/exports/trial-balance.csv; GET /audit/exports/statements.csv;
GET /reports/sales; GET /reports/replenishment; POST /products/{sku}/replenishment;
GET /audit/verify;
GET /audit/events; GET /audit/trial-balance; GET /audit/accounts/{account}/balance;
GET /audit/orders/{order_id}; GET /audit/distributors/{distributor_id}/earnings;
GET /events; POST /webhooks; GET /webhooks; GET /webhooks/{webhook_id};
POST /webhooks/{webhook_id}/disable; POST /webhooks/{webhook_id}/enable;
POST /webhooks/{webhook_id}/ping; POST /webhooks/{webhook_id}/rotate-secret;
GET /webhooks/{webhook_id}/deliveries; POST /webhooks/{webhook_id}/replay
"""


def test_the_openapi_document_has_every_endpoint_of_the_contract(api: Api) -> None:
    spec = api.client.get("/api/v1/openapi.json").get_json()
    served = {(method.upper(), path.removeprefix("/api/v1"))
              for path, operations in spec["paths"].items() for method in operations
              if method in ("get", "post")}
    expected = {tuple(entry.split()) for entry in API_MD.replace("\n", " ").split(";")}
    assert expected <= served, expected - served
    assert served <= expected, served - expected  # and nothing the contract doesn't name
