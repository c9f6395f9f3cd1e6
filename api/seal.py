"""The tamper-evidence check of the event log (projections/seal.py), for auditors."""
from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import requires
from api.http import fenxiao, query_response, read_position
from api.schemas import ReadQuery
from projections.seal import PROBLEMS, SEALER, SealKeyError, seal_key, verify

blp = Blueprint("seal", __name__, url_prefix="/api/v1",
                description="Tamper evidence: the event log's HMAC chain")


class AuditVerifyOut(Schema):
    ok = fields.Boolean(required=True)
    events = fields.Integer(required=True)
    head = fields.Integer(required=True)
    sealed_through = fields.Integer(required=True)
    seals = fields.Integer(required=True)
    unsealed = fields.Integer(required=True)
    gaps = fields.Integer(required=True)
    first_bad_position = fields.Integer(required=True, allow_none=True)
    problem = fields.String(required=True, allow_none=True,
                            validate=validate.OneOf(PROBLEMS))
    detail = fields.String(required=True, allow_none=True)
    head_seal = fields.String(required=True, allow_none=True)
    seconds = fields.Float(required=True)


@blp.route("/audit/verify", methods=["GET"])
@requires("auditor", "admin")
@blp.arguments(ReadQuery, location="query")
@blp.response(200, AuditVerifyOut)
def audit_verify(query: dict[str, Any]) -> Any:
    """Recompute the HMAC chain over the whole event log and name the first position that
    was altered, inserted or deleted, or the first seal that was forged (`ok` false).
    `gaps` counts positions never used (rolled-back transactions: not tampering);
    `unsealed`, events the sealer has not reached yet; note `head_seal` down outside the
    database to prove later that nothing was cut off the end. `problem` is
    "sealing_disabled" when FENXIAO_SEAL_KEY is not set. With `min_position`, waits until
    the log is sealed that far (when sealing is on). X-Fenxiao-Position: the log head
    verified."""
    app = fenxiao()
    if query["min_position"] and _sealing(app):
        read_position([SEALER], query["min_position"])
    report = verify(app)
    return query_response(report, report["head"])


def _sealing(app: Any) -> bool:
    try:
        return seal_key(app.settings) is not None
    except SealKeyError:
        return False
