"""Health."""
from __future__ import annotations

from typing import Any

from flask import jsonify
from flask_smorest import Blueprint
from sqlalchemy import func, select

from api.http import fenxiao
from projections import all_projections
from projections.runner import positions

blp = Blueprint("operations", __name__, url_prefix="/api/v1", description="Operations")


@blp.route("/health", methods=["GET"])
def health() -> Any:
    """Database reachability and each projection's position and lag (no token needed)."""
    app = fenxiao()
    names = [p.name for p in all_projections()]
    try:
        with app.engine.connect() as conn:
            events = app.recorder.events_record_cls.__table__
            head = conn.execute(select(func.max(events.c.id))).scalar() or 0
            current = positions(conn)
    except Exception as error:  # report, don't raise: this is what monitors poll
        response = jsonify({"status": "unavailable", "database": f"error: {type(error).__name__}",
                            "projections": []})
        response.status_code = 503
        return response
    return jsonify({
        "status": "ok", "database": app.engine.dialect.name, "position": head,
        "projections": [{"name": n, "position": current.get(n, 0),
                         "lag": head - current.get(n, 0)} for n in names],
    })
