"""The delivery journal: where an accepted message is recorded when the store cannot take it.

After the server's 250 to DATA the message is out of our hands; if the store then refuses the
"sent" record (locked past its busy timeout, read-only, disk full), forgetting it would send it
again on the next run. So the sender appends the outcome to this file, fsyncs it, and stops the
run; the next ``send`` or ``resend`` (and ``newsletter issues``) applies the journal to the
store before it claims or counts anything, then empties it. The normal path never touches it.

One JSON object a line; a line cut short by a crash mid-write is ignored (its message's row is
still ``sending`` and is treated as in flight: released by the next run, as after any crash).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from newsletter.errors import DeliveryError
from newsletter.store import Store
from newsletter.store import deliveries as rows

SUFFIX = ".sent-journal"


def journal_path(store: Store) -> Path:
    """Beside a SQLite file (``newsletter.db.sent-journal``); for a server database, a file
    in the working directory named after the store, so two stores never share one."""
    url = make_url(store.url)
    if store.is_sqlite and url.database and url.database != ":memory:":
        return Path(url.database + SUFFIX).expanduser()
    digest = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:12]
    return Path(f"newsletter-{digest}{SUFFIX}")


class Journal:
    """Append-only and fsynced; shared by the worker threads of one run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, *, issue_number: int, delivery_id: int, email: str, status: str, message_id: str,
               error: str, at: datetime) -> None:
        """Write one outcome and return once it is on disk (raises OSError if it cannot be)."""
        line = json.dumps({"issue": issue_number, "delivery": delivery_id, "email": email, "status": status,
                           "message_id": message_id, "error": error, "at": at.isoformat()}) + "\n"
        with self._lock:
            new = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:  # the file's name must survive a power loss too
                _fsync_folder(self.path.parent)

    def entries(self) -> list[dict[str, Any]]:
        """The complete lines; a torn last line (a crash mid-write) is left out."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        found = []
        for raw in data.splitlines():
            try:
                entry = json.loads(raw)
                found.append({**entry, "at": datetime.fromisoformat(entry["at"])})
            except (ValueError, KeyError, TypeError):
                continue
        return found

    def apply(self, store: Store) -> int:
        """Record every entry in the store in one transaction, then remove the file. Returns how
        many were applied. If the store still refuses, the journal stays and nothing is claimed."""
        entries = self.entries()
        if not entries:
            if self.path.exists():
                self.path.unlink()
            return 0
        try:
            with store.atomic() as conn:
                for e in entries:
                    rows.record_journaled(conn, delivery_id=e["delivery"], status=e["status"],
                                          message_id=e["message_id"], error=e["error"], at=e["at"])
        except SQLAlchemyError as exc:
            raise DeliveryError(
                f"{len(entries)} accepted message(s) in the delivery journal cannot be recorded in the store "
                f"yet ({type(exc.orig or exc).__name__}: {exc.orig or exc}); nothing was sent. Try again when the "
                f"store is writable.", where=str(self.path)) from None
        self.path.unlink()
        _fsync_folder(self.path.parent)
        return len(entries)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
