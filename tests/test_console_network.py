"""The console's distributor and payout queues through Flask's test client, on SQLite and
PostgreSQL: an operator finds an application and approves or rejects it (a reason
required), suspends and reinstates; a withdrawal is paid after a confirmation page, and
above the four-eyes threshold only after a second operator approves it — the first
operator twice is refused and nothing moves. Wrong roles, an auditor, a distributor and
a form without the CSRF token change nothing."""
from __future__ import annotations

import re
from typing import Any, Iterator

import pytest

from api.auth import create_token
from commands import Fenxiao
from commands.settings import Settings
from domain.distributors import Distributor
from domain.ledger import Withdrawal
from tests.conftest import wipe
from tests.test_console import Figures, catch_up
from tests.test_console_actions import Desk, actors, flashed, key, post, shown

FOUR_EYES_MIN = 100_000  # 1,000.00 yuan


@pytest.fixture(scope="module")
def desk(database_url: str) -> Iterator[Desk]:
    """Two active distributors (N1 over N2) with 5,000.00 yuan available to N2, and a
    second operator."""
    wipe(database_url)
    app = Fenxiao(Settings(database_url=database_url, rate_limit=None,
                           auth_failure_limit=None, four_eyes_min_minor=FOUR_EYES_MIN))
    desk = Desk(app)
    desk.tokens["operator2"] = create_token(app.engine, "operator", name="desk-operator-2")
    desk.run(lambda: app.apply_distributor("Net One", "13800000101", distributor_id="N1"))
    desk.run(lambda: app.approve_distributor("N1"))
    code = app.distributor("N1").referral_code
    desk.run(lambda: app.apply_distributor("Net Two", "13800000102", code,
                                           distributor_id="N2"))
    desk.run(lambda: app.approve_distributor("N2"))
    desk.run(lambda: app.accrue_commission("NO-1", 1, "TEA", 1, 5_000_000, "N2"))
    desk.run(lambda: app.mature_commission("NO-1", 1))
    catch_up(app)
    yield desk
    app.close()


def applied(desk: Desk, distributor_id: str, phone: str) -> None:
    desk.run(lambda: desk.app.apply_distributor(f"Applicant {distributor_id}", phone,
                                                distributor_id=distributor_id))
    desk.settle()


def requested(desk: Desk, withdrawal_id: str, amount_minor: int) -> None:
    desk.run(lambda: desk.app.request_withdrawal("N2", amount_minor, withdrawal_id))
    desk.settle()


def status_of(desk: Desk, withdrawal_id: str) -> str:
    return desk.app.find(Withdrawal.create_id(withdrawal_id)).status


def test_an_operator_approves_an_application_found_in_its_queue(desk: Desk) -> None:
    applied(desk, "NA-1", "13800000111")
    client = desk.client("operator")
    queue = client.get("/console/applications")
    assert queue.status_code == 200
    assert "NA-1" in Figures(queue.text).rows["distributors"]
    assert 'data-status="pending"' in queue.text
    page = shown(desk, client, post(client, "/distributors/NA-1/approve",
                                    back="/console/applications"))
    assert flashed(page) == {"flash": "Distributor NA-1 approved."}
    assert "NA-1" not in Figures(page).rows.get("distributors", {})
    assert desk.app.find(Distributor.create_id("NA-1")).status == "active"
    assert actors(desk, Distributor.create_id("NA-1"))[-1][1] == "desk-operator"


def test_a_rejection_needs_a_reason_and_then_leaves_the_queue(desk: Desk) -> None:
    applied(desk, "NA-2", "13800000112")
    client = desk.client("operator")
    before = desk.head()
    page = shown(desk, client, post(client, "/distributors/NA-2/reject", reason="  ",
                                    back="/console/applications"))
    assert flashed(page)["error-code"] == "validation_error"
    assert desk.head() == before
    page = shown(desk, client, post(client, "/distributors/NA-2/reject",
                                    reason="incomplete papers", back="/console/applications"))
    assert flashed(page) == {"flash": "Application NA-2 rejected."}
    assert desk.app.find(Distributor.create_id("NA-2")).status == "rejected"
    twice = shown(desk, client, post(client, "/distributors/NA-2/approve",
                                     back="/console/applications"))
    assert flashed(twice)["error-code"] == "invalid_transition"


def test_suspend_reinstate_and_who_may_move_a_distributor(desk: Desk) -> None:
    client = desk.client("operator")
    page = shown(desk, client, post(client, "/distributors/N1/suspend", reason="audit"))
    assert flashed(page)["flash"] == "Distributor N1 suspended."
    page = shown(desk, client, post(client, "/distributors/N1/reinstate", reason="cleared"))
    assert flashed(page)["flash"] == "Distributor N1 reinstated."
    before = desk.head()
    assert post(client, "/distributors/N2/upline", upline_id="", reason="x").status_code \
        == 403  # the API's route: admin only
    assert desk.head() == before
    assert 'data-act="distributor_upline"' not in client.get(
        "/console/applications?status=active").text


def test_refusals_change_nothing(desk: Desk) -> None:
    applied(desk, "NA-3", "13800000113")
    before = desk.head()
    auditor = desk.client("auditor")
    page = auditor.get("/console/applications")
    assert page.status_code == 200 and "NA-3" in page.text
    assert 'data-act="distributor_approve"' not in page.text
    assert post(auditor, "/distributors/NA-3/approve").status_code == 403
    warehouse = desk.client("warehouse")
    assert warehouse.get("/console/applications").status_code == 403
    assert post(warehouse, "/distributors/NA-3/approve").status_code == 403
    operator = desk.client("operator")
    assert post(operator, "/distributors/NA-3/approve", csrf="forged").status_code == 403
    no_csrf = operator.post("/console/distributors/NA-3/approve",
                            data={"idempotency_key": key()})
    assert no_csrf.status_code == 403
    distributor = desk.client("distributor")
    assert post(distributor, "/withdrawals/W-NONE/approve",
                payment_reference="X").status_code in (403, 404)
    assert desk.head() == before
    assert desk.app.find(Distributor.create_id("NA-3")).status == "pending"


def confirm_form(html: str) -> dict[str, str]:
    return dict(re.findall(r'name="(\w+)" value="([^"]*)"', html))


def test_a_small_withdrawal_is_paid_after_its_confirmation(desk: Desk) -> None:
    requested(desk, "NW-1", 50_000)
    client = desk.client("operator")
    queue = client.get("/console/withdrawals")
    assert Figures(queue.text).rows["withdrawals"]["NW-1"]["amount"] == "¥500.00" or \
        "500.00" in Figures(queue.text).rows["withdrawals"]["NW-1"]["amount"]
    before = desk.head()
    confirm = post(client, "/withdrawals/NW-1/approve", payment_reference="BANK-NW-1",
                   back="/console/withdrawals")
    assert confirm.status_code == 200 and "500.00" in confirm.text
    assert desk.head() == before  # nothing yet: only the confirmation page
    fields = confirm_form(confirm.text)
    assert fields["payment_reference"] == "BANK-NW-1" and fields["confirmed"] == "1"
    fields["csrf"] = re.search(r'name="csrf" value="([^"]*)"', confirm.text).group(1)
    page = shown(desk, client, client.post("/console/withdrawals/NW-1/approve",
                                           data=fields))
    assert flashed(page) == {"flash": "Withdrawal NW-1 paid, reference BANK-NW-1."}
    assert status_of(desk, "NW-1") == "paid"
    again = client.post("/console/withdrawals/NW-1/approve", data=fields)  # resubmitted
    assert flashed(shown(desk, client, again))["flash"].startswith("Withdrawal NW-1 paid")


def approve(desk: Desk, role: str, withdrawal_id: str, reference: str) -> str:
    """Through the confirmation page: the page the action leads to."""
    client = desk.client(role)
    confirm = post(client, f"/withdrawals/{withdrawal_id}/approve",
                   payment_reference=reference, back="/console/withdrawals")
    assert confirm.status_code == 200, confirm.text[:1000]
    fields = confirm_form(confirm.text)
    return shown(desk, client, client.post(f"/console/withdrawals/{withdrawal_id}/approve",
                                           data=fields))


def test_a_large_withdrawal_needs_a_second_operator(desk: Desk) -> None:
    requested(desk, "NW-BIG", 200_000)
    first = approve(desk, "operator", "NW-BIG", "BANK-BIG")
    assert "second person" in flashed(first)["flash"]
    assert status_of(desk, "NW-BIG") == "awaiting_second_approval"
    row = Figures(first).rows["withdrawals"]["NW-BIG"]
    assert row["approvals"].startswith("desk-operator")
    assert "You approved it" in first  # no pay button for the first approver
    before = desk.head()
    same = approve(desk, "operator", "NW-BIG", "BANK-BIG")  # forced past the page
    assert flashed(same)["error-code"] == "second_approver_required"
    assert desk.head() == before and status_of(desk, "NW-BIG") == "awaiting_second_approval"
    second_page = desk.client("operator2").get("/console/withdrawals").text
    assert 'value="BANK-BIG"' in second_page  # the reference the first gave, filled in
    paid = approve(desk, "operator2", "NW-BIG", "BANK-BIG")
    assert flashed(paid)["flash"] == "Withdrawal NW-BIG paid, reference BANK-BIG."
    recorded = desk.app.find(Withdrawal.create_id("NW-BIG"))
    assert recorded.status == "paid"
    assert recorded.approved_by == ["desk-operator", "desk-operator-2"]
    assert "NW-BIG" not in Figures(desk.client("operator").get(
        "/console/withdrawals").text).rows.get("withdrawals", {})


def test_a_withdrawal_refused_returns_to_the_distributor(desk: Desk) -> None:
    requested(desk, "NW-NO", 20_000)
    client = desk.client("operator")
    page = shown(desk, client, post(client, "/withdrawals/NW-NO/reject", reason="KYC",
                                    back="/console/withdrawals"))
    assert "refused" in flashed(page)["flash"]
    assert status_of(desk, "NW-NO") == "rejected"
    listed = client.get("/console/withdrawals?status=rejected").text
    assert "NW-NO" in Figures(listed).rows["withdrawals"]
