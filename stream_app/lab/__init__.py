"""Tooling beside the product: evaluation, benchmarks, the demo, plots and embedded services."""
