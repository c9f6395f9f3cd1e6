"""CSV downloads for auditors: the journal, the trial balance and distributor statements,
live or as of any earlier position or time (commands/exports.py).

A download is one whole CSV document, not a page of a list: auditors load it into their
own tools, and an export as of a moment is built from the log for that request anyway.
"""
from __future__ import annotations

import io
from typing import Any

from flask import Response
from flask_smorest import Blueprint

from api.audit import AsOfQuery
from api.auth import requires
from api.http import fenxiao, read_position
from api.schemas import Id
from commands.exports import books, check_distributor, projections_for, resolve_as_of, rows, \
    write_csv

blp = Blueprint("exports", __name__, url_prefix="/api/v1",
                description="CSV exports for auditors")

CSV_TEXT = {"type": "string", "description": "RFC 4180 CSV with a header row."}


class ExportQuery(AsOfQuery):
    """`as_of` as every audit view takes it."""


class StatementQuery(ExportQuery):
    distributor_id = Id(load_default=None)


def _download(kind: str, query: dict[str, Any]) -> Response:
    app = fenxiao()
    distributor_id = query.get("distributor_id")
    if distributor_id is not None:
        check_distributor(app, distributor_id)
    if query["as_of"] is None:
        read_position([p.name for p in projections_for(kind)], query["min_position"])
        as_of = None
    else:
        as_of = resolve_as_of(app, query["as_of"])
    with books(app, kind, as_of) as source:
        found, position = rows(source, kind, distributor_id), source.position
    out = io.StringIO()
    write_csv(kind, found, out)
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{kind}.csv"'
    response.headers["X-Fenxiao-Position"] = str(position)
    return response


@blp.route("/audit/exports/journal.csv", methods=["GET"])
@requires("auditor", "admin")
@blp.arguments(StatementQuery, location="query")
@blp.response(200, CSV_TEXT, content_type="text/csv",
              description="Columns: position, entry_uuid, line_no, at, kind, cause, account, "
                          "debit, credit, currency, memo; one row per journal line, in log "
                          "order.")
def journal_csv(query: dict[str, Any]) -> Response:
    """The journal, live or as of `as_of`; with `distributor_id`, the whole entries that
    touch that distributor's accounts."""
    return _download("journal", query)


@blp.route("/audit/exports/trial-balance.csv", methods=["GET"])
@requires("auditor", "admin")
@blp.arguments(ExportQuery, location="query")
@blp.response(200, CSV_TEXT, content_type="text/csv",
              description="Columns: account, currency, debit, credit, balance; then a TOTAL "
                          "row per currency, whose balance is 0.")
def trial_balance_csv(query: dict[str, Any]) -> Response:
    """The trial balance, live or as of `as_of`."""
    return _download("trial-balance", query)


@blp.route("/audit/exports/statements.csv", methods=["GET"])
@requires("auditor", "admin")
@blp.arguments(StatementQuery, location="query")
@blp.response(200, CSV_TEXT, content_type="text/csv",
              description="One row per journal line that moved a distributor's account, "
                          "in log order per distributor, with the running balance of each "
                          "account and in all, and the order, line, level, rule and refund "
                          "(or withdrawal) behind it.")
def statements_csv(query: dict[str, Any]) -> Response:
    """Distributor statements (every distributor's, or `distributor_id`'s), live or as of
    `as_of`."""
    return _download("statements", query)
