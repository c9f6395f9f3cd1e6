"""Tamper evidence (projections/seal.py): the HMAC chain over the event log names the first
position altered, inserted or deleted directly in the database, catches a chain forged
without the key, tells rollback gaps from deletions, seals each event exactly once, and is
served to auditors by `GET /audit/verify` and `fenxiao audit verify`."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, func, insert, select, text, update

import projections.seal as seal
from api.cli import main
from commands import Fenxiao
from commands.settings import Settings
from commands.storage import tracking
from domain.catalog import Warehouse
from projections.runner import ProjectionRunner
from projections.seal import seal_links, seal_pending, seals, verify

KEY = "test-seal-key-0123456789abcdef"
OTHER_KEY = "an-attackers-key-0123456789"


def make_app(url: str, key: str | None = KEY) -> Fenxiao:
    return Fenxiao(Settings(database_url=url, rate_limit=None, auth_failure_limit=None,
                            seal_key=key))


@pytest.fixture
def app(db_url: str) -> Iterator[Fenxiao]:
    application = make_app(db_url)
    yield application
    application.close()


def events_of(app: Fenxiao) -> Any:
    return app.recorder.events_record_cls.__table__


def write(app: Fenxiao, receipts: int = 4) -> int:
    """A warehouse and a product (the first time), then `receipts` stock receipts; return
    the log head."""
    if not app.exists(Warehouse.create_id("W1")):
        app.execute(lambda: app.open_warehouse("W1", "East", "east"))
        app.execute(lambda: app.add_product("TEA", "Tea", "250 g", 1999))
    for _ in range(receipts):
        app.execute(lambda: app.receive_stock("TEA", "W1", 1, f"R-{uuid.uuid4().hex}"))
    return app.last_position()


def sealed_log(app: Fenxiao, receipts: int = 6, block_size: int = 4) -> int:
    head = write(app, receipts)
    assert seal_pending(app, block_size=block_size) == head
    return head


def sql(app: Fenxiao, statement: Any) -> None:
    """A change made directly in the database, as an intruder would."""
    with app.engine.begin() as conn:
        conn.execute(text(statement) if isinstance(statement, str) else statement)


def forged_event(position: int) -> dict[str, Any]:
    return {"id": position, "originator_id": uuid.uuid4(), "originator_version": 1,
            "topic": "domain.ledger:Wallet.CommissionAccrued", "state": b'{"amount":100000}'}


def leave_gap(app: Fenxiao) -> int:
    """A position taken and never used, as a rolled-back transaction leaves it: on
    PostgreSQL a real rollback (the sequence does not give the value back); SQLite hands
    out max + 1, so there the next event is written one position further on. Returns the
    gap's position."""
    events = events_of(app)
    head = app.last_position()
    if app.engine.dialect.name == "postgresql":
        with app.engine.connect() as conn:
            conn.exec_driver_sql("LOCK TABLE fenxiao_events IN EXCLUSIVE MODE")
            taken = conn.execute(insert(events).values(
                {k: v for k, v in forged_event(0).items() if k != "id"})
                .returning(events.c.id)).scalar_one()
            conn.rollback()
        assert taken == head + 1
        write(app, 1)
        assert app.last_position() == head + 2  # the rolled-back position stays unused
    else:
        with app.engine.begin() as conn:
            conn.execute(insert(events).values(
                {**forged_event(head + 2), "topic": "domain.catalog:Product.ProductAdded"}))
    return head + 1


# -- an untouched log, gaps, and what the sealer has not reached yet ----------------------


def test_an_untouched_log_verifies_with_several_blocks(app: Fenxiao) -> None:
    head = sealed_log(app)
    report = verify(app)
    assert report["ok"] is True and report["problem"] is None
    assert report["first_bad_position"] is None
    assert report["events"] == report["head"] == report["sealed_through"] == head
    assert report["seals"] == -(-head // 4)  # blocks of at most four events
    assert report["gaps"] == 0 and report["unsealed"] == 0
    assert len(report["head_seal"]) == 64
    assert seal.exit_status(report) == 0

    more = write(app, 3)
    assert seal_pending(app, block_size=2, max_blocks=1) == 2  # what the worker does
    pending = verify(app)
    assert pending["ok"] and pending["sealed_through"] == head + 2
    assert pending["unsealed"] == more - head - 2  # not yet reached: not tampering
    assert seal_pending(app) == more - head - 2 and seal_pending(app) == 0
    assert verify(app)["sealed_through"] == more


def test_a_rollback_gap_is_counted_and_is_not_tampering(app: Fenxiao) -> None:
    sealed_log(app, receipts=2)
    gap = leave_gap(app)
    write(app, 2)
    seal_pending(app)
    report = verify(app)
    assert report["ok"] is True, report
    assert report["gaps"] == 1 and report["sealed_through"] == app.last_position()
    with app.engine.connect() as conn:  # never linked: the chain steps over it
        assert conn.execute(select(seal_links.c.prev_position)
                            .where(seal_links.c.position == gap + 1)).scalar() == gap - 1


# -- direct edits of the database, each named ----------------------------------------


@pytest.mark.parametrize("column, value", [
    ("state", b'{"quantity":1000000}'),
    ("topic", "domain.stock:StockItem.StockAdjusted"),
    ("originator_version", 99),
    ("originator_id", uuid.UUID(int=7)),
])
def test_an_altered_event_is_named(app: Fenxiao, column: str, value: Any) -> None:
    head = sealed_log(app)
    events = events_of(app)
    sql(app, update(events).where(events.c.id == 5).values({column: value}))
    report = verify(app)
    assert (report["ok"], report["first_bad_position"], report["problem"]) == \
        (False, 5, "altered")
    assert report["sealed_through"] == head and seal.exit_status(report) == 1


@pytest.mark.parametrize("change", ["state = 'forged'",
                                    "originator_version = originator_version + 100.5"])
def test_a_value_of_another_type_is_an_alteration(app: Fenxiao, change: str) -> None:
    sealed_log(app)
    # SQLite keeps whatever type is written (text, a real); PostgreSQL converts it.
    sql(app, f"UPDATE fenxiao_events SET {change} WHERE id = 3")
    assert (verify(app)["first_bad_position"], verify(app)["problem"]) == (3, "altered")


def test_a_deleted_event_is_named(app: Fenxiao) -> None:
    sealed_log(app)
    events = events_of(app)
    sql(app, delete(events).where(events.c.id.in_([6, 7])))
    report = verify(app)
    assert (report["ok"], report["first_bad_position"], report["problem"]) == \
        (False, 6, "deleted")


def test_a_deleted_event_is_named_even_with_its_link_deleted_too(app: Fenxiao) -> None:
    sealed_log(app)
    events = events_of(app)
    sql(app, delete(events).where(events.c.id == 6))
    sql(app, delete(seal_links).where(seal_links.c.position == 6))
    assert (verify(app)["first_bad_position"], verify(app)["problem"]) == (6, "deleted")


def test_the_last_sealed_event_deleted_with_its_link_is_named(app: Fenxiao) -> None:
    head = sealed_log(app)  # no later link names it; its seal does
    sql(app, delete(events_of(app)).where(events_of(app).c.id == head))
    sql(app, delete(seal_links).where(seal_links.c.position == head))
    report = verify(app)
    assert (report["first_bad_position"], report["problem"]) == (head, "deleted")
    assert report["sealed_through"] == head


def test_a_genuine_event_whose_link_was_deleted_is_named(app: Fenxiao) -> None:
    sealed_log(app)
    sql(app, delete(seal_links).where(seal_links.c.position == 4))
    assert (verify(app)["first_bad_position"], verify(app)["problem"]) == (4, "altered")


def test_an_inserted_event_is_named_with_or_without_a_forged_link(app: Fenxiao) -> None:
    sealed_log(app, receipts=2)
    gap = leave_gap(app)
    write(app, 2)
    seal_pending(app)
    assert verify(app)["ok"]
    sql(app, insert(events_of(app)).values(forged_event(gap)))
    report = verify(app)
    assert (report["ok"], report["first_bad_position"], report["problem"]) == \
        (False, gap, "inserted")
    # The attacker adds a link too, chained from the right position, but cannot MAC it.
    with app.engine.connect() as conn:
        before = conn.execute(select(seal_links.c.position, seal_links.c.mac)
                              .where(seal_links.c.position == gap - 1)).one()
    sql(app, insert(seal_links).values(position=gap, prev_position=before.position,
                                       mac=b"\x01" * 32))
    assert (verify(app)["first_bad_position"], verify(app)["problem"]) == (gap, "inserted")


# -- forged links and seals --------------------------------------------------------------


def test_a_chain_recomputed_without_the_key_is_caught(app: Fenxiao) -> None:
    head = sealed_log(app)
    events = events_of(app)
    sql(app, update(events).where(events.c.id == 5).values(state=b'{"forged":true}'))
    # The attacker throws the chain away and seals the edited log afresh with a key of
    # their own: every link and seal is consistent, but none was made with our key.
    sql(app, delete(seal_links))
    sql(app, delete(seals))
    sql(app, delete(tracking).where(tracking.c.name == seal.SEALER))
    attacker = make_app(app.settings.database_url, OTHER_KEY)
    try:
        assert seal_pending(attacker, block_size=4) == head
        assert verify(attacker)["ok"]  # under their own key it holds together
    finally:
        attacker.close()
    report = verify(app)
    assert (report["ok"], report["problem"], report["first_bad_position"]) == \
        (False, "forged_seal", 1)
    assert report["sealed_through"] == 0 and "seal 1" in report["detail"]


def test_links_recomputed_without_the_key_after_an_edit_are_caught(app: Fenxiao) -> None:
    sealed_log(app)
    events = events_of(app)
    sql(app, update(events).where(events.c.id == 5).values(state=b'{"forged":true}'))
    # From the edited event on, the attacker recomputes every link with another key.
    with app.engine.begin() as conn:
        prev_mac = conn.execute(select(seal_links.c.mac).where(seal_links.c.position == 4)
                                ).scalar_one()
        rows = conn.execute(select(*seal._stored_columns(conn, events))
                            .where(events.c.id >= 5).order_by(events.c.id)).all()
        for position, originator, version, topic, state in rows:
            prev_mac = seal.link_mac(OTHER_KEY.encode(), prev_mac, position, position - 1,
                                     originator, version, topic, state)
            conn.execute(update(seal_links).where(seal_links.c.position == position)
                         .values(mac=prev_mac))
    report = verify(app)
    assert (report["first_bad_position"], report["problem"]) == (5, "altered")


def test_a_removed_seal_is_caught(app: Fenxiao) -> None:
    head = sealed_log(app)
    sql(app, delete(seals).where(seals.c.block == 2))  # one in the middle
    report = verify(app)
    assert (report["problem"], report["first_bad_position"]) == ("forged_seal", 5)
    assert report["sealed_through"] == 4
    sql(app, delete(seals).where(seals.c.block > 1))  # every seal after the first
    report = verify(app)
    assert (report["problem"], report["first_bad_position"]) == ("forged_seal", 5)
    assert "past the last seal" in report["detail"] and head > 4


def test_a_verifier_with_another_key_trusts_nothing(app: Fenxiao) -> None:
    sealed_log(app)
    stranger = make_app(app.settings.database_url, OTHER_KEY)
    try:
        report = verify(stranger)
    finally:
        stranger.close()
    assert (report["ok"], report["problem"], report["first_bad_position"]) == \
        (False, "forged_seal", 1)


# -- exactly once ------------------------------------------------------------------------


def test_a_crash_between_batches_never_makes_a_wrong_chain(app: Fenxiao,
                                                            monkeypatch: Any) -> None:
    head = write(app, 6)
    real, calls = seal.advance_tracking, []

    def crash_on_second_batch(*args: Any) -> None:
        calls.append(args)
        if len(calls) == 2:  # after writing the batch's links and seal
            raise RuntimeError("the sealer's process died")
        real(*args)

    monkeypatch.setattr(seal, "advance_tracking", crash_on_second_batch)
    with pytest.raises(RuntimeError):
        seal_pending(app, block_size=4)
    with app.engine.connect() as conn:  # the first batch whole, nothing of the second
        assert conn.execute(select(func.count()).select_from(seal_links)).scalar() == 4
        assert conn.execute(select(func.count()).select_from(seals)).scalar() == 1
        assert conn.execute(select(tracking.c.position)
                            .where(tracking.c.name == seal.SEALER)).scalar() == 4
    assert verify(app)["ok"] and verify(app)["sealed_through"] == 4
    monkeypatch.setattr(seal, "advance_tracking", real)
    assert seal_pending(app, block_size=4) == head - 4
    report = verify(app)
    assert report["ok"] and report["sealed_through"] == head
    with app.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(seal_links)).scalar() == head


def test_concurrent_sealers_and_writers_seal_each_event_once(app: Fenxiao) -> None:
    write(app, 1)
    errors: list[BaseException] = []
    done = threading.Event()

    def sealer() -> None:
        try:
            while not done.is_set():
                seal_pending(app, block_size=3)
        except BaseException as error:  # noqa: BLE001  (reported below)
            errors.append(error)

    threads = [threading.Thread(target=sealer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        write(app, 15)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, errors
    seal_pending(app)
    report = verify(app)
    assert report["ok"], report
    assert report["sealed_through"] == app.last_position() == report["events"]


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_position_taken_but_not_committed_is_never_sealed_past(db_url: str, app: Fenxiao,
                                                                  outcome: str) -> None:
    """PostgreSQL allocates a position before the transaction commits. The recorder takes
    the events table's EXCLUSIVE lock first, so no later position can commit meanwhile:
    the sealer (which does not wait on that lock) seals up to what is committed, and the
    late event is sealed next, in order."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: positions cannot commit out of order")
    head = sealed_log(app, receipts=2)
    events = events_of(app)
    writer = app.engine.connect()
    writer.exec_driver_sql("LOCK TABLE fenxiao_events IN EXCLUSIVE MODE")  # as the recorder
    taken = writer.execute(insert(events).values(
        {k: v for k, v in forged_event(0).items() if k != "id"}).returning(events.c.id)
    ).scalar_one()
    assert taken == head + 1
    later = threading.Thread(target=write, args=(app, 1))
    later.start()  # a command: it must wait for the lock, so it cannot commit head + 2 first
    try:
        sealer = threading.Thread(target=seal_pending, args=(app,))
        sealer.start()
        sealer.join(timeout=10)
        assert not sealer.is_alive()  # the sealer does not wait on the writer
        assert later.is_alive()
        assert verify(app)["sealed_through"] == head
    finally:
        getattr(writer, outcome)()
        writer.close()
        later.join(timeout=10)
    seal_pending(app)
    report = verify(app)
    assert report["ok"], report
    assert report["sealed_through"] == app.last_position() == head + 2
    assert report["gaps"] == (1 if outcome == "rollback" else 0)


# -- the worker, and sealing disabled --------------------------------------------------


def test_the_worker_seals_what_is_written(app: Fenxiao) -> None:
    runner = ProjectionRunner(app, [], poll_interval_s=0.05)
    runner.start()
    try:
        head = write(app, 3)
        deadline = time.monotonic() + 15
        while verify(app)["sealed_through"] < head and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()
    report = verify(app)
    assert report["ok"] and report["sealed_through"] == head


def test_the_worker_never_raises_and_extends_no_chain_it_cannot_trust(
        app: Fenxiao, caplog: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(seal, "_complaints", {})  # each message is logged once in a while
    head = sealed_log(app)
    write(app, 1)
    stranger = make_app(app.settings.database_url, OTHER_KEY)
    try:
        assert seal.seal_in_worker(stranger, None) == 0  # the last seal is not its key's
        with pytest.raises(seal.SealStateError, match="does not verify"):
            seal_pending(stranger)
    finally:
        stranger.close()
    assert "does not verify" in caplog.text
    assert verify(app)["sealed_through"] == head  # nothing was added


def test_without_a_key_sealing_is_disabled_and_verify_says_so(db_url: str) -> None:
    for key, problem in ((None, "sealing_disabled"), ("short", "seal_key_invalid")):
        application = make_app(db_url, key)
        try:
            write(application, 1)
            if key is None:
                assert seal_pending(application) == 0
                assert seal.seal_in_worker(application, None) == 0
            report = verify(application)
        finally:
            application.close()
        assert (report["ok"], report["problem"]) == (False, problem)
        assert report["events"] == report["head"] > 0 and report["sealed_through"] == 0
        assert seal.exit_status(report) == 2
    assert "FENXIAO_SEAL_KEY" in report["detail"]
    assert "seal_key" not in repr(Settings(database_url="x", seal_key=KEY))  # kept out of logs


# -- HTTP and the command line ------------------------------------------------------------


def test_the_endpoint_is_for_auditors_and_admins(app: Fenxiao) -> None:
    from api import create_app
    from tests.api_support import Api

    flask = create_app(app.settings, application=app, start_worker=True)
    api = Api(flask.test_client(), app.engine)
    try:
        head = write(app, 2)
        reply = api.get("/audit/verify", role="auditor", min_position=head)
        assert reply.status_code == 200, reply.get_json()
        body = reply.get_json()
        assert body["ok"] is True and body["sealed_through"] >= head
        assert int(reply.headers["X-Fenxiao-Position"]) == body["head"] >= head
        assert api.get("/audit/verify", role="admin").status_code == 200
        for role in ("operator", "warehouse", "integration", "distributor"):
            assert api.get("/audit/verify", role=role).status_code == 403, role
        assert api.get("/audit/verify", role=None).status_code == 401
        assert api.get("/audit/verify", min_position=head + 100).status_code == 422
        assert api.get("/audit/verify", min_position="x").status_code == 422
        events = events_of(app)
        sql(app, update(events).where(events.c.id == 2).values(state=b"{}"))
        body = api.get("/audit/verify", role="auditor").get_json()
        assert (body["ok"], body["first_bad_position"], body["problem"]) == \
            (False, 2, "altered")
    finally:
        flask.extensions["fenxiao_runner"].stop()


def test_the_command_line_prints_a_summary_and_exits_non_zero_on_tampering(
        app: Fenxiao) -> None:
    url = app.settings.database_url
    head = write(app, 3)

    def run(*args: str, key: str = KEY) -> Any:
        return CliRunner().invoke(main, ["audit", *args],
                                  env={"FENXIAO_DATABASE_URL": url, "FENXIAO_SEAL_KEY": key})

    assert run("seal").exit_code == 0
    intact = run("verify")
    assert intact.exit_code == 0, intact.output
    assert json.loads(intact.stdout)["sealed_through"] == head
    events = events_of(app)
    sql(app, delete(events).where(events.c.id == 3))
    tampered = run("verify")
    assert tampered.exit_code == 1
    summary = json.loads(tampered.stdout)
    assert (summary["ok"], summary["first_bad_position"], summary["problem"]) == \
        (False, 3, "deleted")
    unset = run("verify", key="")
    assert unset.exit_code == 2 and json.loads(unset.stdout)["problem"] == "sealing_disabled"
    refused = run("seal", key="")
    assert refused.exit_code != 0 and "FENXIAO_SEAL_KEY" in refused.output


def test_the_benchmark_prints_json_lines() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.audit_verify", "--events", "500"],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {row["metric"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert rows.keys() == {"raw_event_scan", "audit_seal", "audit_verify"}
    assert rows["audit_verify"]["unit"] == "events/s" and rows["audit_verify"]["value"] > 0
    assert rows["audit_verify"]["ratio"] == round(
        rows["audit_verify"]["value"] / rows["raw_event_scan"]["value"], 3)
