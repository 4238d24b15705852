"""``python -m service.openapi write|check``: keep openapi/openapi.json in step with the app."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from service.app import create_app
from service.settings import Settings

PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def render() -> str:
    """The OpenAPI document of an app with every role enabled, as stable JSON text."""
    app = create_app(Settings(redis_url="redis://unused", jwt_secret="unused", api_key="unused"))
    return json.dumps(app.openapi_schema.to_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    """``write`` regenerates the file; ``check`` fails when it is stale."""
    command = argv[0] if argv else "check"
    text = render()
    if command == "write":
        PATH.parent.mkdir(parents=True, exist_ok=True)
        PATH.write_text(text)
        print(f"wrote {PATH}")
        return 0
    if not PATH.exists() or PATH.read_text() != text:
        print(f"{PATH} is stale: run `make openapi`", file=sys.stderr)
        return 1
    print("openapi/openapi.json is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
