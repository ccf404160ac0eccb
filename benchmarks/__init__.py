"""suanli's benchmarks: ``python -m benchmarks [--quick]`` prints markdown tables for the README."""
