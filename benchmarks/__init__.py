"""Benchmarks: run one with ``python -m benchmarks.<name>``; none is a test."""
