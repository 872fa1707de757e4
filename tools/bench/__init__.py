"""Benchmarks: each `bench_<name>.py` here has `run() -> dict` of figures; `python -m tools.bench` runs them all."""
