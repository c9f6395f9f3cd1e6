"""The public event feed (GET /events) and webhook endpoints (/webhooks), for integrations.

The feed reads the log itself (commands/feed.py), so it is always current; `wait` holds
an empty answer until the log advances (woken as the projections are: the commit of a
command in this process, or PostgreSQL's NOTIFY), at most a few requests per process at a
time so long polls never take every server thread.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from flask import g, jsonify
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, post_load, validate
from sqlalchemy import select

from api.audit import MAX_POSITION
from api.auth import requires
from api.errors import ApiError
from api.http import decode_cursor, encode_cursor, fenxiao, query_response, run_command
from api.schemas import _CONTROL, _SPACE, FullMatch, NoBody, PageQuery, StrictInt, Str, Text
from commands import feed
from commands.messages import (DisableWebhook, EnableWebhook, PingWebhook, RegisterWebhook,
                               ReplayWebhook, RotateWebhookSecret)
from commands.reads import read_connection
from commands.storage import webhook_cursors, webhook_deliveries
from commands.webhooks import check_destination
from domain.webhooks import DEFAULT_GRACE_S, MAX_GRACE_S, MAX_URL_LENGTH, WebhookEndpoint
from projections.wakeups import log_signal
from projections.notifications import utc

blp = Blueprint("webhooks", __name__, url_prefix="/api/v1",
                description="The public event feed and signed webhooks, for integrations")
FEED_ROLES = ("integration", "admin", "auditor", "distributor")
MAX_WAIT_S = 30
MAX_LONG_POLLS = 4  # per process: the rest are answered at once
# A long poll looks at the log again this often even unwoken: a commit of another process
# on SQLite (a `fenxiao tick`), or a notification lost while LISTEN reconnects.
LOOK_AGAIN_S = 1.0
_long_polls = threading.BoundedSemaphore(MAX_LONG_POLLS)
# http(s), a host without credentials, an optional port, a path and query; no fragment
# and no white space (the rest is checked when registering: where the host points).
# White space and control characters spelled out (as api/schemas.py does), so that Python
# and every JSON Schema validator agree on the pattern.
_NOT_IN_URL = _CONTROL + _SPACE
URL_PATTERN = (rf"^https?://[^{_NOT_IN_URL}/?#@\\]+(?::[0-9]{{1,5}})?"
               rf"(?:[/?][^{_NOT_IN_URL}#]*)?$")
TYPES_HELP = "Public event types, e.g. order.paid (see the vocabulary in the README)."


class EventsQuery(Schema):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_POSITION),
                           metadata={"description": "Only events after this log position "
                                                    "(a page's `next_after`)."})
    types = Str(load_default=None, validate=validate.Length(min=1, max=1000), metadata={
        "description": "Comma-separated public event types; all when left out."})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    wait = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_WAIT_S),
                          metadata={"description": "Seconds to wait for an event when "
                                                   "none is newer (long poll)."})

    @post_load
    def parse_types(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if data["types"] is None:
            return data
        names = [name.strip() for name in data["types"].split(",")]
        unknown = sorted({name for name in names if name not in feed.PUBLIC_TYPE_NAMES})
        if unknown:
            raise ValidationError({"types": [f"unknown event types: {', '.join(unknown)}; "
                                             f"known: {', '.join(feed.PUBLIC_TYPE_NAMES)}"]})
        return {**data, "types": list(dict.fromkeys(names))}


class PublicEventOut(Schema):
    id = fields.String(metadata={"description": "Stable forever: the webhook-id too."})
    type = fields.String(metadata={"enum": list(feed.PUBLIC_TYPE_NAMES)})
    position = fields.Integer()
    aggregate_id = fields.String()
    aggregate_version = fields.Integer()
    occurred_at = fields.String()
    data = fields.Dict()


class EventPage(Schema):
    items = fields.List(fields.Nested(PublicEventOut))
    next_after = fields.Integer(metadata={"description": "Ask `after` this next."})


@blp.route("/events", methods=["GET"])
@requires(*FEED_ROLES)
@blp.arguments(EventsQuery, location="query")
@blp.response(200, EventPage)
def events(query: dict[str, Any]) -> Any:
    """The public event feed, in log order, replayable from any position.

    Public types only (a documented vocabulary, never internal names), each event with an
    `id` that never changes. A distributor's token sees only events about its own orders
    and earnings (and only its own commission amounts); personal data is masked for every
    role but admin, as in GET /audit/events. With `wait`, an empty answer waits up to that
    many seconds for the next event."""
    app = fenxiao()
    principal = g.principal
    viewer = feed.Viewer(masked=principal.role != "admin",
                         distributor_id=principal.distributor_id
                         if principal.role == "distributor" else None)
    topics = feed.topics_for(query["types"])
    deadline = time.monotonic() + query["wait"]
    signal = log_signal(app)
    waiting = query["wait"] > 0 and _long_polls.acquire(blocking=False)
    try:
        while True:
            seen = signal.version
            with read_connection(app.engine) as conn:
                page = feed.read_page(app, conn, query["after"], topics, query["limit"],
                                      viewer)
            if query["after"] > page.head:  # no wait reaches it: a position never issued
                raise ApiError(422, "validation_error",
                               f"after {query['after']} is beyond the log head {page.head}",
                               after=[f"must be at most the log head, {page.head}"],
                               head=page.head)
            left = deadline - time.monotonic()
            if page.items or not waiting or left <= 0:
                break
            query = {**query, "after": page.next_after}
            signal.wait(seen, min(left, LOOK_AGAIN_S))
    finally:
        if waiting:
            _long_polls.release()
    return query_response({"items": page.items, "next_after": page.next_after}, page.head)


# -- webhook endpoints --------------------------------------------------------------------

class WebhookIn(Schema):
    url = Str(required=True, validate=[validate.Length(min=1, max=MAX_URL_LENGTH),
                                       FullMatch(URL_PATTERN, error="must be an http(s) URL "
                                                 "without credentials or #fragment")])
    types = fields.List(Str(validate=validate.OneOf(feed.PUBLIC_TYPE_NAMES)), required=True,
                        validate=validate.Length(min=1, max=100),
                        metadata={"description": TYPES_HELP})
    description = Text(500, blank=True, load_default="")


class DisableIn(Schema):
    reason = Text(500, load_default="disabled by an operator")


class RotateIn(Schema):
    grace_s = StrictInt(load_default=DEFAULT_GRACE_S,
                        validate=validate.Range(min=0, max=MAX_GRACE_S),
                        metadata={"description": "Seconds the old secret keeps signing."})


class ReplayIn(Schema):
    from_position = StrictInt(required=True, validate=validate.Range(min=0, max=MAX_POSITION))


class WebhookOut(Schema):
    webhook_id = fields.String()
    url = fields.String()
    types = fields.List(fields.String())
    description = fields.String()
    status = fields.String(metadata={"enum": ["enabled", "disabled"]})
    disabled_reason = fields.String(allow_none=True)
    cursor = fields.Integer(allow_none=True, metadata={
        "description": "Every event up to this position was delivered or given up on "
                       "(null: no sender has started yet)."})
    failing_since = fields.String(allow_none=True)
    position = fields.Integer()


class WebhookCreatedOut(WebhookOut):
    secret = fields.String(allow_none=True, metadata={
        "description": "whsec_...: shown here (and on rotation) only."})


class SecretOut(Schema):
    webhook_id = fields.String()
    secret = fields.String(allow_none=True)
    position = fields.Integer()


class WebhookPage(Schema):
    items = fields.List(fields.Nested(WebhookOut))
    next_cursor = fields.String(allow_none=True)


class DeliveryQuery(PageQuery):
    status = Str(load_default=None, validate=validate.OneOf(["delivered", "retrying",
                                                             "failed"]))
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_POSITION),
                           metadata={"description": "Only attempts after this delivery_id."})


class DeliveryOut(Schema):
    delivery_id = fields.Integer()
    event_id = fields.String()
    type = fields.String()
    position = fields.Integer()
    attempt = fields.Integer()
    at = fields.String()
    status_code = fields.Integer(allow_none=True)
    latency_ms = fields.Integer()
    error = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": ["delivered", "retrying", "failed"]})


class DeliveryPage(Schema):
    items = fields.List(fields.Nested(DeliveryOut))
    next_cursor = fields.String(allow_none=True)


class ReplayOut(WebhookOut):
    from_position = fields.Integer()


def _delivery_state(conn: Any, webhook_ids: list[str]) -> dict[str, Any]:
    rows = conn.execute(select(webhook_cursors).where(
        webhook_cursors.c.webhook_id.in_(webhook_ids))).all()
    return {row.webhook_id: row for row in rows}


def _endpoint_view(endpoint: WebhookEndpoint, state: Any) -> dict[str, Any]:
    """The endpoint and its delivery state (a cursor of null: no sender has started)."""
    return {**endpoint.view(), "cursor": state.position if state is not None else None,
            "failing_since": _iso(state.failing_since) if state is not None else None}


def _iso(at: Any) -> str | None:
    return utc(at).isoformat() if at is not None else None


def _with_endpoint(response: Any, secret: bool = False) -> Any:
    """A command's reply, completed with the endpoint's delivery state (and the secret it
    names: replies never hold it, so the idempotency store never keeps it in clear)."""
    body = response.get_json()
    if response.status_code >= 300:
        return response
    app = fenxiao()
    endpoint = app.webhook(body["webhook_id"])
    version = body.pop("secret_version")
    if secret:
        body["secret"] = endpoint.secret_of_version(version)
    with read_connection(app.engine) as conn:
        state = _delivery_state(conn, [endpoint.webhook_id]).get(endpoint.webhook_id)
    reply = jsonify({**body, **_endpoint_view(endpoint, state)})
    reply.status_code = response.status_code
    return reply


@blp.route("/webhooks", methods=["POST"])
@requires("admin")
@blp.arguments(WebhookIn)
@blp.response(201, WebhookCreatedOut)
def register(body: dict[str, Any]) -> Any:
    """Register an endpoint; its signing secret is in this answer only.

    The URL must be http(s); a host that resolves to a private, loopback or link-local
    address is refused (409 webhook_url_refused) unless FENXIAO_WEBHOOK_ALLOW_PRIVATE=1,
    and checked again at every delivery. Deliveries start with the events after this
    registration; replay to send earlier ones."""
    check_destination(body["url"], fenxiao().settings.webhook_allow_private)
    types = tuple(dict.fromkeys(body["types"]))  # a type named twice is named once
    return _with_endpoint(run_command(RegisterWebhook(body["url"], types,
                                                      body["description"])), secret=True)


@blp.route("/webhooks", methods=["GET"])
@requires("admin")
@blp.arguments(PageQuery, location="query")
@blp.response(200, WebhookPage)
def list_webhooks(query: dict[str, Any]) -> Any:
    """Every endpoint, oldest first, with its delivery cursor."""
    app = fenxiao()
    cursor = decode_cursor(query["cursor"], int)
    after = cursor[0] if cursor else 0
    found = [(e, p) for e, p in app.webhook_endpoints() if p > after]
    page = found[:query["limit"]]
    with read_connection(app.engine) as conn:
        states = _delivery_state(conn, [e.webhook_id for e, _ in page])
        head = feed.log_head(conn)
    items = [_endpoint_view(e, states.get(e.webhook_id)) for e, _ in page]
    more = len(found) > query["limit"]
    return query_response({"items": items, "next_cursor": encode_cursor(page[-1][1])
                           if more else None}, head)


@blp.route("/webhooks/<webhook_id>", methods=["GET"])
@requires("admin")
@blp.arguments(NoBody, location="query")
@blp.response(200, WebhookOut)
def get_webhook(_query: dict[str, Any], webhook_id: str) -> Any:
    app = fenxiao()
    endpoint = app.webhook(webhook_id)
    with read_connection(app.engine) as conn:
        state = _delivery_state(conn, [webhook_id]).get(webhook_id)
        head = feed.log_head(conn)
    return query_response(_endpoint_view(endpoint, state), head)


@blp.route("/webhooks/<webhook_id>/disable", methods=["POST"])
@requires("admin")
@blp.arguments(DisableIn, required=False)
@blp.response(200, WebhookOut)
def disable(body: dict[str, Any], webhook_id: str) -> Any:
    """Stop deliveries (409 if already disabled); enabling resumes from the cursor."""
    return _with_endpoint(run_command(DisableWebhook(webhook_id, body["reason"])))


@blp.route("/webhooks/<webhook_id>/enable", methods=["POST"])
@requires("admin")
@blp.arguments(NoBody, required=False)
@blp.response(200, WebhookOut)
def enable(_body: dict[str, Any], webhook_id: str) -> Any:
    """Resume deliveries from the cursor, retries starting afresh (409 if enabled)."""
    return _with_endpoint(run_command(EnableWebhook(webhook_id)))


@blp.route("/webhooks/<webhook_id>/ping", methods=["POST"])
@requires("admin")
@blp.arguments(NoBody, required=False)
@blp.response(200, WebhookOut)
def ping(_body: dict[str, Any], webhook_id: str) -> Any:
    """Send a `webhook.ping` event to this endpoint (in log order, signed, retried like
    any event); 409 if the endpoint is disabled."""
    return _with_endpoint(run_command(PingWebhook(webhook_id)))


@blp.route("/webhooks/<webhook_id>/rotate-secret", methods=["POST"])
@requires("admin")
@blp.arguments(RotateIn, required=False)
@blp.response(200, SecretOut)
def rotate_secret(body: dict[str, Any], webhook_id: str) -> Any:
    """A new signing secret, shown here only; the old one also signs for `grace_s`
    seconds (default a day, at most a week; 0: it stops at once)."""
    response = _with_endpoint(run_command(RotateWebhookSecret(webhook_id, body["grace_s"])),
                              secret=True)
    if response.status_code >= 300:
        return response
    reply = response.get_json()
    out = jsonify({"webhook_id": reply["webhook_id"], "secret": reply["secret"],
                   "position": reply["position"]})
    out.status_code = response.status_code
    return out


@blp.route("/webhooks/<webhook_id>/replay", methods=["POST"])
@requires("admin")
@blp.arguments(ReplayIn)
@blp.response(202, ReplayOut)
def replay(body: dict[str, Any], webhook_id: str) -> Any:
    """Send again every event after `from_position` (with the ids they had), in log
    order; 409 position_beyond_log_head for a position the log has not reached."""
    return _with_endpoint(run_command(ReplayWebhook(webhook_id, body["from_position"])))


@blp.route("/webhooks/<webhook_id>/deliveries", methods=["GET"])
@requires("admin")
@blp.arguments(DeliveryQuery, location="query")
@blp.response(200, DeliveryPage)
def deliveries(query: dict[str, Any], webhook_id: str) -> Any:
    """Every delivery attempt to this endpoint, oldest first: when, the answer's status
    code (null: no answer), how long it took, the error, and what became of the event
    (`delivered`, `retrying`, `failed`: given up on after the last retry)."""
    app = fenxiao()
    app.webhook(webhook_id)  # 404 for an unknown endpoint
    cursor = decode_cursor(query["cursor"], int)
    after = max(query["after"], cursor[0] if cursor else 0)
    d = webhook_deliveries.c
    conditions = [d.webhook_id == webhook_id, d.delivery_id > after]
    if query["status"] is not None:
        conditions.append(d.outcome == query["status"])
    with read_connection(app.engine) as conn:
        rows = conn.execute(select(webhook_deliveries).where(*conditions)
                            .order_by(d.delivery_id).limit(query["limit"] + 1)).all()
        head = feed.log_head(conn)
    items = [{"delivery_id": r.delivery_id, "event_id": r.event_id, "type": r.event_type,
              "position": r.position, "attempt": r.attempt, "at": _iso(r.at),
              "status_code": r.status_code, "latency_ms": r.latency_ms, "error": r.error,
              "status": r.outcome} for r in rows[:query["limit"]]]
    more = len(rows) > query["limit"]
    return query_response({"items": items, "next_cursor": encode_cursor(items[-1][
        "delivery_id"]) if more else None}, head)
