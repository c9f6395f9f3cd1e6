"""What every API request passes before a view runs, and what every response carries.

- A path parameter with control characters names nothing: 404 (PostgreSQL would refuse
  a NUL in the query; no id can contain one).
- A POST body must be JSON (415 otherwise) and parse (400), however deeply it nests; an
  object naming a key twice is refused (422), not taken last-wins.
- Responses are never cached or sniffed; Retry-After appears only where it means
  something (429, 503).
- Failed authentication is limited per client address (api/auth.py counts it), and
  never at the expense of a valid token.
- The client's address is the peer's, or, when the peer is a trusted proxy
  (FENXIAO_TRUSTED_PROXIES), the nearest address X-Forwarded-For names that is not one.
"""
from __future__ import annotations

import ipaddress
import json
import re
import time
from typing import Any, Sequence

from flask import Flask, Response, current_app, request
from flask.json.provider import DefaultJSONProvider
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import BadRequest

from api.errors import ApiError
from commands.settings import Settings
from domain.errors import NotFound

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
API_PREFIX = "/api/v1/"


def register(flask: Flask, settings: Settings) -> None:
    flask.json = StrictJSONProvider(flask)
    flask.before_request(_check_request)
    flask.after_request(_secure_headers)
    if settings.auth_failure_limit:
        flask.extensions["fenxiao_auth_failures"] = AuthFailures(settings.auth_failure_limit)
    flask.extensions["fenxiao_trusted_proxies"] = _networks(settings.trusted_proxies)


def _check_request() -> None:
    if not request.path.startswith(API_PREFIX):
        return
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and _UNPRINTABLE.search(value):
            raise NotFound(f"no such {name}", **{name: repr(value)})
    if request.method == "POST" and request.get_data(cache=True):
        if not request.is_json:
            raise ApiError(415, "unsupported_media_type",
                           "the body must be JSON (Content-Type: application/json)",
                           content_type=request.content_type)
        try:
            request.get_json()
        except RecursionError:
            raise ApiError(400, "bad_request", "the JSON body is nested too deeply") from None
        except BadRequest as error:
            duplicate = _raised_by_the_parser(error)
            if isinstance(duplicate, DuplicateKey):
                raise ApiError(422, "validation_error", str(duplicate),
                               **{duplicate.key: ["given more than once"]}) from None
            raise


def _raised_by_the_parser(error: BaseException) -> BaseException | None:
    """The first exception of the chain Flask's get_json raised (it wraps it twice)."""
    while error.__cause__ or error.__context__:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return error


class DuplicateKey(ValueError):
    """A JSON object naming one key twice: which value was meant cannot be known (JSON
    parsers disagree: first, last, or refused), so it is refused, never taken last-wins."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key!r} appears more than once in one object")
        self.key = key


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        raise DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return found


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing an object that names a key twice (DuplicateKey)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return json.loads(s, object_pairs_hook=_one_value_per_key, **kwargs)


def _secure_headers(response: Response) -> Response:
    if request.path.startswith(API_PREFIX):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    return response


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(proxies: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address() -> str:
    """Who is asking, for the limits kept per address. The peer, unless it is a trusted
    proxy: then the nearest hop of X-Forwarded-For (read from the right, where each
    proxy appends the address it saw) that is not itself a trusted proxy. What a client
    writes to the left of that is never read, so it cannot pose as another address."""
    peer = request.remote_addr or "unknown"
    networks = current_app.extensions.get("fenxiao_trusted_proxies", ())
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for header in request.headers.getlist("X-Forwarded-For")
            for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:  # a proxy that writes no address: the proxy it is, then
                return peer
    return hops[0] if hops else peer


class AuthFailures:
    """A moving window of failed sign-ins per client address, in this process. A valid
    token is never refused by it (one client behind a shared address must not lock out
    another, nor a payment callback); past the limit, an address's invalid tokens are
    answered 429 instead of 401 until the window moves on. Tokens are 256-bit random:
    what the limit bounds is the load of guessing, not its odds."""

    def __init__(self, limit: str) -> None:
        self.item = parse(limit)
        self.window = MovingWindowRateLimiter(QuietMemoryStorage())

    def failed(self, address: str) -> None:
        """Count a failure; 429 once the address is over the limit."""
        if not self.window.hit(self.item, address):
            raise ApiError(429, "rate_limited", "too many failed sign-ins from this address; "
                           f"the limit is {self.item}", retry_after_s=self.item.get_expiry())


PURGE_EVERY_S = 1.0


class QuietMemoryStorage(MemoryStorage):
    """limits' in-process counters, with stale ones purged in passing at most once a
    second. limits' own storage starts a timer thread to purge them 10 ms after any hit
    that finds none running: under steady traffic a new thread every 10 ms, which cost
    20 to 180 µs of CPU a request in our measurements (the more, the more requests wait
    on the database). Purging later changes no answer: a counter past its window counts
    as zero when read. The hook is limits' private method (if limits renames it, its
    timer comes back; a test says so)."""

    SCHEME = "fenxiao-memory"
    STORAGE_SCHEME = [SCHEME]  # registers the scheme with limits
    _next_purge = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY_S
            self._MemoryStorage__expire_events()
