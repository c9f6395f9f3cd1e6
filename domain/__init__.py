"""Aggregates and events: pure Python, no I/O, no framework imports."""
