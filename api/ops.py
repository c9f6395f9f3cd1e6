"""Health, and the time rules on demand."""
from __future__ import annotations

from typing import Any

from flask import g, jsonify, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import func, select

from api.auth import requires
from api.errors import ApiError
from api.http import fenxiao
from commands.reads import read_connection
from api.schemas import NoBody
from commands.app import CommandContext, request_fingerprint
from commands.tick import tick
from projections import all_projections
from projections.parking import parked_counts
from projections.policies import all_process_managers
from projections.runner import positions

blp = Blueprint("operations", __name__, url_prefix="/api/v1", description="Operations")


class ProjectionHealth(Schema):
    name = fields.String(required=True)
    position = fields.Integer(required=True)
    lag = fields.Integer(required=True)
    parked = fields.Integer(required=True)


class ParkedCount(Schema):
    name = fields.String(required=True)
    count = fields.Integer(required=True)


class HealthOut(Schema):
    status = fields.String(required=True, validate=validate.OneOf(
        ["ok", "degraded", "unavailable"]))
    database = fields.String(required=True)
    store = fields.String()
    position = fields.Integer()
    projections = fields.List(fields.Nested(ProjectionHealth), required=True)
    parked = fields.List(fields.Nested(ParkedCount))


@blp.route("/health", methods=["GET"])
@blp.response(200, HealthOut)
@blp.alt_response(503, schema=HealthOut, description="The database is unreachable, or "
                  "FENXIAO_CIPHER_KEY does not fit the store.")
def health() -> Any:
    """Database reachability, each projection's position and lag, and parked events: the
    status is "degraded" while any are parked (no token needed)."""
    app = fenxiao()
    names = [p.name for p in all_projections()] + [m.name for m in all_process_managers()]
    try:
        with read_connection(app.engine) as conn:
            events = app.recorder.events_record_cls.__table__
            head = conn.execute(select(func.max(events.c.id))).scalar() or 0
            current = positions(conn)
            parked = parked_counts(conn)
        store = app.store_status()  # "ok", or why FENXIAO_CIPHER_KEY does not fit the store
    except Exception as error:  # report, don't raise: this is what monitors poll
        response = jsonify({"status": "unavailable", "database": f"error: {type(error).__name__}",
                            "projections": []})
        response.status_code = 503
        return response
    response = jsonify({
        # Degraded, not unavailable: parked events wait for a fix and a retry, and the
        # projections carry on past them. A key that does not fit the store fails every
        # command and every projection: unavailable.
        "status": "unavailable" if store != "ok" else "degraded" if parked else "ok",
        "store": store,
        "database": app.engine.dialect.name, "position": head,
        "projections": [{"name": n, "position": current.get(n, 0),
                         "lag": head - current.get(n, 0), "parked": parked.get(n, 0)}
                        for n in names],
        "parked": [{"name": n, "count": count} for n, count in sorted(parked.items())],
    })
    response.status_code = 200 if store == "ok" else 503
    return response


class TickOut(Schema):
    expired = fields.Integer(required=True)
    completed = fields.Integer(required=True)
    matured = fields.Integer(required=True)
    position = fields.Integer(required=True, allow_none=True)  # null: nothing was due


@blp.route("/admin/tick", methods=["POST"])
@requires("admin")
@blp.arguments(NoBody, required=False)
@blp.response(200, TickOut)
def admin_tick(_body: dict[str, Any]) -> Any:
    """Run the time rules as of now: reservation expiry, completion after the return
    window, commission maturity after the freeze period. Counts what each did; the
    worker does the same every minute."""
    app = fenxiao()
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise ApiError(422, "validation_error", "Idempotency-Key must be 1-255 characters",
                       **{"Idempotency-Key": ["must be 1-255 characters"]})
    context = CommandContext(actor=g.principal.name, idempotency_key=key)
    fingerprint = request_fingerprint(request.method, request.path,
                                      request.get_json(silent=True))
    # Not run_command: the tick is many commands, each its own transaction, never one
    # inside another's. A repeated key gets the stored reply and ticks no more.
    stored = app._stored_reply_now(context, fingerprint) if key else None
    if stored is not None:
        return jsonify(stored.body)
    result = tick(app, actor=g.principal.name)
    if key:  # kept with its key (or, if a concurrent repeat kept its own first, that one)
        result = app.execute(lambda: result, context=context, request_hash=fingerprint).body
    return jsonify(result)
