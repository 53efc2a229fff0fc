"""The web app's two extra ways into a SQLite store, beside the store's own ``atomic()``.

* **Reads** (the archive, the feed, every GET page) must never wait for the write lock: the
  store begins every transaction with ``BEGIN IMMEDIATE``, which queues behind any writer for up
  to the busy timeout (30 s). ``ReadOnlyStore`` opens its own connections with a deferred
  ``BEGIN`` and ``PRAGMA query_only``: in WAL mode a reader sees the last commit and never waits.
* **The unsubscribe write** waits only ``web.unsubscribe_wait_s`` for the lock
  (``QuickWriteStore``); when that is not enough, the web app spools the request beside the store
  (``newsletter.store.spool``) instead of making a mail provider's one-click request time out.

Both look like a ``Store`` where the library functions need one (``atomic()``). On any other
store (PostgreSQL, SQLite in memory) they are the store itself: readers there do not wait for
writers, and there is no file to spool beside.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from typing import Any, Iterator, Protocol

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

from newsletter.store import Store
from newsletter.store.spool import spool_path_for

class Transactions(Protocol):
    """What the web's library functions need of a store: ``atomic()``. A ``Store``,
    ``ReadOnlyStore`` and ``QuickWriteStore`` all are."""

    def atomic(self) -> AbstractContextManager[Connection]: ...


READ_BUSY_TIMEOUT_MS = 5000  # only WAL recovery can make a reader wait; never the write lock


def _has_file(store: Store) -> bool:
    return store.is_sqlite and spool_path_for(store.url) is not None


class ReadOnlyStore:
    """``atomic()`` for reading only, never waiting for a writer."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.url = store.url
        self.is_sqlite = store.is_sqlite
        self.engine: Engine = create_engine(store.url, pool_size=4, max_overflow=-1) if _has_file(store) else store.engine
        if self.engine is not store.engine:
            event.listen(self.engine, "connect", _read_only_pragmas)
            event.listen(self.engine, "begin", _deferred_begin)

    @contextmanager
    def atomic(self) -> Iterator[Connection]:
        """One read transaction: a consistent snapshot; any write in it fails."""
        if self.engine is self.store.engine:
            with self.store.atomic() as conn:
                yield conn
            return
        with self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        if self.engine is not self.store.engine:
            self.engine.dispose()


class QuickWriteStore:
    """``atomic()`` on the same store, giving up after ``wait_s`` without the write lock
    (``sqlalchemy.exc.OperationalError``, "database is locked")."""

    def __init__(self, store: Store, wait_s: float) -> None:
        self.store = store
        self.url = store.url
        self.is_sqlite = store.is_sqlite
        self.unsubscribe_spool = store.unsubscribe_spool if _has_file(store) else None
        self._own: Store | None = None
        if _has_file(store):
            self._own = Store(store.url)  # the same hooks (spool included), its own timeout
            timeout_ms = max(1, int(wait_s * 1000))

            def short_wait(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.execute(f"PRAGMA busy_timeout={timeout_ms}")

            event.listen(self._own.engine, "connect", short_wait)

    @contextmanager
    def atomic(self) -> Iterator[Connection]:
        with (self._own or self.store).atomic() as conn:
            yield conn

    def dispose(self) -> None:
        if self._own is not None:
            self._own.dispose()


def _read_only_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # BEGIN is ours (deferred), not pysqlite's
    dbapi_connection.execute("PRAGMA query_only=ON")
    dbapi_connection.execute(f"PRAGMA busy_timeout={READ_BUSY_TIMEOUT_MS}")


def _deferred_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")
