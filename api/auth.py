"""Bearer tokens with roles. Tokens are random 256-bit secrets, so a SHA-256 digest is
enough to store them safely (no slow password hash needed: nothing to brute-force)."""
from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from flask import current_app, g, request
from sqlalchemy import select
from sqlalchemy.engine import Engine

from api.errors import ApiError
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


def authenticate(engine: Engine, token: str, admin_token: str | None) -> Principal | None:
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(name="env-admin", role="admin")
    with engine.connect() as conn:
        row = conn.execute(select(api_tokens).where(
            api_tokens.c.token_hash == _digest(token))).first()
    return Principal(row.name, row.role, row.distributor_id) if row else None


def current_principal() -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    fenxiao = current_app.extensions["fenxiao"]
    principal = authenticate(fenxiao.engine, token.strip(), fenxiao.settings.admin_token)
    if principal is None:
        raise ApiError(401, "unauthorized", "the token is not valid")
    return principal


def requires(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Authenticate before anything else (body parsing included), then check the role.

    A distributor's token sees only its own distributor: on any route naming another one it
    gets 404, as if it did not exist, so answers never tell which distributors exist."""
    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = current_principal()
            named = kwargs.get("distributor_id")
            if principal.role == "distributor" and named not in (None,
                                                                  principal.distributor_id):
                raise NotFound(f"distributor {named} not found", distributor_id=named)
            if principal.role not in roles:
                raise ApiError(403, "forbidden",
                               f"role {principal.role} may not do this; needs one of "
                               f"{', '.join(roles)}")
            g.principal = principal
            return view(*args, **kwargs)
        return wrapper
    return decorate
