"""``python -m workers``: run an arq worker configured from ``TIDINGS_*``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys

from service.logs import configure as configure_logging
from service.settings import ConfigError, Settings
from workers.settings import create_workers


def main() -> int:
    """Run until SIGINT/SIGTERM; arq re-queues the jobs it was running."""
    try:
        settings = Settings.from_env(os.environ)
        settings.require_redis("tidings worker")
    except ConfigError as exc:
        print(f"tidings worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, "worker")
    if settings.log_level != "debug":
        logging.getLogger("arq.worker").setLevel(logging.WARNING)  # a line per job drowns the rest
    normal, high = create_workers(settings)
    # The high-priority worker runs beside the normal one on the same loop; a signal stops
    # the normal one, whose on_stop stops this one too.
    high.main_task = normal.loop.create_task(high.main())
    try:
        normal.run()
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            normal.loop.run_until_complete(high.main_task)
        normal.loop.run_until_complete(high.close())
    return 0


if __name__ == "__main__":
    sys.exit(main())
