"""The cipher canary (both databases): a store is served only with the FENXIAO_CIPHER_KEY it
was first used with (or none, if it was first used without). A missing key, another key,
or a key for a store kept in the clear is refused at start by every command that touches
the log, refuses commands (nothing is written beside events that cannot be read), and
makes /health unavailable."""
from __future__ import annotations

import base64
import os
from typing import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select

from api import create_app
from api.cli import main
from commands import Fenxiao
from commands.app import (CIPHER_CANARY, KEY_FOR_CLEAR_STORE, KEY_MISSING, KEY_WRONG,
                          StoreMismatch)
from commands.settings import Settings
from commands.storage import store_facts


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def opened(db_url: str) -> Iterator:
    """Open the store at `db_url` with a key (or None); every app is closed afterwards."""
    apps: list[Fenxiao] = []

    def open_with(key: str | None) -> Fenxiao:
        apps.append(Fenxiao(Settings(database_url=db_url, cipher_key=key, rate_limit=None)))
        return apps[-1]

    yield open_with
    for app in apps:
        app.close()


def used(app: Fenxiao) -> None:
    app.execute(lambda: app.apply_distributor("Li Lei", "13812345678", None, "D1"))


def canary(app: Fenxiao) -> str | None:
    with app.engine.connect() as conn:
        return conn.execute(select(store_facts.c.value)
                            .where(store_facts.c.name == CIPHER_CANARY)).scalar()


def forget_canary(app: Fenxiao) -> None:
    """As in a store written before the canary existed."""
    with app.engine.begin() as conn:
        conn.execute(delete(store_facts).where(store_facts.c.name == CIPHER_CANARY))


def refused(app: Fenxiao) -> str:
    with pytest.raises(StoreMismatch) as mismatch:
        app.check_store()
    return mismatch.value.message


def test_an_encrypted_store_needs_its_own_key(opened) -> None:
    key = new_key()
    used(opened(key))
    assert canary(opened(key)) not in (None, "none")
    opened(key).check_store()
    assert refused(opened(None)) == KEY_MISSING
    assert refused(opened(new_key())) == KEY_WRONG


def test_a_clear_store_refuses_a_key(opened) -> None:
    used(opened(None))
    assert canary(opened(None)) == "none"
    opened(None).check_store()
    assert refused(opened(new_key())) == KEY_FOR_CLEAR_STORE


def test_a_store_older_than_the_canary_is_judged_by_its_first_event(opened) -> None:
    key = new_key()
    used(opened(key))
    forget_canary(opened(key))
    assert refused(opened(None)) == KEY_MISSING
    assert refused(opened(new_key())) == KEY_WRONG
    assert canary(opened(key)) is None  # a refused start records nothing
    opened(key).check_store()
    assert canary(opened(key)) not in (None, "none")
    assert refused(opened(new_key())) == KEY_WRONG  # now by the canary itself


def test_an_old_clear_store_refuses_a_key(opened) -> None:
    used(opened(None))
    forget_canary(opened(None))
    assert refused(opened(new_key())) == KEY_FOR_CLEAR_STORE
    opened(None).check_store()
    assert canary(opened(None)) == "none"


def test_commands_write_nothing_on_a_store_the_key_does_not_fit(opened) -> None:
    used(opened(new_key()))
    clear = opened(None)
    before = clear.last_position()
    with pytest.raises(StoreMismatch):  # a new aggregate: it would have gone in the clear
        clear.execute(lambda: clear.open_warehouse("W1", "East", "east"))
    with pytest.raises(StoreMismatch):
        clear.execute(lambda: clear.approve_distributor("D1"))
    assert clear.last_position() == before


def test_health_says_unavailable_when_the_key_does_not_fit(opened) -> None:
    key = new_key()
    used(opened(key))
    for app, status, store in ((opened(key), 200, "ok"), (opened(None), 503, KEY_MISSING),
                               (opened(new_key()), 503, KEY_WRONG)):
        flask = create_app(app.settings, application=app)
        health = flask.test_client().get("/api/v1/health")
        assert health.status_code == status
        body = health.get_json()
        assert (body["status"] == "unavailable") == (status == 503)
        assert body["store"] == store


def cli(url: str, key: str | None, *args: str):
    return CliRunner().invoke(main, list(args), env={
        "FENXIAO_DATABASE_URL": url, "FENXIAO_CIPHER_KEY": key, "FENXIAO_RATE_LIMIT": "off"})


STARTS = [("serve", "--port", "1"), ("worker",), ("demo", "--if-empty"),
          ("projections", "rebuild")]


def test_the_cli_refuses_to_start_when_the_key_does_not_fit(db_url: str, opened) -> None:
    key = new_key()
    used(opened(key))
    for wrong, message in ((None, KEY_MISSING), (new_key(), KEY_WRONG)):
        for args in STARTS:
            result = cli(db_url, wrong, *args)
            assert result.exit_code != 0, args
            assert message in result.output, (args, result.output)
    assert cli(db_url, key, "projections", "rebuild").exit_code == 0
    assert cli(db_url, key, "demo", "--if-empty").exit_code == 0
    # neither the schema nor the tokens are in the log: no key needed
    assert cli(db_url, None, "db", "upgrade").exit_code == 0
    made = cli(db_url, None, "token", "create", "--role", "auditor", "--name", "a")
    assert made.exit_code == 0 and made.stdout.startswith("fx_")


def test_the_cli_refuses_a_key_for_a_clear_store(db_url: str, opened) -> None:
    used(opened(None))
    for args in STARTS:
        result = cli(db_url, new_key(), *args)
        assert result.exit_code != 0 and KEY_FOR_CLEAR_STORE in result.output, args
    assert cli(db_url, None, "projections", "rebuild").exit_code == 0
