"""The single-instance lock, on a real SQLite store: refusal naming the holder, stale holders
(dead pid on this host, silent heartbeat elsewhere) taken over, races won by exactly one."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest

from newsletter.errors import LockedError
from newsletter.store import Store, open_store, utcnow
from newsletter.store.locks import StoreLock, acquire_lock, heartbeat, lock_holder, pid_namespace, release_lock

HOST = socket.gethostname()
NS = pid_namespace()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_holder_is_refused_and_told_who_holds_it(store: Store) -> None:
    acquire_lock(store, holder="alpha:101")
    with pytest.raises(LockedError, match=r"process alpha:101 holds the scheduler lock since .* UTC"):
        acquire_lock(store, holder="beta:202")
    assert lock_holder(store).holder == "alpha:101"


def test_release_frees_the_lock_and_never_drops_another_holders(store: Store) -> None:
    acquire_lock(store, holder="alpha:101")
    assert release_lock(store, "scheduler", "beta:202") is False
    assert lock_holder(store).holder == "alpha:101"
    assert release_lock(store, "scheduler", "alpha:101") is True
    assert lock_holder(store) is None
    acquire_lock(store, holder="beta:202")
    assert lock_holder(store).holder == "beta:202"


def test_locks_by_different_names_are_independent(store: Store) -> None:
    acquire_lock(store, "scheduler", holder="alpha:101")
    acquire_lock(store, "send", holder="beta:202")
    assert lock_holder(store, "send").holder == "beta:202"


def test_a_dead_process_on_this_host_is_taken_over(store: Store) -> None:
    acquire_lock(store, holder=f"{HOST}:{dead_pid()}:{NS}")
    info = acquire_lock(store, holder=f"{HOST}:999999999:{NS}")
    assert lock_holder(store).holder == info.holder


def test_a_live_process_on_this_host_is_not_taken_over(store: Store) -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as proc:
        try:
            acquire_lock(store, holder=f"{HOST}:{proc.pid}:{NS}")
            with pytest.raises(LockedError, match=f"{HOST}:{proc.pid}:{NS}"):
                acquire_lock(store)
        finally:
            proc.kill()


def test_a_silent_holder_elsewhere_is_taken_over_after_the_timeout(store: Store) -> None:
    start = utcnow()
    acquire_lock(store, holder="other-host:42", now=start)
    with pytest.raises(LockedError):
        acquire_lock(store, holder="mine:1", now=start + timedelta(seconds=299), stale_after_s=300)
    assert heartbeat(store, "scheduler", "other-host:42", now=start + timedelta(seconds=200))
    with pytest.raises(LockedError):
        acquire_lock(store, holder="mine:1", now=start + timedelta(seconds=450), stale_after_s=300)
    acquire_lock(store, holder="mine:1", now=start + timedelta(seconds=501), stale_after_s=300)
    assert lock_holder(store).holder == "mine:1"
    assert heartbeat(store, "scheduler", "other-host:42") is False  # it can tell it lost


def test_racing_for_a_stale_lock_has_exactly_one_winner(db_url: str) -> None:
    setup = open_store(db_url)
    acquire_lock(setup, holder=f"{HOST}:{dead_pid()}:{NS}")
    barrier = threading.Barrier(6)
    winners: list[str] = []
    losers: list[str] = []

    def contend(n: int) -> None:
        store = Store(db_url)  # one engine per contender, as separate processes would have
        barrier.wait()
        try:
            acquire_lock(store, holder=f"contender:{n}")
            winners.append(f"contender:{n}")
        except LockedError as exc:
            losers.append(str(exc))

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and len(losers) == 5
    assert lock_holder(setup).holder == winners[0]
    assert all(winners[0] in message for message in losers)


def test_store_lock_beats_its_heartbeat_and_releases_on_exit(store: Store) -> None:
    with StoreLock(store, heartbeat_every_s=0.02, stale_after_s=60) as lock:
        first = lock_holder(store)
        assert first.holder == lock.holder
        deadline = time.monotonic() + 10
        while lock_holder(store).heartbeat_at == first.heartbeat_at and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lock_holder(store).heartbeat_at > first.heartbeat_at
        with pytest.raises(LockedError, match=lock.holder):
            acquire_lock(store, holder="someone:else")
    assert lock_holder(store) is None


def test_store_lock_notices_when_it_was_taken_over(store: Store) -> None:
    with StoreLock(store, heartbeat_every_s=0.02, stale_after_s=60) as lock:
        release_lock(store, "scheduler", lock.holder)
        acquire_lock(store, holder="thief:1")
        assert lock.lost.wait(10)
    assert lock_holder(store).holder == "thief:1"  # leaving never drops the new holder's lock


def test_a_dead_pid_from_another_pid_namespace_or_an_old_holder_waits_for_its_heartbeat(store: Store) -> None:
    """Two containers may share a host name and pid numbers: a holder in another pid namespace
    (or named the old ``host:pid`` way) is taken over only once its heartbeat is stale."""
    pid = dead_pid()
    for holder in (f"{HOST}:{pid}:4026532999", f"{HOST}:{pid}"):
        start = utcnow()
        acquire_lock(store, holder=holder, now=start)
        with pytest.raises(LockedError):
            acquire_lock(store, holder="mine:1:x", now=start + timedelta(seconds=10))
        release_lock(store, "scheduler", holder)
