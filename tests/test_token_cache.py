"""Bearer tokens found are kept a few seconds per process (api/auth.py TokenCache)."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timezone

from flask import Flask
from sqlalchemy import delete

from api import create_app
from api.auth import Principal, TokenCache, create_token
from commands import Fenxiao
from commands.storage import api_tokens
from tests.api_support import Api


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def principal(name: str) -> Principal:
    return Principal(name, "auditor")


def test_an_entry_lasts_its_time_from_when_it_was_read_not_from_its_last_use() -> None:
    clock = Clock()
    cache = TokenCache(5, clock=clock)
    cache.put("d1", principal("a"))
    clock.now += 4.9
    assert cache.get("d1") == principal("a")
    clock.now += 0.1
    assert cache.get("d1") is None and len(cache) == 0


def test_the_cache_is_bounded_and_forgets_the_least_recently_used_first() -> None:
    cache = TokenCache(5, size=3, clock=Clock())
    for name in ("a", "b", "c"):
        cache.put(name, principal(name))
    assert cache.get("a") is not None  # "b" is now the least recently used
    cache.put("d", principal("d"))
    assert len(cache) == 3
    assert cache.get("b") is None
    assert all(cache.get(name) is not None for name in ("a", "c", "d"))


def client(app: Fenxiao, token_cache_s: float) -> tuple[Api, Flask]:
    flask = create_app(replace(app.settings, token_cache_s=token_cache_s), application=app)
    return Api(flask.test_client(), app.engine), flask


def test_a_new_token_works_at_once_and_an_unknown_one_never(app: Fenxiao) -> None:
    api, flask = client(app, 5)
    unknown = "fx_nobody-has-this-token"
    assert [api.get("/products", role=unknown).status_code for _ in range(3)] == [401] * 3
    # Made after it was refused: a refusal is not kept.
    with app.engine.begin() as conn:
        conn.execute(api_tokens.insert().values(
            token_hash=hashlib.sha256(unknown.encode()).hexdigest(), name="late",
            role="auditor", created_at=datetime.now(timezone.utc)))
    assert api.get("/products", role=unknown).status_code == 200
    fresh = create_token(app.engine, "auditor", name="fresh")
    assert api.get("/products", role=fresh).status_code == 200
    kept = flask.extensions["fenxiao_tokens"]._entries
    assert unknown not in " ".join(kept) and fresh not in " ".join(kept)  # digests only


def test_a_deleted_token_stops_working_once_its_entry_expires(app: Fenxiao) -> None:
    api, flask = client(app, 5)
    clock = Clock()
    flask.extensions["fenxiao_tokens"].clock = clock
    token = create_token(app.engine, "auditor", name="leaving")
    assert api.get("/products", role=token).status_code == 200
    with app.engine.begin() as conn:
        conn.execute(delete(api_tokens).where(api_tokens.c.name == "leaving"))
    clock.now += 4.9
    assert api.get("/products", role=token).status_code == 200  # within the cache time
    clock.now += 0.1
    assert api.get("/products", role=token).status_code == 401


def test_without_a_cache_a_deleted_token_stops_working_at_once(app: Fenxiao) -> None:
    api, flask = client(app, 0)
    assert "fenxiao_tokens" not in flask.extensions
    token = create_token(app.engine, "auditor", name="leaving")
    assert api.get("/products", role=token).status_code == 200
    with app.engine.begin() as conn:
        conn.execute(delete(api_tokens).where(api_tokens.c.name == "leaving"))
    assert api.get("/products", role=token).status_code == 401
