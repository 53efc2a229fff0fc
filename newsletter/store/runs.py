"""The store side of one delivery run: the connection its worker threads share, and the
per-message record of an accepted message, the hottest write there is.

One connection for every thread of the run, used under a lock. The store is used by one thread
at a time anyway, and with one connection per thread SQLite throws away a connection's whole
page cache whenever another connection has written since it last looked: with 8 workers that
was every statement, and at 100,000 rows it doubled our CPU per message.

On SQLite the per-message writes ("sent", and the "still subscribed?" check of the next row) go
straight to the driver, each "sent" its own autocommit statement: ~0.02 ms of CPU where
SQLAlchemy's begin/execute/commit costs ~0.14 ms. On PostgreSQL the "sent" record and the check
of the next row are one statement on the driver (BEGIN and COMMIT are round trips of their own
with psycopg: two transactions a message took six). Where a commit is dear (PostgreSQL flushes
its WAL to disk at each, ~0.6 ms here; ``group_commit=True``), records are group-committed: one
thread commits every waiting worker's record in one transaction (a lone record: one autocommit
statement) while each worker waits for its own to be durable before taking its next message, so
a record is durable before its worker goes on either way.
"""

from __future__ import annotations

import queue
import threading
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterator

from sqlalchemy.engine import Connection

from newsletter.store.db import Store
from newsletter.store import deliveries as rows
from newsletter.store.deliveries import ClaimedDelivery


class _GroupCommit:
    """A thread that applies the records handed to it, as many as are waiting, in one commit."""

    def __init__(self, owner: "RunConnection") -> None:
        self._owner = owner
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-commit", daemon=True)
        self._thread.start()

    def apply(self, change: Callable[[Connection], None]) -> None:
        """Run ``change`` in a transaction and return once it is committed (or raise its error)."""
        done = threading.Event()
        error: list[BaseException] = []
        self._queue.put((change, done, error))
        done.wait()
        if error:
            raise error[0]

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        finished = False
        while not finished:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if None in batch:
                finished = True
                batch = [item for item in batch if item is not None]
            if not batch:
                continue
            try:
                self._owner.commit_together([change for change, _, _ in batch])
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting worker
                for _, _, error in batch:
                    error.append(exc)
            for _, done, _ in batch:
                done.set()


class RunConnection:
    """The run's connection: ``transaction()`` for any change, ``record_sent`` for the hot path."""

    def __init__(self, store: Store, *, group_commit: bool | None = None) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._dbapi_conn: Any = None
        # Default: straight to the driver on SQLite, group commit elsewhere; False: straight to
        # the driver on PostgreSQL too (one sending thread has nothing to group), one plain
        # transaction per record on any other store.
        self._dialect = store.engine.dialect.name
        use_group = (not store.is_sqlite) if group_commit is None else group_commit
        self._direct = not use_group and self._dialect == "sqlite"
        self._group = _GroupCommit(self) if use_group else None

    def _connection(self) -> Connection:
        """The run's connection (opened on first use); call with ``_lock`` held."""
        if self._conn is None:
            self._conn = self.store.engine.connect()
            self._dbapi_conn = self._conn.connection.dbapi_connection
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One commit on the run's connection."""
        with self._lock:
            conn = self._connection()
            with conn.begin():
                yield conn

    @contextmanager
    def own_transactions(self) -> Iterator[Connection]:
        """The run's connection for changes whose every statement may commit on its own: in
        autocommit mode on PostgreSQL (BEGIN and COMMIT would be two more round trips), one
        transaction elsewhere (SQLite's claims rely on ``BEGIN IMMEDIATE``)."""
        with (self._autocommit() if self._dialect == "postgresql" else self.transaction()) as conn:
            yield conn

    def commit_together(self, changes: list[Callable[[Connection], None]]) -> None:
        """Apply ``changes`` in one commit: on PostgreSQL a lone change runs in autocommit
        mode, its statement its own transaction (BEGIN and COMMIT would be two more round
        trips); every change handed here on PostgreSQL is one statement (``_record_sent_postgres``)."""
        if len(changes) == 1 and self._dialect == "postgresql":
            with self._autocommit() as conn:
                changes[0](conn)
            return
        with self.transaction() as conn:
            for change in changes:
                change(conn)

    @contextmanager
    def _autocommit(self) -> Iterator[Connection]:
        """The run's PostgreSQL connection in autocommit mode, back to transactions after; a
        connection the server dropped is thrown away, and the next use opens another."""
        with self._lock:
            conn = self._connection()
            dbapi_conn = self._dbapi_conn
            dbapi_conn.autocommit = True  # between the run's transactions the connection is idle
            try:
                yield conn
            finally:
                if not dbapi_conn.closed:
                    dbapi_conn.autocommit = False
                else:
                    self._conn, self._dbapi_conn = None, None
                    conn.invalidate()

    def record_sent(self, delivery: ClaimedDelivery, *, message_id: str, now: datetime, status: str,
                    upcoming: list[ClaimedDelivery] | None) -> tuple[int, bool]:
        """Record an accepted message (``status``: sent, or written for the outbox), durable when
        this returns; then drop from the front of ``upcoming`` the rows whose subscriber is no
        longer active. Returns (how many were dropped, whether the row's holder still held it)."""
        if self._direct:
            return self._record_sent_sqlite(delivery, message_id=message_id, now=now, status=status,
                                            upcoming=upcoming)
        if self._dialect == "postgresql":
            return self._record_sent_postgres(delivery, message_id=message_id, now=now, status=status,
                                              upcoming=upcoming)
        held, dropped = [True], [0]

        def change(conn: Connection) -> None:
            # The next row's check rides in the record's transaction; the worker's list is
            # shortened once that has committed.
            held[0] = rows.mark_sent(conn, delivery.id, message_id=message_id, now=now,
                                     holder=delivery.claimed_by, status=status)
            dropped[0] = rows.drop_inactive(conn, list(upcoming), now) if upcoming else 0

        if self._group is not None:
            self._group.apply(change)
        else:
            with self.transaction() as conn:
                change(conn)
        if upcoming:
            del upcoming[:dropped[0]]
        return dropped[0], held[0]

    def _record_sent_sqlite(self, delivery: ClaimedDelivery, *, message_id: str, now: datetime, status: str,
                            upcoming: list[ClaimedDelivery] | None) -> tuple[int, bool]:
        spool = self.store.unsubscribe_spool
        with self._lock:
            self._connection()
            held = rows.sqlite_mark_sent(self._dbapi_conn, delivery.id, message_id=message_id, now=now,
                                         holder=delivery.claimed_by, status=status)
            if not upcoming:
                return 0, held
            if spool is None or not spool.has_unapplied():
                return rows.sqlite_drop_inactive(self._dbapi_conn, upcoming, now), held
        # Unsubscribes spooled by the web app while the store was busy: a transaction applies
        # them first (see spool.py), so the next row's check sees them.
        with self.transaction() as conn:
            return rows.drop_inactive(conn, upcoming, now), held

    def _record_sent_postgres(self, delivery: ClaimedDelivery, *, message_id: str, now: datetime, status: str,
                              upcoming: list[ClaimedDelivery] | None) -> tuple[int, bool]:
        """One statement records the message and reads the next row's subscriber status."""
        result: list[tuple[bool, str | None]] = []

        def change(conn: Connection) -> None:
            result.append(rows.postgres_mark_sent(
                conn.connection.dbapi_connection, delivery.id, message_id=message_id, now=now,
                holder=delivery.claimed_by, status=status,
                next_subscriber_id=upcoming[0].subscriber.id if upcoming else None))

        if self._group is not None:
            self._group.apply(change)
        else:
            self.commit_together([change])
        held, next_status = result[0]
        if not upcoming or next_status == "active":
            return 0, held
        # The next subscriber left (rare): skip them, and check the ones after them too.
        with self.transaction() as conn:
            return rows.drop_inactive(conn, upcoming, now), held

    def close(self) -> None:
        """Stop the group-commit thread (if any) and close the connection."""
        if self._group is not None:
            self._group.close()
            self._group = None
        with self._lock:
            conn, self._conn, self._dbapi_conn = self._conn, None, None
        if conn is not None:
            conn.close()
