"""`python -m benchmarks` runs end to end on a small SQLite backlog and prints well-formed
figures: one JSON object per line, ratios recomputable from the printed values."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_URL, SKIP_POSTGRES, _create_postgres_database

ROOT = Path(__file__).resolve().parent.parent

REQUIRED = {
    "raw_single_row_commit": (None, "rows/s"),
    "raw_batched_insert": (None, "rows/s"),
    "stock_commands": ("raw_single_row_commit", "commands/s"),
    "projection_catch_up": ("raw_batched_insert", "events/s"),
    "projection_catch_up_peak_memory": (None, "MiB"),
    "projection_catch_up_memory_growth": (None, "MiB"),
}


def test_benchmark_prints_json_lines_with_ratios() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--events", "2000", "--commands", "50"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines, done.stderr
    rows = [json.loads(line) for line in lines]  # every stdout line is one JSON object
    assert all(isinstance(row, dict) for row in rows)
    by_metric = {row["metric"]: row for row in rows}
    assert len(by_metric) == len(rows), "a metric was printed twice"
    assert REQUIRED.keys() <= by_metric.keys()
    for name, (baseline, unit) in REQUIRED.items():
        assert by_metric[name]["unit"] == unit
        assert by_metric[name].get("baseline_metric") == baseline
    for row in rows:
        assert {"metric", "value", "unit"} <= row.keys()
        assert isinstance(row["value"], (int, float))
        if "baseline_metric" in row:
            baseline = by_metric[row["baseline_metric"]]
            assert "baseline_metric" not in baseline  # baselines are raw figures
            assert row["ratio"] == round(row["value"] / baseline["value"], 3)
        else:
            assert "ratio" not in row
    for name in ("raw_single_row_commit", "raw_batched_insert", "stock_commands",
                 "projection_catch_up", "projection_catch_up_peak_memory"):
        assert by_metric[name]["value"] > 0


def test_orders_http_benchmark_places_orders_through_a_real_server() -> None:
    """--quick: every case in miniature (1 and 2 server processes of Fenxiao and of the
    CRUD baseline, flat and hot SKUs, the floor, queries, command -> visible, open
    reservations), on PostgreSQL (a database of its own; SQLite serves from one process,
    so there only 1); it exits non-zero if an order failed or stock was oversold."""
    command = [sys.executable, "-m", "benchmarks.orders_http", "--quick"]
    if not SKIP_POSTGRES:
        url = str(make_url(POSTGRES_URL).set(database="fenxiao_bench_smoke"))
        _create_postgres_database(url)
        command += ["--database-url", make_url(url).render_as_string(hide_password=False)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {row["metric"]: row for row in map(json.loads, done.stdout.splitlines())}
    raw = rows["raw_single_row_commit"]["value"]
    labels = ("", "_hot") if SKIP_POSTGRES else ("", "_hot", "_2proc", "_hot_2proc")
    for label in labels:
        for clients in (1, 3):
            for system in ("orders_http", "crud_orders"):
                placed = rows[f"{system}{label}_{clients}_clients"]
                assert placed["unit"] == "orders/s" and placed["value"] > 0
                assert placed["ratio"] == round(placed["value"] / raw, 3)
                assert rows[f"{system}{label}_{clients}_clients_p99"]["value"] >= \
                    rows[f"{system}{label}_{clients}_clients_p50"]["value"] > 0
            name = f"orders_http{label}_{clients}_clients"
            assert rows[f"{name}_of_crud"]["value"] == round(
                rows[name]["value"] / rows[f"crud_orders{label}_{clients}_clients"]["value"], 3)
    for clients in (1, 3):
        for floor in ("authenticated_404", "unauthenticated"):
            assert rows[f"http_{floor}_{clients}_clients"]["value"] > 0
        with_open = rows[f"orders_http_hot_open_60_{clients}_clients"]
        assert with_open["baseline_metric"] == f"orders_http_hot_open_0_{clients}_clients"
    assert rows["orders_http_hot_open_after"]["value"] >= \
        rows["orders_http_hot_open_before"]["value"] + 60
    for system in ("orders_http", "crud_orders"):
        assert rows[f"{system}_hot_orders_accepted"]["value"] > 0
        assert rows[f"{system}_hot_oversold_units"]["value"] == 0
        assert rows[f"{system}_hot_unaccounted_units"]["value"] == 0
    assert rows["queries_40rps_p99"]["value"] >= rows["queries_40rps_p50"]["value"] > 0
    assert rows["queries_40rps_achieved"]["value"] > 0
    assert rows["command_to_visible_p99"]["value"] >= \
        rows["command_to_visible_p50"]["value"] > 0
    assert not [name for name in rows if "_refused_" in name]


def test_audit_log_then_rebuild_benchmarks(tmp_path: Path) -> None:
    """A small realistic log through the application's commands, then rebuilds of two
    busy projections from it, each figure a well-formed JSON line."""
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.audit_log", "--events", "3000",
         "--database-url", url],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    made = {row["metric"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert made["audit_log_events"]["value"] >= 3000
    assert made["audit_log_generation"]["unit"] == "events/s"
    assert made["audit_log_generation"]["value"] > 0

    from sqlalchemy import create_engine, text

    engine = create_engine(url)

    def read_models() -> dict[str, list]:
        """The two projections' rows and positions, to see the benchmark leave them be."""
        tables = ["rm_journal", "rm_account_balances", "rm_earnings", "rm_withdrawals",
                  "rm_shipments", "fenxiao_tracking", "fenxiao_parked"]
        with engine.connect() as conn:
            return {t: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {t}"))), key=repr)
                    for t in tables}

    with engine.connect() as conn:
        topics = set(conn.execute(text("SELECT DISTINCT topic FROM fenxiao_events")).scalars())
    from commands import Fenxiao
    from commands.settings import Settings
    from projections import all_projections
    from projections.runner import ProjectionRunner

    app = Fenxiao(Settings(database_url=url, rate_limit=None))
    ProjectionRunner(app, [p for p in all_projections() if p.name in ("ledger", "shipments")]
                     ).catch_up()
    app.close()
    before = read_models()
    assert before["rm_journal"] and before["rm_shipments"]
    kinds = {topic.rsplit(".", 1)[-1] for topic in topics}
    assert {"OrderPlaced", "OrderPaid", "StockReserved", "ShipmentDispatched",
            "CarrierEventRecorded", "CommissionAccrued", "EntryPosted",
            "DistributorApproved"} <= kinds, kinds

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.rebuild", "--database-url", url,
         "--projections", "ledger,shipments"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {row["metric"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert rows["raw_log_read"]["unit"] == "rows/s"
    for name in ("ledger", "shipments", "all"):
        rate = rows[f"rebuild_{name}"]
        assert rate["unit"] == "events/s" and rate["value"] > 0
        assert rate["ratio"] == round(rate["value"] / rows["raw_log_read"]["value"], 3)
        assert rows[f"rebuild_{name}_events"]["value"] > 0
        assert rows[f"rebuild_{name}_peak_rss"]["value"] > 0
    assert rows["rebuild_all_events"]["value"] == \
        rows["rebuild_ledger_events"]["value"] + rows["rebuild_shipments_events"]["value"]
    assert rows["rebuild_reads_only"]["value"] > 0
    for name in ("ledger", "shipments"):  # each figure, and the rebuild's fraction of it
        floor = rows[f"rebuild_{name}_floor"]["value"]
        assert floor > 0
        assert rows[f"rebuild_{name}_of_floor"]["value"] == \
            round(rows[f"rebuild_{name}"]["value"] / floor, 3)
    after = read_models()
    engine.dispose()
    assert after == before  # rebuilt and rewritten by the floor: the same rows


def test_webhooks_benchmark_delivers_everything_to_a_local_receiver() -> None:
    """--quick: a backlog pushed to a receiver process, then commit -> delivery latency;
    it exits non-zero if an event was not delivered."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.webhooks", "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    rows = {row["metric"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert rows["raw_http_posts"]["unit"] == "requests/s"
    deliveries = rows["webhook_deliveries"]
    assert deliveries["unit"] == "events/s" and deliveries["value"] > 0
    assert deliveries["ratio"] == round(deliveries["value"] / rows["raw_http_posts"]["value"],
                                        3)
    assert rows["webhook_commit_to_delivery_p99"]["value"] >= \
        rows["webhook_commit_to_delivery_p50"]["value"] > 0
