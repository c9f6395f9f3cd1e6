"""Distributors, commission rules, earnings and withdrawals."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from werkzeug.routing import BaseConverter

from api.auth import ANY_ROLE, owned_by, requires
from api.http import (decode_cursor, fenxiao, page, query_response, read_position, reading,
                      run_command)
from api.openapi import exclusive_groups
from api.schemas import (FullMatch, Id, MoneySchema, NoBody, PageQuery, PositiveMoneySchema,
                         ReadQuery, Str, StrictInt, Text, require_currency)
from commands.messages import (ApplyDistributor, ApproveDistributor, ApproveWithdrawal,
                               ChangeUpline, RejectDistributor, RejectWithdrawal,
                               ReinstateDistributor, RequestWithdrawal, SetCommissionRule,
                               SuspendDistributor)
from domain.approvals import AWAITING
from domain.errors import NotFound
from domain.ledger import Withdrawal
from projections.commissions import CommissionsProjection, commissions_of
from projections.distributors import (DistributorsProjection, commission_rules_in_force,
                                      direct_downline, get_distributor, list_distributors)
from projections.ledger import LedgerProjection, earnings_of, list_withdrawals

owned_by("withdrawal_id", lambda app, withdrawal_id: (
    found.distributor_id if (found := app.find(Withdrawal.create_id(withdrawal_id)))
    else None))
blp = Blueprint("distributors", __name__, url_prefix="/api/v1",
                description="Distributors, commission rules, earnings and withdrawals")
RESERVED_ID = "applications"  # /distributors/applications is the application endpoint


class DistributorIdConverter(BaseConverter):
    """A distributor id in a path: any segment but "applications", so no GET route also
    answers for the applications endpoint (and a 405's Allow header lists only what the
    OpenAPI document says)."""

    regex = rf"(?!{RESERVED_ID}$)[^/]+"
STAFF = ("admin", "operator", "auditor")
# The compact forms the domain accepts (domain.distributors.normalize_phone).
PHONE_PATTERN = r"^(?:(?:\+?86)?1[3-9][0-9]{9}|\+[1-9][0-9]{7,14})$"


class ApplicationIn(Schema):
    name = Text(200, required=True)
    phone = Str(required=True, validate=FullMatch(PHONE_PATTERN, error=(
        "must be a mainland mobile number (1[3-9] and 9 digits, +86 optional) or an E.164 "
        "number (+ country code and number), without spaces")))
    referral_code = Str(load_default=None, validate=FullMatch(
        r"^[A-Za-z0-9]{4,20}$", error="not a referral code"))
    distributor_id = Id(load_default=None, also=validate.NoneOf(
        [RESERVED_ID], error=f"{RESERVED_ID} is reserved"),
        metadata={"not": {"enum": [RESERVED_ID]}})


class ReasonIn(Schema):
    reason = Text(500, multiline=True, required=True)


class UplineIn(Schema):
    upline_id = Id(required=True, allow_none=True)
    reason = Text(500, multiline=True, required=True)


class DistributorOut(Schema):
    distributor_id = fields.String()
    name = fields.String()
    status = fields.String()
    referral_code = fields.String(allow_none=True)
    upline_id = fields.String(allow_none=True)
    downline_count = fields.Integer()
    position = fields.Integer(allow_none=True)  # null when nothing was recorded


class DistributorPage(Schema):
    items = fields.List(fields.Nested(DistributorOut))
    next_cursor = fields.String(allow_none=True)


class EarningsOut(Schema):
    distributor_id = fields.String()
    currency = fields.String()
    pending = fields.Integer()
    available = fields.Integer()
    withdrawing = fields.Integer()
    paid_out = fields.Integer()
    reversed = fields.Integer()
    lifetime_earned = fields.Integer()


class RuleIn(Schema):
    sku = Id(load_default=None)
    level1_rate_bp = StrictInt(validate=validate.Range(min=0, max=10_000))
    level2_rate_bp = StrictInt(validate=validate.Range(min=0, max=10_000))
    level1_fixed = StrictInt(validate=validate.Range(min=0, max=10**9))
    level2_fixed = StrictInt(validate=validate.Range(min=0, max=10**9))

    @validates_schema
    def one_kind(self, data: dict[str, Any], **_: Any) -> None:
        rates = {"level1_rate_bp", "level2_rate_bp"} & data.keys()
        fixed = {"level1_fixed", "level2_fixed"} & data.keys()
        if not ((len(rates) == 2 and not fixed) or (len(fixed) == 2 and not rates)):
            raise ValidationError("give level1_rate_bp and level2_rate_bp, or level1_fixed "
                                  "and level2_fixed", "_schema")


exclusive_groups("RuleIn", ("level1_rate_bp", "level2_rate_bp"),
                 ("level1_fixed", "level2_fixed"))


class RuleOut(Schema):
    sku = fields.String(allow_none=True)
    kind = fields.String()
    version = fields.Integer()
    level1_rate_bp = fields.Integer()
    level2_rate_bp = fields.Integer()
    level1_fixed = fields.Integer()
    level2_fixed = fields.Integer()
    position = fields.Integer(allow_none=True)


class ReversalOut(Schema):
    """One reversal of a commission entry: the refund (or cancellation) behind it."""

    amount = fields.Integer()
    clawback = fields.Boolean()  # true: taken back from available (it had matured)
    refunded_total = fields.Integer()  # the line's refunds so far, this one included
    refund_reference = fields.String(allow_none=True)  # null: a cancellation
    cause = fields.String(allow_none=True)
    at = fields.String()


class CommissionOut(Schema):
    order_id = fields.String()
    line_no = fields.Integer()
    sku = fields.String()
    level = fields.Integer()
    base = fields.Integer()
    rate_bp = fields.Integer(allow_none=True)
    amount = fields.Integer()
    reversed = fields.Integer()
    status = fields.String()
    forfeit_reason = fields.String(allow_none=True)
    rule = fields.Dict(allow_none=True)
    currency = fields.String()
    reversals = fields.List(fields.Nested(ReversalOut))


class CommissionPage(Schema):
    items = fields.List(fields.Nested(CommissionOut))
    next_cursor = fields.String(allow_none=True)


class RuleList(Schema):
    items = fields.List(fields.Nested(RuleOut))


class WithdrawalIn(Schema):
    amount = fields.Nested(PositiveMoneySchema, required=True)
    withdrawal_id = Id(load_default=None)


class PaymentIn(Schema):
    payment_reference = Text(200, required=True)


class WithdrawalOut(Schema):
    withdrawal_id = fields.String()
    distributor_id = fields.String()
    amount = fields.Nested(MoneySchema)
    status = fields.String()
    payment_reference = fields.String(allow_none=True)
    approvals = fields.List(fields.String())  # who approved it so far, in order
    position = fields.Integer(allow_none=True)  # null when nothing was recorded


DISTRIBUTOR_STATUSES = ("pending", "active", "suspended", "rejected")
WITHDRAWAL_STATUSES = ("requested", AWAITING, "paid", "rejected")


class DistributorQuery(PageQuery):
    status = Str(load_default=None, validate=validate.OneOf(DISTRIBUTOR_STATUSES))
    upline_id = Id(load_default=None)


class DistributorListed(Schema):
    distributor_id = fields.String()
    name = fields.String()
    status = fields.String()
    referral_code = fields.String(allow_none=True)
    upline_id = fields.String(allow_none=True)
    applied_at = fields.DateTime()


class DistributorList(Schema):
    items = fields.List(fields.Nested(DistributorListed))
    next_cursor = fields.String(allow_none=True)


class WithdrawalQuery(PageQuery):
    status = Str(load_default=None, validate=validate.OneOf(WITHDRAWAL_STATUSES))
    distributor_id = Id(load_default=None)


class WithdrawalListed(Schema):
    withdrawal_id = fields.String()
    distributor_id = fields.String()
    amount = fields.Integer()
    currency = fields.String()
    status = fields.String()
    requested_at = fields.DateTime()
    payment_reference = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    approvals = fields.List(fields.String())


class WithdrawalList(Schema):
    items = fields.List(fields.Nested(WithdrawalListed))
    next_cursor = fields.String(allow_none=True)


# -- commands -------------------------------------------------------------------------

@blp.route("/distributors/applications", methods=["POST"])
@requires("integration", "admin", "operator")
@blp.arguments(ApplicationIn)
@blp.response(201, DistributorOut)
def apply(body: dict[str, Any]) -> Any:
    return run_command(ApplyDistributor(body["name"], body["phone"], body["referral_code"],
                                        body["distributor_id"]))


@blp.route("/distributors/<distributor:distributor_id>/approve", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(NoBody, required=False)
@blp.response(200, DistributorOut)
def approve(_body: dict[str, Any], distributor_id: str) -> Any:
    return run_command(ApproveDistributor(distributor_id))


@blp.route("/distributors/<distributor:distributor_id>/reject", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(ReasonIn)
@blp.response(200, DistributorOut)
def reject(body: dict[str, Any], distributor_id: str) -> Any:
    return run_command(RejectDistributor(distributor_id, body["reason"]))


@blp.route("/distributors/<distributor:distributor_id>/suspend", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(ReasonIn)
@blp.response(200, DistributorOut)
def suspend(body: dict[str, Any], distributor_id: str) -> Any:
    return run_command(SuspendDistributor(distributor_id, body["reason"]))


@blp.route("/distributors/<distributor:distributor_id>/reinstate", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(ReasonIn)
@blp.response(200, DistributorOut)
def reinstate(body: dict[str, Any], distributor_id: str) -> Any:
    return run_command(ReinstateDistributor(distributor_id, body["reason"]))


@blp.route("/distributors/<distributor:distributor_id>/upline", methods=["POST"])
@requires("admin")
@blp.arguments(UplineIn)
@blp.response(200, DistributorOut)
def change_upline(body: dict[str, Any], distributor_id: str) -> Any:
    return run_command(ChangeUpline(distributor_id, body["upline_id"], body["reason"]))


@blp.route("/commission-rules", methods=["POST"])
@requires("admin")
@blp.arguments(RuleIn)
@blp.response(201, RuleOut)
def set_rule(body: dict[str, Any]) -> Any:
    kind = "rate" if "level1_rate_bp" in body else "fixed"
    level1 = body.get("level1_rate_bp", body.get("level1_fixed"))
    level2 = body.get("level2_rate_bp", body.get("level2_fixed"))
    return run_command(SetCommissionRule(body["sku"], kind, level1, level2))


@blp.route("/distributors/<distributor:distributor_id>/withdrawals", methods=["POST"])
@requires("distributor", "admin")
@blp.arguments(WithdrawalIn)
@blp.response(201, WithdrawalOut)
def request_withdrawal(body: dict[str, Any], distributor_id: str) -> Any:
    app = fenxiao()
    amount = require_currency(body["amount"], app.settings.currency, "amount")
    return run_command(RequestWithdrawal(distributor_id, amount, body["withdrawal_id"]))


@blp.route("/withdrawals/<withdrawal_id>/approve", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(PaymentIn)
@blp.response(200, WithdrawalOut)
@blp.alt_response(202, schema=WithdrawalOut, description="The first of two approvals (the "
                  "amount is above FENXIAO_FOUR_EYES_MIN): another token's approval pays it")
def approve_withdrawal(body: dict[str, Any], withdrawal_id: str) -> Any:
    return run_command(ApproveWithdrawal(withdrawal_id, body["payment_reference"]))


@blp.route("/withdrawals/<withdrawal_id>/reject", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(ReasonIn)
@blp.response(200, WithdrawalOut)
def reject_withdrawal(body: dict[str, Any], withdrawal_id: str) -> Any:
    return run_command(RejectWithdrawal(withdrawal_id, body["reason"]))


# -- queries --------------------------------------------------------------------------

def known_distributor(conn: Any, distributor_id: str) -> dict[str, Any]:
    found = get_distributor(conn, distributor_id)
    if found is None:
        raise NotFound(f"distributor {distributor_id} not found",
                       distributor_id=distributor_id)
    return found


@blp.route("/distributors/<distributor:distributor_id>", methods=["GET"])
@requires(*STAFF, "distributor")
@blp.arguments(ReadQuery, location="query")
@blp.response(200, DistributorOut)
def distributor(query: dict[str, Any], distributor_id: str) -> Any:
    with reading() as conn:
        position = read_position([DistributorsProjection.name], query["min_position"])
        return query_response(known_distributor(conn, distributor_id), position)


@blp.route("/distributors/<distributor:distributor_id>/downline", methods=["GET"])
@requires(*STAFF, "distributor")
@blp.arguments(PageQuery, location="query")
@blp.response(200, DistributorPage)
def downline(query: dict[str, Any], distributor_id: str) -> Any:
    with reading() as conn:
        position = read_position([DistributorsProjection.name], query["min_position"])
        known_distributor(conn, distributor_id)
        after = decode_cursor(query["cursor"], str)
        rows = direct_downline(conn, distributor_id, after and after[0], query["limit"] + 1)
    return query_response(page(rows, query["limit"], lambda d: d["distributor_id"]),
                          position)


@blp.route("/distributors/<distributor:distributor_id>/earnings", methods=["GET"])
@requires(*STAFF, "distributor")
@blp.arguments(ReadQuery, location="query")
@blp.response(200, EarningsOut)
def earnings(query: dict[str, Any], distributor_id: str) -> Any:
    app = fenxiao()
    with reading() as conn:
        position = read_position([LedgerProjection.name, DistributorsProjection.name],
                                 query["min_position"])
        known_distributor(conn, distributor_id)
        return query_response(earnings_of(conn, distributor_id, app.settings.currency),
                              position)


@blp.route("/distributors/<distributor:distributor_id>/commissions", methods=["GET"])
@requires(*STAFF, "distributor")
@blp.arguments(PageQuery, location="query")
@blp.response(200, CommissionPage)
def commissions(query: dict[str, Any], distributor_id: str) -> Any:
    with reading() as conn:
        position = read_position([CommissionsProjection.name, DistributorsProjection.name],
                                 query["min_position"])
        known_distributor(conn, distributor_id)
        rows = commissions_of(conn, distributor_id,
                              decode_cursor(query["cursor"], datetime, str, int),
                              query["limit"] + 1)
    body = page(rows, query["limit"], lambda c: c["cursor"])
    for item in body["items"]:
        del item["cursor"]
    return query_response(body, position)


@blp.route("/distributors", methods=["GET"])
@requires(*STAFF)
@blp.arguments(DistributorQuery, location="query")
@blp.response(200, DistributorList)
def distributors_list(query: dict[str, Any]) -> Any:
    """The review queue (`status=pending`) and the network, oldest application first."""
    with reading() as conn:
        position = read_position([DistributorsProjection.name], query["min_position"])
        rows = list_distributors(conn, query["status"], query["upline_id"],
                                 decode_cursor(query["cursor"], datetime, str),
                                 query["limit"] + 1)
    return query_response(page(rows, query["limit"],
                               lambda d: [d["applied_at"], d["distributor_id"]]), position)


@blp.route("/withdrawals", methods=["GET"])
@requires(*STAFF, "distributor")
@blp.arguments(WithdrawalQuery, location="query")
@blp.response(200, WithdrawalList)
def withdrawals_list(query: dict[str, Any]) -> Any:
    """The payout queue, oldest request first; a distributor's token sees its own only
    (another's id as the filter finds nothing, as GET /orders does)."""
    principal = g.principal
    with reading() as conn:
        position = read_position([LedgerProjection.name], query["min_position"])
        rows = withdrawal_page(conn, query, principal.distributor_id
                               if principal.role == "distributor" else None)
    return query_response(rows, position)


def withdrawal_page(conn: Any, query: dict[str, Any], own: str | None) -> dict[str, Any]:
    """A page of GET /withdrawals (the console's payout queue too)."""
    distributor_id = query["distributor_id"]
    if own is not None and distributor_id not in (None, own):
        return {"items": [], "next_cursor": None}
    rows = list_withdrawals(conn, query["status"], own or distributor_id,
                            decode_cursor(query["cursor"], datetime, str), query["limit"] + 1)
    return page(rows, query["limit"], lambda w: [w["requested_at"], w["withdrawal_id"]])


@blp.route("/commission-rules", methods=["GET"])
@requires(*ANY_ROLE)
@blp.arguments(ReadQuery, location="query")
@blp.response(200, RuleList)
def rules(query: dict[str, Any]) -> Any:
    with reading() as conn:
        position = read_position([DistributorsProjection.name], query["min_position"])
        return query_response({"items": commission_rules_in_force(conn)}, position)
