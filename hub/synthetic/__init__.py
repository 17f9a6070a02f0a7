"""Synthetic data for benchmarks, tests and the demo."""
