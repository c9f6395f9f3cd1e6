"""After-sales cases: returns, exchanges, repairs, compensation, refunds."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.auth import owned_by, requires
from api.fulfilment import ShipmentOut
from api.http import (decode_cursor, fenxiao, page, query_response, read_position, reading,
                      run_command)
from api.openapi import required_when
from api.schemas import (Id, MoneySchema, NoBody, PageQuery, PositiveMoneySchema, Quantity,
                         ReadQuery, Str, StrictBool, Text, require_currency)
from commands.messages import (ApproveCase, CloseCase, ReceiveCase, RefundCase, RejectCase,
                               RequestCase, ShipCase)
from domain.aftersales import STATUSES, TYPES, Case
from domain.errors import NotFound
from projections.aftersales import AfterSalesProjection, get_case, list_cases
from projections.shipments import ShipmentsProjection, shipments_of_cases

owned_by("case_id", lambda app, case_id: (
    found.distributor_id if (found := app.find(Case.create_id(case_id))) else None))
blp = Blueprint("aftersales", __name__, url_prefix="/api/v1",
                description="After-sales cases and refunds")
READS = [AfterSalesProjection.name, ShipmentsProjection.name]
MAX_LINES = 100


class CaseLineIn(Schema):
    sku = Id(required=True)
    quantity = Quantity(required=True)


class CaseIn(Schema):
    case_id = Id(load_default=None)
    order_id = Id(required=True)
    type = Str(required=True, validate=validate.OneOf(TYPES))
    lines = fields.List(fields.Nested(CaseLineIn), required=True,
                        validate=validate.Length(min=1, max=MAX_LINES))
    reason = Text(500, multiline=True, required=True)
    amount = fields.Nested(PositiveMoneySchema, load_default=None)  # compensation only

    @validates_schema
    def amount_for_compensation(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("type") == "compensation") != (data.get("amount") is not None):
            raise ValidationError("a compensation names an amount, and only a compensation",
                                  "amount")


required_when("CaseIn", "type", "compensation", "amount")


class CaseReasonIn(Schema):
    reason = Text(500, multiline=True, load_default=None)


class CaseReceiveIn(Schema):
    restock = StrictBool(required=True)
    warehouse_id = Id(required=True)


class CaseRefundIn(Schema):
    # Zero is the refund of goods paid nothing (a line discounted to zero): any other
    # zero is refused with 422 validation_error by the case itself.
    amount = fields.Nested(MoneySchema, required=True, metadata={
        "description": "positive; zero only when the case's goods were paid nothing"})
    refund_reference = Text(200, required=True)


class CaseLineOut(Schema):
    sku = fields.String()
    quantity = fields.Integer()


class CaseHistoryOut(Schema):
    status = fields.String()
    at = fields.DateTime()
    actor = fields.String()


class RefundApprovalOut(Schema):
    amount = fields.Integer()
    refund_reference = fields.String()
    approved_by = fields.List(fields.String())


class CaseOut(Schema):
    case_id = fields.String()
    order_id = fields.String()
    type = fields.String()
    status = fields.String()
    lines = fields.List(fields.Nested(CaseLineOut))
    reason = fields.String()
    amount = fields.Integer(allow_none=True)  # a compensation's amount, else null
    refunded = fields.Integer()
    currency = fields.String()
    history = fields.List(fields.Nested(CaseHistoryOut))
    # While a refund waits for its second approval: what the second must name (else null).
    refund_approval = fields.Nested(RefundApprovalOut, allow_none=True)
    # An exchange's replacement or a repair's return, on the orders' fulfilment path.
    shipments = fields.List(fields.Nested(ShipmentOut))


class CaseReply(CaseOut):
    position = fields.Integer(allow_none=True)


class CasePage(Schema):
    items = fields.List(fields.Nested(CaseOut))
    next_cursor = fields.String(allow_none=True)


class CaseQuery(PageQuery):
    status = Str(load_default=None, validate=validate.OneOf(STATUSES))
    order_id = Id(load_default=None)


# -- commands -------------------------------------------------------------------------

@blp.route("/after-sales", methods=["POST"])
@requires("integration", "admin", "operator")
@blp.arguments(CaseIn)
@blp.response(201, CaseReply)
def request_case(body: dict[str, Any]) -> Any:
    app = fenxiao()
    amount = (require_currency(body["amount"], app.settings.currency, "amount")
              if body["amount"] is not None else None)
    lines = tuple((x["sku"], x["quantity"]) for x in body["lines"])
    return run_command(RequestCase(
        body["order_id"], body["type"], lines, body["reason"], amount, body["case_id"]))


@blp.route("/after-sales/<case_id>/approve", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(CaseReasonIn, required=False)  # no body: no reason
@blp.response(200, CaseReply)
def approve(body: dict[str, Any], case_id: str) -> Any:
    return run_command(ApproveCase(case_id, body["reason"]))


@blp.route("/after-sales/<case_id>/reject", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(CaseReasonIn, required=False)  # no body: no reason
@blp.response(200, CaseReply)
def reject(body: dict[str, Any], case_id: str) -> Any:
    return run_command(RejectCase(case_id, body["reason"]))


@blp.route("/after-sales/<case_id>/receive", methods=["POST"])
@requires("warehouse", "admin")
@blp.arguments(CaseReceiveIn)
@blp.response(200, CaseReply)
def receive(body: dict[str, Any], case_id: str) -> Any:
    return run_command(ReceiveCase(case_id, body["warehouse_id"], body["restock"]))


@blp.route("/after-sales/<case_id>/refund", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(CaseRefundIn)
@blp.response(200, CaseReply)
@blp.alt_response(202, schema=CaseReply, description="The first of two approvals (the "
                  "amount is above FENXIAO_FOUR_EYES_MIN): another token's refund with the "
                  "same amount and reference pays it")
def refund(body: dict[str, Any], case_id: str) -> Any:
    app = fenxiao()
    amount = require_currency(body["amount"], app.settings.currency, "amount")
    return run_command(RefundCase(case_id, amount, body["refund_reference"]))


@blp.route("/after-sales/<case_id>/ship", methods=["POST"])
@requires("warehouse", "admin", "operator")
@blp.arguments(NoBody, required=False)
@blp.response(200, CaseReply)
def ship(_body: dict[str, Any], case_id: str) -> Any:
    """Ship a received exchange's replacement (reserved like an order's; 409
    insufficient_stock when short, and the case may then be refunded instead) or a
    received repair's goods back to the customer (no stock moves)."""
    return run_command(ShipCase(case_id))


@blp.route("/after-sales/<case_id>/close", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(NoBody, required=False)
@blp.response(200, CaseReply)
def close(_body: dict[str, Any], case_id: str) -> Any:
    return run_command(CloseCase(case_id))


# -- queries --------------------------------------------------------------------------

@blp.route("/after-sales/<case_id>", methods=["GET"])
@requires("admin", "operator", "auditor", "integration", "distributor")
@blp.arguments(ReadQuery, location="query")
@blp.response(200, CaseOut)
def case(query: dict[str, Any], case_id: str) -> Any:
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        found = get_case(conn, case_id)
        if found is not None:
            found["shipments"] = shipments_of_cases(conn, [case_id])[case_id]
    if found is None:
        raise NotFound(f"case {case_id} not found", case_id=case_id)
    return query_response(found, position)


@blp.route("/after-sales", methods=["GET"])
@requires("admin", "operator", "auditor")
@blp.arguments(CaseQuery, location="query")
@blp.response(200, CasePage)
def cases(query: dict[str, Any]) -> Any:
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        rows = list_cases(conn, status=query["status"], order_id=query["order_id"],
                          after=decode_cursor(query["cursor"], datetime, str),
                          limit=query["limit"] + 1)
        body = page(rows, query["limit"], lambda c: c["cursor"])
        sent = shipments_of_cases(conn, [item["case_id"] for item in body["items"]])
    for item in body["items"]:
        del item["cursor"]
        item["shipments"] = sent[item["case_id"]]
    return query_response(body, position)
