"""The delivery ledger of one issue as the sender sees it: claim a row, record what the server
said, each in its own short transaction.

Why it can be trusted after a crash:

* a row is ``sent`` only after the server accepted the message, and that commit happens before
  the worker takes the next one, so a killed process re-sends at most the one message each
  worker had in flight;
* a claim (``pending -> sending`` with ``claimed_by``/``claimed_at``) is a ``BEGIN IMMEDIATE``
  transaction, so two processes never hold the same row;
* rows left in ``sending`` by a process that is gone (same host, pid no longer running) are
  released at once by the next run; others only once their claim has not been renewed for
  ``stale_after_s``. A running send renews its claims every ``renew_every_s`` (a fifth of that,
  at most a minute), so a slow process, here or on another host, is never raced, and one that
  hangs or dies on another host is.

Worker threads of one process take turns on one connection of the store
(``store/runs.py``), rather than letting SQLite's busy handler put them to sleep for
milliseconds at a time; how a "sent" record is made durable cheaply is the store's business.

Rows are claimed several at a time (one transaction per batch), and the subscriber's status is
checked again right before each message: in the claim for the first of a batch, then in the
same store visit that records the previous message.

Every change to a claimed row names this worker as its holder; a row whose lease another run
took over is left to that run (see ``store/deliveries.py``). An acceptance the store cannot
record goes to the journal (``journal.py``), which ``prepare`` applies before anything is claimed.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy.engine import Connection

from newsletter.deliver.journal import Journal, journal_path
from newsletter.deliver.ratelimit import DailyCap
from newsletter.errors import SubscriberError
from newsletter.store import Store, utcnow
from newsletter.store import deliveries as rows
from newsletter.store.buckets import take_tokens
from newsletter.store.deliveries import ClaimedDelivery
from newsletter.store.runs import RunConnection
from newsletter.store.locks import pid_namespace, process_is_gone, this_process
from newsletter.store.meta import take_turns
from newsletter.store.subscribers import mark_bounced

_HOST = socket.gethostname()
_LIVE_RUNS: set[str] = set()  # run tags of this process's ledgers that are still open


def new_run_tag() -> str:
    """``host:pid:pidns:random``: the random part names the run (two containers may share host
    and pid); host, pid and pid namespace say when its process is provably gone."""
    return f"{this_process()}:{secrets.token_hex(4)}"


def claim_holder_is_dead(claimed_by: str) -> bool:
    """True when ``claimed_by`` (``host:pid:pidns:run:worker``) is provably gone: a process of
    this host, in this pid namespace, that no longer runs, or an earlier run of this very process
    that has ended (its release failed: a store that refused the write). Anything else (another
    host, another namespace, an unknown form) is judged only by its lease."""
    parts = claimed_by.split(":")
    if len(parts) < 4 or not parts[1].isdigit():
        return False
    host, pid, namespace = parts[0], int(parts[1]), parts[2]
    if host != _HOST or namespace != (pid_namespace() or "-"):
        return False
    if pid == os.getpid():
        return ":".join(parts[:4]) not in _LIVE_RUNS
    return process_is_gone(host, namespace, pid)


class Ledger:
    """The rows of one issue, shared by the worker threads of one run."""

    def __init__(self, store: Store, issue_number: int, *, daily_cap: int = 0,
                 stale_after_s: float = 900.0, clock: Callable[[], datetime] = utcnow,
                 done_status: str = rows.SENT, group_commit: bool | None = None) -> None:
        self.store = store
        # An SMTP run also takes rows only written to the outbox; an outbox run counts them done.
        self.done_status = done_status
        self.claimable = (rows.PENDING,) if done_status == rows.WRITTEN else (rows.PENDING, rows.WRITTEN)
        self.daily_cap_applies = done_status == rows.SENT
        self.issue_number = issue_number
        self.cap = DailyCap(daily_cap)
        self.stale_after_s = stale_after_s
        self.renew_every_s = max(0.2, min(60.0, stale_after_s / 5))
        self.clock = clock
        self.run_tag = new_run_tag()
        _LIVE_RUNS.add(self.run_tag)
        self.db = RunConnection(store, group_commit=group_commit)
        self._transaction = self.db.transaction
        self.journal = Journal(journal_path(store))

    def close(self) -> None:
        """Close the run's connection to the store; call once every worker has ended."""
        _LIVE_RUNS.discard(self.run_tag)
        self.db.close()

    # -- the run -------------------------------------------------------------------------

    def worker_tag(self, number: int) -> str:
        return f"{self.run_tag}:w{number}"

    def prepare(self, add_subscribers: bool = True) -> int:
        """Apply the delivery journal, create rows for active subscribers who have none, release
        dead claims. Returns the number of rows created."""
        self.journal.apply(self.store)
        now = self.clock()
        with self._transaction() as conn:
            created = rows.create_deliveries(conn, self.issue_number, now) if add_subscribers else 0
            self._release_stale(conn, now)
        return created

    def _release_stale(self, conn: Connection, now: datetime) -> int:
        return rows.release_stale_claims(conn, self.issue_number, now=now,
                                         stale_before=now - timedelta(seconds=self.stale_after_s),
                                         is_dead=claim_holder_is_dead)

    def renew_claims(self) -> int:
        """Renew the lease on every row this run holds; returns how many."""
        with self._transaction() as conn:
            return rows.renew_claims(conn, self.issue_number, run_tag=self.run_tag, now=self.clock())

    def counts(self) -> dict[str, int]:
        with self._transaction() as conn:
            return rows.status_counts(conn, self.issue_number)

    def open_count(self, counts: dict[str, int]) -> int:
        """Rows this run still has to deliver (or that are in flight somewhere)."""
        return counts[rows.SENDING] + sum(counts[s] for s in self.claimable)

    def claim(self, worker: str, limit: int = 1) -> tuple[list[ClaimedDelivery], int, bool]:
        """(up to ``limit`` rows to send, rows skipped as no longer active, daily cap reached)."""
        now = self.clock()
        capped = self.daily_cap_applies and self.cap.cap > 0
        # Uncapped, a claim needs no transaction around it: on PostgreSQL it is one statement.
        with (self._transaction() if capped else self.db.own_transactions()) as conn:
            if capped:
                # The count read below must still be true when the claim commits: claims of every
                # sender take turns (two each read 90 of a cap of 100 and each claimed 10).
                take_turns(conn, "delivery claims")
            remaining = self.cap.remaining(conn, now) if self.daily_cap_applies else None
            if remaining is not None and remaining <= 0:
                return [], 0, True
            if remaining is not None:
                limit = min(limit, remaining)
            claimed, skipped = rows.claim_deliveries(conn, self.issue_number, claimed_by=worker, now=now,
                                                     limit=limit, claimable=self.claimable)
        return claimed, skipped, False

    def seconds_until_due(self) -> float | None:
        """None when nothing is left to try; else how long until a deferred row is due (0: now).

        Releases claims of dead processes on the way, so a run that started beside a crashed
        one picks up its rows too.
        """
        now = self.clock()
        with self._transaction() as conn:
            self._release_stale(conn, now)
            counts = rows.status_counts(conn, self.issue_number)
            if sum(counts[s] for s in self.claimable) == 0:
                return None
            due = rows.next_attempt_due(conn, self.issue_number, self.claimable)
        if due is None:
            return 0.0
        return max(0.0, (due - now).total_seconds())

    def take_rate_tokens(self, bucket: str, rate_per_second: float, burst: float, want: int) -> tuple[int, float]:
        """Tokens of the send rate shared by every sender on the store that sends to the same
        destination (``bucket``; see ``SharedBudget``)."""
        with self._transaction() as conn:
            return take_tokens(conn, bucket, rate_per_second=rate_per_second, burst=burst, want=want,
                               now=self.clock())

    def next_due(self) -> datetime | None:
        """When the earliest message left for a later try is due (None: none is deferred)."""
        with self._transaction() as conn:
            return rows.next_attempt_due(conn, self.issue_number, self.claimable)

    def sent(self, delivery: ClaimedDelivery, message_id: str,
             upcoming: list[ClaimedDelivery] | None = None) -> tuple[int, bool]:
        """Record an accepted message; returns once the record is committed.

        Then drops from the front of ``upcoming`` (the rows this worker holds, next first) those
        whose subscriber stopped being active, marked ``skipped``. Returns (how many were
        dropped, whether this worker still held the row: False means another run had taken
        it over, and may send the message again)."""
        return self.db.record_sent(delivery, message_id=message_id, now=self.clock(), status=self.done_status,
                                   upcoming=upcoming)

    def journal_outcome(self, delivery: ClaimedDelivery, status: str, message_id: str, error: str = "") -> None:
        """The store refused to record what the server did with a message: keep it in the
        journal (fsynced) for the next run to apply. Raises OSError if even that fails."""
        self.journal.append(issue_number=self.issue_number, delivery_id=delivery.id,
                            email=delivery.subscriber.email, status=status, message_id=message_id,
                            error=error, at=self.clock())

    def uncertain(self, delivery: ClaimedDelivery, error: str, message_id: str) -> None:
        """Sent whole, reply lost: set aside for ``resend --uncertain``, never retried on its own."""
        with self._transaction() as conn:
            rows.mark_uncertain(conn, delivery.id, error=error, message_id=message_id, now=self.clock(),
                                holder=delivery.claimed_by)

    def failed(self, delivery: ClaimedDelivery, error: str, *, bounced: bool = False,
               upcoming: list[ClaimedDelivery] | None = None) -> int:
        """Record a failure for good (and the bounce); then as ``sent`` for ``upcoming``."""
        now = self.clock()
        with self._transaction() as conn:
            held = rows.mark_failed(conn, delivery.id, error=error, now=now, holder=delivery.claimed_by)
            if bounced and held:
                try:
                    mark_bounced(conn, delivery.subscriber.email, error, now=now)
                except SubscriberError:
                    pass  # removed from the list meanwhile: nothing left to suppress
            return rows.drop_inactive(conn, upcoming, now) if upcoming else 0

    def retry_later(self, delivery: ClaimedDelivery, error: str, delay_s: float,
                    upcoming: list[ClaimedDelivery] | None = None) -> int:
        """Back to pending, not before ``delay_s``; then as ``sent`` for ``upcoming``."""
        now = self.clock()
        with self._transaction() as conn:
            rows.mark_retry(conn, delivery.id, error=error, now=now, holder=delivery.claimed_by,
                            next_attempt_at=now + timedelta(seconds=delay_s))
            return rows.drop_inactive(conn, upcoming, now) if upcoming else 0

    def release(self, *claimed: ClaimedDelivery) -> None:
        """Give rows back untried (the run stops, or the server could not be reached)."""
        if claimed:
            with self._transaction() as conn:
                rows.release_claim(conn, *claimed, now=self.clock())

    def failures(self, limit: int = 20) -> list[tuple[str, str]]:
        with self._transaction() as conn:
            return rows.failed_deliveries(conn, self.issue_number, limit)
