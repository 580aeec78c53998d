"""interir's benchmarks: `python -m bench` (or `interir bench`) and the pytest-benchmark file test_bench_ops.py.

Run from a source checkout (this folder is not part of the installed package). See bench/README.md.
"""
