"""Unsubscribes that could not wait for the store: an append-only, fsynced file beside a SQLite
store, applied by the next transaction that writes.

An unsubscribe must never be lost, and the law gives the sender no excuse for a busy database.
When the web app cannot get SQLite's write lock in time (an import's merge, a long send step, a
stuck process), it appends the request here (one JSON line, ``fsync``ed before it answers) and
answers at once. Every transaction begun on the store (``Store.atomic()``, and the delivery
ledger's claims, which go through the same engine) first applies what the file holds and is not
yet applied, inside that same transaction, so the next send's claim already sees the address
unsubscribed and skips it.

What has been applied is recorded in the store itself (``meta``: the file's id and the byte offset
applied up to), in the transaction that applies it: a transaction that rolls back leaves the
entries for the next one, and nothing is ever applied twice or skipped. The file is never
rewritten, so an append can never race a truncation; it only grows by one line per unsubscribe
that found the store busy. Its first line names it (a random id), so a file deleted and
started again is read from its beginning.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from newsletter.store.meta import get_value, set_value

log = logging.getLogger("newsletter.store")

SPOOL_SUFFIX = ".unsubscribes"
_META_KEY = "unsubscribe_spool_applied"


def spool_path_for(url: str) -> Path | None:
    """The spool file beside a SQLite store's file; None for any other store (in memory, or a
    server database, where a writer does not hold one lock for the whole store)."""
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).expanduser().resolve().with_name(Path(path).name + SPOOL_SUFFIX)


class UnsubscribeSpool:
    """The spool file of one store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The file size last seen fully applied: while the file keeps that size, a transaction's
        # check costs one stat() and no query.
        self._settled_size = 0

    # -- the web app's side ------------------------------------------------------------------

    def append(self, email: str, how: str, at: datetime | None = None) -> None:
        """Record one unsubscribe durably (written and fsynced when this returns)."""
        at = at or datetime.now(timezone.utc)
        line = json.dumps({"email": email, "how": how, "at": at.astimezone(timezone.utc).isoformat()},
                          ensure_ascii=False) + "\n"
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # one writer at a time, so the header is written once
            if os.fstat(fd).st_size == 0:
                os.write(fd, (json.dumps({"spool": secrets.token_hex(8)}) + "\n").encode())
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock
        if created:
            _fsync_dir(self.path.parent)

    def holds(self, email: str) -> bool:
        """True when an unsubscribe of ``email`` is in the file (applied or not): what a page may
        say while the store is still busy."""
        key = email.lower()
        return any(entry.get("email", "").lower() == key for entry, _ in self._entries(self._read(), 0))

    # -- every writer's side -------------------------------------------------------------------

    def has_unapplied(self) -> bool:
        """True when the file may hold entries not yet applied (one stat(), no query): for a
        writer that bypasses transactions, to know when it must take one."""
        try:
            return self.path.stat().st_size != self._settled_size
        except FileNotFoundError:
            return False

    def apply(self, conn: Connection) -> int:
        """Apply the entries not yet applied, in ``conn``'s transaction; returns how many.

        Never raises: a writer must not fail because of the spool (a bad line is logged and
        skipped, and counted as applied)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        if size == self._settled_size:
            return 0
        try:
            return self._apply(conn)
        except Exception:  # noqa: BLE001 - the writer's own work goes on; the next one retries
            log.exception("unsubscribe spool %s could not be applied", self.path)
            return 0

    def _apply(self, conn: Connection) -> int:
        # Here, not at the top: the store's engine (db.py) imports this module, and
        # store/subscribers.py imports db.py.
        from newsletter.store.subscribers import get_subscriber, set_status

        data = self._read()
        header_end = data.find(b"\n") + 1
        if header_end == 0:
            return 0
        spool_id = json.loads(data[:header_end]).get("spool", "")
        marker = (get_value(conn, _META_KEY) or "").rpartition(":")
        offset = int(marker[2]) if marker[0] == spool_id and marker[2].isdigit() else header_end
        applied = 0
        end = offset
        for entry, end in self._entries(data, offset):
            email = entry.get("email", "")
            subscriber = get_subscriber(conn, email) if isinstance(email, str) else None
            if subscriber is None or subscriber.status == "unsubscribed":
                continue
            at = datetime.fromisoformat(entry["at"]) if "at" in entry else None
            set_status(conn, subscriber.email, "unsubscribed", str(entry.get("how", "unsubscribed")), now=at)
            applied += 1
        if end != offset:
            set_value(conn, _META_KEY, f"{spool_id}:{end}")
        elif end == len(data):
            self._settled_size = len(data)
        return applied

    def _read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""

    @staticmethod
    def _entries(data: bytes, offset: int) -> list[tuple[dict[str, Any], int]]:
        """The complete lines from ``offset`` on (a line still being written is left for later),
        each with the offset just after it; the header line is not an entry."""
        entries = []
        while True:
            end = data.find(b"\n", offset) + 1
            if end == 0:
                return entries
            try:
                entry = json.loads(data[offset:end])
            except ValueError:
                log.error("unsubscribe spool: unreadable line at byte %d skipped", offset)
                entry = {}
            if isinstance(entry, dict) and "spool" not in entry:
                entries.append((entry, end))
            offset = end


def _fsync_dir(folder: Path) -> None:
    """Make a new file's directory entry durable too."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
