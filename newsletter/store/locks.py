"""A single-instance lock per store: one row of the ``locks`` table per lock name.

Why a row in the store and not a lock file: the store is what two schedulers would fight over,
and it may be a PostgreSQL database shared by several hosts, where a file lock on one host
means nothing. The row names its holder as ``host:pid:pidns`` so a refused process can say who
holds the lock, and carries a heartbeat so a holder that died without cleaning up (a power cut,
a ``kill -9``) does not block the store forever:

- on this host and in this pid namespace, a holder whose pid no longer exists is stale at once
  (two containers may share a host name and pid numbers: from another namespace a pid proves
  nothing, and neither does an old ``host:pid`` holder);
- on any host, a holder whose heartbeat is older than ``stale_after_s`` is stale.

A stale holder is taken over in the same transaction that found it stale, and only if its row is
still there (``BEGIN IMMEDIATE`` on SQLite; the delete of that holder's row on PostgreSQL), so two
processes racing for a stale lock cannot both win.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from newsletter.errors import LockedError
from newsletter.store.db import Store, utcnow
from newsletter.store.schema import locks

log = logging.getLogger(__name__)

SCHEDULER_LOCK = "scheduler"
STALE_AFTER_S = 300.0
HEARTBEAT_EVERY_S = 30.0


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock, since when, and when it last said it was alive."""

    name: str
    holder: str
    acquired_at: datetime
    heartbeat_at: datetime

    @property
    def host(self) -> str:
        return self.holder.split(":", 1)[0]

    @property
    def pid(self) -> int | None:
        parts = self.holder.split(":")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    @property
    def namespace(self) -> str:
        """The holder's pid namespace; "" for an old ``host:pid`` holder."""
        parts = self.holder.split(":")
        return parts[2] if len(parts) > 2 else ""


def this_process() -> str:
    """``host:pid:pidns`` of the calling process: how a lock names its holder."""
    return f"{socket.gethostname()}:{os.getpid()}:{pid_namespace() or '-'}"


def pid_namespace() -> str:
    """This process's pid namespace (the inode of ``/proc/self/ns/pid``), "" where it cannot be
    read. Two containers may share a host name and hand out the same pids: a pid says whether a
    process is gone only to a process in the same namespace."""
    try:
        return os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        return ""


def process_is_gone(host: str, namespace: str, pid: int) -> bool:
    """True only when it is provable from here that process ``pid`` of ``host`` in pid
    ``namespace`` has ended: same host, same known namespace, another pid, not running."""
    return (host == socket.gethostname() and bool(namespace) and namespace == pid_namespace()
            and pid != os.getpid() and not pid_is_running(pid))


def pid_is_running(pid: int) -> bool:
    """Whether process ``pid`` on this host still runs; shared by the scheduler lock and the
    delivery claims, which both take over what a dead process left behind."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but not ours, or cannot tell: assume alive rather than steal
    try:  # a killed process its parent has not reaped yet is a zombie: gone for our purpose
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def is_stale(info: LockInfo, *, now: datetime, stale_after_s: float) -> bool:
    """A holder is stale when it is provably a dead process (this host, this pid namespace) or
    has stopped beating."""
    if info.pid is not None and process_is_gone(info.host, info.namespace, info.pid):
        return True
    return now - info.heartbeat_at > timedelta(seconds=stale_after_s)


def _read(conn: Connection, name: str) -> LockInfo | None:
    row = conn.execute(select(locks).where(locks.c.name == name)).first()
    if row is None:
        return None
    return LockInfo(row.name, row.holder, row.acquired_at, row.heartbeat_at)


def lock_holder(store: Store, name: str = SCHEDULER_LOCK) -> LockInfo | None:
    """The current row of lock ``name`` (stale or not), or None when nobody holds it."""
    with store.atomic() as conn:
        return _read(conn, name)


def _describe(info: LockInfo, now: datetime) -> str:
    age_s = max(0, int((now - info.heartbeat_at).total_seconds()))
    return (f"process {info.holder} holds the {info.name} lock since "
            f"{info.acquired_at:%Y-%m-%d %H:%M:%S} UTC (last heartbeat {age_s}s ago)")


class _TakenMeanwhile(Exception):
    """The stale holder acquire_lock read was replaced before it could take over."""


def acquire_lock(store: Store, name: str = SCHEDULER_LOCK, *, holder: str | None = None,
                 stale_after_s: float = STALE_AFTER_S, now: datetime | None = None) -> LockInfo:
    """Take lock ``name`` for ``holder`` (default: this process), or raise LockedError.

    Not re-entrant: a holder asking again for a lock it holds is refused too, because two
    schedulers in one process would be as wrong as in two.
    """
    holder = holder or this_process()
    now = now or utcnow()
    try:
        with store.atomic() as conn:
            current = _read(conn, name)
            if current is not None:
                if not is_stale(current, now=now, stale_after_s=stale_after_s):
                    raise LockedError(_describe(current, now), where=store.shown_url)
                log.warning("taking over the %s lock from stale holder %s", name, current.holder)
                # Only the stale holder's row: on PostgreSQL (READ COMMITTED) another process may
                # have taken it over since it was read, and its new row must not be deleted.
                taken = conn.execute(delete(locks).where(locks.c.name == name, locks.c.holder == current.holder))
                if taken.rowcount != 1:
                    raise _TakenMeanwhile
            conn.execute(insert(locks).values(name=name, holder=holder, acquired_at=now, heartbeat_at=now))
    except (IntegrityError, _TakenMeanwhile):
        # Another process took it first (databases without BEGIN IMMEDIATE): report it.
        current = lock_holder(store, name)
        if current is None:
            raise LockedError(f"the {name} lock was taken by another process at the same time",
                              where=store.shown_url) from None
        raise LockedError(_describe(current, now), where=store.shown_url) from None
    return LockInfo(name, holder, now, now)



def heartbeat(store: Store, name: str, holder: str, now: datetime | None = None) -> bool:
    """Say ``holder`` is still alive; False when it no longer holds the lock (taken over)."""
    with store.atomic() as conn:
        result = conn.execute(update(locks).where(locks.c.name == name, locks.c.holder == holder)
                              .values(heartbeat_at=now or utcnow()))
        return result.rowcount == 1


def release_lock(store: Store, name: str, holder: str) -> bool:
    """Drop the lock if ``holder`` still holds it; never removes somebody else's."""
    with store.atomic() as conn:
        result = conn.execute(delete(locks).where(locks.c.name == name, locks.c.holder == holder))
        return result.rowcount == 1


class StoreLock:
    """``with StoreLock(store):`` holds the lock, beats its heartbeat from a daemon thread
    (a long send must not look dead to another host), and releases it on the way out.

    ``lost`` is set if another process took the lock over (our heartbeat was too late); the
    holder should then stop starting new work.
    """

    def __init__(self, store: Store, name: str = SCHEDULER_LOCK, *, holder: str | None = None,
                 stale_after_s: float = STALE_AFTER_S, heartbeat_every_s: float = HEARTBEAT_EVERY_S) -> None:
        if heartbeat_every_s >= stale_after_s:
            raise ValueError("the heartbeat must come more often than the stale timeout")
        self.store = store
        self.name = name
        self.holder = holder or this_process()
        self.stale_after_s = stale_after_s
        self.heartbeat_every_s = heartbeat_every_s
        self.lost = threading.Event()
        self.info: LockInfo | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "StoreLock":
        self.info = acquire_lock(self.store, self.name, holder=self.holder, stale_after_s=self.stale_after_s)
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_every_s):
            try:
                if not heartbeat(self.store, self.name, self.holder):
                    log.error("lost the %s lock: another process took it over", self.name)
                    self.lost.set()
                    return
            except Exception as exc:  # a busy or unreachable store: try again next beat
                log.warning("could not renew the %s lock: %s", self.name, exc)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        release_lock(self.store, self.name, self.holder)
