"""Exports for auditors (`fenxiao export ...` and GET /audit/exports/*.csv): the journal
sums to zero, the trial balance totals 0, each statement's running balance ends at the
distributor's earnings and names the order, line, rule and refund behind each entry; as
of a position or a time they are built from the log. On SQLite and PostgreSQL."""
from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from click.testing import CliRunner
from sqlalchemy import func, select

from api.cli import main
from commands import Fenxiao
from commands.exports import resolve_as_of
from projections.ledger import earnings_of, journal
from tests.api_support import Api
from tests.test_projections import activity


def cli(app: Fenxiao, *args: str) -> Any:
    return CliRunner().invoke(main, list(args),
                              env={"FENXIAO_DATABASE_URL": app.settings.database_url})


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def export(app: Fenxiao, *args: str) -> list[dict[str, str]]:
    result = cli(app, "export", *args, "--format", "csv")
    assert result.exit_code == 0, result.output
    return parse(result.stdout)


def books_story(app: Fenxiao) -> dict[str, Any]:
    """Activity with commissions, a maturity, refunds, withdrawals and a clawback; then,
    after a recorded moment, one more commission partly reversed by a refund whose
    reference a spreadsheet would take for a formula."""
    activity(app)
    middle = app.last_position()
    time.sleep(0.01)
    moment = datetime.now(timezone.utc)
    time.sleep(0.01)
    app.execute(lambda: app.accrue_commission("O-2", 1, "SKU-1", 1, 1000, "B"))
    app.execute(lambda: app.reverse_commission("O-2", 1, 500, "refund:O-2:1:500", "=1+2"))
    return {"middle": middle, "moment": moment, "head": app.last_position()}


def check_journal(rows: list[dict[str, str]]) -> None:
    """Every entry balances (so the whole journal sums to zero), in log order."""
    by_entry: dict[str, int] = defaultdict(int)
    for row in rows:
        by_entry[row["entry_uuid"]] += int(row["debit"]) - int(row["credit"])
    assert rows and set(by_entry.values()) == {0}
    order = [(int(r["position"]), int(r["line_no"])) for r in rows]
    assert order == sorted(order)


def check_trial_balance(rows: list[dict[str, str]], journal_rows: list[dict[str, str]]
                        ) -> None:
    *accounts, total = rows
    assert (total["account"], total["balance"]) == ("TOTAL", "0")
    assert int(total["debit"]) == int(total["credit"]) > 0
    expected: dict[str, int] = defaultdict(int)
    for row in journal_rows:
        expected[row["account"]] += int(row["debit"]) - int(row["credit"])
    assert {r["account"]: int(r["balance"]) for r in accounts} == expected


def check_statements(app: Fenxiao, rows: list[dict[str, str]]) -> set[str]:
    """Running balances add up the amounts, and each distributor's last row shows its
    earnings; returns the distributors seen."""
    last: dict[str, dict[str, str]] = {}
    running: dict[str, int] = defaultdict(int)
    for row in rows:
        running[row["distributor_id"]] += int(row["amount"])
        assert int(row["balance"]) == running[row["distributor_id"]] == sum(
            int(row[b]) for b in ("pending", "available", "withdrawing"))
        last[row["distributor_id"]] = row
    with app.engine.connect() as conn:
        for distributor_id, row in last.items():
            earned = earnings_of(conn, distributor_id, "CNY")
            assert {b: int(row[b]) for b in ("pending", "available", "withdrawing")} == \
                {b: earned[b] for b in ("pending", "available", "withdrawing")}
    return set(last)


def test_exports_on_the_command_line(app: Fenxiao, tmp_path: Any) -> None:
    books_story(app)
    journal_rows = export(app, "journal")
    check_journal(journal_rows)
    with app.engine.connect() as conn:
        assert len(journal_rows) == conn.execute(
            select(func.count()).select_from(journal)).scalar_one()
    written = tmp_path / "tb.csv"
    assert cli(app, "export", "trial-balance", "--output", str(written)).exit_code == 0
    check_trial_balance(parse(written.read_text()), journal_rows)
    statements = export(app, "statements")
    assert check_statements(app, statements) == {"A", "B"}

    refund = next(r for r in statements if r["cause"] == "commission:O-2:1:L1:reversed:500")
    assert {k: refund[k] for k in ("distributor_id", "kind", "amount", "order_id",
                                   "order_line", "level", "sku", "rule_kind", "rate_bp",
                                   "refunded_total", "refund_reference", "reversal_cause")} \
        == {"distributor_id": "B", "kind": "reversal", "amount": "-75", "order_id": "O-2",
            "order_line": "1", "level": "1", "sku": "SKU-1", "rule_kind": "rate",
            "rate_bp": "1500", "refunded_total": "500",
            "refund_reference": "'=1+2",  # kept from running as a formula
            "reversal_cause": "refund:O-2:1:500"}
    paid = next(r for r in statements if r["kind"] == "withdrawal_paid")
    assert (paid["withdrawal_id"], paid["order_id"]) == ("W-1", "")

    only_b = export(app, "statements", "--distributor", "B")
    assert only_b == [r for r in statements if r["distributor_id"] == "B"]
    b_journal = export(app, "journal", "--distributor", "B")
    check_journal(b_journal)
    assert {r["entry_uuid"] for r in b_journal} == {
        r["entry_uuid"] for r in journal_rows if r["account"].startswith("distributor:B:")}
    unknown = cli(app, "export", "statements", "--distributor", "NOPE")
    assert unknown.exit_code != 0 and "NOPE not found" in unknown.output


def test_exports_as_of_a_position_or_a_time(app: Fenxiao) -> None:
    story = books_story(app)
    live = {kind: export(app, kind) for kind in ("journal", "trial-balance", "statements")}
    for kind, rows in live.items():  # as of the head: the same as live
        assert export(app, kind, "--as-of", str(story["head"])) == rows, kind
    earlier = export(app, "journal", "--as-of", str(story["middle"]))
    assert earlier == [r for r in live["journal"] if int(r["position"]) <= story["middle"]]
    assert len(earlier) < len(live["journal"])
    assert resolve_as_of(app, story["moment"]) == story["middle"]
    assert export(app, "journal", "--as-of", story["moment"].isoformat()) == earlier
    naive_utc = story["moment"].replace(tzinfo=None).isoformat()
    assert export(app, "journal", "--as-of", naive_utc) == earlier
    before = export(app, "trial-balance", "--as-of", str(story["middle"]))
    check_trial_balance(before, earlier)
    assert before != live["trial-balance"]
    statements = export(app, "statements", "--as-of", str(story["middle"]))
    assert not any(r["order_id"] == "O-2" for r in statements)
    assert export(app, "journal", "--as-of", "1") == []  # a distributor's application
    for bad in ("yesterday", str(story["head"] + 1), "0001-01-01T00:00:00+01:00"):
        refused = cli(app, "export", "journal", "--as-of", bad)
        assert refused.exit_code != 0 and "as_of" in refused.output, bad


def test_as_of_a_time_goes_by_the_application_clock(app: Fenxiao) -> None:
    """"As of a time" means the application clock's time, for exports as for every audit
    view: a replay or a test may run the clock anywhere but the wall clock's now."""
    app.clock = lambda: datetime(2025, 3, 1, 9, tzinfo=timezone.utc)
    activity(app)
    middle = app.last_position()
    app.clock = lambda: datetime(2025, 3, 2, 9, tzinfo=timezone.utc)
    app.execute(lambda: app.accrue_commission("O-2", 1, "SKU-1", 1, 1000, "B"))
    moment = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)
    assert resolve_as_of(app, moment) == middle
    assert resolve_as_of(app, datetime(2025, 2, 28, tzinfo=timezone.utc)) == 0
    assert export(app, "journal", "--as-of", "2025-03-01T12:00:00") == \
        export(app, "journal", "--as-of", str(middle))


def test_csv_downloads_for_auditors(api: Api) -> None:
    app = api.client.application.extensions["fenxiao"]
    story = books_story(app)
    head = story["head"]
    response = api.get("/audit/exports/journal.csv", role="auditor", min_position=head)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "journal.csv" in response.headers["Content-Disposition"]
    assert int(response.headers["X-Fenxiao-Position"]) >= head
    journal_rows = parse(response.get_data(as_text=True))
    check_journal(journal_rows)
    balance = api.get("/audit/exports/trial-balance.csv", min_position=head)
    assert balance.status_code == 200
    check_trial_balance(parse(balance.get_data(as_text=True)), journal_rows)
    statements = api.get("/audit/exports/statements.csv", role="auditor",
                         distributor_id="B", min_position=head)
    assert check_statements(app, parse(statements.get_data(as_text=True))) == {"B"}

    earlier = api.get("/audit/exports/journal.csv", role="auditor",
                      as_of=story["moment"].isoformat())
    assert earlier.status_code == 200
    assert earlier.headers["X-Fenxiao-Position"] == str(story["middle"])
    assert parse(earlier.get_data(as_text=True)) == [
        r for r in journal_rows if int(r["position"]) <= story["middle"]]

    for role, status in (("distributor", 403), ("operator", 403), (None, 401)):
        assert api.get("/audit/exports/journal.csv", role=role).status_code == status, role
    refused = {
        "not a moment": api.get("/audit/exports/journal.csv", as_of="soon"),
        "not a time": api.get("/audit/exports/journal.csv", as_of="2024-13-45"),
        "beyond the head": api.get("/audit/exports/statements.csv", as_of=head + 5),
        "no such distributor": api.get("/audit/exports/statements.csv",
                                       distributor_id="NOPE"),
        "min_position beyond the head": api.get("/audit/exports/journal.csv",
                                                min_position=head + 5),
    }
    assert {why: r.status_code for why, r in refused.items()} == {
        "not a moment": 422, "not a time": 422, "beyond the head": 422,
        "no such distributor": 404, "min_position beyond the head": 422}
    assert refused["not a time"].get_json()["error"]["details"] == {
        "as_of": ["must be a log position or an ISO-8601 time with an offset"]}
    for without_offset in (story["moment"].replace(tzinfo=None).isoformat(), "2024-01-01"):
        reply = api.get("/audit/exports/journal.csv", as_of=without_offset)  # as /audit/*
        assert reply.status_code == 422 and "offset" in str(reply.get_json()), reply.get_json()
    assert app.last_position() == head  # reading changed nothing
