"""Notifications to distributors and customers."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.auth import requires
from api.http import decode_cursor, page, query_response, read_position, reading
from api.schemas import Id, PageQuery
from domain.errors import NotFound
from projections.notifications import NotificationsProjection, list_notifications

blp = Blueprint("notifications", __name__, url_prefix="/api/v1", description="Notifications to distributors and customers")
KINDS = ("shortage", "backorder_filled", "shipped", "delivered", "refund", "cancelled",
         "expired", "webhook_disabled")


class NotificationQuery(PageQuery):
    distributor_id = Id(load_default=None)
    customer_id = Id(load_default=None)
    # ISO-8601 with an offset: only notifications after that moment (for polling).
    after = fields.AwareDateTime(load_default=None)


class NotificationOut(Schema):
    notification_id = fields.String()
    kind = fields.String(metadata={"enum": list(KINDS)})
    order_id = fields.String(allow_none=True, metadata={
        "description": "null for a notice to operators (webhook_disabled)"})
    distributor_id = fields.String(allow_none=True)
    customer_id = fields.String(allow_none=True)
    message = fields.String()
    at = fields.String()


class NotificationPage(Schema):
    items = fields.List(fields.Nested(NotificationOut))
    next_cursor = fields.String(allow_none=True)


@blp.route("/notifications", methods=["GET"])
@requires("admin", "operator", "auditor", "distributor")
@blp.arguments(NotificationQuery, location="query")
@blp.response(200, NotificationPage)
def notifications(query: dict[str, Any]) -> Any:
    """Oldest first. A distributor's token sees its own notifications only."""
    distributor_id = _own_only(query["distributor_id"])
    with reading() as conn:
        position = read_position([NotificationsProjection.name], query["min_position"])
        rows = list_notifications(conn, distributor_id, query["customer_id"], query["after"],
                                  decode_cursor(query["cursor"], datetime, str),
                                  query["limit"] + 1)
    return query_response(page(rows, query["limit"],
                               lambda n: [n["at"], n["notification_id"]]), position)


def _own_only(distributor_id: str | None) -> str | None:
    """A distributor's token reads its own notifications; naming another distributor is
    answered as if it did not exist."""
    principal = g.principal
    if principal.role != "distributor":
        return distributor_id
    if distributor_id not in (None, principal.distributor_id):
        raise NotFound(f"distributor {distributor_id} not found",
                       distributor_id=distributor_id)
    return principal.distributor_id
