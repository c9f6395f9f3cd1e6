"""`python -m benchmarks` runs end to end on a small SQLite backlog and prints well-formed
figures: one JSON object per line, ratios recomputable from the printed values."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.orders_http", "--orders", "20", "--clients", "1,3"],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    rows = {row["metric"]: row for row in map(json.loads, done.stdout.splitlines())}
    for clients in (1, 3):
        placed = rows[f"orders_http_{clients}_clients"]
        assert placed["unit"] == "orders/s" and placed["value"] > 0
        assert placed["ratio"] == round(placed["value"] / rows["raw_single_row_commit"]["value"],
                                        3)
        assert rows[f"orders_http_{clients}_clients_p99"]["value"] >= \
            rows[f"orders_http_{clients}_clients_p50"]["value"] > 0
