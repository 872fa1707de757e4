"""Host-side tools for bdmeter (CPython): simulators, head-end, launcher, benchmarks."""
