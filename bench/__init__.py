"""Benchmarks (bench/run.py) and the architectures they and the tests build."""
