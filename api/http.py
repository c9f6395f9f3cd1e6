"""The two things every view does: run one command, or answer one query."""
from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import threading
from datetime import datetime
from typing import Any, Callable, Iterator, Sequence

from flask import Response, current_app, g, jsonify, request
from sqlalchemy.engine import Connection

from api.access_log import request_id
from api.errors import ApiError
from commands.reads import read_connection
from commands.app import CommandContext, Reply, request_fingerprint
from commands.messages import Command
from projections.runner import lowest_position, wait_for_position

# At most this many requests may wait for a projection at once (per process), so slow
# reads never hold every server thread; the others are told to retry at once.
MAX_WAITERS = 4
_waiters = threading.BoundedSemaphore(MAX_WAITERS)
RETRY_AFTER_S = 1


def fenxiao() -> Any:
    return current_app.extensions["fenxiao"]


def run_command(command: Command | Callable[[], dict[str, Any]],
                status: int | None = None) -> Response:
    """Run one command for this request (see `execute_command`), keyed by its
    Idempotency-Key header, and answer with its reply as JSON. A bare callable (the tick's
    stored reply) is fingerprinted by the request."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise ApiError(422, "validation_error", "Idempotency-Key must be 1-255 characters",
                       **{"Idempotency-Key": ["must be 1-255 characters"]})
    fingerprint = None if isinstance(command, Command) else request_fingerprint(
        request.method, request.path, request.get_json(silent=True))
    reply = execute_command(command, g.principal.name, key, status=status,
                            fingerprint=fingerprint,
                            correlation_id=request.headers.get("X-Correlation-Id"),
                            causation_id=request.headers.get("X-Causation-Id"))
    response = jsonify(reply.body)
    response.status_code = reply.status
    return response


def execute_command(command: Command | Callable[[], dict[str, Any]], actor: str,
                    key: str | None, *, status: int | None = None,
                    fingerprint: str | None = None, correlation_id: str | None = None,
                    causation_id: str | None = None) -> Reply:
    """Run one command for `actor` (a token's name: recorded on its events, and the owner
    of its idempotency key), the one path of the API and the console: through the
    process's writer (decided in order with the commands of concurrent requests,
    committed in batches) when it runs one, else on its own. A Command value is its own
    fingerprint; a bare callable needs `fingerprint`. A refusal leaves as its
    DomainError."""
    context = CommandContext(actor=actor, idempotency_key=key,
                             correlation_id=correlation_id, causation_id=causation_id,
                             request_id=request_id())
    app = fenxiao()
    if isinstance(command, Command):
        fingerprint, status = command.fingerprint(), status or command.status
        decide = functools.partial(command.handle, app)
    else:
        decide = command
    reply = None
    if app.writer_link is not None and isinstance(command, Command):  # serve --workers
        reply = app.writer_link.execute(command, status, context, fingerprint)
    if reply is None:
        reply = app.execute(decide, status=status or 200, context=context,
                            request_hash=fingerprint)
    return reply


@contextlib.contextmanager
def reading() -> Iterator[Connection]:
    """The connection a query reads its rows on. `read_position` inside the block reads the
    position on it too: one connection a query, not one for the position and another for
    the rows, and on PostgreSQL no transaction around them (commands/reads.py)."""
    with read_connection(fenxiao().engine) as conn:
        g.read_connection = conn
        try:
            yield conn
        finally:
            g.pop("read_connection", None)


def read_position(names: Sequence[str], min_position: int | None) -> int:
    """The position the read models `names` reflect, after waiting for `min_position`
    (on the connection of the request's `reading()` block, if one is open)."""
    held = g.get("read_connection")
    with (contextlib.nullcontext(held) if held is not None
          else read_connection(fenxiao().engine)) as conn:
        current = lowest_position(conn, names)
        if min_position and current < min_position:
            return _wait_for(names, min_position, conn)
        return current


def _wait_for(names: Sequence[str], min_position: int, conn: Connection) -> int:
    app = fenxiao()
    head = app.last_position()
    if min_position > head:
        # No projection can reach what the log has not: waiting would only hold a thread.
        raise ApiError(422, "validation_error",
                       f"min_position {min_position} is beyond the log head {head}",
                       min_position=[f"must be at most the log head, {head}"], head=head)
    if not _waiters.acquire(blocking=False):
        raise lagging(min_position, "too many reads are waiting for the projections")
    try:
        reached = wait_for_position(app, names, min_position,
                                    app.settings.min_position_timeout_s, conn)
    finally:
        _waiters.release()
    if reached is None:
        raise lagging(min_position, f"the read model has not reached position "
                                    f"{min_position} yet")
    return reached


def lagging(min_position: int, why: str) -> ApiError:
    return ApiError(503, "projection_lagging", f"{why}; retry shortly",
                    min_position=min_position, retry_after_s=RETRY_AFTER_S)


def query_response(body: Any, position: int) -> Response:
    response = jsonify(body)
    response.headers["X-Fenxiao-Position"] = str(position)
    return response


# -- cursors: a JSON list of the last item's sort key, base64url; checked strictly -----

CursorPart = type  # str, int or datetime (sent as ISO text)
_MAX_CURSOR_TEXT = 200


def encode_cursor(key: Any) -> str:
    parts = list(key) if isinstance(key, (list, tuple)) else [key]
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()


def decode_cursor(cursor: str | None, *shape: CursorPart) -> list[Any] | None:
    """The sort key a cursor carries, if it has exactly `shape`; else 422. A cursor is not
    secret (it only says where a page starts), but it must be one this API could issue."""
    if cursor is None:
        return None
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error, RecursionError):
        parts = None
    if not (isinstance(parts, list) and len(parts) == len(shape)
            and all(_fits(part, kind) for part, kind in zip(parts, shape))):
        raise ApiError(422, "validation_error", "the cursor is not valid",
                       cursor=["not a cursor this API issued"])
    return parts


def _fits(part: Any, kind: CursorPart) -> bool:
    if kind is int:
        return type(part) is int and -2**63 <= part < 2**63
    if not (isinstance(part, str) and 0 < len(part) <= _MAX_CURSOR_TEXT
            and part.isprintable()):
        return False
    if kind is datetime:
        try:
            datetime.fromisoformat(part)
        except ValueError:
            return False
    return True


def page(items: list[dict[str, Any]], limit: int, key: Callable[[dict[str, Any]], Any]
         ) -> dict[str, Any]:
    """`items` were fetched with limit + 1 rows to learn whether there is a next page."""
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_cursor": encode_cursor(key(items[-1])) if more else None}
