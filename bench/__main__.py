"""``python -m bench [NAME ...] [--quick] [--database-url URL]``: run benchmarks, print one table."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from importlib.metadata import version

from bench import contract, fanout, latency, topic
from bench.common import Result

BENCHMARKS = {module.NAME: module for module in (latency, fanout, topic, contract)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small smoke sizes")
    parser.add_argument("--database-url", default=None,
                        help="an existing database to use (e.g. postgresql+asyncpg://...); default: a temp SQLite file")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--pin", action="store_true", help="service on CPU 0, the rest on the other CPUs")
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed per benchmark (default 300)")
    for module in BENCHMARKS.values():
        module.add_arguments(parser)
    return parser


def _header(args: argparse.Namespace) -> str:
    database = "PostgreSQL" if args.database_url and "postgres" in args.database_url else "SQLite"
    versions = ", ".join(f"{name} {version(name)}" for name in ("litestar", "uvicorn", "websockets", "arq"))
    return (f"Tidings benchmarks: nproc {len(os.sched_getaffinity(0))}, Python {platform.python_version()}, "
            f"{versions}; {database}, {args.workers} worker(s){', pinned' if args.pin else ''}"
            f"{', --quick' if args.quick else ''}")


def table(results: list[Result], header: str) -> str:
    """One markdown table of every result's rows, then its problems."""
    lines = [f"**{header}**", "", "| benchmark | setup | metric | value |", "|---|---|---|---|"]
    for result in results:
        for i, (metric, value) in enumerate(result.rows):
            name, setup = (result.name, result.setup) if i == 0 else ("", "")
            lines.append(f"| {name} | {setup} | {metric} | {value} |")
    problems = [p for r in results for p in r.problems]
    if problems:
        lines += ["", "Problems seen:", *(f"- {p}" for p in problems)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit code 1 when any benchmark saw a problem."""
    parser = _parser()
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if args.quick:
        for module in BENCHMARKS.values():
            module.quick(args)
    results = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            results.append(BENCHMARKS[name].run(args))
        except Exception as exc:  # noqa: BLE001 - report it in the table and go on with the others
            failed = Result(name, "did not complete")
            failed.problems.append(f"{name}: {type(exc).__name__}: {exc}")
            results.append(failed)
    print(table(results, _header(args)))
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
