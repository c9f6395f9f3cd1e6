"""Distributors, commission rules, earnings and withdrawals over HTTP."""
from __future__ import annotations

import pytest

from tests.api_support import Api


def code_of(response) -> str:
    return response.get_json()["error"]["code"]


def network(api: Api) -> dict[str, str]:
    """D1 (the distributor token's own) referred D2; D3 stands alone."""
    api.post("/distributors/applications", {"name": "One", "phone": "13800000001",
                                            "distributor_id": "D1"}, role="integration")
    one = api.post("/distributors/D1/approve", role="operator").get_json()
    api.post("/distributors/applications", {"name": "Two", "phone": "13800000002",
                                            "distributor_id": "D2",
                                            "referral_code": one["referral_code"]})
    api.post("/distributors/D2/approve")
    api.post("/distributors/applications", {"name": "Three", "phone": "13800000003",
                                            "distributor_id": "D3"})
    last = api.post("/distributors/D3/approve").get_json()
    return {"D1": one["referral_code"], "position": last["position"]}


def test_application_review_and_views(api: Api) -> None:
    applied = api.post("/distributors/applications", {"name": "Ann", "phone": "13700000001"},
                       role="integration")
    assert applied.status_code == 201
    body = applied.get_json()
    assert body["status"] == "pending" and body["distributor_id"].startswith("D")
    made = network(api)
    d1 = api.get("/distributors/D1", role="auditor", min_position=made["position"]).get_json()
    assert d1 == {"distributor_id": "D1", "name": "One", "status": "active",
                  "referral_code": made["D1"], "upline_id": None, "downline_count": 1}
    downline = api.get("/distributors/D1/downline", role="distributor").get_json()
    assert [d["distributor_id"] for d in downline["items"]] == ["D2"]
    moved = api.post("/distributors/D2/upline", {"upline_id": "D3", "reason": "team"})
    assert moved.status_code == 200 and moved.get_json()["upline_id"] == "D3"
    loop = api.post("/distributors/D3/upline", {"upline_id": "D2", "reason": "loop"})
    assert loop.status_code == 409 and code_of(loop) == "cycle"
    assert api.post("/distributors/D2/upline", {"upline_id": "D1", "reason": "x"},
                    role="operator").status_code == 403
    d3 = api.get("/distributors/D3", min_position=moved.get_json()["position"]).get_json()
    assert d3["downline_count"] == 1
    suspended = api.post("/distributors/D3/suspend", {"reason": "audit"})
    assert suspended.get_json()["status"] == "suspended"
    assert code_of(api.post("/distributors/D3/suspend", {"reason": "again"})) == \
        "invalid_transition"
    assert api.post("/distributors/D3/reinstate", {"reason": "ok"}).status_code == 200


def test_duplicates_and_bad_input(api: Api) -> None:
    network(api)
    dup = api.post("/distributors/applications", {"name": "Copy", "phone": "+8613800000001"})
    assert dup.status_code == 409 and code_of(dup) == "duplicate"
    bad_phone = api.post("/distributors/applications", {"name": "X", "phone": "555"})
    assert bad_phone.status_code == 422 and "phone" in bad_phone.get_json()["error"]["details"]
    unknown_code = api.post("/distributors/applications",
                            {"name": "X", "phone": "13900000009", "referral_code": "ZZZZZZZZ"})
    assert unknown_code.status_code == 404 and code_of(unknown_code) == "not_found"
    assert api.post("/distributors/applications",
                    {"name": "X", "phone": "13900000009", "extra": 1}).status_code == 422
    assert api.post("/distributors/D1/reject", {"reason": ""}).status_code == 422
    assert code_of(api.post("/distributors/NOPE/approve")) == "not_found"
    assert api.post("/distributors/applications", {"name": "X", "phone": "13900000009"},
                    role="warehouse").status_code == 403


def test_rules(api: Api) -> None:
    rules = api.get("/commission-rules", role="distributor").get_json()["items"]
    assert rules == [{"sku": None, "kind": "rate", "version": 0, "level1_rate_bp": 1000,
                      "level2_rate_bp": 500}]
    api.post("/products", {"sku": "TEA", "name": "Tea",
                           "price": {"amount": 1000, "currency": "CNY"}})
    made = api.post("/commission-rules", {"sku": "TEA", "level1_fixed": 100,
                                          "level2_fixed": 50})
    assert made.status_code == 201 and made.get_json()["version"] == 1
    too_much = api.post("/commission-rules", {"level1_rate_bp": 9000, "level2_rate_bp": 1001})
    assert too_much.status_code == 409 and code_of(too_much) == "rule_exceeds_net"
    mixed = api.post("/commission-rules", {"level1_rate_bp": 10, "level2_fixed": 1})
    assert mixed.status_code == 422
    assert api.post("/commission-rules", {"level1_rate_bp": 1, "level2_rate_bp": 1},
                    role="operator").status_code == 403
    listed = api.get("/commission-rules", min_position=made.get_json()["position"])
    assert [r["sku"] for r in listed.get_json()["items"]] == [None, "TEA"]


def test_earnings_commissions_and_withdrawals(api: Api) -> None:
    network(api)
    app = api.client.application.extensions["fenxiao"]
    app.execute(lambda: app.accrue_commission("O-1", 1, "TEA", 2, 20000, "D2"))
    app.execute(lambda: app.mature_commission("O-1", 1))
    # D2 earns 2000 (level 1), D1 earns 1000 (level 2)
    refused = api.post("/distributors/D1/withdrawals",
                       {"amount": {"amount": 5000, "currency": "CNY"}}, role="distributor")
    assert refused.status_code == 409 and code_of(refused) == "insufficient_balance"
    small = api.post("/distributors/D1/withdrawals",
                     {"amount": {"amount": 10, "currency": "CNY"}}, role="distributor")
    assert small.status_code == 409 and code_of(small) == "below_minimum"
    made = api.post("/distributors/D1/withdrawals",
                    {"amount": {"amount": 600, "currency": "CNY"}, "withdrawal_id": "W-1"},
                    role="distributor")
    assert made.status_code == 201 and made.get_json()["status"] == "requested"
    paid = api.post("/withdrawals/W-1/approve", {"payment_reference": "BANK-1"})
    assert paid.get_json()["status"] == "paid"
    twice = api.post("/withdrawals/W-1/approve", {"payment_reference": "BANK-2"})
    assert twice.status_code == 409 and code_of(twice) == "invalid_transition"
    position = paid.get_json()["position"]
    mine = api.get("/distributors/D1/earnings", role="distributor", min_position=position)
    assert mine.get_json() == {"distributor_id": "D1", "currency": "CNY", "pending": 0,
                               "available": 400, "withdrawing": 0, "paid_out": 600,
                               "reversed": 0, "lifetime_earned": 1000}
    entries = api.get("/distributors/D2/commissions", min_position=position).get_json()
    assert [(e["level"], e["amount"], e["status"], e["rate_bp"]) for e in entries["items"]] \
        == [(1, 2000, "available", 1000)]
    rejected = api.post("/distributors/D2/withdrawals",
                        {"amount": {"amount": 500, "currency": "CNY"}, "withdrawal_id": "W-2"})
    assert rejected.status_code == 201
    assert api.post("/withdrawals/W-2/reject", {"reason": "KYC"}).get_json()["status"] == \
        "rejected"


@pytest.mark.parametrize("path", ["/distributors/D2", "/distributors/D2/downline",
                                  "/distributors/D2/earnings", "/distributors/D2/commissions",
                                  "/distributors/NOPE"])
def test_a_distributor_sees_only_itself(api: Api, path: str) -> None:
    made = network(api)
    other = api.get(path, role="distributor", min_position=made["position"])
    assert other.status_code == 404 and code_of(other) == "not_found"
    own = api.get(path.replace("D2", "D1").replace("NOPE", "D1"), role="distributor",
                  min_position=made["position"])
    assert own.status_code == 200


def test_a_distributor_cannot_withdraw_for_another(api: Api) -> None:
    network(api)
    other = api.post("/distributors/D2/withdrawals",
                     {"amount": {"amount": 100, "currency": "CNY"}}, role="distributor")
    assert other.status_code == 404
    assert api.post("/withdrawals/W-1/approve", {"payment_reference": "x"},
                    role="distributor").status_code == 404  # nobody's withdrawal


def test_every_route_naming_another_distributor_is_404_for_a_distributor(api: Api) -> None:
    """Including staff-only routes: the answer must not reveal that D2 exists."""
    made = network(api)
    spec = api.client.get("/api/v1/openapi.json").get_json()
    routes = [(method, path.removeprefix("/api/v1").replace("{distributor_id}", "D2"))
              for path, operations in spec["paths"].items() if "{distributor_id}" in path
              for method in operations if method in ("get", "post")]
    assert len(routes) >= 10
    for method, path in routes:
        if method == "get":
            response = api.get(path, role="distributor", min_position=made["position"])
        else:
            response = api.post(path, {}, role="distributor")
        assert response.status_code == 404, (method, path)
    own = api.post("/distributors/D1/approve", role="distributor")
    assert own.status_code == 403  # its own id: it exists, but the role may not do this
