"""Engines for the store: SQLite (WAL, BEGIN IMMEDIATE for writes) or PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_S = 15.0
"""How long a SQLite reader (or a migration) waits for a lock before failing."""
SQLITE_LOCK_WAIT_S = 15.0
"""How long a SQLite write transaction waits for the write lock (polled asynchronously)."""
SQLITE_WRITER_BUSY_MS = 2
"""The writer's own busy timeout: short, because the repository polls for the lock."""


def _prepare_sqlite_dir(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        directory = os.path.dirname(os.path.abspath(database))
        os.makedirs(directory, exist_ok=True)


def create_engine(url: str, *, immediate: bool) -> AsyncEngine:
    """An async engine for ``url``.

    Args:
        url: a ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://`` URL.
        immediate: on SQLite, open every transaction with ``BEGIN IMMEDIATE`` so
            writers queue on the database lock up front instead of failing on
            upgrade from a read lock; readers should pass ``False``.
    """
    if not url.startswith("sqlite"):
        return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    _prepare_sqlite_dir(url)
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
    busy_ms = SQLITE_WRITER_BUSY_MS if immediate else int(SQLITE_BUSY_TIMEOUT_S * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


@dataclass
class Database:
    """The store's engines: one for writes and one for reads (the same on PostgreSQL)."""

    writer: AsyncEngine
    reader: AsyncEngine
    write_lock: asyncio.Lock | None = field(default=None)
    """On SQLite, the lock every writer of this process queues on (see ``access.Store``)."""

    @classmethod
    def connect(cls, url: str) -> Database:
        """Engines for ``url``; nothing is opened until first use."""
        writer = create_engine(url, immediate=True)
        reader = create_engine(url, immediate=False) if url.startswith("sqlite") else writer
        sqlite = url.startswith("sqlite")
        return cls(writer=writer, reader=reader, write_lock=asyncio.Lock() if sqlite else None)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.writer.dialect.name

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()
