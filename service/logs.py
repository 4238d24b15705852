"""Logging set-up for a service process, with user tokens redacted from every line."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

_QUERY_PAIR = re.compile(r"([?&])([^=&\s\"'#]+)=([^&\s\"'#]*)")
SECRET_PARAMS = frozenset({"token", "access_token"})


def redact(text: str) -> str:
    """Replace the value of every ``token`` query parameter, however its name is spelled
    (``token``, ``TOKEN``, ``%74oken``: the framework decodes them all alike)."""

    def replace(match: re.Match[str]) -> str:
        separator, name, _value = match.groups()
        if unquote(name).lower() in SECRET_PARAMS:
            return f"{separator}{name}=[redacted]"
        return match.group(0)

    return _QUERY_PAIR.sub(replace, text) if "=" in text else text


class RedactTokens(logging.Filter):
    """Rewrites a record's message and arguments through :func:`redact`; never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact in place."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def configure(level: str, role: str) -> None:
    """Log to stderr with ``role`` in each line; redact tokens in our loggers and uvicorn's."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s"))
    # On the handler, so records from every logger (uvicorn's included) pass through it.
    handler.addFilter(RedactTokens())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
