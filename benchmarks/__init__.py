"""Benchmarks the project keeps: run with `make bench` (medians of repeated runs, side by side)."""
