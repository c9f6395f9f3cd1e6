"""Refused commands (both databases): a refusal (409) is stored with its Idempotency-Key
like a success, so a repeat is answered alike and never runs again; a request refused
before it ran is not stored; a refusal evicts from the aggregate cache only what it
touched; and the checks behind refusals are raised, not asserted, so `python -O` keeps them.
"""
from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from commands import Fenxiao
from commands.app import CommandContext, LoadAfterSave
from commands.storage import idempotency
from domain.errors import DomainError, InsufficientStock, InvalidCommand, NotFound
from domain.stock import StockItem
from tests.api_support import Api

ROOT = Path(__file__).resolve().parent.parent
WITHDRAW_500 = {"amount": {"amount": 500, "currency": "CNY"}}


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def fenxiao_of(api: Api) -> Fenxiao:
    return api.client.application.extensions["fenxiao"]


def distributor_d1(api: Api) -> None:
    api.post("/distributors/applications", {"name": "One", "phone": "13800000001",
                                            "distributor_id": "D1"}, role="integration")
    assert api.post("/distributors/D1/approve").status_code == 200


def money_arrives(app: Fenxiao, order_id: str = "O-1") -> None:
    """D1 sells a line of 20000 at the default 10 %: 2000 available once matured."""
    app.execute(lambda: app.accrue_commission(order_id, 1, "TEA", 1, 20000, "D1"))
    app.execute(lambda: app.mature_commission(order_id, 1))


def stored_replies(app: Fenxiao, idempotency_key: str) -> list[tuple[int, str]]:
    with app.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            select(idempotency.c.status, idempotency.c.body)
            .where(idempotency.c.key == idempotency_key))]


def test_a_refusal_repeated_after_the_facts_change_gets_the_same_409(api: Api) -> None:
    distributor_d1(api)
    app = fenxiao_of(api)
    first = api.post("/distributors/D1/withdrawals", WITHDRAW_500, **key("w-1"))
    assert first.status_code == 409
    assert first.get_json()["error"]["code"] == "insufficient_balance"
    money_arrives(app)
    before = app.last_position()
    again = api.post("/distributors/D1/withdrawals", WITHDRAW_500, **key("w-1"))
    assert (again.status_code, again.data) == (first.status_code, first.data)
    assert app.last_position() == before  # the repeat recorded nothing
    assert app.wallet("D1").available == 2000
    assert [status for status, _ in stored_replies(app, "w-1")] == [409]
    reused = api.post("/distributors/D1/withdrawals",
                      {"amount": {"amount": 400, "currency": "CNY"}}, **key("w-1"))
    assert reused.status_code == 409
    assert reused.get_json()["error"]["code"] == "idempotency_key_reused"
    fresh = api.post("/distributors/D1/withdrawals", WITHDRAW_500, **key("w-2"))
    assert fresh.status_code == 201  # the money is there: only the stored key said no


def test_requests_refused_before_they_ran_are_not_stored(api: Api) -> None:
    distributor_d1(api)
    money_arrives(fenxiao_of(api))
    withdraw_100 = {"amount": {"amount": 100, "currency": "CNY"}}
    wrong_currency = {"amount": {"amount": 100, "currency": "USD"}}
    refusals = [("k-schema", "/distributors/D1/withdrawals", wrong_currency, 422),
                ("k-404", "/distributors/NOPE/withdrawals", withdraw_100, 404)]
    for used, path, body, status in refusals:
        assert api.post(path, body, **key(used)).status_code == status, used
        assert stored_replies(fenxiao_of(api), used) == []
        corrected = api.post("/distributors/D1/withdrawals", withdraw_100, **key(used))
        assert corrected.status_code == 201, (used, corrected.get_json())  # not 409


class Forbidden(DomainError):
    code = "forbidden"


@pytest.mark.parametrize("error", [InvalidCommand("no", field="x"), NotFound("none"),
                                   Forbidden("not yours")])
def test_domain_refusals_of_the_request_itself_are_not_stored(app: Fenxiao,
                                                              error: DomainError) -> None:
    stocked(app)

    def refuse() -> dict:
        raise error

    context = CommandContext(actor="t", idempotency_key="k")
    with pytest.raises(type(error)):
        app.execute(refuse, context=context, request_hash="h")
    assert stored_replies(app, "k") == []
    done = app.execute(lambda: app.receive_stock("TEA", "W1", 1, "PO"), context=context,
                       request_hash="h")
    assert done.body["on_hand"] == 6


def test_concurrent_repeats_of_a_refusal_answer_alike_and_store_once(api: Api) -> None:
    distributor_d1(api)
    flask = api.client.application
    headers = api.headers("admin", **key("storm"))

    def send(_: int) -> tuple[int, bytes]:
        response = flask.test_client().post("/api/v1/distributors/D1/withdrawals",
                                            json=WITHDRAW_500, headers=headers)
        return response.status_code, response.data

    with ThreadPoolExecutor(max_workers=12) as pool:
        replies = set(pool.map(send, range(24)))
    assert len(replies) == 1 and next(iter(replies))[0] == 409
    assert len(stored_replies(fenxiao_of(api), "storm")) == 1


def test_repeats_racing_the_money_execute_at_most_once(api: Api) -> None:
    """Whether the first run is refused or succeeds depends on the race; every repeat
    must then get that same answer, and the withdrawal happens once or not at all."""
    distributor_d1(api)
    app = fenxiao_of(api)
    flask = api.client.application
    headers = api.headers("admin", **key("race"))
    go = threading.Barrier(9)

    def send(_: int) -> tuple[int, bytes]:
        go.wait()
        response = flask.test_client().post("/api/v1/distributors/D1/withdrawals",
                                            json=WITHDRAW_500, headers=headers)
        return response.status_code, response.data

    with ThreadPoolExecutor(max_workers=8) as pool:
        sent = [pool.submit(send, n) for n in range(8)]
        go.wait()
        money_arrives(app)
        replies = {future.result() for future in sent}
    assert len(replies) == 1, replies
    status = next(iter(replies))[0]
    assert status in (201, 409)
    assert app.wallet("D1").withdrawing == (500 if status == 201 else 0)
    assert len(stored_replies(app, "race")) == 1


def stocked(app: Fenxiao) -> None:
    for warehouse in ("W1", "W2"):
        app.execute(lambda: app.open_warehouse(warehouse, warehouse, "east"))
    app.execute(lambda: app.add_product("TEA", "Tea", "", 100))
    for warehouse in ("W1", "W2"):
        app.execute(lambda: app.receive_stock("TEA", warehouse, 5, "PO"))


def test_a_refusal_evicts_only_what_it_touched(app: Fenxiao) -> None:
    stocked(app)
    w1, w2 = StockItem.create_id("TEA", "W1"), StockItem.create_id("TEA", "W2")
    app.stock_item("TEA", "W1"), app.stock_item("TEA", "W2")  # both cached now
    cache = app.repository.cache
    hot_w1, hot_w2 = cache.get(w1), cache.get(w2)
    with pytest.raises(InsufficientStock):
        app.execute(lambda: app.adjust_stock("TEA", "W1", -9, "lost"))
    cache = app.repository.cache  # whatever the refusal did to it
    assert cache.get(w2) is hot_w2  # untouched: still hot
    with pytest.raises(KeyError):
        cache.get(w1)  # touched: gone, to be read afresh
    assert app.stock_item("TEA", "W1").on_hand == 5
    assert cache.get(w1) is not hot_w1 and cache.get(w1).on_hand == 5


def test_load_after_save_is_a_programming_error_and_not_stored(app: Fenxiao) -> None:
    stocked(app)
    before = app.last_position()

    def save_then_load() -> dict:
        item = app.stock_item("TEA", "W1")
        item.receive(100, "PO-phantom")
        app.record(item)
        app.stock_item("TEA", "W1")
        return {}

    context = CommandContext(actor="t", idempotency_key="k-bug")
    with pytest.raises(LoadAfterSave):
        app.execute(save_then_load, context=context, request_hash="h")
    assert app.last_position() == before
    assert stored_replies(app, "k-bug") == []
    done = app.execute(lambda: app.receive_stock("TEA", "W1", 1, "PO"), context=context,
                       request_hash="h")
    assert done.body["on_hand"] == 6


OPTIMISED = """
import sys
if __debug__:
    sys.exit("not running under python -O")
from datetime import datetime, timezone

from commands import Fenxiao
from commands.app import LoadAfterSave
from commands.settings import Settings
from domain.accruals import LineCommission
from domain.commissions import (DEFAULT_TERMS, Beneficiary, CommissionExceedsNet,
                                CompliancePolicyViolation, PaidLine, split_commission)

def refused(error, action):
    try:
        action()
    except error:
        return
    sys.exit(f"{error.__name__} not raised")

now = datetime.now(timezone.utc)
three = [{"level": n, "distributor_id": f"D{n}", "amount_minor": 1} for n in (1, 2, 3)]
refused(CompliancePolicyViolation,
        lambda: LineCommission.accrue("O", 1, "S", 100, "CNY", three, [], now))
twice = [{"level": 1, "distributor_id": d, "amount_minor": 1} for d in ("A", "B")]
refused(CompliancePolicyViolation,
        lambda: LineCommission.accrue("O", 1, "S", 100, "CNY", twice, [], now))
greedy = [{"level": 1, "distributor_id": "A", "amount_minor": 101}]
refused(CommissionExceedsNet,
        lambda: LineCommission.accrue("O", 1, "S", 100, "CNY", greedy, [], now))
line = PaidLine("O", 1, "S", 1, 100, "CNY")
grand = Beneficiary("G", "active", None)  # not the seller's upline
refused(CompliancePolicyViolation, lambda: split_commission(
    line, Beneficiary("S", "active", "U"), grand, DEFAULT_TERMS, False, False))

app = Fenxiao(Settings(database_url=sys.argv[1]))
app.execute(lambda: app.open_warehouse("W1", "East", "east"))
app.execute(lambda: app.add_product("TEA", "Tea", "", 100))

def save_then_load():
    item = app.stock_item("TEA", "W1")
    item.receive(1, "PO")
    app.record(item)
    app.stock_item("TEA", "W1")

refused(LoadAfterSave, lambda: app.execute(save_then_load))
app.close()
print("ok")
"""


def test_the_checks_survive_python_dash_o(sqlite_url: str) -> None:
    done = subprocess.run([sys.executable, "-O", "-c", OPTIMISED, sqlite_url], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr
