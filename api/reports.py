"""Reports: sales that reconcile with the ledger, replenishment suggestions, and the
replenishment policy of each SKU."""
from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from api.auth import requires
from api.errors import ApiError
from api.http import (decode_cursor, fenxiao, page, query_response, read_position, reading,
                      run_command)
from api.schemas import Id, PageQuery, Str, StrictInt
from commands.messages import SetReplenishmentPolicy
from domain.replenishment import MAX_LEAD_TIME_DAYS, MAX_SAFETY_STOCK
from projections.inventory import InventoryProjection
from projections.orders import OrdersProjection
from projections.reports import (GROUPS, TOTALS, ReportsProjection, report_range,
                                 replenishment_report, sales_report, sales_totals)

blp = Blueprint("reports", __name__, url_prefix="/api/v1",
                description="Sales and replenishment reports")
DATE_OR_TIME = (r"^\d{4}-\d\d-\d\d([Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d))?$")


class DateOrTime(Str):
    """A date (YYYY-MM-DD) or an RFC 3339 date-time with its offset: checked here (the
    parsed value is no longer text for a validator) and documented as the pattern."""

    PATTERN = re.compile(DATE_OR_TIME)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(metadata={"pattern": DATE_OR_TIME}, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            if not self.PATTERN.fullmatch(text):
                raise ValueError(text)
            if len(text) == 10:
                return date.fromisoformat(text)
            return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text.upper()))
        except ValueError:  # not the pattern, February 30th, a 25th hour, a day's offset
            raise ValidationError("must be a date (2026-11-25) or a date-time with an "
                                  "offset (2026-11-25T08:00:00+08:00)") from None


class SalesQuery(PageQuery):
    from_ = DateOrTime(data_key="from", required=True)
    to = DateOrTime(required=True)
    group_by = Str(load_default="day", validate=validate.OneOf(GROUPS))


class SalesRowOut(Schema):
    key = fields.String(allow_none=True)
    orders = fields.Integer()
    units = fields.Integer()
    gross = fields.Integer()
    discount = fields.Integer()
    net = fields.Integer()
    refunded = fields.Integer()
    commission = fields.Integer()


SalesTotalsOut = Schema.from_dict({name: fields.Integer() for name in TOTALS},
                                  name="SalesTotalsOut")


class SalesReportOut(Schema):
    currency = fields.String()
    group_by = fields.String()
    from_ = fields.String(data_key="from")
    to = fields.String()
    items = fields.List(fields.Nested(SalesRowOut))
    next_cursor = fields.String(allow_none=True)
    totals = fields.Nested(SalesTotalsOut)


@blp.route("/reports/sales", methods=["GET"])
@requires("admin", "operator", "auditor")
@blp.arguments(SalesQuery, location="query")
@blp.response(200, SalesReportOut)
def sales(query: dict[str, Any]) -> Any:
    """Sales over [from, to) by day, SKU or distributor, in the store's currency.

    A date means its midnight at `FENXIAO_REPORT_UTC_OFFSET_MINUTES` (default 0, UTC;
    480 for China), and `to` as a date includes that day; a date-time is that instant.
    Days (`group_by=day`) are calendar days at that offset. `from` later than `to` is 422.

    Each figure is dated as the ledger dates its entry, so the report reconciles with
    the journal over the same range: `orders`, `units`, `gross`, `discount` and `net`
    count the orders **paid** in the range (net = gross − discount, what their lines
    were paid); `refunded` is the money paid back in the range on order lines
    (cancellations after payment, after-sales refunds and compensations), whenever the
    order was paid; `commission` is the level-1 and level-2 commission accrued in the
    range minus what was reversed or clawed back in it, attributed to the line it was
    earned on and to the order's distributor (a null key: orders of no distributor).
    `totals` covers the whole range, pages aside, and adds the shipping fees paid and
    refunded, which belong to no SKU: Σ net + shipping is what `merchant:sales` was
    credited, Σ refunded + shipping_refunded what `merchant:refunds` was debited, and
    commission the net debit of `merchant:commission_expense` in the range. With
    `group_by=sku` an order counts once in each SKU's row it bought."""
    app = fenxiao()
    start, end = report_range(query["from_"], query["to"],
                              app.settings.report_utc_offset_minutes)
    after = sales_key_after(query["cursor"])
    with reading() as conn:
        position = read_position([ReportsProjection.name], query["min_position"])
        currency = app.settings.currency
        rows = sales_report(conn, start, end, query["group_by"], currency,
                            utc_offset_minutes=app.settings.report_utc_offset_minutes,
                            after=after, limit=query["limit"] + 1)
        totals = sales_totals(conn, start, end, currency)
    body = page(rows, query["limit"], lambda row: f"k:{row['key'] or ''}")
    return query_response({"currency": currency, "group_by": query["group_by"],
                           "from": start.isoformat(), "to": end.isoformat(), **body,
                           "totals": totals}, position)


def sales_key_after(cursor: str | None) -> str | None:
    """The row key a sales cursor starts after ("k:" + key: the empty key, of no
    distributor, must still make a cursor)."""
    parts = decode_cursor(cursor, str)
    if parts is None:
        return None
    if not parts[0].startswith("k:"):
        raise ApiError(422, "validation_error", "the cursor is not valid",
                       cursor=["not a cursor this API issued"])
    return parts[0][2:]


class ReplenishmentQuery(PageQuery):
    sku = Id(load_default=None)
    warehouse_id = Id(load_default=None)
    low_only = fields.Boolean(load_default=False)  # the low-stock list


class ReplenishmentRowOut(Schema):
    sku = fields.String()
    warehouse_id = fields.String()
    available = fields.Integer()
    backordered = fields.Integer()  # its share of the units the SKU's backorders wait for
    daily_demand = fields.Float()  # units per day, a forecast rounded to 0.01
    lead_time_days = fields.Integer()
    safety_stock = fields.Integer()
    reorder_point = fields.Integer()
    order_up_to = fields.Integer()
    suggested_quantity = fields.Integer()


class ReplenishmentReportOut(Schema):
    as_of = fields.String()
    items = fields.List(fields.Nested(ReplenishmentRowOut))
    next_cursor = fields.String(allow_none=True)


@blp.route("/reports/replenishment", methods=["GET"])
@requires("admin", "operator")
@blp.arguments(ReplenishmentQuery, location="query")
@blp.response(200, ReplenishmentReportOut)
def replenishment(query: dict[str, Any]) -> Any:
    """Every stock item by SKU and warehouse with its forecast and what to reorder;
    `low_only=true` lists only those whose available stock is below the reorder point
    (the low-stock list).

    `daily_demand`: units dispatched from that warehouse per day, an exponentially
    weighted mean of the `FENXIAO_DEMAND_WINDOW_DAYS` (56) whole UTC days before today,
    a day's weight halving every `FENXIAO_DEMAND_HALF_LIFE_DAYS` (7). `reorder_point` =
    ceil(daily_demand × lead_time_days) + safety_stock; `order_up_to` = reorder_point +
    ceil(daily_demand × lead_time_days); `suggested_quantity` = order_up_to −
    (available − backordered) when available − backordered < reorder_point, else 0.
    `backordered`: the units open orders wait for of that SKU (stock arriving in any
    warehouse fills them), shared among its warehouses in proportion to their
    daily_demand (evenly without any), by the largest remainder. Lead time and safety
    stock are the SKU's
    (POST /products/{sku}/replenishment), else `FENXIAO_LEAD_TIME_DAYS` (7) and
    `FENXIAO_SAFETY_STOCK` (0)."""
    rows, position, now = replenishment_rows(query)
    rows = rows_after(rows, query["cursor"])
    body = page(rows[:query["limit"] + 1], query["limit"],
                lambda row: [row["sku"], row["warehouse_id"]])
    return query_response({"as_of": now.isoformat(), **body}, position)


def replenishment_rows(query: dict[str, Any]) -> tuple[list[dict[str, Any]], int, datetime]:
    """The report's rows for a ReplenishmentQuery (the API's and the console's), the
    position they reflect, and the time the forecast was made at."""
    app = fenxiao()
    with reading() as conn:
        position = read_position([InventoryProjection.name, ReportsProjection.name,
                                  OrdersProjection.name],
                                 query["min_position"])
        now = app.clock()
        rows = replenishment_report(conn, app.settings, now, sku=query["sku"],
                                    warehouse_id=query["warehouse_id"],
                                    low_only=query["low_only"])
    return rows, position, now


def rows_after(rows: list[dict[str, Any]], cursor: str | None) -> list[dict[str, Any]]:
    """The rows after a page's cursor (by SKU and warehouse)."""
    after = decode_cursor(cursor, str, str)
    if after is None:
        return rows
    return [row for row in rows if (row["sku"], row["warehouse_id"]) > tuple(after)]


class PolicyIn(Schema):
    lead_time_days = StrictInt(required=True,
                               validate=validate.Range(min=0, max=MAX_LEAD_TIME_DAYS))
    safety_stock = StrictInt(required=True,
                             validate=validate.Range(min=0, max=MAX_SAFETY_STOCK))


class PolicyOut(Schema):
    sku = fields.String()
    lead_time_days = fields.Integer()
    safety_stock = fields.Integer()
    position = fields.Integer(allow_none=True)  # null when nothing was recorded


@blp.route("/products/<sku>/replenishment", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(PolicyIn)
@blp.response(200, PolicyOut)
def set_policy(body: dict[str, Any], sku: str) -> Any:
    """The SKU's lead time (days from ordering stock to receiving it) and safety stock
    (units kept beyond expected demand), used by the replenishment report in every
    warehouse. The same terms again record nothing (`position` null)."""
    return run_command(SetReplenishmentPolicy(sku, body["lead_time_days"],
                                              body["safety_stock"]))

