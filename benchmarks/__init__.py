"""`python -m benchmarks`: throughput as ratios against raw database baselines measured in the
same run (see README)."""
