"""Four eyes and the operators' queues over HTTP: a withdrawal or refund above
FENXIAO_FOUR_EYES_MIN is paid only after a second, different token approves it, for the
same amount and reference; GET /distributors and GET /withdrawals list what waits."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
from sqlalchemy import select

from api import create_app
from api.auth import create_token
from commands import Fenxiao
from commands.settings import Settings
from tests.api_support import Api
from tests.test_api_distributors import code_of, network

THRESHOLD = 1_000


@pytest.fixture
def strict(db_url: str) -> Iterator[Api]:
    """The API with a four-eyes threshold of 10.00, and a second operator token."""
    app = Fenxiao(Settings(database_url=db_url, rate_limit=None, auth_failure_limit=None,
                           four_eyes_min_minor=THRESHOLD))
    flask = create_app(app.settings, application=app, start_worker=True)
    api = Api(flask.test_client(), app.engine)
    api.tokens["operator2"] = create_token(app.engine, "operator", name="test-operator-2")
    yield api
    flask.extensions["fenxiao_runner"].stop()
    app.close()


def funded(api: Api, amount: int = 5_000) -> Fenxiao:
    """D1 and D2 active, D2 with `amount` available after a matured commission."""
    network(api)
    app = api.client.application.extensions["fenxiao"]
    app.execute(lambda: app.accrue_commission("O-1", 1, "TEA", 1, amount * 10, "D2"))
    app.execute(lambda: app.mature_commission("O-1", 1))
    return app


def withdraw(api: Api, withdrawal_id: str, amount: int) -> dict[str, Any]:
    made = api.post("/distributors/D2/withdrawals",
                    {"amount": {"amount": amount, "currency": "CNY"},
                     "withdrawal_id": withdrawal_id})
    assert made.status_code == 201, made.get_json()
    return made.get_json()


def test_a_withdrawal_above_the_threshold_needs_two_people(strict: Api) -> None:
    app = funded(strict)
    withdraw(strict, "W-BIG", 2_000)
    first = strict.post("/withdrawals/W-BIG/approve", {"payment_reference": "BANK-9"},
                        role="operator")
    assert first.status_code == 202, first.get_json()
    assert first.get_json()["status"] == "awaiting_second_approval"
    assert first.get_json()["approvals"] == ["test-operator"]
    again = strict.post("/withdrawals/W-BIG/approve", {"payment_reference": "BANK-9"},
                        role="operator")
    assert again.status_code == 409 and code_of(again) == "second_approver_required"
    other_ref = strict.post("/withdrawals/W-BIG/approve", {"payment_reference": "BANK-X"},
                            role="operator2")
    assert other_ref.status_code == 409 and code_of(other_ref) == "approval_mismatch"
    earnings = strict.get("/distributors/D2/earnings",
                          min_position=first.get_json()["position"]).get_json()
    assert earnings["paid_out"] == 0 and earnings["withdrawing"] == 2_000  # nothing left
    paid = strict.post("/withdrawals/W-BIG/approve", {"payment_reference": "BANK-9"},
                       role="operator2")
    assert paid.status_code == 200 and paid.get_json()["status"] == "paid"
    assert paid.get_json()["approvals"] == ["test-operator", "test-operator-2"]
    recorded = app.withdrawal("W-BIG")  # as its events leave it
    assert recorded.approved_by == ["test-operator", "test-operator-2"]
    assert recorded.first_approval["actor"] == "test-operator"
    earnings = strict.get("/distributors/D2/earnings",
                          min_position=paid.get_json()["position"]).get_json()
    assert earnings["paid_out"] == 2_000 and earnings["withdrawing"] == 0
    listed = strict.get("/withdrawals", status="paid",
                        min_position=paid.get_json()["position"]).get_json()["items"]
    assert [(w["withdrawal_id"], w["approvals"]) for w in listed] == \
        [("W-BIG", ["test-operator", "test-operator-2"])]


def test_at_or_below_the_threshold_one_approval_pays(strict: Api) -> None:
    funded(strict)
    withdraw(strict, "W-SMALL", THRESHOLD)
    paid = strict.post("/withdrawals/W-SMALL/approve", {"payment_reference": "BANK-1"},
                       role="operator")
    assert paid.status_code == 200 and paid.get_json()["approvals"] == ["test-operator"]


def test_a_payment_reference_pays_one_withdrawal(strict: Api) -> None:
    funded(strict)
    withdraw(strict, "W-1", 500)
    withdraw(strict, "W-2", 500)
    paid = strict.post("/withdrawals/W-1/approve", {"payment_reference": "BANK-1"})
    assert paid.status_code == 200
    twice = strict.post("/withdrawals/W-2/approve", {"payment_reference": " BANK-1 "})
    assert twice.status_code == 409 and code_of(twice) == "duplicate"
    waiting = strict.get("/withdrawals", status="requested",
                         min_position=paid.get_json()["position"]).get_json()["items"]
    assert [w["withdrawal_id"] for w in waiting] == ["W-2"]


def test_a_second_person_may_refuse_instead(strict: Api) -> None:
    funded(strict)
    withdraw(strict, "W-BIG", 2_000)
    strict.post("/withdrawals/W-BIG/approve", {"payment_reference": "BANK-9"},
                role="operator")
    refused = strict.post("/withdrawals/W-BIG/reject", {"reason": "wrong account"},
                          role="operator2")
    assert refused.status_code == 200 and refused.get_json()["status"] == "rejected"
    late = strict.post("/withdrawals/W-BIG/approve", {"payment_reference": "BANK-9"},
                       role="operator2")
    assert late.status_code == 409 and code_of(late) == "invalid_transition"
    earnings = strict.get("/distributors/D2/earnings",
                          min_position=refused.get_json()["position"]).get_json()
    assert earnings["available"] == 5_000 and earnings["withdrawing"] == 0


def test_the_same_request_twice_is_answered_alike(strict: Api) -> None:
    """An Idempotency-Key repeats the 202; it is not taken for a second approval."""
    funded(strict)
    withdraw(strict, "W-BIG", 2_000)
    key = {"Idempotency-Key": "approve-once"}
    first = strict.post("/withdrawals/W-BIG/approve", {"payment_reference": "B"},
                        role="operator", **key)
    repeat = strict.post("/withdrawals/W-BIG/approve", {"payment_reference": "B"},
                         role="operator", **key)
    assert first.status_code == repeat.status_code == 202
    assert repeat.get_json() == first.get_json()


def test_roles_of_the_payout(strict: Api) -> None:
    funded(strict)
    withdraw(strict, "W-1", 500)
    for role in ("auditor", "warehouse", "integration"):
        assert strict.post("/withdrawals/W-1/approve", {"payment_reference": "B"},
                           role=role).status_code == 403
    assert strict.post("/withdrawals/W-1/approve", {"payment_reference": "B"},
                       role="distributor").status_code == 404  # nobody's withdrawal for it


def test_queues_list_what_waits(strict: Api) -> None:
    funded(strict)
    strict.post("/distributors/applications", {"name": "Four", "phone": "13800000004",
                                               "distributor_id": "D4"})
    made = strict.post("/distributors/applications",
                       {"name": "Five", "phone": "13800000005", "distributor_id": "D5"})
    position = made.get_json()["position"]
    pending = strict.get("/distributors", status="pending", role="auditor",
                         min_position=position).get_json()
    assert [d["distributor_id"] for d in pending["items"]] == ["D4", "D5"]
    assert set(pending["items"][0]) == {"distributor_id", "name", "status", "referral_code",
                                        "upline_id", "applied_at"}
    first = strict.get("/distributors", status="pending", limit=1).get_json()
    second = strict.get("/distributors", status="pending", limit=1,
                        cursor=first["next_cursor"]).get_json()
    assert [d["distributor_id"] for d in first["items"] + second["items"]] == ["D4", "D5"]
    assert second["next_cursor"] is None
    downline = strict.get("/distributors", upline_id="D1").get_json()["items"]
    assert [d["distributor_id"] for d in downline] == ["D2"]
    assert strict.get("/distributors", status="nope").status_code == 422
    assert strict.get("/distributors", role="distributor").status_code == 403

    withdraw(strict, "W-1", 500)
    withdraw(strict, "W-2", 2_000)
    moved = strict.post("/withdrawals/W-2/approve", {"payment_reference": "B2"})
    position = moved.get_json()["position"]
    queue = strict.get("/withdrawals", status="requested", min_position=position).get_json()
    assert [w["withdrawal_id"] for w in queue["items"]] == ["W-1"]
    assert queue["items"][0]["amount"] == 500 and queue["items"][0]["currency"] == "CNY"
    waiting = strict.get("/withdrawals", status="awaiting_second_approval").get_json()
    assert [(w["withdrawal_id"], w["approvals"]) for w in waiting["items"]] == \
        [("W-2", ["test-admin"])]


def test_a_distributor_lists_only_its_own_withdrawals(strict: Api) -> None:
    app = funded(strict)
    app.execute(lambda: app.accrue_commission("O-2", 1, "TEA", 1, 50_000, "D1"))
    app.execute(lambda: app.mature_commission("O-2", 1))
    withdraw(strict, "W-2", 500)  # D2's
    mine = strict.post("/distributors/D1/withdrawals",
                       {"amount": {"amount": 500, "currency": "CNY"}, "withdrawal_id": "W-1"},
                       role="distributor").get_json()
    position = mine["position"]
    own = strict.get("/withdrawals", role="distributor", min_position=position).get_json()
    assert [w["withdrawal_id"] for w in own["items"]] == ["W-1"]
    other = strict.get("/withdrawals", role="distributor", distributor_id="D2").get_json()
    assert other["items"] == []
    staff = strict.get("/withdrawals", distributor_id="D2").get_json()
    assert [w["withdrawal_id"] for w in staff["items"]] == ["W-2"]


def paid_case(api: Api, amount: int) -> str:
    """An order of one TEA paid, and a refund-only case for it approved."""
    api.seed()
    placed = api.post("/orders", {
        "order_id": "O-9", "customer": {"customer_id": "C1", "name": "Li", "phone":
                                        "13900000001"},
        "shipping_address": {"region": "east", "city": "Hangzhou", "line1": "1 Road"},
        "lines": [{"sku": "TEA", "quantity": 1}]}, role="integration")
    assert placed.status_code == 201, placed.get_json()
    total = placed.get_json()["total"]
    assert total >= amount
    assert api.post("/orders/O-9/payments", {"amount": {"amount": total, "currency": "CNY"},
                                             "payment_reference": "PAY-9"},
                    role="integration").status_code == 200
    case = api.post("/after-sales", {"order_id": "O-9", "type": "refund_only",
                                     "lines": [{"sku": "TEA", "quantity": 1}],
                                     "reason": "changed mind"})
    assert case.status_code == 201, case.get_json()
    case_id = case.get_json()["case_id"]
    assert api.post(f"/after-sales/{case_id}/approve").status_code == 200
    return case_id


def test_a_refund_above_the_threshold_needs_two_people(strict: Api) -> None:
    case_id = paid_case(strict, 1_500)
    body = {"amount": {"amount": 1_500, "currency": "CNY"}, "refund_reference": "RF-1"}
    first = strict.post(f"/after-sales/{case_id}/refund", body, role="operator")
    assert first.status_code == 202, first.get_json()
    assert first.get_json()["status"] == "awaiting_second_approval"
    assert first.get_json()["refunded"] == 0
    waiting = {"amount": 1_500, "refund_reference": "RF-1", "approved_by": ["test-operator"]}
    assert first.get_json()["refund_approval"] == waiting
    shown = strict.get(f"/after-sales/{case_id}", min_position=first.get_json()["position"])
    assert shown.get_json()["refund_approval"] == waiting
    same = strict.post(f"/after-sales/{case_id}/refund", body, role="operator")
    assert same.status_code == 409 and code_of(same) == "second_approver_required"
    less = strict.post(f"/after-sales/{case_id}/refund",
                       {**body, "amount": {"amount": 1_400, "currency": "CNY"}},
                       role="operator2")
    assert less.status_code == 409 and code_of(less) == "approval_mismatch"
    order = strict.get("/orders/O-9", min_position=first.get_json()["position"]).get_json()
    assert order["refunded"] == 0
    paid = strict.post(f"/after-sales/{case_id}/refund", body, role="operator2")
    assert paid.status_code == 200, paid.get_json()
    assert paid.get_json()["status"] == "refunded" and paid.get_json()["refunded"] == 1_500
    assert paid.get_json()["refund_approval"] is None
    actors = [(h["status"], h["actor"]) for h in paid.get_json()["history"]]
    assert actors[-2:] == [("awaiting_second_approval", "test-operator"),
                           ("refunded", "test-operator-2")]
    queue = strict.get("/after-sales", status="refunded",
                       min_position=paid.get_json()["position"]).get_json()["items"]
    assert [c["case_id"] for c in queue] == [case_id]


def test_a_small_refund_needs_one(strict: Api) -> None:
    case_id = paid_case(strict, 500)
    paid = strict.post(f"/after-sales/{case_id}/refund",
                       {"amount": {"amount": 500, "currency": "CNY"},
                        "refund_reference": "RF-2"}, role="operator")
    assert paid.status_code == 200 and paid.get_json()["status"] == "refunded"


def test_replay_equals_live_after_four_eyes(strict: Api) -> None:
    """The withdrawals read model rebuilt from the log equals the live one."""
    from projections.ledger import withdrawals
    app = funded(strict)
    withdraw(strict, "W-BIG", 2_000)
    strict.post("/withdrawals/W-BIG/approve", {"payment_reference": "R"}, role="operator")
    done = strict.post("/withdrawals/W-BIG/approve", {"payment_reference": "R"},
                       role="operator2").get_json()
    strict.get("/withdrawals", min_position=done["position"])
    with app.engine.connect() as conn:
        live = conn.execute(select(withdrawals.c.withdrawal_id, withdrawals.c.status,
                                   withdrawals.c.approvals)).all()
    assert [tuple(r) for r in live] == [("W-BIG", "paid", ["test-operator",
                                                           "test-operator-2"])]


def test_nothing_is_paid_while_a_clawback_leaves_the_balance_negative(strict: Api) -> None:
    """Both sides: refused while available < 0 (nothing recorded); paid once it is earned
    back."""
    app = funded(strict)  # D2: 5,000 available from O-1's line
    withdraw(strict, "W-1", 900)
    app.execute(lambda: app.reverse_commission("O-1", 1, 50_000))  # a full refund
    assert app.wallet("D2").available == -900
    before = app.last_position()
    refused = strict.post("/withdrawals/W-1/approve", {"payment_reference": "B-1"})
    assert refused.status_code == 409 and code_of(refused) == "insufficient_balance"
    assert app.last_position() == before
    app.execute(lambda: app.accrue_commission("O-2", 1, "TEA", 1, 20_000, "D2"))
    app.execute(lambda: app.mature_commission("O-2", 1))  # 2,000 more: available 1,100
    paid = strict.post("/withdrawals/W-1/approve", {"payment_reference": "B-1"})
    assert paid.status_code == 200 and paid.get_json()["status"] == "paid"
