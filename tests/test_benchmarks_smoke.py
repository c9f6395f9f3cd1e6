"""The benchmark runs end to end on a small backlog and prints well-formed figures."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_prints_json_lines_with_ratios() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--events", "3000",
                           "--commands", "60"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    by_metric = {row["metric"]: row for row in rows}
    assert set(by_metric) == {
        "raw_single_row_commit", "raw_batched_insert", "stock_commands", "ledger_postings",
        "projection_catch_up", "projection_catch_up_peak_memory",
        "projection_catch_up_memory_growth"}
    for row in rows:
        assert {"metric", "value", "unit"} <= row.keys()
        if "baseline_metric" in row:
            baseline = by_metric[row["baseline_metric"]]["value"]
            assert abs(row["ratio"] - round(row["value"] / baseline, 3)) <= 0.002
        else:
            assert "ratio" not in row
    assert by_metric["projection_catch_up"]["value"] > 0
