"""The two things every view does: run one command, or answer one query."""
from __future__ import annotations

import base64
import json
from typing import Any, Callable, Sequence

from flask import Response, current_app, g, jsonify, request

from api.errors import ApiError
from commands.app import CommandContext, request_fingerprint
from projections.runner import positions, wait_for_position


def fenxiao() -> Any:
    return current_app.extensions["fenxiao"]


def run_command(command: Callable[[], dict[str, Any]], status: int = 200) -> Response:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise ApiError(422, "validation_error", "Idempotency-Key must be 1-255 characters",
                       **{"Idempotency-Key": ["must be 1-255 characters"]})
    context = CommandContext(
        actor=g.principal.name, idempotency_key=key,
        correlation_id=request.headers.get("X-Correlation-Id"),
        causation_id=request.headers.get("X-Causation-Id"))
    fingerprint = request_fingerprint(request.method, request.path,
                                      request.get_json(silent=True))
    reply = fenxiao().execute(command, status=status, context=context,
                              request_hash=fingerprint)
    response = jsonify(reply.body)
    response.status_code = reply.status
    return response


def read_position(names: Sequence[str], min_position: int | None) -> int:
    """The position the read models `names` reflect, after waiting for `min_position`."""
    app = fenxiao()
    if min_position:
        reached = wait_for_position(app, names, min_position,
                                    app.settings.min_position_timeout_s)
        if reached is None:
            raise ApiError(503, "projection_lagging",
                           f"the read model has not reached position {min_position} yet; "
                           "retry shortly", min_position=min_position)
        return reached
    with app.engine.connect() as conn:
        current = positions(conn)
    return min(current.get(name, 0) for name in names)


def query_response(body: Any, position: int) -> Response:
    response = jsonify(body)
    response.headers["X-Fenxiao-Position"] = str(position)
    return response


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def decode_cursor(cursor: str | None) -> Any:
    if cursor is None:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError:
        raise ApiError(422, "validation_error", "the cursor is not valid",
                       cursor=["not a cursor this API issued"]) from None


def page(items: list[dict[str, Any]], limit: int, key: Callable[[dict[str, Any]], Any]
         ) -> dict[str, Any]:
    """`items` were fetched with limit + 1 rows to learn whether there is a next page."""
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_cursor": encode_cursor(key(items[-1])) if more else None}
