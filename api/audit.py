"""Audit: the event history and point-in-time views, computed from the log (commands/
audit.py). `GET /audit/verify` lives with the seal (api/seal.py)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, post_load, validate

from api.auth import owned_by, requires
from api.distributors import EarningsOut
from api.errors import ApiError
from api.http import decode_cursor, fenxiao, page, query_response
from api.orders import OrderOut
from api.schemas import FullMatch, Id, PageQuery, ReadQuery, Str
from commands import audit
from domain.errors import NotFound
from domain.ledger import DISTRIBUTOR_ACCOUNT, MERCHANT_ACCOUNTS, parse_account
from domain.orders import Order

owned_by("account", lambda _app, account: (parse_account(account) or (None,))[0])
blp = Blueprint("audit", __name__, url_prefix="/api/v1",
                description="Audit: event history and views as of a past position or time")
AUDITORS = ("auditor", "admin")
MAX_POSITION = 2**63 - 1
AS_OF_PATTERN = (r"^(?:[0-9]{1,19}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}"
                 r"(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}:[0-9]{2}))$")
AS_OF_HELP = ("A log position (an integer, at most the log head), or an ISO-8601 time with "
              "a UTC offset: the log up to the first event recorded after that time, by "
              "the application clock. Default: the log head.")


def in_utc(at: datetime) -> datetime:
    """`at` in UTC, or a ValueError if that is outside the years 1-9999."""
    try:
        return at.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("outside the years 1-9999 in UTC") from None


def parse_as_of(text: str | None) -> int | datetime | None:
    if text is None:
        return None
    if text.isdigit():
        if int(text) > MAX_POSITION:
            raise ValidationError({"as_of": ["beyond any log position"]})
        return int(text)
    try:
        return in_utc(datetime.fromisoformat(text))
    except ValueError as error:
        raise ValidationError({"as_of": [f"not a valid time: {error}"]}) from None


class UtcDateTime(fields.AwareDateTime):
    """An ISO-8601 time with an offset, given back in UTC."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        try:
            return in_utc(super()._deserialize(value, attr, data, **kwargs))
        except ValueError as error:
            raise ValidationError(str(error)) from None


class AsOfQuery(ReadQuery):
    as_of = Str(load_default=None, metadata={"description": AS_OF_HELP}, validate=FullMatch(
        AS_OF_PATTERN, error="must be a log position or an ISO-8601 time with an offset"))

    @post_load
    def parse(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {**data, "as_of": parse_as_of(data["as_of"])}


class EventQuery(PageQuery):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_POSITION),
                           metadata={"description": "Only events after this log position."})
    aggregate_id = fields.UUID(load_default=None, metadata={
        "description": "One aggregate's events (its id as events carry it)."})
    order_id = Id(load_default=None, metadata={"description": "One order's events."})
    type = Str(load_default=None, validate=validate.OneOf(sorted(audit.event_types())),
               metadata={"description": "Events of one type, e.g. Order.OrderPaid."})
    time_from = UtcDateTime(data_key="from", load_default=None, metadata={
        "description": "Events recorded at or after this time."})
    time_to = UtcDateTime(data_key="to", load_default=None, metadata={
        "description": "Events recorded at or before this time."})


class AuditEventOut(Schema):
    position = fields.Integer()
    aggregate_id = fields.String()
    version = fields.Integer()
    type = fields.String()
    timestamp = fields.String()
    actor = fields.String(allow_none=True)
    command_id = fields.String(allow_none=True)
    idempotency_key = fields.String(allow_none=True)
    correlation_id = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)  # the HTTP request that caused it, if any
    causation_id = fields.String(allow_none=True)
    data = fields.Dict()


class AuditEventPage(Schema):
    items = fields.List(fields.Nested(AuditEventOut))
    next_cursor = fields.String(allow_none=True)


class AsOfOut(Schema):
    position = fields.Integer(metadata={"description": "The log position of the view."})
    time = fields.String(allow_none=True, metadata={
        "description": "The time asked for; else when the last event at or before the "
                       "position was recorded (null: the log was empty then)."})


class AccountTotalsOut(Schema):
    account = fields.String()
    debit = fields.Integer()
    credit = fields.Integer()
    balance = fields.Integer()


class TrialBalanceOut(Schema):
    as_of = fields.Nested(AsOfOut)
    currency = fields.String()
    accounts = fields.List(fields.Nested(AccountTotalsOut))
    total = fields.Integer()


class AccountBalanceOut(AccountTotalsOut):
    currency = fields.String()
    as_of = fields.Nested(AsOfOut)


class AuditOrderOut(OrderOut):
    as_of = fields.Nested(AsOfOut)


class AuditEarningsOut(EarningsOut):
    as_of = fields.Nested(AsOfOut)


def log_head(min_position: int | None) -> int:
    """The log is read directly, so it is always current: there is nothing to wait for,
    only a min_position beyond the head to refuse (as every query does)."""
    head = fenxiao().last_position()
    if min_position and min_position > head:
        raise ApiError(422, "validation_error",
                       f"min_position {min_position} is beyond the log head {head}",
                       min_position=[f"must be at most the log head, {head}"], head=head)
    return head


@blp.route("/audit/events", methods=["GET"])
@requires(*AUDITORS)
@blp.arguments(EventQuery, location="query")
@blp.response(200, AuditEventPage)
def events(query: dict[str, Any]) -> Any:
    """The event log, each event with its metadata.

    In log order, with the actor, the command and its Idempotency-Key, correlation and
    causation ids, and `timestamp`: when it was recorded, by the application clock
    (events recorded before that stamp existed show the library's own timestamp).
    `type` is the aggregate and event, e.g. "Order.OrderPaid".

    Personal data: an admin sees the data as recorded; an auditor sees phone numbers
    masked but for their last four digits, people's names (customers, distributors) but
    for their first character, and shipping addresses but for the region.

    Pages: `after` a log position, then `next_cursor`. A time range (`from`, `to`) is
    resolved to log positions as `as_of` is, so with a clock that never goes back it is
    exactly the events recorded in it."""
    head = log_head(query["min_position"])
    cursor = decode_cursor(query["cursor"], int)
    after = max(query["after"], cursor[0] if cursor else 0)
    aggregate_ids = {query["aggregate_id"]} - {None}
    if query["order_id"] is not None:
        aggregate_ids.add(Order.create_id(query["order_id"]))
    if len(aggregate_ids) > 1:  # an aggregate id and an order that is another aggregate
        return query_response({"items": [], "next_cursor": None}, head)
    topic = audit.event_types()[query["type"]] if query["type"] is not None else None
    where = audit.EventFilter(after=after, aggregate_id=next(iter(aggregate_ids), None),
                              topic=topic, time_from=query["time_from"],
                              time_to=query["time_to"])
    items, head = audit.list_events(fenxiao(), where, query["limit"] + 1,
                                    masked=g.principal.role != "admin")
    return query_response(page(items, query["limit"], lambda e: [e["position"]]), head)


@blp.route("/audit/trial-balance", methods=["GET"])
@requires(*AUDITORS)
@blp.arguments(AsOfQuery, location="query")
@blp.response(200, TrialBalanceOut)
def trial_balance(query: dict[str, Any]) -> Any:
    """The trial balance as of a log position or a time.

    Every account's debits, credits and balance (debit - credit), computed from the log;
    `total`, the sum of the balances, is 0."""
    head = log_head(query["min_position"])
    return query_response(audit.trial_balance(fenxiao(), query["as_of"]), head)


@blp.route("/audit/accounts/<account>/balance", methods=["GET"])
@requires(*AUDITORS)
@blp.arguments(AsOfQuery, location="query")
@blp.response(200, AccountBalanceOut)
def account_balance(query: dict[str, Any], account: str) -> Any:
    """One ledger account as of a log position or a time.

    E.g. `merchant:cash`, `distributor:D1:pending`; computed from the log. An account
    nothing had moved yet is all zeros; a name no account can have is 404."""
    head = log_head(query["min_position"])
    if account not in MERCHANT_ACCOUNTS and not DISTRIBUTOR_ACCOUNT.match(account):
        raise NotFound(f"account {account} not found", account=account)
    return query_response(audit.account_balance(fenxiao(), account, query["as_of"]), head)


@blp.route("/audit/orders/<order_id>", methods=["GET"])
@requires(*AUDITORS)
@blp.arguments(AsOfQuery, location="query")
@blp.response(200, AuditOrderOut)
def order(query: dict[str, Any], order_id: str) -> Any:
    """The order as it stood at a log position or a time.

    Its events replayed up to there, shown as GET /orders/{order_id} shows it. 404 if it
    had not been placed by then."""
    head = log_head(query["min_position"])
    return query_response(audit.order_as_of(fenxiao(), order_id, query["as_of"]), head)


@blp.route("/audit/distributors/<distributor:distributor_id>/earnings", methods=["GET"])
@requires(*AUDITORS)
@blp.arguments(AsOfQuery, location="query")
@blp.response(200, AuditEarningsOut)
def earnings(query: dict[str, Any], distributor_id: str) -> Any:
    """A distributor's earnings as of a log position or a time.

    As GET /distributors/{distributor_id}/earnings shows them, computed from the log.
    404 if it had not applied by then."""
    head = log_head(query["min_position"])
    return query_response(audit.earnings_as_of(fenxiao(), distributor_id, query["as_of"]),
                          head)
