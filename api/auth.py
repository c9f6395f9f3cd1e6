"""Bearer tokens with roles. Tokens are random 256-bit secrets, so a SHA-256 digest is
enough to store them safely (no slow password hash needed: nothing to brute-force)."""
from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from flask import current_app, g, request
from sqlalchemy import select
from sqlalchemy.engine import Engine

from api.errors import ApiError
from api.guards import client_address
from commands.reads import read_connection
from commands.storage import api_tokens
from domain.errors import Duplicate, InvalidCommand, NotFound

ROLES = ("admin", "operator", "warehouse", "distributor", "auditor", "integration")
ANY_ROLE = ROLES


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    distributor_id: str | None = None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, role: str, name: str | None = None,
                 distributor_id: str | None = None) -> str:
    if role not in ROLES:
        raise InvalidCommand(f"unknown role {role!r}; one of {', '.join(ROLES)}", field="role")
    if (role == "distributor") != (distributor_id is not None):
        raise InvalidCommand("a distributor token needs --distributor, and only it does",
                             field="distributor")
    token = "fx_" + secrets.token_urlsafe(32)
    name = name or f"{role}-{secrets.token_hex(4)}"
    with engine.begin() as conn:
        if conn.execute(select(api_tokens.c.name).where(api_tokens.c.name == name)).first():
            raise Duplicate(f"a token named {name!r} already exists", name=name)
        conn.execute(api_tokens.insert().values(
            token_hash=_digest(token), name=name, role=role, distributor_id=distributor_id,
            created_at=datetime.now(timezone.utc)))
    return token


TOKEN_CACHE_SIZE = 10_000  # tokens kept per process; the least recently used go first


class TokenCache:
    """The principals of tokens found lately, for `ttl_s` each, at most `size` of them,
    keyed by the token's SHA-256 (a clear token is never kept). Only tokens found are
    kept: an unknown token is read again every time, so one created a moment ago works at
    once. A token deleted from the store (revoked) keeps working in this process until
    its entry expires: `ttl_s` after it was read, never refreshed by use."""

    def __init__(self, ttl_s: float, size: int = TOKEN_CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()  # requests of one process look up at once

    def get(self, digest: str) -> Principal | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            expires, principal = entry
            if self.clock() >= expires:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return principal

    def put(self, digest: str, principal: Principal) -> None:
        with self._lock:
            self._entries[digest] = (self.clock() + self.ttl_s, principal)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def authenticate(engine: Engine, token: str, admin_token: str | None,
                 cache: TokenCache | None = None) -> Principal | None:
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(name="env-admin", role="admin")
    digest = _digest(token)
    principal = cache.get(digest) if cache is not None else None
    if principal is None:
        principal = _look_up(engine, digest)
        if principal is not None and cache is not None:
            cache.put(digest, principal)
    return principal


def _look_up(engine: Engine, digest: str) -> Principal | None:
    with read_connection(engine) as conn:
        row = conn.execute(select(api_tokens).where(api_tokens.c.token_hash == digest)).first()
    return Principal(row.name, row.role, row.distributor_id) if row else None


def current_principal() -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    fenxiao = current_app.extensions["fenxiao"]
    principal = authenticate(fenxiao.engine, token.strip(), fenxiao.settings.admin_token,
                             current_app.extensions.get("fenxiao_tokens"))
    if principal is None:
        failures = current_app.extensions.get("fenxiao_auth_failures")
        if failures:  # 429 past the limit; a valid token is never refused by it
            failures.failed(client_address())
        raise ApiError(401, "unauthorized", "the token is not valid")
    return principal


# Path parameter -> the distributor owning the object it names (None: nobody, or no such
# object), read from the write side so it is never stale. Blueprints register their own.
Owner = Callable[[Any, str], "str | None"]
OWNERS: dict[str, Owner] = {"distributor_id": lambda _app, distributor_id: distributor_id}


def owned_by(parameter: str, owner: Owner) -> None:
    OWNERS[parameter] = owner


def _hide_others(principal: Principal, path_args: dict[str, Any]) -> None:
    """A distributor's token sees only its own objects: on a route naming another's (or
    nobody's) it gets 404, as if it did not exist, so answers never tell what exists."""
    app = current_app.extensions["fenxiao"]
    for parameter, value in path_args.items():
        owner = OWNERS.get(parameter)
        if owner is not None and owner(app, value) != principal.distributor_id:
            raise NotFound(f"{parameter.removesuffix('_id')} {value} not found",
                           **{parameter: value})


def requires(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Authenticate before anything else (body parsing included), then hide other
    distributors' objects from a distributor's token, then check the role (so a
    distributor learns it may not do something only about its own objects)."""
    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = current_principal()
            if principal.role == "distributor":
                _hide_others(principal, kwargs)
            if principal.role not in roles:
                raise ApiError(403, "forbidden",
                               f"role {principal.role} may not do this; needs one of "
                               f"{', '.join(roles)}")
            g.principal = principal
            return view(*args, **kwargs)
        wrapper.roles = roles  # type: ignore[attr-defined]  # for the OpenAPI document
        return wrapper
    return decorate
