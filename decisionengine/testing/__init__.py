"""Helpers for the test suite and the benchmarks (throw-away database servers)."""
