"""drpd benchmarks: scripts run as ``.venv/bin/python bench/<name>.py [--quick]``.

Shared helpers (timing, percentiles, HTTP load, baseline servers, tables and
JSON results) live in ``bench.common``. Results go to ``bench/results/``.
"""
