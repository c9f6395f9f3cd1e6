"""The shared writer of `serve --workers N` (commands/writer_host.py): commands sent over
its socket get the replies and refusals deciding them in the API process would give, keys
answer repeats alike, and an API process that cannot reach it (not listening, the wrong
key) decides alone, while one that lost it mid-command is told the outcome is unknown."""
from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import func, select

from commands import Fenxiao
from commands.app import CommandContext, StoredRefusal
from commands.messages import PlaceOrder
from commands.writer_host import WriterHost, WriterLink, WriterUnavailable
from domain.errors import DomainError
from tests.test_writer import ADDRESS, _app, _shop

KEY = bytes(range(32))


def _order(n: int, quantity: int = 1) -> PlaceOrder:
    return PlaceOrder(customer_id=f"C{n}", customer_name="Buyer", phone="13800138000",
                      shipping_address=ADDRESS, lines=(("TEA", quantity),),
                      order_id=f"O{n}")


def _send(link: WriterLink, command: PlaceOrder, key: str | None = None):
    context = CommandContext(actor="shop", idempotency_key=key)
    return link.execute(command, command.status, context, command.fingerprint())


@pytest.fixture
def host(db_url: str, tmp_path: Path) -> Iterator[tuple[Fenxiao, str]]:
    app = _app(db_url)
    _shop(app, stock=20)
    address = str(tmp_path / "writer.sock")
    writer_host = WriterHost(app, address, KEY)
    thread = threading.Thread(target=writer_host.serve_forever, daemon=True)
    thread.start()
    yield app, address
    writer_host.close()
    app.close()


def _orders_placed(app: Fenxiao) -> int:
    events = app.recorder.events_record_cls.__table__
    with app.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(events).where(
            events.c.topic == "domain.orders:Order.OrderPlaced")).scalar()


def test_commands_from_many_threads_are_decided_by_the_writer_process(host) -> None:
    app, address = host
    link = WriterLink(address, KEY)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda n: _send(link, _order(n)), range(16)))
    assert all(reply is not None and reply.status == 201 for reply in replies)
    assert sorted(reply.body["order_id"] for reply in replies) == sorted(
        f"O{n}" for n in range(16))
    assert all(isinstance(reply.body["position"], int) for reply in replies)
    assert _orders_placed(app) == 16


def test_a_refusal_comes_back_as_given_and_changes_nothing(host) -> None:
    app, address = host
    link = WriterLink(address, KEY)
    with pytest.raises(StoredRefusal) as sent:
        _send(link, _order(1, quantity=21))  # 20 in stock
    with pytest.raises(DomainError) as here:  # the same command decided in this process
        app.execute(lambda: _order(1, quantity=21).handle(app))
    assert (sent.value.status, sent.value.envelope()) == (here.value.status,
                                                          here.value.envelope())
    assert sent.value.code == "insufficient_stock"
    assert _orders_placed(app) == 0


def test_a_key_answers_its_repeat_and_refuses_another_request(host) -> None:
    _, address = host
    link = WriterLink(address, KEY)
    first = _send(link, _order(1), key="k1")
    assert _send(link, _order(1), key="k1") == first
    with pytest.raises(StoredRefusal) as refused:
        _send(link, _order(2), key="k1")
    assert refused.value.code == "idempotency_key_reused"


def test_without_a_writer_to_reach_the_api_process_decides_alone(host, tmp_path) -> None:
    _, address = host
    assert WriterLink(str(tmp_path / "nobody.sock"), KEY).execute(
        _order(1), 201, CommandContext(actor="shop"), "") is None
    assert WriterLink(address, bytes(32)).execute(  # the wrong key: never ours to use
        _order(1), 201, CommandContext(actor="shop"), "") is None


def test_a_writer_gone_mid_command_leaves_the_outcome_unknown(tmp_path: Path) -> None:
    """A listener that takes the command and ends without answering."""
    from multiprocessing.connection import Listener

    address = str(tmp_path / "writer.sock")
    listener = Listener(address, family="AF_UNIX", authkey=KEY)

    def take_and_vanish() -> None:
        conn = listener.accept()
        conn.recv()
        conn.close()

    thread = threading.Thread(target=take_and_vanish)
    thread.start()
    link = WriterLink(address, KEY)
    with pytest.raises(WriterUnavailable):
        _send(link, _order(1), key="k1")
    thread.join()
    listener.close()
    # The next command finds no writer: decided alone (None here), not an error.
    assert _send(link, _order(2)) is None


def test_only_a_server_that_runs_a_writer_links_its_api_processes(monkeypatch) -> None:
    from commands.writer_host import ADDRESS_ENV, KEY_ENV

    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert WriterLink.from_env() is None
    monkeypatch.setenv(ADDRESS_ENV, "/run/x/writer.sock")
    monkeypatch.setenv(KEY_ENV, KEY.hex())
    link = WriterLink.from_env()
    assert link is not None and (link.address, link.key) == ("/run/x/writer.sock", KEY)


def test_a_writer_that_stalls_is_left_and_its_late_answer_never_read(tmp_path: Path,
                                                                     monkeypatch) -> None:
    """A listener that takes the command and answers only after the link gave up: the
    request is told the outcome is unknown, and the next command does not get the late
    answer (the link opened a new connection)."""
    from multiprocessing.connection import Listener

    import commands.writer_host as writer_host

    monkeypatch.setattr(writer_host, "ANSWER_TIMEOUT_S", 0.2)
    address = str(tmp_path / "writer.sock")
    listener = Listener(address, family="AF_UNIX", authkey=KEY)
    late = threading.Event()

    def stall_then_answer() -> None:
        first = listener.accept()
        first.recv()
        late.wait(5)
        with contextlib.suppress(OSError):  # the link has closed its end
            first.send(("reply", "the late answer"))
        second = listener.accept()
        second.recv()
        second.send(("refused", 409, {"error": {"code": "second", "message": "m",
                                                "details": {}}}))

    thread = threading.Thread(target=stall_then_answer)
    thread.start()
    link = WriterLink(address, KEY)
    with pytest.raises(WriterUnavailable):
        _send(link, _order(1), key="k1")
    late.set()
    with pytest.raises(StoredRefusal) as refused:
        _send(link, _order(2))
    assert refused.value.code == "second"
    thread.join()
    listener.close()
