"""Opening the store, migrating it, and the one way to write to it: ``atomic()``.

SQLite is opened in WAL mode with ``synchronous=NORMAL`` (a killed process loses nothing that was
committed; ~17 us per commit) and every transaction starts with ``BEGIN IMMEDIATE`` so two
processes never both read-then-write the same rows (the delivery claim relies on it).
"""

from __future__ import annotations

import os
import re
import sqlite3
import weakref
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, event, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from newsletter.errors import StoreError
from newsletter.files import create_private_file, readable_by_others
from newsletter.store.schema import MIGRATIONS
from newsletter.store.spool import UnsubscribeSpool, spool_path_for

_migrations_meta = MetaData()
schema_migrations = Table(
    "schema_migrations", _migrations_meta,
    Column("number", Integer, primary_key=True),
    Column("description", String, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


# CPython's sqlite3 (3.11 and later alike) binds only int, float and str without a look for an
# adapter; for every None it tries the adapter registry, ``__adapt__`` and ``__conform__`` first.
# Measured here: 10,000 rows of 13 columns, 12 of them NULL, insert in 65 ms; with None adapted
# to itself through the registry, 28 ms (ints: 13 ms). Papers without a PDF, code or thumbnail
# link and deliveries without an error are mostly NULLs, so the store registers that shortcut.
sqlite3.register_adapter(type(None), lambda value: value)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# The package that provides a driver module SQLAlchemy asked for, where the names differ.
_DRIVER_PACKAGES = {"psycopg": "newsletter[postgres]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient",
                    "pymysql": "PyMySQL"}


def driver_url(url: str) -> str:
    """``postgresql://`` (and ``postgres://``, as hosting services write it) with psycopg 3, the
    driver ``newsletter[postgres]`` installs; SQLAlchemy's own default is psycopg2."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def without_password(url: str) -> str:
    """The store URL as it may be shown anywhere (a message, an error, a log line): its password
    replaced by ``***``. The one way a URL is shown: a password printed once ends up in a
    terminal's scrollback, a cron mail or a CI log."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError):
        # Not a URL SQLAlchemy can read: hide whatever sits between "user:" and "@".
        return re.sub(r"(://[^:/@]*:).*@", r"\1***@", url)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # Let SQLAlchemy's "begin" hook emit BEGIN itself (pysqlite's implicit BEGIN is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _forget_pool(engine_ref: "weakref.ref[Engine]") -> None:
    engine = engine_ref()
    if engine is not None:
        engine.dispose(close=False)


def _prepare_sqlite_file(path: Path) -> tuple[str, ...]:
    """Create the SQLite file readable by its owner only before the driver would (it holds the
    signing key and every address; SQLite itself gives its -wal and -shm files the same
    permissions); a warning when an existing one is readable by others."""
    parent = path.resolve().parent
    if not parent.exists():
        raise StoreError("the folder for the SQLite file does not exist", where=str(parent))
    try:
        if create_private_file(path):
            return ()
    except OSError as exc:
        raise StoreError(f"cannot create the store file: {exc.strerror}", where=str(path)) from None
    if readable_by_others(path):
        return (f"{path}: the store is readable by other users (it holds every address and the signing key); "
                f"run: chmod 600 {path}",)
    return ()


class Store:
    """A handle on the store. Create one per process; it is cheap and thread-safe."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown_url = without_password(url)  # never print ``url``: it may hold a password
        self.is_sqlite = url.startswith("sqlite")
        self.warnings: tuple[str, ...] = ()  # for the command line to print, one line each
        if self.is_sqlite:
            path = url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else ""
            if path and path != ":memory:":
                self.warnings = _prepare_sqlite_file(Path(path).expanduser())
        try:
            # Pooled connections: opening one costs the PRAGMAs, and closing the last one
            # checkpoints and deletes the WAL (measured 0.5-0.9 ms per empty transaction without a
            # pool, 0.15 ms with). No overflow limit: every delivery worker may hold one at once.
            kwargs = {"pool_size": 8, "max_overflow": -1} if self.is_sqlite and not url.endswith(":memory:") else {}
            self.engine: Engine = create_engine(driver_url(url), **kwargs)
        except (SQLAlchemyError, ValueError) as exc:
            raise StoreError(f"cannot open the store: {str(exc).replace(url, self.shown_url)}",
                             where=self.shown_url) from None
        except ImportError as exc:  # a database whose Python driver is not installed
            scheme = url.split(":", 1)[0]
            package = _DRIVER_PACKAGES.get(exc.name or "", exc.name)
            raise StoreError(f"the Python driver for {scheme}:// is not installed (no module named {exc.name!r}): "
                             f"pip install '{package}', or use a sqlite:/// URL",
                             where=self.shown_url) from None
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        # Unsubscribes the web app spooled while the store was busy: applied first thing in every
        # transaction (after BEGIN IMMEDIATE has the lock), so the next claim of a send sees them.
        spool_path = spool_path_for(url)
        self.unsubscribe_spool = UnsubscribeSpool(spool_path) if spool_path is not None else None
        if self.unsubscribe_spool is not None:
            event.listen(self.engine, "begin", self.unsubscribe_spool.apply)
        # A forked child must not reuse the parent's pooled connections (SQLAlchemy's recipe:
        # drop them in the child without closing them under the parent). Weak, so a Store that
        # is gone is not kept alive by the hook.
        engine_ref = weakref.ref(self.engine)
        os.register_at_fork(after_in_child=lambda: _forget_pool(engine_ref))

    @contextmanager
    def atomic(self) -> Iterator[Connection]:
        """One transaction: everything inside commits together or not at all."""
        with self.engine.begin() as conn:
            yield conn

    def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded; returns the numbers applied."""
        applied: list[int] = []
        try:
            with self.atomic() as conn:
                _migrations_meta.create_all(conn)
                done = {row.number for row in conn.execute(select(schema_migrations.c.number))}
                for number, description, apply in MIGRATIONS:
                    if number in done:
                        continue
                    apply(conn)
                    conn.execute(schema_migrations.insert().values(
                        number=number, description=description, applied_at=utcnow()))
                    applied.append(number)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot migrate the store: {str(exc).replace(self.url, self.shown_url)}",
                             where=self.shown_url) from None
        return applied

    def dispose(self) -> None:
        self.engine.dispose()


def open_store(url: str) -> Store:
    """Open and migrate the store at ``url``; the usual way in."""
    store = Store(url)
    store.migrate()
    return store
