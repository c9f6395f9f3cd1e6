"""Console actions through Flask's test client, on SQLite and PostgreSQL: each work queue's
actions run the API's command as the signed-in token (its name recorded as the actor),
answer POST-redirect-GET with the message on the next page, and are refused — changing
nothing — for a role the API refuses (403), a state the domain refuses (its code and
message shown), a form without the session's CSRF token (403), and an auditor (403, and no
buttons). The same form sent twice acts once; a refund is confirmed before it is paid."""
from __future__ import annotations

import re
import secrets
from typing import Any, Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from api import create_app
from api.auth import create_token
from api.console_forms import ACTIONS, parse_yuan
from api.demo import ADDRESS, CUSTOMER, load_demo, ship
from commands import Fenxiao
from commands import audit as audit_log
from commands.app import CommandContext
from commands.settings import Settings
from commands.storage import parked_events
from domain.aftersales import Case
from projections.catalog import products
from projections.parking import parked_counts
from tests.conftest import wipe
from tests.test_console import Figures, catch_up, csrf_of, sign_in

ROLES = ("admin", "operator", "warehouse", "auditor", "integration", "distributor")
SETUP = CommandContext(actor="setup")


class Desk:
    """The demo store and a token for every role; scenario data recorded as "setup"."""

    def __init__(self, app: Fenxiao) -> None:
        self.app = app
        self.flask = create_app(app.settings, application=app)
        self.tokens = {role: create_token(app.engine, role, name=f"desk-{role}")
                       for role in ROLES if role != "distributor"}
        self.tokens["distributor"] = create_token(app.engine, "distributor", name="desk-d1",
                                                  distributor_id="DEMO-D1")
        self._clients: dict[str, FlaskClient] = {}

    def client(self, role: str) -> FlaskClient:
        """One signed-in client per role for the module (a session, its CSRF token)."""
        if role not in self._clients:
            client = self.flask.test_client()
            assert sign_in(client, self.tokens[role]).status_code == 303
            self._clients[role] = client
        return self._clients[role]

    def run(self, command: Any) -> dict[str, Any]:
        return self.app.execute(command, context=SETUP).body

    def head(self) -> int:
        return self.app.last_position()

    def settle(self) -> None:
        catch_up(self.app)


@pytest.fixture(scope="module")
def desk(database_url: str) -> Iterator[Desk]:
    wipe(database_url)
    app = Fenxiao(Settings(database_url=database_url, rate_limit=None,
                           auth_failure_limit=None))
    load_demo(app)
    catch_up(app)
    yield Desk(app)
    app.close()


def key() -> str:
    return secrets.token_urlsafe(18)


def post(client: FlaskClient, path: str, *, key_: str | None = None, back: str = "",
         csrf: str | None = None, **fields: Any) -> Any:
    """An action form as the console renders it: the session's CSRF token, a fresh key."""
    if csrf is None:
        csrf = csrf_of(client.get("/console/inventory").text)
    form = {"csrf": csrf, "idempotency_key": key_ or key(), "back": back, **fields}
    return client.post(f"/console{path}", data=form)


def shown(desk: Desk, client: FlaskClient, reply: Any) -> str:
    """The page a PRG answer leads to (the projections caught up first)."""
    assert reply.status_code == 303, reply.text[:2000]
    desk.settle()
    page = client.get(reply.headers["Location"], follow_redirects=True)
    assert page.status_code == 200, page.text[:2000]
    return page.text


def flashed(html: str) -> dict[str, str]:
    """The message a page shows, and the error code if it is a refusal."""
    figures = Figures(html).figures
    return {k: figures[k] for k in ("flash", "error-message", "error-code") if k in figures}


def case_status(desk: Desk, case_id: str) -> str:
    return desk.app.find(Case.create_id(case_id)).status


def actors(desk: Desk, aggregate_id: Any) -> list[tuple[str, str]]:
    events, _head = audit_log.list_events(
        desk.app, audit_log.EventFilter(aggregate_id=aggregate_id), 100, masked=False)
    return [(e["type"].rpartition(".")[2], e["actor"]) for e in events]


# -- scenario data ------------------------------------------------------------------------

def delivered_order(desk: Desk, order_id: str, lines: list[tuple[str, int]]) -> None:
    app = desk.app
    order = desk.run(lambda: app.place_order(f"C-{order_id}", CUSTOMER["name"],
                                             CUSTOMER["phone"], ADDRESS, lines,
                                             order_id=order_id))
    desk.run(lambda: app.pay_order(order_id, order["total"], f"PAY-{order_id}"))
    ship(app, desk.run, order_id, delivered=True)


def paid_order(desk: Desk, order_id: str, lines: list[tuple[str, int]]) -> list[str]:
    """A paid order; its shipments (created, waiting for the warehouse)."""
    app = desk.app
    order = desk.run(lambda: app.place_order(f"C-{order_id}", CUSTOMER["name"],
                                             CUSTOMER["phone"], ADDRESS, lines,
                                             order_id=order_id))
    desk.run(lambda: app.pay_order(order_id, order["total"], f"PAY-{order_id}"))
    return sorted(app.order(order_id).shipments)


def new_case(desk: Desk, case_id: str, type_: str = "refund_only", *,
             approved: bool = False, received: bool = False) -> str:
    """A case on a delivered order of its own (one cup, 99.00 yuan)."""
    app = desk.app
    delivered_order(desk, f"O-{case_id}", [("CUP-GW-6", 1)])
    desk.run(lambda: app.request_case(f"O-{case_id}", type_, [("CUP-GW-6", 1)],
                                      "console test", case_id=case_id))
    if approved or received:
        desk.run(lambda: app.approve_case(case_id))
    if received:
        desk.run(lambda: app.receive_case(case_id, "WH-EAST", restock=False))
    desk.settle()
    return case_id


# -- the framework ------------------------------------------------------------------------

def test_yuan_typed_by_a_person_become_exact_fen() -> None:
    assert [parse_yuan(t) for t in ("12", "12.5", "12.50", "0.01", "1,234.56",
                                    " 99.99 ", "100000000.10")] == \
        [1200, 1250, 1250, 1, 123456, 9999, 10000000010]
    for bad in ("", "12.345", "-1", "+1", "1e3", "abc", "1,23", "NaN", "Infinity",
                "12.", ".5", "1 000", "０.5x"):
        with pytest.raises(ValueError):
            parse_yuan(bad)


def test_every_action_is_allowed_to_the_api_routes_roles_and_never_to_an_auditor() -> None:
    from api import aftersales, fulfilment, purchasing, stock
    assert ACTIONS["case_approve"] == aftersales.approve.roles
    assert ACTIONS["case_receive"] == aftersales.receive.roles
    assert ACTIONS["case_refund"] == aftersales.refund.roles
    assert ACTIONS["purchase_order_approve"] == purchasing.approve.roles
    assert ACTIONS["shipment_dispatch"] == fulfilment.dispatch.roles
    assert ACTIONS["stock_receive"] == stock.receive.roles
    assert ACTIONS["parked_retry"] == ("admin",)
    assert all("auditor" not in roles for roles in ACTIONS.values())  # every console action


# -- after-sales --------------------------------------------------------------------------

def test_an_operator_approves_a_case_from_its_queue(desk: Desk) -> None:
    case_id = new_case(desk, "CA-APPROVE")
    client = desk.client("operator")
    queue = client.get("/console/aftersales")
    assert case_id in Figures(queue.text).rows["cases"]
    form = re.search(r'action="/console/aftersales/CA-APPROVE/approve">(.*?)</form>',
                     queue.text, re.S).group(1)
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form))
    assert set(fields) == {"csrf", "idempotency_key", "back"}
    assert fields["back"] == "/console/aftersales"
    before = desk.head()
    reply = client.post("/console/aftersales/CA-APPROVE/approve", data=fields)
    assert reply.headers["Location"].startswith("/console/aftersales?min_position=")
    page = shown(desk, client, reply)
    assert flashed(page) == {"flash": "Case CA-APPROVE approved."}
    assert case_id not in Figures(client.get("/console/aftersales?status=requested").text
                                  ).rows.get("cases", {})
    assert case_status(desk, case_id) == "approved"
    assert desk.head() == before + 1
    assert actors(desk, Case.create_id(case_id))[-1] == ("CaseApproved", "desk-operator")
    history = Figures(client.get(f"/console/aftersales/{case_id}").text).rows["history"]
    assert history["2"] == {"status": "approved", "actor": "desk-operator"}
    again = client.post("/console/aftersales/CA-APPROVE/approve", data=fields)  # a reload
    assert flashed(shown(desk, client, again)) == {"flash": "Case CA-APPROVE approved."}
    assert desk.head() == before + 1  # acted once


def test_a_refusal_shows_its_code_and_message_and_changes_nothing(desk: Desk) -> None:
    case_id = new_case(desk, "CA-WRONG", approved=True)
    client = desk.client("operator")
    before = desk.head()
    reply = post(client, f"/aftersales/{case_id}/approve", back=f"/console/aftersales/{case_id}")
    assert reply.headers["Location"] == f"/console/aftersales/{case_id}"  # back, no position
    page = shown(desk, client, reply)
    shown_error = flashed(page)
    assert shown_error["error-code"] == "invalid_transition"
    assert shown_error["error-message"] == (
        "case CA-WRONG (refund_only) is approved; it cannot be approved")
    assert "Traceback" not in page and "Nothing was changed." in page
    assert desk.head() == before and case_status(desk, case_id) == "approved"
    assert "invalid_transition" not in client.get(f"/console/aftersales/{case_id}").text


def test_a_rejection_needs_a_reason(desk: Desk) -> None:
    case_id = new_case(desk, "CA-REJECT")
    client = desk.client("admin")
    before = desk.head()
    page = shown(desk, client, post(client, f"/aftersales/{case_id}/reject", reason="  "))
    assert flashed(page)["error-code"] == "validation_error"
    assert "say why the case is rejected" in page and desk.head() == before
    page = shown(desk, client, post(client, f"/aftersales/{case_id}/reject",
                                    reason="outside the policy"))
    assert flashed(page) == {"flash": "Case CA-REJECT rejected."}
    assert case_status(desk, case_id) == "rejected"
    assert actors(desk, Case.create_id(case_id))[-1] == ("CaseRejected", "desk-admin")


def on_hand(desk: Desk, sku: str, warehouse_id: str) -> int:
    from domain.stock import StockItem
    found = desk.app.find(StockItem.create_id(sku, warehouse_id))
    return found.on_hand if found is not None else 0


def test_the_warehouse_receives_returned_goods(desk: Desk) -> None:
    case_id = new_case(desk, "CA-RETURN", "return_refund", approved=True)
    client = desk.client("warehouse")
    queue = client.get("/console/returns")
    assert queue.status_code == 200 and case_id in Figures(queue.text).rows["returns"]
    assert "console test" not in queue.text  # the reason is not the warehouse's to read
    for role in ("operator", "auditor", "integration", "distributor"):
        before = desk.head()
        refused = post(desk.client(role), f"/aftersales/{case_id}/receive",
                       warehouse_id="WH-SOUTH", restock="yes")
        assert refused.status_code == (404 if role == "distributor" else 403), role
        assert desk.head() == before, role
    stock = on_hand(desk, "CUP-GW-6", "WH-SOUTH")
    page = shown(desk, client, post(client, f"/aftersales/{case_id}/receive",
                                    back="/console/returns", warehouse_id="WH-SOUTH",
                                    restock="yes"))
    assert flashed(page) == {
        "flash": "The goods of case CA-RETURN were received at WH-SOUTH."}
    assert case_id not in Figures(page).rows.get("returns", {})
    assert case_status(desk, case_id) == "received"
    assert on_hand(desk, "CUP-GW-6", "WH-SOUTH") == stock + 1
    assert actors(desk, Case.create_id(case_id))[-1] == ("CaseGoodsReceived", "desk-warehouse")
    before = desk.head()
    nowhere = shown(desk, client, post(client, f"/aftersales/{case_id}/receive",
                                       warehouse_id="WH-NOWHERE", restock="maybe"))
    assert flashed(nowhere)["error-code"] == "validation_error" and desk.head() == before


def test_a_refund_is_confirmed_before_it_is_paid(desk: Desk) -> None:
    case_id = new_case(desk, "CA-REFUND", approved=True)
    client = desk.client("operator")
    csrf, form_key = csrf_of(client.get("/console/inventory").text), key()
    before = desk.head()
    first = post(client, f"/aftersales/{case_id}/refund", key_=form_key, csrf=csrf,
                 back=f"/console/aftersales/{case_id}", amount="12.5",
                 refund_reference="RF-CA-1")
    assert first.status_code == 200 and desk.head() == before  # nothing paid yet
    assert "CN¥12.50" in first.text and "RF-CA-1" in first.text
    carried = dict(re.findall(r'name="(\w+)" value="([^"]*)"', first.text.split(
        'class="actions"')[1]))
    assert carried["idempotency_key"] == form_key and carried["confirmed"] == "1"
    assert carried["amount"] == "12.5" and carried["csrf"] == csrf
    confirmed = client.post(f"/console/aftersales/{case_id}/refund", data=carried)
    page = shown(desk, client, confirmed)
    assert flashed(page) == {"flash": "Refunded CN¥12.50 for case CA-REFUND."}
    assert desk.app.find(Case.create_id(case_id)).refunded_minor == 1250
    assert Figures(page).figures["refunded"] == "CN¥12.50"
    assert actors(desk, Case.create_id(case_id))[-1] == ("CaseRefunded", "desk-operator")
    head = desk.head()
    twice = client.post(f"/console/aftersales/{case_id}/refund", data=carried)
    assert flashed(shown(desk, client, twice))["flash"].startswith("Refunded CN¥12.50")
    assert desk.head() == head  # a resubmitted confirmation pays once


def test_a_refund_above_the_four_eyes_threshold_needs_a_second_person(desk: Desk) -> None:
    app, case_id = desk.app, "CA-FOUR-EYES"
    delivered_order(desk, "O-FOUR-EYES", [("TEA-PE-357", 3)])  # 3 × 268.00 paid
    desk.run(lambda: app.request_case("O-FOUR-EYES", "refund_only", [("TEA-PE-357", 3)],
                                      "console test", case_id=case_id))
    desk.run(lambda: app.approve_case(case_id))
    desk.settle()
    assert 60000 > desk.app.settings.four_eyes_min_minor
    form = {"amount": "600", "refund_reference": "RF-4E", "confirmed": "1"}
    operator, admin = desk.client("operator"), desk.client("admin")
    page = shown(desk, operator, post(operator, f"/aftersales/{case_id}/refund", **form))
    assert flashed(page) == {"flash": "Refund of CN¥600.00 for case CA-FOUR-EYES approved "
                                      "once; a second person's approval pays it."}
    assert case_status(desk, case_id) == "awaiting_second_approval"
    assert desk.app.find(Case.create_id(case_id)).refunded_minor == 0
    second = admin.get(f"/console/aftersales/{case_id}")
    assert second.status_code == 200 and 'data-act="case_refund"' in second.text
    before = desk.head()
    again = shown(desk, operator, post(operator, f"/aftersales/{case_id}/refund", **form))
    assert flashed(again)["error-code"] == "second_approver_required"
    assert desk.head() == before
    paid = shown(desk, admin, post(admin, f"/aftersales/{case_id}/refund", **form))
    assert flashed(paid) == {"flash": "Refunded CN¥600.00 for case CA-FOUR-EYES."}
    assert desk.app.find(Case.create_id(case_id)).refunded_minor == 60000
    assert [a for _t, a in actors(desk, Case.create_id(case_id))][-2:] == \
        ["desk-operator", "desk-admin"]


@pytest.mark.parametrize("amount", ["12.345", "-1", "1e3", "abc", "", "0.1.2"])
def test_a_refund_amount_must_be_yuan(desk: Desk, amount: str) -> None:
    case_id = new_case(desk, f"CA-AMT-{abs(hash(amount)) % 10000}", approved=True)
    client = desk.client("operator")
    before = desk.head()
    reply = post(client, f"/aftersales/{case_id}/refund", amount=amount,
                 refund_reference="RF", confirmed="1")
    page = shown(desk, client, reply)
    assert flashed(page)["error-code"] == "validation_error", page
    assert "at most two decimals" in page and desk.head() == before


def test_a_refund_beyond_what_was_paid_is_refused_after_confirming(desk: Desk) -> None:
    case_id = new_case(desk, "CA-TOOMUCH", approved=True)
    client = desk.client("admin")
    before = desk.head()
    page = shown(desk, client, post(client, f"/aftersales/{case_id}/refund",
                                    amount="120.00", refund_reference="RF-BIG",
                                    confirmed="1"))
    assert flashed(page)["error-code"] == "refund_exceeds_paid"
    assert desk.head() == before and case_status(desk, case_id) == "approved"


def test_a_refunded_case_is_closed(desk: Desk) -> None:
    case_id = new_case(desk, "CA-CLOSE", approved=True)
    desk.run(lambda: desk.app.refund_case(case_id, 500, "RF-CLOSE"))
    desk.settle()
    client = desk.client("operator")
    page = shown(desk, client, post(client, f"/aftersales/{case_id}/close"))
    assert flashed(page) == {"flash": "Case CA-CLOSE closed."}
    assert case_status(desk, case_id) == "closed"
    assert actors(desk, Case.create_id(case_id))[-1] == ("CaseClosed", "desk-operator")


def test_a_received_exchange_ships_its_replacement(desk: Desk) -> None:
    case_id = new_case(desk, "CA-SWAP", "exchange", received=True)
    client = desk.client("admin")
    page = shown(desk, client, post(client, f"/aftersales/{case_id}/ship"))
    assert flashed(page) == {"flash": "Case CA-SWAP ships."}
    assert case_status(desk, case_id) == "exchanged"


# -- refusals common to every action ------------------------------------------------------

def test_each_action_is_refused_to_the_roles_its_api_route_refuses(desk: Desk) -> None:
    case_id = new_case(desk, "CA-ROLES")
    paths = {"case_approve": f"/aftersales/{case_id}/approve",
             "case_reject": f"/aftersales/{case_id}/reject",
             "case_receive": f"/aftersales/{case_id}/receive",
             "case_refund": f"/aftersales/{case_id}/refund",
             "case_ship": f"/aftersales/{case_id}/ship",
             "case_close": f"/aftersales/{case_id}/close",
             "purchase_order_approve": "/purchase_orders/NOPE/approve",
             "shipment_pick": "/shipments/NOPE/pick", "shipment_pack": "/shipments/NOPE/pack",
             "shipment_dispatch": "/shipments/NOPE/dispatch",
             "stock_receive": "/stock/receipts", "parked_retry": "/parked/catalog/retry"}
    assert set(paths) <= set(ACTIONS)  # the queues of this module (others have their own)
    for endpoint, path in paths.items():
        for role in ROLES:
            if role in ACTIONS[endpoint]:
                continue
            before = desk.head()
            reply = post(desk.client(role), path, reason="r", amount="1",
                         refund_reference="r", warehouse_id="WH-EAST", restock="no",
                         sku="CUP-GW-6", quantity="1", reference="r", confirmed="1")
            # As the API answers: a distributor naming an object not its own learns
            # nothing of it (404); any other refusal is 403.
            names_an_object = path.count("/") == 3 and not path.startswith("/parked")
            expected = 404 if role == "distributor" and names_an_object else 403
            assert reply.status_code == expected, (endpoint, role)
            assert reply.mimetype == "text/html" and desk.head() == before
    assert case_status(desk, case_id) == "requested"


def test_an_auditor_sees_every_queue_it_reads_and_no_button(desk: Desk) -> None:
    new_case(desk, "CA-AUDIT")
    auditor, operator = desk.client("auditor"), desk.client("operator")
    for path in ("/console/aftersales", "/console/aftersales/CA-AUDIT",
                 "/console/purchase_orders", "/console/shipments"):
        page = auditor.get(path)
        assert page.status_code == 200 and "data-act" not in page.text, path
        assert "Read-only." in page.text
    mine = operator.get("/console/aftersales/CA-AUDIT").text
    assert 'data-act="case_approve"' in mine and "Read-only." not in mine
    assert 'data-act="case_receive"' not in desk.client("operator").get(
        "/console/aftersales/CA-APPROVE").text  # receiving is the warehouse's and admin's


def test_a_form_without_the_sessions_csrf_token_changes_nothing(desk: Desk) -> None:
    case_id = new_case(desk, "CA-CSRF")
    client = desk.client("operator")
    other = desk.flask.test_client()
    stolen = csrf_of(other.get("/console/signin").text)  # another session's token
    path = f"/aftersales/{case_id}/approve"
    before = desk.head()
    for csrf in ("", "forged", stolen):
        assert post(client, path, csrf=csrf).status_code == 403
    no_field = client.post(f"/console{path}", data={"idempotency_key": key()})
    assert no_field.status_code == 403
    foreign = client.post(f"/console{path}", headers={"Origin": "https://evil.example"},
                          data={"csrf": csrf_of(client.get("/console/inventory").text),
                                "idempotency_key": key()})
    assert foreign.status_code == 403
    anonymous = desk.flask.test_client().post(f"/console{path}",
                                              data={"idempotency_key": key()})
    assert anonymous.status_code == 303 and anonymous.headers["Location"] == "/console/signin"
    keyless = client.post(f"/console{path}",
                          data={"csrf": csrf_of(client.get("/console/inventory").text)})
    assert keyless.status_code == 400
    assert desk.head() == before and case_status(desk, case_id) == "requested"


def test_the_same_key_is_the_same_action_only_for_the_same_token(desk: Desk) -> None:
    first, second = new_case(desk, "CA-KEY1"), new_case(desk, "CA-KEY2")
    client, form_key = desk.client("operator"), key()
    shown(desk, client, post(client, f"/aftersales/{first}/approve", key_=form_key))
    before = desk.head()
    reused = shown(desk, client, post(client, f"/aftersales/{second}/approve", key_=form_key))
    assert flashed(reused)["error-code"] == "idempotency_key_reused"
    assert desk.head() == before and case_status(desk, second) == "requested"
    admin = desk.client("admin")  # another token: its own keys
    shown(desk, admin, post(admin, f"/aftersales/{second}/approve", key_=form_key))
    assert case_status(desk, second) == "approved"


# -- purchase orders ----------------------------------------------------------------------

def test_an_operator_approves_a_purchase_order(desk: Desk) -> None:
    app = desk.app
    po = desk.run(lambda: app.request_purchase_order("DEMO-D1", [("TEA-LJ-250", 2)],
                                                     "PO-CONSOLE"))
    desk.settle()
    client = desk.client("operator")
    queue = client.get("/console/purchase_orders")
    assert "PO-CONSOLE" in Figures(queue.text).rows["purchase_orders"]
    assert re.search(r'data-queue="purchase_orders">(\d+)<', queue.text).group(1) == \
        re.search(r'data-status="requested">(\d+)<', queue.text).group(1)
    before = desk.head()
    refused = post(desk.client("distributor"), "/purchase_orders/PO-CONSOLE/approve")
    assert refused.status_code == 403 and desk.head() == before
    page = shown(desk, client, post(client, "/purchase_orders/PO-CONSOLE/approve",
                                    back="/console/purchase_orders"))
    assert flashed(page) == {"flash": "Purchase order PO-CONSOLE approved."}
    assert "PO-CONSOLE" not in Figures(page).rows.get("purchase_orders", {})
    assert desk.client("operator").get("/console/purchase_orders?status=approved").text \
        .count('data-key="PO-CONSOLE"') == 1
    assert po["status"] == "requested"
    wrong = shown(desk, client, post(client, "/purchase_orders/PO-CONSOLE/approve"))
    assert flashed(wrong)["error-code"] == "invalid_transition"


# -- shipments ----------------------------------------------------------------------------

def test_the_warehouse_picks_packs_and_dispatches(desk: Desk) -> None:
    (shipment_id,) = paid_order(desk, "O-SHIP", [("SET-TRAVEL", 1)])
    desk.settle()
    client = desk.client("warehouse")
    queue = client.get("/console/shipments")
    assert Figures(queue.text).rows["shipments"][shipment_id]["status"] == "created"
    before = desk.head()
    for role in ("operator", "auditor", "integration"):
        assert post(desk.client(role), f"/shipments/{shipment_id}/pick").status_code == 403
    assert post(desk.client("distributor"), f"/shipments/{shipment_id}/pick"
                ).status_code == 404  # not its order's: as if there were none
    wrong = shown(desk, client, post(client, f"/shipments/{shipment_id}/pack"))
    assert flashed(wrong)["error-code"] == "invalid_transition" and desk.head() == before
    back = "/console/shipments"
    page = shown(desk, client, post(client, f"/shipments/{shipment_id}/pick", back=back))
    assert flashed(page) == {"flash": f"Shipment {shipment_id} picked."}
    assert Figures(page).rows["shipments"][shipment_id]["status"] == "picked"
    page = shown(desk, client, post(client, f"/shipments/{shipment_id}/pack", back=back))
    assert Figures(page).rows["shipments"][shipment_id]["status"] == "packed"
    bad = shown(desk, client, post(client, f"/shipments/{shipment_id}/dispatch",
                                   carrier="no such!"))
    assert flashed(bad)["error-code"] == "validation_error"
    page = shown(desk, client, post(client, f"/shipments/{shipment_id}/dispatch", back=back,
                                    carrier="YTO", tracking_number="YT-CONSOLE-1"))
    assert flashed(page) == {"flash": f"Shipment {shipment_id} dispatched with YTO, "
                                      "tracking number YT-CONSOLE-1."}
    assert shipment_id not in Figures(page).rows.get("shipments", {})
    from domain.fulfilment import Shipment
    found = desk.app.find(Shipment.create_id(shipment_id))
    assert (found.status, found.carrier, found.tracking_number) == \
        ("dispatched", "YTO", "YT-CONSOLE-1")
    assert [a for _t, a in actors(desk, Shipment.create_id(shipment_id))][-3:] == \
        ["desk-warehouse"] * 3


# -- low stock ----------------------------------------------------------------------------

def test_low_stock_is_received_from_its_queue(desk: Desk) -> None:
    from commands.messages import SetReplenishmentPolicy
    desk.run(lambda: SetReplenishmentPolicy("TEA-PE-357", 7, 10_000).handle(desk.app))
    desk.settle()
    client = desk.client("warehouse")
    queue = client.get("/console/low_stock")
    row = Figures(queue.text).rows["low_stock"]["TEA-PE-357/WH-SOUTH"]
    assert int(row["available"]) < int(row["reorder_point"])
    assert 'data-act="stock_receive"' in queue.text
    assert 'data-act="stock_receive"' not in desk.client("operator").get(
        "/console/low_stock").text
    before, stock = desk.head(), on_hand(desk, "TEA-PE-357", "WH-SOUTH")
    assert post(desk.client("operator"), "/stock/receipts", sku="TEA-PE-357",
                warehouse_id="WH-SOUTH", quantity="5", reference="R").status_code == 403
    for quantity in ("0", "-5", "five", ""):
        page = shown(desk, client, post(client, "/stock/receipts", sku="TEA-PE-357",
                                        warehouse_id="WH-SOUTH", quantity=quantity,
                                        reference="GRN-1"))
        assert flashed(page)["error-code"] == "validation_error", quantity
    assert desk.head() == before
    page = shown(desk, client, post(client, "/stock/receipts", back="/console/low_stock",
                                    sku="TEA-PE-357", warehouse_id="WH-SOUTH",
                                    quantity="25", reference="GRN-CONSOLE"))
    assert flashed(page) == {"flash": "Received 25 × TEA-PE-357 into WH-SOUTH."}
    assert on_hand(desk, "TEA-PE-357", "WH-SOUTH") == stock + 25
    desk.run(lambda: SetReplenishmentPolicy("TEA-PE-357", 7, 0).handle(desk.app))
    desk.settle()


# -- parked events ------------------------------------------------------------------------

def test_an_admin_retries_a_projections_parked_events(desk: Desk) -> None:
    app = desk.app
    with app.engine.begin() as conn:  # a stray row: the product's event cannot be applied
        conn.execute(products.insert().values(
            sku="PARK-ME", name="stray", spec="", price_minor=1, wholesale_price_minor=None,
            currency="CNY", listed=True, product_uuid="stray"))
    desk.run(lambda: app.add_product("PARK-ME", "Parked tea", "", 100))
    desk.settle()
    with app.engine.connect() as conn:
        assert parked_counts(conn) == {"catalog": 1}
    client = desk.client("admin")
    page = client.get("/console/parked")
    assert Figures(page.text).rows["parked_projections"]["catalog"]["parked"] == "1"
    assert re.search(r'data-queue="parked">1<', page.text)
    assert post(desk.client("operator"), "/parked/catalog/retry").status_code == 403
    still = shown(desk, client, post(client, "/parked/catalog/retry"))
    assert flashed(still) == {"flash": "catalog: 0 applied, 1 still parked."}
    with app.engine.begin() as conn:  # the fix
        conn.execute(delete(products).where(products.c.product_uuid == "stray"))
    page = shown(desk, client, post(client, "/parked/catalog/retry"))
    assert flashed(page) == {"flash": "catalog: 1 applied, 0 still parked."}
    assert "No parked events" in page
    with app.engine.connect() as conn:
        assert conn.execute(select(parked_events)).first() is None
        assert conn.execute(select(products.c.name).where(products.c.sku == "PARK-ME")
                            ).scalar() == "Parked tea"
    unknown = shown(desk, client, post(client, "/parked/nothing/retry"))
    assert flashed(unknown)["error-code"] == "validation_error"


# -- counts -------------------------------------------------------------------------------

def test_the_navigation_counts_each_queue(desk: Desk) -> None:
    desk.settle()
    page = desk.client("admin").get("/console/aftersales").text
    counts = dict(re.findall(r'data-queue="(\w+)">(\d+)<', page))
    tabs = dict(re.findall(r'data-status="(\w+)">(\d+)<', page))
    assert counts["aftersales"] == tabs["open"]
    assert int(tabs["open"]) == sum(int(n) for s, n in tabs.items()
                                    if s not in ("open", "closed"))
    shipments = desk.client("warehouse").get("/console/shipments").text
    assert dict(re.findall(r'data-queue="(\w+)">(\d+)<', shipments)).get(
        "shipments", "0") == re.search(r'data-status="all">(\d+)<', shipments).group(1)


def test_queues_page_by_page(desk: Desk) -> None:
    desk.settle()
    client = desk.client("admin")
    for path, table in (("/console/aftersales?status=open", "cases"),
                        ("/console/shipments", "shipments")):
        everything = list(Figures(client.get(path).text).rows.get(table, {}))
        assert len(everything) >= 2, path
        seen, url = [], f"{path}&limit=1" if "?" in path else f"{path}?limit=1"
        while url:
            page = client.get(url)
            assert page.status_code == 200, page.text[:1000]
            seen += list(Figures(page.text).rows[table])
            found = re.search(r'<a class="next" href="([^"]+)"', page.text)
            url = found.group(1).replace("&amp;", "&") if found else None
        assert seen == everything, path
