"""API tokens' lifetimes: expiry, revocation and the time of last use, through the API,
the console and the `fenxiao token` commands, on SQLite and PostgreSQL."""
from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, select

from api import auth, create_app
from api.auth import create_token, list_tokens, revoke_token
from api.cli import main
from commands import Fenxiao
from commands.storage import api_tokens
from commands.views import utc
from domain.errors import InvalidCommand
from migrations import alembic_config, upgrade

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


class Clock:
    """The application's clock (wall time) and the token cache's (monotonic), moved
    together by hand."""

    def __init__(self) -> None:
        self.now = T0
        self.monotonic = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def tick(self) -> float:
        return self.monotonic

    def advance(self, **delta: float) -> None:
        step = timedelta(**delta)
        self.now += step
        self.monotonic += step.total_seconds()


def served(app: Fenxiao, token_cache_s: float) -> tuple[Flask, Clock]:
    clock = Clock()
    app.clock = clock
    flask = create_app(replace(app.settings, token_cache_s=token_cache_s), application=app)
    if token_cache_s:
        flask.extensions["fenxiao_tokens"].clock = clock.tick
    return flask, clock


def get(flask: Flask, token: str) -> Any:
    return flask.test_client().get("/api/v1/products",
                                   headers={"Authorization": f"Bearer {token}"})


def refusal(reply: Any) -> tuple[int, Any]:
    return reply.status_code, reply.get_json()["error"]


def stored(app: Fenxiao, name: str) -> Any:
    with app.engine.connect() as conn:
        return conn.execute(select(api_tokens).where(api_tokens.c.name == name)).one()


# -- expiry -------------------------------------------------------------------------------

def test_an_expired_token_is_refused_as_an_unknown_one_is_even_when_cached(
        app: Fenxiao) -> None:
    flask, clock = served(app, token_cache_s=300)
    token = create_token(app.engine, "auditor", name="a-day", expires_in_days=1, now=T0)
    forever = create_token(app.engine, "auditor", name="forever", now=T0)
    assert utc(stored(app, "a-day").expires_at) == T0 + timedelta(days=1)
    assert stored(app, "forever").expires_at is None
    assert get(flask, token).status_code == 200  # now in the cache, for 300 s
    clock.now = T0 + timedelta(days=1)  # the cache's own clock has not moved
    expired, unknown = get(flask, token), get(flask, "fx_nobody-has-this-token")
    assert refusal(expired) == refusal(unknown)
    assert refusal(expired) == (401, {"code": "unauthorized", "details": {},
                                      "message": "the token is not valid or has expired"})
    assert get(flask, forever).status_code == 200


def test_an_expiry_is_whole_days_from_now(app: Fenxiao) -> None:
    for days in (0, -1, 36_501):
        with pytest.raises(InvalidCommand):
            create_token(app.engine, "auditor", expires_in_days=days)
    with pytest.raises(InvalidCommand):  # that name is FENXIAO_ADMIN_TOKEN's
        create_token(app.engine, "admin", name="env-admin")
    assert list_tokens(app.engine, include_unusable=True) == []


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def sign_in(client: FlaskClient, token: str) -> Any:
    csrf = CSRF.search(client.get("/console/signin").text).group(1)
    return client.post("/console/signin", data={"csrf": csrf, "token": token})


def signed_in(client: FlaskClient) -> bool:
    """The sign-in page sends a signed-in browser on to the console."""
    return client.get("/console/signin").status_code == 303


def test_the_console_refuses_an_expired_token_and_signs_its_sessions_out(
        app: Fenxiao) -> None:
    flask, clock = served(app, token_cache_s=5)
    token = create_token(app.engine, "auditor", name="console", expires_in_days=2, now=T0)
    client = flask.test_client()
    assert sign_in(client, token).status_code == 303 and signed_in(client)
    clock.advance(days=2)
    assert not signed_in(client)  # the session's token is looked up again: expired
    refused = sign_in(flask.test_client(), token)
    assert refused.status_code == 401 and "That token is not valid." in refused.text
    unknown = sign_in(flask.test_client(), "fx_nobody-has-this-token")
    assert unknown.status_code == 401 and "That token is not valid." in unknown.text


# -- revocation ---------------------------------------------------------------------------

def test_a_revoked_token_is_refused_at_once_without_a_cache(app: Fenxiao) -> None:
    flask, _clock = served(app, token_cache_s=0)
    token = create_token(app.engine, "auditor", name="leaving")
    staying = create_token(app.engine, "auditor", name="staying")
    assert get(flask, token).status_code == 200
    assert revoke_token(app.engine, "leaving", now=T0) is None
    assert refusal(get(flask, token)) == refusal(get(flask, "fx_nobody-has-this-token"))
    assert get(flask, staying).status_code == 200
    assert utc(stored(app, "leaving").revoked_at) == T0  # the row stays, marked
    assert revoke_token(app.engine, "leaving", now=T0 + timedelta(hours=1)) == T0  # once


def test_a_revoked_token_is_refused_once_the_cache_time_is_over(app: Fenxiao) -> None:
    flask, clock = served(app, token_cache_s=5)
    token = create_token(app.engine, "auditor", name="leaving")
    assert get(flask, token).status_code == 200
    revoke_token(app.engine, "leaving")
    clock.advance(seconds=4.9)
    assert get(flask, token).status_code == 200  # the bound documented for revocation
    clock.advance(seconds=0.1)
    assert get(flask, token).status_code == 401


def test_the_console_signs_a_revoked_tokens_sessions_out_at_once(app: Fenxiao) -> None:
    flask, _clock = served(app, token_cache_s=5)
    client = flask.test_client()
    assert sign_in(client, create_token(app.engine, "auditor", name="console")
                   ).status_code == 303
    revoke_token(app.engine, "console")
    assert not signed_in(client)


# -- last use -----------------------------------------------------------------------------

def last_used(app: Fenxiao, name: str) -> datetime | None:
    at = stored(app, name).last_used_at
    return utc(at) if at is not None else None


def test_last_use_is_written_at_most_once_a_minute(app: Fenxiao) -> None:
    flask, clock = served(app, token_cache_s=0)  # every request reads the store
    token = create_token(app.engine, "auditor", name="busy", now=T0)
    assert last_used(app, "busy") is None
    assert get(flask, token).status_code == 200
    assert last_used(app, "busy") == T0
    clock.advance(seconds=59)
    assert get(flask, token).status_code == 200
    assert last_used(app, "busy") == T0  # not rewritten within the minute
    clock.advance(seconds=1)
    assert get(flask, token).status_code == 200
    assert last_used(app, "busy") == T0 + timedelta(minutes=1)


def test_with_a_cache_requests_between_reads_write_nothing(app: Fenxiao,
                                                            monkeypatch) -> None:
    flask, clock = served(app, token_cache_s=5)
    token = create_token(app.engine, "auditor", name="busy")
    writes: list[datetime] = []
    record_use = auth._record_use
    monkeypatch.setattr(auth, "_record_use",
                        lambda *args: (writes.append(args[3]), record_use(*args)))
    for _ in range(20):
        assert get(flask, token).status_code == 200
        clock.advance(seconds=1)
    # Only reads of the store consider writing (one per 5 s), and only the first writes.
    assert writes == [T0, T0 + timedelta(seconds=5), T0 + timedelta(seconds=10),
                      T0 + timedelta(seconds=15)]
    assert last_used(app, "busy") == T0


def test_a_failed_write_of_the_last_use_does_not_fail_the_request(
        app: Fenxiao, monkeypatch, caplog) -> None:
    flask, _clock = served(app, token_cache_s=0)
    token = create_token(app.engine, "auditor", name="busy")

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the store is read-only")

    monkeypatch.setattr(auth, "update", broken)
    assert get(flask, token).status_code == 200
    assert last_used(app, "busy") is None
    assert "could not record the use of token busy" in caplog.text


def test_the_console_records_the_last_use_too(app: Fenxiao) -> None:
    flask, clock = served(app, token_cache_s=5)
    token = create_token(app.engine, "auditor", name="console")
    client = flask.test_client()
    sign_in(client, token)
    assert last_used(app, "console") == T0
    clock.advance(minutes=5)
    assert signed_in(client)
    assert last_used(app, "console") == T0 + timedelta(minutes=5)


# -- the command line ---------------------------------------------------------------------

def fenxiao(url: str, *args: str) -> Any:
    return CliRunner().invoke(main, list(args), env={"FENXIAO_DATABASE_URL": url,
                                                     "FENXIAO_ADMIN_TOKEN": None})


def test_token_list_shows_each_token_aligned_and_never_a_secret(db_url: str) -> None:
    secrets = [fenxiao(db_url, "token", "create", "--role", "auditor", "--name", "books"),
               fenxiao(db_url, "token", "create", "--role", "integration", "--name",
                       "carrier-feed", "--expires-in", "30"),
               fenxiao(db_url, "token", "create", "--role", "operator", "--name", "gone")]
    assert all(result.exit_code == 0 for result in secrets)
    secrets = [result.stdout.strip() for result in secrets]
    engine = create_engine(db_url)
    create_token(engine, "auditor", name="old", expires_in_days=1,
                 now=datetime.now(timezone.utc) - timedelta(days=2))
    engine.dispose()
    revoked = fenxiao(db_url, "token", "revoke", "gone")
    assert revoked.exit_code == 0 and revoked.stdout == ""
    assert "up to 5 s" in revoked.stderr and "FENXIAO_TOKEN_CACHE_S" in revoked.stderr

    listed = fenxiao(db_url, "token", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["NAME", "books", "carrier-feed"]
    header = lines[0]
    for column in ("ROLE", "DISTRIBUTOR", "CREATED", "EXPIRES", "LAST USED", "REVOKED"):
        start = header.index(column)  # every value starts under its heading
        assert all(line[start - 2:start] == "  " and line[start] != " "
                   for line in lines[1:]), column
    assert "never" in lines[1] and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\dZ", lines[2])
    everything = fenxiao(db_url, "token", "list", "--all")
    assert [line.split()[0] for line in everything.stdout.splitlines()] == [
        "NAME", "old", "books", "carrier-feed", "gone"]  # oldest first
    assert "(expired)" in everything.stdout.splitlines()[1]
    for secret in secrets:
        digest = hashlib.sha256(secret.encode()).hexdigest()
        for output in (listed.output, everything.output):
            assert secret not in output and digest not in output and "fx_" not in output


def test_token_revoke_refuses_what_it_cannot_revoke(db_url: str) -> None:
    unknown = fenxiao(db_url, "token", "revoke", "nobody")
    assert unknown.exit_code == 1 and "no token named 'nobody'" in unknown.stderr
    env_admin = fenxiao(db_url, "token", "revoke", "env-admin")
    assert env_admin.exit_code == 1 and "cannot be revoked" in env_admin.stderr
    fenxiao(db_url, "token", "create", "--role", "auditor", "--name", "twice")
    assert fenxiao(db_url, "token", "revoke", "twice").exit_code == 0
    again = fenxiao(db_url, "token", "revoke", "twice")
    assert again.exit_code == 0 and "already revoked" in again.stderr
    never = fenxiao(db_url, "token", "create", "--role", "auditor", "--expires-in", "0")
    assert never.exit_code == 2 and never.stdout == ""
    assert "no usable tokens" in fenxiao(db_url, "token", "list").stderr


# -- the migration ------------------------------------------------------------------------

def test_downgrading_drops_the_tokens_the_old_schema_could_not_hold_back(
        sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    create_token(engine, "auditor", name="plain")
    create_token(engine, "auditor", name="expiring", expires_in_days=3)
    create_token(engine, "auditor", name="revoked")
    revoke_token(engine, "revoked")
    command.downgrade(alembic_config(sqlite_url), "0017")
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT name FROM fenxiao_api_tokens").all()
    assert rows == [("plain",)]
    upgrade(sqlite_url)
    assert [row["name"] for row in list_tokens(engine)] == ["plain"]
    engine.dispose()
