"""Benchmarks for Tidings (not tests): real processes on 127.0.0.1, printed as one markdown table.

Run ``make bench`` (all benchmarks, default sizes), ``python -m bench latency``
(one by name) or ``python -m bench --quick`` (a small smoke run). Each
benchmark starts its own redis-server, SQLite database (or uses
``--database-url``), service and worker processes, and stops them by pid.
"""
