"""Bearer tokens with roles. Tokens are random 256-bit secrets, so a SHA-256 digest is
enough to store them safely (no slow password hash needed: nothing to brute-force)."""
from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from flask import current_app, g, request
from sqlalchemy import or_, select, update
from sqlalchemy.engine import Engine

from api.errors import ApiError
from api.guards import client_address
from commands.reads import read_connection
from commands.storage import api_tokens
from commands.views import utc
from domain.errors import Duplicate, InvalidCommand, NotFound

log = logging.getLogger("fenxiao.auth")

ROLES = ("admin", "operator", "warehouse", "distributor", "auditor", "integration")
ANY_ROLE = ROLES


ENV_ADMIN = "env-admin"  # the principal of FENXIAO_ADMIN_TOKEN: not stored, not revocable
MAX_EXPIRES_IN_DAYS = 36_500
LAST_USED_STEP = timedelta(minutes=1)  # last_used_at is written at most this often a token


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    distributor_id: str | None = None


@dataclass(frozen=True)
class StoredToken:
    """A stored token as a lookup found it (never revoked: those are not found)."""
    principal: Principal
    expires_at: datetime | None
    last_used_at: datetime | None

    def usable(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now(now: datetime | None) -> datetime:
    return utc(now) if now is not None else datetime.now(timezone.utc)


def create_token(engine: Engine, role: str, name: str | None = None,
                 distributor_id: str | None = None, expires_in_days: int | None = None,
                 now: datetime | None = None) -> str:
    """A new token, returned in the clear (only its hash is stored); it expires
    `expires_in_days` after `now`, or never."""
    if role not in ROLES:
        raise InvalidCommand(f"unknown role {role!r}; one of {', '.join(ROLES)}", field="role")
    if (role == "distributor") != (distributor_id is not None):
        raise InvalidCommand("a distributor token needs --distributor, and only it does",
                             field="distributor")
    if expires_in_days is not None and not 0 < expires_in_days <= MAX_EXPIRES_IN_DAYS:
        raise InvalidCommand(f"--expires-in is 1 to {MAX_EXPIRES_IN_DAYS} days",
                             field="expires_in")
    if name == ENV_ADMIN:
        raise InvalidCommand(f"{ENV_ADMIN} names FENXIAO_ADMIN_TOKEN; choose another name",
                             field="name")
    token = "fx_" + secrets.token_urlsafe(32)
    name = name or f"{role}-{secrets.token_hex(4)}"
    now = _now(now)
    expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
    with engine.begin() as conn:
        if conn.execute(select(api_tokens.c.name).where(api_tokens.c.name == name)).first():
            raise Duplicate(f"a token named {name!r} already exists", name=name)
        conn.execute(api_tokens.insert().values(
            token_hash=_digest(token), name=name, role=role, distributor_id=distributor_id,
            created_at=now, expires_at=expires_at))
    return token


LISTED = ("name", "role", "distributor_id", "created_at", "expires_at", "last_used_at",
          "revoked_at")  # never the hash


def list_tokens(engine: Engine, include_unusable: bool = False,
                now: datetime | None = None) -> list[dict[str, Any]]:
    """The stored tokens, oldest first, without their hashes; revoked and expired ones
    only with `include_unusable`. Times are aware, in UTC."""
    now = _now(now)
    query = select(*(api_tokens.c[column] for column in LISTED)).order_by(
        api_tokens.c.created_at, api_tokens.c.name)
    if not include_unusable:
        query = query.where(api_tokens.c.revoked_at.is_(None),
                            or_(api_tokens.c.expires_at.is_(None),
                                api_tokens.c.expires_at > now))
    with read_connection(engine) as conn:
        rows = conn.execute(query).mappings().all()
    return [{column: utc(row[column]) if isinstance(row[column], datetime) else row[column]
             for column in LISTED} for row in rows]


def revoke_token(engine: Engine, name: str, now: datetime | None = None) -> datetime | None:
    """Mark the token named `name` revoked (its row stays, for the list). Returns when it
    was revoked before, or None if revoked now. Each API process may still accept it for
    up to its TokenCache time (FENXIAO_TOKEN_CACHE_S); the console refuses it at once."""
    now = _now(now)
    with engine.begin() as conn:
        row = conn.execute(select(api_tokens.c.revoked_at)
                           .where(api_tokens.c.name == name)).first()
        if row is None:
            raise NotFound(f"no token named {name!r}", name=name)
        if row.revoked_at is not None:
            return utc(row.revoked_at)
        conn.execute(update(api_tokens).where(api_tokens.c.name == name)
                     .values(revoked_at=now))
    return None


TOKEN_CACHE_SIZE = 10_000  # tokens kept per process; the least recently used go first


class TokenCache:
    """The tokens found lately (a StoredToken each, or whatever `put` is given), for
    `ttl_s` each, at most `size` of them, keyed by the token's SHA-256 (a clear token is
    never kept). Only tokens found are kept: an unknown token is read again every time, so
    one created a moment ago works at once. A token revoked (or deleted) keeps working in
    this process until its entry expires: `ttl_s` after it was read, never refreshed by
    use. An expiry time travels with the entry: an expired token is refused at once."""

    def __init__(self, ttl_s: float, size: int = TOKEN_CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()  # requests of one process look up at once

    def get(self, digest: str) -> Any:
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

    def put(self, digest: str, found: Any) -> None:
        with self._lock:
            self._entries[digest] = (self.clock() + self.ttl_s, found)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def authenticate(engine: Engine, token: str, admin_token: str | None,
                 cache: TokenCache | None = None,
                 now: datetime | None = None) -> Principal | None:
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(name=ENV_ADMIN, role="admin")
    return principal_of(engine, _digest(token), cache, now)


def principal_of(engine: Engine, digest: str, cache: TokenCache | None = None,
                 now: datetime | None = None) -> Principal | None:
    """The principal of the stored token with this SHA-256, or None: unknown, revoked
    (seen within the cache's time) or expired (at once, cached or not). Each read of the
    store records the use (`_record_use`): with a cache, one read per `ttl_s`."""
    now = _now(now)
    found = cache.get(digest) if cache is not None else None
    if found is None:
        found = _look_up(engine, digest)
        if found is None or not found.usable(now):
            return None
        if cache is not None:
            cache.put(digest, found)
        _record_use(engine, digest, found, now)
    return found.principal if found.usable(now) else None


def _look_up(engine: Engine, digest: str) -> StoredToken | None:
    with read_connection(engine) as conn:
        row = conn.execute(select(api_tokens).where(
            api_tokens.c.token_hash == digest, api_tokens.c.revoked_at.is_(None))).first()
    if row is None:
        return None
    return StoredToken(Principal(row.name, row.role, row.distributor_id),
                       utc(row.expires_at) if row.expires_at else None,
                       utc(row.last_used_at) if row.last_used_at else None)


def _record_use(engine: Engine, digest: str, found: StoredToken, now: datetime) -> None:
    """Write last_used_at if what was read is a minute old or more: a token's uses cost
    a write a minute, not a write a request. The UPDATE repeats the condition, so lookups
    racing each other write once. A failure is logged, never the request's failure."""
    if found.last_used_at is not None and now - found.last_used_at < LAST_USED_STEP:
        return
    try:
        with engine.begin() as conn:
            conn.execute(update(api_tokens).where(
                api_tokens.c.token_hash == digest,
                or_(api_tokens.c.last_used_at.is_(None),
                    api_tokens.c.last_used_at <= now - LAST_USED_STEP),
            ).values(last_used_at=now))
    except Exception:  # the store busy or read-only: the token is still good
        log.warning("could not record the use of token %s", found.principal.name,
                    exc_info=True)


def current_principal() -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    fenxiao = current_app.extensions["fenxiao"]
    principal = authenticate(fenxiao.engine, token.strip(), fenxiao.settings.admin_token,
                             current_app.extensions.get("fenxiao_tokens"), fenxiao.clock())
    if principal is None:
        failures = current_app.extensions.get("fenxiao_auth_failures")
        if failures:  # 429 past the limit; a valid token is never refused by it
            failures.failed(client_address())
        raise ApiError(401, "unauthorized", "the token is not valid or has expired")
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
