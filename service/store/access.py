"""Transactions over the store, shared by every store class (one concern each).

Every SQLAlchemy exception that means "the database is not answering" leaves
here as :class:`~service.errors.StoreUnavailable`, so callers handle one kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.errors import StoreUnavailable
from service.store.engine import SQLITE_LOCK_WAIT_S, Database

_UNAVAILABLE = (OperationalError, InterfaceError, OSError, ConnectionError, TimeoutError)
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})
"""Serialization failure and deadlock: the transaction can simply run again."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """``moment`` as aware UTC (SQLite hands back naive UTC values)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def iso(moment: datetime | None) -> str | None:
    """RFC 3339 text in UTC with milliseconds."""
    if moment is None:
        return None
    return aware(moment).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _transient(exc: DBAPIError) -> bool:
    return exc.connection_invalidated or getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


class Store:
    """Read and write transactions on one :class:`Database`."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._insert: Any = postgresql.insert if database.dialect == "postgresql" else sqlite.insert

    @property
    def _serialized(self) -> bool:
        """True on SQLite, where write transactions run one at a time anyway."""
        return self._db.write_lock is not None

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with contextlib.AsyncExitStack() as stack:
            if self._db.write_lock is not None:
                # SQLite has one writer at a time: queue this process's writers on one lock, in
                # order, rather than have each of them poll the file lock against the others.
                await stack.enter_async_context(self._db.write_lock)
            async with self._transaction() as connection:
                yield connection

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._db.writer.connect() as connection:
                await self._begin(connection)
                try:
                    yield connection
                except BaseException:
                    await connection.rollback()
                    raise
                await connection.commit()
        except IntegrityError:
            raise
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        except DBAPIError as exc:
            if _transient(exc):
                raise StoreUnavailable(f"database busy or connection lost: {type(exc.orig).__name__}") from exc
            raise

    async def _begin(self, connection: AsyncConnection) -> None:
        """Begin a write transaction; on SQLite, wait for the write lock without blocking.

        SQLite's own busy handler sleeps in growing steps (up to 100 ms) while another
        process writes; polling here with short async sleeps keeps writers close behind
        each other and the event loop free.
        """
        if self._db.dialect != "sqlite":
            await connection.begin()
            return
        deadline = time.monotonic() + SQLITE_LOCK_WAIT_S
        delay = 0.0005
        while True:
            try:
                await connection.begin()
                return
            except OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                await connection.rollback()
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.004)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._db.reader.connect() as connection:
                yield connection
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        except DBAPIError as exc:
            if _transient(exc):
                raise StoreUnavailable(f"database busy or connection lost: {type(exc.orig).__name__}") from exc
            raise
