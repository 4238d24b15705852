"""``python -m workers``: run an arq worker configured from ``TIDINGS_*``."""

from __future__ import annotations

import logging
import os
import sys

from service.logs import configure as configure_logging
from service.settings import ConfigError, Settings
from workers.settings import create_worker


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
    create_worker(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
