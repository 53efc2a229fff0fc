"""Worker threads that take rows from the ledger, build each message and hand it to the
transport, with one shared rate limit, retries with backoff, and an honest report at the end.

The sender knows nothing of templates: it is given ``build(subscriber) -> OutgoingMessage``
(the render area's ``MessageFactory.build``), called as ``build(subscriber, picks)`` for a row
that holds a reader's own issue, and a transport (``open_transport``).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from newsletter.deliver.ledger import Ledger
from newsletter.deliver.ratelimit import RateLimiter, SharedBudget
from newsletter.deliver.transports import (ConnectionFailure, PermanentFailure, TemporaryFailure, Throttled,
                                            Transport, UncertainDelivery)
from newsletter.errors import DeliveryError
from newsletter.models import RunReport, Subscriber
from newsletter.store import Store
from newsletter.store.deliveries import SENT, UNCERTAIN, WRITTEN, ClaimedDelivery


class OutgoingMessage(Protocol):
    """What the render area's ``MessageFactory.build(subscriber)`` returns."""

    message_id: str
    sender: str
    recipient: str
    data: bytes


CAP_REACHED = "daily cap"
MessageBuilder = Callable[[Subscriber], OutgoingMessage]


class ProgressCallback(Protocol):
    def __call__(self, done: int, total: int, note: str = "") -> None: ...


@dataclass(frozen=True)
class SendOptions:
    """How one run sends. ``limit`` counts messages tried in this run (None: all).

    A temporary failure of one message is retried as an MTA does: after ``retry_delay_s``,
    doubling up to ``max_retry_delay_s``, until the waits add up to ``retry_for_s`` (or
    ``max_attempts`` tries), then it fails. The run itself waits only for retries due within
    ``wait_for_retries_s``; later ones are left for the next ``send`` (or the scheduler).
    """

    concurrency: int = 4
    rate_per_second: float = 10.0
    daily_cap: int = 0
    max_attempts: int = 30
    limit: int | None = None
    retry_delay_s: float = 60.0        # first backoff; doubles per attempt
    max_retry_delay_s: float = 3600.0
    retry_for_s: float = 86400.0       # give a message up once its backoffs add up to this
    wait_for_retries_s: float = 90.0   # the run waits for retries due this soon, no longer
    give_up_throttled_s: float = 900.0  # throttled with nothing accepted for this long: stop the run
    stale_after_s: float = 900.0      # a claim not renewed for this long is taken back (its holder hung or died)
    claim_batch: int = 32             # rows a worker claims per transaction when not rate-limited
    group_commit: bool | None = None  # None: straight to the driver on SQLite, group commit elsewhere

    def backoff_s(self, attempt: int) -> float:
        return min(self.max_retry_delay_s, self.retry_delay_s * (2 ** min(max(0, attempt - 1), 60)))

    def gives_up(self, attempts: int) -> bool:
        """True when a message that failed for the ``attempts``-th time is not tried again."""
        if attempts >= self.max_attempts:
            return True
        return sum(self.backoff_s(n) for n in range(1, attempts + 1)) > self.retry_for_s


@dataclass
class _Tally:
    """Counters the workers share (under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    retried: int = 0
    bounced: int = 0
    uncertain: int = 0
    tried: int = 0
    capped: bool = False
    fatal: str = ""
    last_connection_error: str = ""
    last_progress: float = field(default_factory=time.monotonic)  # last acceptance (or the start)
    errors: list[str] = field(default_factory=list)  # the first 50, to show
    noted: int = 0                                   # all of them, to count

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def take_budget(self, limit: int | None) -> bool:
        with self.lock:
            if limit is not None and self.tried >= limit:
                return False
            self.tried += 1
            return True

    def give_back(self) -> None:
        with self.lock:
            self.tried -= 1

    def budget_left(self, limit: int | None) -> int | None:
        """Messages this run may still try (None: no limit), counting the one just taken."""
        if limit is None:
            return None
        with self.lock:
            return limit - self.tried + 1

    def note(self, text: str) -> None:
        with self.lock:
            self.noted += 1
            if len(self.errors) < 50:
                self.errors.append(text)

    def stop(self, reason: str, halt: threading.Event) -> None:
        """End the run early: the first reason is the one reported."""
        with self.lock:
            self.fatal = self.fatal or reason
        halt.set()

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.suppressed + self.uncertain


class _Run:
    """One run of ``deliver_issue``: the shared state of its worker threads."""

    def __init__(self, ledger: Ledger, build: MessageBuilder, transport: Transport,
                 options: SendOptions, stop: threading.Event | None) -> None:
        self.ledger = ledger
        self.build = build
        self.transport = transport
        self.options = options
        self.stop_requested = stop
        self.limiter = RateLimiter(options.rate_per_second)
        # The configured rate is shared with every other sender on the store that sends to the
        # same server (one bucket per destination); the limiter above paces this process and
        # slows it further when a server throttles.
        self.budget = SharedBudget(options.rate_per_second, lambda want: ledger.take_rate_tokens(
            f"send {transport.destination}", options.rate_per_second,
            max(1, math.ceil(options.rate_per_second / 10)), want))
        self.tally = _Tally()
        self.halt = threading.Event()
        # Claim many rows per transaction when sending flat out (a claim costs more than a
        # "sent" record); under a rate limit a batch covers about 1/20 s of sending, so claimed
        # rows do not sit for long. The "still active?" check is made before each message.
        self.claim_batch = options.claim_batch
        if options.rate_per_second > 0:
            self.claim_batch = max(1, min(self.claim_batch, int(
                options.rate_per_second // (20 * max(1, options.concurrency)))))

    def stopping(self) -> bool:
        return self.halt.is_set() or (self.stop_requested is not None and self.stop_requested.is_set())

    def worker(self, number: int) -> None:
        """Take rows and send them until nothing is left; never dies silently: an unexpected
        error (the store refusing a write, say) stops the whole run with its words."""
        queue: list[ClaimedDelivery] = []  # rows claimed ahead, to spare a transaction per message
        try:
            self._work(self.ledger.worker_tag(number), queue)
        except BaseException as exc:  # noqa: BLE001 - reported, and the run stops
            self.tally.stop(f"the run stopped on an error: {_describe(exc)}", self.halt)
        finally:
            try:
                self.ledger.release(*queue)
            except Exception:  # noqa: BLE001 - the store is refusing; the next run releases them
                pass

    def _work(self, tag: str, queue: list[ClaimedDelivery]) -> None:
        options, tally, ledger = self.options, self.tally, self.ledger
        connection_failures = 0
        while not self.stopping():
            if not tally.take_budget(options.limit):
                return
            if not self.limiter.acquire(self.halt) or not self.budget.acquire(self.halt):
                tally.give_back()
                return
            if not queue:
                left = tally.budget_left(options.limit)
                claimed, skipped, capped = ledger.claim(tag, self.claim_batch if left is None else min(self.claim_batch, left))
                queue.extend(claimed)
                if skipped:
                    tally.add(suppressed=skipped)
            if not queue:
                tally.give_back()
                if capped:
                    tally.capped = True
                    return
                wait_s = ledger.seconds_until_due()
                if wait_s is None or wait_s > options.wait_for_retries_s:
                    return  # nothing left, or only retries due later: the next run takes them
                self.halt.wait(min(max(wait_s, 0.01), 1.0))
                continue
            if self._send_one(queue.pop(0), queue):
                connection_failures = 0
                continue
            # The server could not be reached: the row went back untouched; back off, and
            # give the run up after max_attempts connection failures in a row.
            connection_failures += 1
            if connection_failures >= min(options.max_attempts, 5):
                self.tally.stop(f"server unreachable after {connection_failures} tries: "
                                f"{tally.last_connection_error}", self.halt)
                return
            self.halt.wait(min(options.backoff_s(connection_failures), 2.0 ** connection_failures))

    def _send_one(self, delivery: ClaimedDelivery, upcoming: list[ClaimedDelivery]) -> bool:
        """Try one message and record the outcome; False only when the server was unreachable.

        Recording the outcome also drops from ``upcoming`` (this worker's claimed rows) the
        subscribers who stopped being active meanwhile."""
        tally, ledger, options = self.tally, self.ledger, self.options
        email = delivery.subscriber.email
        try:
            if delivery.picks is None:
                message = self.build(delivery.subscriber)
            else:
                message = self.build(delivery.subscriber, delivery.picks)  # type: ignore[call-arg]
        except Exception as exc:  # noqa: BLE001 - one message that cannot be built never stops the rest
            tally.add(failed=1, suppressed=ledger.failed(delivery, f"cannot build the message: {exc}",
                                                         upcoming=upcoming))
            tally.note(f"{email}: cannot build the message: {exc}")
            return True
        try:
            self.transport.send(message.sender, [message.recipient], message.data)
        except ConnectionFailure as exc:
            ledger.release(delivery)
            tally.give_back()
            tally.last_connection_error = str(exc)
            return False
        except Throttled as exc:
            # Not this message's fault: it goes back to the front of the queue, no attempt spent,
            # and the whole run slows down.
            self.limiter.slow_down(str(exc), closed=exc.closed)
            upcoming.insert(0, delivery)
            tally.give_back()
            if time.monotonic() - tally.last_progress > options.give_up_throttled_s:
                tally.stop(f"the server has throttled every message for {options.give_up_throttled_s / 60:.0f} "
                           f"minutes ({exc}); the rest is left for later", self.halt)
            return True
        except TemporaryFailure as exc:
            attempts = delivery.attempts + 1
            if options.gives_up(attempts):
                error = f"{exc} (gave up after {attempts} attempts)"
                tally.add(failed=1, suppressed=ledger.failed(delivery, error, upcoming=upcoming))
                tally.note(f"{email}: {error}")
            else:
                tally.add(retried=1, suppressed=ledger.retry_later(delivery, str(exc), options.backoff_s(attempts),
                                                                   upcoming=upcoming))
            return True
        except UncertainDelivery as exc:
            self._record_uncertain(delivery, message.message_id, str(exc))
            return True
        except PermanentFailure as exc:
            tally.add(failed=1, bounced=int(exc.bounced),
                      suppressed=ledger.failed(delivery, str(exc), bounced=exc.bounced, upcoming=upcoming))
            tally.note(f"{email}: {exc}" + (" (marked bounced)" if exc.bounced else ""))
            return True
        except DeliveryError as exc:
            # The server refuses this sender, or the transport cannot work at all (certificate,
            # no STARTTLS): stop the run; this message and the rest stay pending.
            ledger.release(delivery)
            tally.give_back()
            tally.stop(str(exc), self.halt)
            return True
        except Exception as exc:  # noqa: BLE001 - e.g. bytes smtplib cannot send: this message only
            tally.add(failed=1, suppressed=ledger.failed(delivery, f"cannot send: {exc!r}", upcoming=upcoming))
            tally.note(f"{email}: cannot send: {exc!r}")
            return True
        self._record_sent(delivery, message.message_id, upcoming)
        return True

    def _record_sent(self, delivery: ClaimedDelivery, message_id: str, upcoming: list[ClaimedDelivery]) -> None:
        """The server took the message: nothing else happens before that is durable."""
        tally = self.tally
        try:
            skipped, held = self.ledger.sent(delivery, message_id, upcoming)
        except Exception as exc:  # noqa: BLE001 - the store refused: the journal keeps it
            self._journal(delivery, SENT, message_id, "", exc)
            with tally.lock:
                tally.sent += 1
            return
        self.limiter.speed_up()
        with tally.lock:
            tally.sent += 1
            tally.suppressed += skipped
            tally.last_progress = time.monotonic()
        if not held:
            tally.note(f"{delivery.subscriber.email}: another run took this message over before it was recorded "
                       f"as sent; it may arrive twice")

    def _record_uncertain(self, delivery: ClaimedDelivery, message_id: str, error: str) -> None:
        self.tally.add(uncertain=1)
        self.tally.note(f"{delivery.subscriber.email}: {error} (left for `newsletter resend --uncertain`)")
        try:
            self.ledger.uncertain(delivery, error, message_id)
        except Exception as exc:  # noqa: BLE001 - the store refused: the journal keeps it
            self._journal(delivery, UNCERTAIN, message_id, error, exc)

    def _journal(self, delivery: ClaimedDelivery, status: str, message_id: str, error: str,
                 store_error: BaseException) -> None:
        """Keep an outcome the store refused in the journal and stop the run (see journal.py)."""
        email = delivery.subscriber.email
        try:
            self.ledger.journal_outcome(delivery, status, message_id, error)
        except OSError as exc:
            self.tally.stop(f"{email}: the server accepted the message but neither the store "
                            f"({_describe(store_error)}) nor the journal {self.ledger.journal.path} "
                            f"({exc.strerror}) could record it: it may be sent again by the next run", self.halt)
            return
        self.tally.stop(f"the store cannot record deliveries ({_describe(store_error)}): what the server "
                        f"accepted is kept in {self.ledger.journal.path} and recorded by the next `newsletter "
                        f"send`; the run stopped", self.halt)


def _describe(exc: BaseException) -> str:
    """An error in a line, the driver's own words for a store error."""
    inner = getattr(exc, "orig", None) or exc
    return f"{type(inner).__name__}: {inner}"


def deliver_issue(store: Store, issue_number: int, issue_key: str, build: MessageBuilder,
                  transport: Transport, options: SendOptions, *,
                  stop: threading.Event | None = None,
                  progress: ProgressCallback | None = None, add_subscribers: bool = True) -> RunReport:
    """Send the issue to every subscriber whose ledger row is not yet settled.

    Applies the delivery journal and creates the missing rows first (all active subscribers;
    not when ``add_subscribers`` is False, as for a resend), then runs ``options.concurrency``
    workers until nothing is due, the limit or daily cap is reached, the server refuses this
    sender, the transport fails for good, or ``stop`` is set (messages in flight are finished
    and recorded first).
    """
    started = time.monotonic()
    done_status = getattr(transport, "ledger_status", SENT)
    ledger = Ledger(store, issue_number, daily_cap=options.daily_cap, stale_after_s=options.stale_after_s,
                    done_status=done_status,
                    group_commit=options.group_commit if options.concurrency > 1 else False)
    try:
        ledger.prepare(add_subscribers=add_subscribers)
        before = ledger.counts()
    except BaseException:
        ledger.close()
        transport.close()
        raise
    total = ledger.open_count(before)
    if options.limit is not None:
        total = min(total, options.limit)
    run = _Run(ledger, build, transport, options, stop)
    _run_workers(run, total, progress)
    return _report(run, issue_key, before, started)


def _run_workers(run: _Run, total: int, progress: ProgressCallback | None) -> None:
    """Start the workers and watch them: renew the run's leases, feed the progress line."""
    threads = [threading.Thread(target=run.worker, args=(n,), name=f"send-{n}", daemon=True)
               for n in range(max(1, run.options.concurrency))]
    for thread in threads:
        thread.start()
    aborted = False
    renewed = time.monotonic()
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=0.1)
            if run.stop_requested is not None and run.stop_requested.is_set():
                run.halt.set()
            if time.monotonic() - renewed >= run.ledger.renew_every_s:
                try:
                    run.ledger.renew_claims()  # the lease on the rows in flight (see ledger.py)
                except Exception as exc:  # noqa: BLE001 - a store that refuses: stop, do not die
                    run.tally.stop(f"the store cannot renew this run's claims: {_describe(exc)}", run.halt)
                renewed = time.monotonic()
            if progress is not None:
                progress(run.tally.done, total, run.limiter.describe())
    except KeyboardInterrupt:
        # An abort (a second Ctrl-C): no waiting for a server that may not answer. The daemon
        # workers end with the process; their rows stay "sending" under this process id and the
        # next run releases them (such a message may then be sent once more).
        aborted = True
        raise
    finally:
        run.halt.set()
        if not aborted:
            for thread in threads:
                thread.join()
            run.ledger.close()
            run.transport.close()
    if progress is not None:
        progress(run.tally.done, total, run.limiter.describe())


def _report(run: _Run, issue_key: str, before: dict[str, int], started: float) -> RunReport:
    """What the run did, from its tally and the ledger as it is now."""
    tally, ledger = run.tally, run.ledger
    try:
        after = ledger.counts()
        due = ledger.next_due() if ledger.open_count(after) else None
    except Exception as exc:  # noqa: BLE001 - the store is refusing: report what this run knows
        after, due = dict(before), None
        tally.stop(tally.fatal or f"the store cannot be read: {_describe(exc)}", run.halt)
    finally:
        ledger.close()  # again: counts() reopened the connection
    errors = list(tally.errors)
    if tally.fatal:
        errors.insert(0, tally.fatal)
    if tally.capped:
        errors.append(f"{CAP_REACHED} of {run.options.daily_cap} messages reached; the rest is left for later")
    done_status = ledger.done_status
    return RunReport(
        issue_key=issue_key,
        sent=tally.sent,
        failed=tally.failed,
        deferred=ledger.open_count(after),
        suppressed=tally.suppressed,
        # An outbox run counts what an SMTP run sent as done too (it never sends those again).
        already_sent=before[done_status] + (before[SENT] if done_status == WRITTEN else 0),
        elapsed_s=time.monotonic() - started,
        destination=run.transport.destination,
        errors=tuple(errors),
        error_count=tally.noted + len(errors) - len(tally.errors),
        uncertain=tally.uncertain,
        throttled=run.limiter.throttles,
        next_retry_at=due,
        stopped=tally.fatal,
    )
