"""Benchmarks (not tests): `python -m bench.gallery`. Each prints a table and writes bench/results/*.json."""
