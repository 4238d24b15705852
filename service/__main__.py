"""``python -m service``: the ``tidings`` command."""

import sys

from service.cli import main

sys.exit(main())
