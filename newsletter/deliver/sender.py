"""Worker threads that take rows from the ledger, build each message and hand it to the
transport, with one shared rate limit, retries with backoff, and an honest report at the end.

The sender knows nothing of templates: it is given ``build(subscriber) -> OutgoingMessage``
(the render area's ``MessageFactory.build``) and a transport (``open_transport``).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from newsletter.deliver.ledger import Ledger
from newsletter.deliver.ratelimit import RateLimiter
from newsletter.deliver.transports import ConnectionFailure, PermanentFailure, TemporaryFailure
from newsletter.errors import DeliveryError
from newsletter.models import RunReport, Subscriber
from newsletter.store import Store
from newsletter.store.deliveries import SENT, WRITTEN, ClaimedDelivery


class OutgoingMessage(Protocol):
    """What the render area's ``MessageFactory.build(subscriber)`` returns."""

    message_id: str
    sender: str
    recipient: str
    data: bytes


class MessageTransport(Protocol):
    destination: str

    def send(self, sender: str, recipients: Sequence[str], data: bytes) -> str: ...

    def close(self) -> None: ...


CAP_REACHED = "daily cap"
MessageBuilder = Callable[[Subscriber], OutgoingMessage]
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SendOptions:
    """How one run sends. ``limit`` counts messages tried in this run (None: all)."""

    concurrency: int = 4
    rate_per_second: float = 10.0
    daily_cap: int = 0
    max_attempts: int = 5
    limit: int | None = None
    retry_delay_s: float = 2.0        # first backoff; doubles per attempt
    max_retry_delay_s: float = 120.0
    stale_after_s: float = 900.0      # a claim not renewed for this long is taken back (its holder hung or died)
    claim_batch: int = 32             # rows a worker claims per transaction when not rate-limited
    group_commit: bool | None = None  # None: straight to the driver on SQLite, group commit elsewhere

    def backoff_s(self, attempt: int) -> float:
        return min(self.max_retry_delay_s, self.retry_delay_s * (2 ** max(0, attempt - 1)))


@dataclass
class _Tally:
    """Counters the workers share (under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    retried: int = 0
    bounced: int = 0
    tried: int = 0
    capped: bool = False
    fatal: str = ""
    last_connection_error: str = ""
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


def deliver_issue(store: Store, issue_number: int, issue_key: str, build: MessageBuilder,
                  transport: MessageTransport, options: SendOptions, *,
                  stop: threading.Event | None = None,
                  progress: ProgressCallback | None = None, add_subscribers: bool = True) -> RunReport:
    """Send the issue to every subscriber whose ledger row is not yet settled.

    Creates the missing rows first (all active subscribers; not when ``add_subscribers`` is
    False, as for a resend of failures), then runs ``options.concurrency``
    workers until nothing is left to try, the limit or daily cap is reached, the transport fails
    for good, or ``stop`` is set (messages in flight are finished and recorded first).
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
        raise
    total = ledger.open_count(before)
    if options.limit is not None:
        total = min(total, options.limit)
    limiter = RateLimiter(options.rate_per_second)
    # Claim many rows per transaction when sending flat out (a claim costs more than a "sent"
    # record); under a rate limit a batch covers about 1/20 s of sending, so claimed rows do
    # not sit for long. The "still active?" check is made before each message either way.
    claim_batch = options.claim_batch
    if options.rate_per_second > 0:
        claim_batch = max(1, min(claim_batch, int(options.rate_per_second // (20 * max(1, options.concurrency)))))
    tally = _Tally()
    halt = threading.Event()

    def worker(number: int) -> None:
        tag = ledger.worker_tag(number)
        connection_failures = 0
        queue: list[ClaimedDelivery] = []  # rows claimed ahead, to spare a transaction per message
        try:
            while not (halt.is_set() or (stop is not None and stop.is_set())):
                if not tally.take_budget(options.limit):
                    return
                if not limiter.acquire(halt):
                    tally.give_back()
                    return
                if not queue:
                    left = tally.budget_left(options.limit)
                    claimed, skipped, capped = ledger.claim(tag, claim_batch if left is None else min(claim_batch, left))
                    queue.extend(claimed)
                    if skipped:
                        tally.add(suppressed=skipped)
                if not queue:
                    tally.give_back()
                    if capped:
                        tally.capped = True
                        return
                    wait_s = ledger.seconds_until_due()
                    if wait_s is None:
                        return
                    halt.wait(min(max(wait_s, 0.01), 1.0))
                    continue
                if _send_one(queue.pop(0), queue):
                    connection_failures = 0
                    continue
                # The server could not be reached: the row went back untouched; back off, and
                # give the run up after max_attempts connection failures in a row.
                connection_failures += 1
                if connection_failures >= options.max_attempts:
                    with tally.lock:
                        tally.fatal = tally.fatal or (
                            f"server unreachable after {connection_failures} tries: {tally.last_connection_error}")
                    halt.set()
                    return
                halt.wait(options.backoff_s(connection_failures))
        finally:
            ledger.release(*queue)

    def _send_one(delivery: ClaimedDelivery, upcoming: list[ClaimedDelivery]) -> bool:
        """Try one message and record the outcome; False only when the server was unreachable.

        Recording the outcome also drops from ``upcoming`` (this worker's claimed rows) the
        subscribers who stopped being active meanwhile."""
        email = delivery.subscriber.email
        try:
            message = build(delivery.subscriber)
        except Exception as exc:  # noqa: BLE001 - one message that cannot be built never stops the rest
            tally.add(failed=1, suppressed=ledger.failed(delivery, f"cannot build the message: {exc}",
                                                         upcoming=upcoming))
            tally.note(f"{email}: cannot build the message: {exc}")
            return True
        try:
            transport.send(message.sender, [message.recipient], message.data)
        except ConnectionFailure as exc:
            ledger.release(delivery)
            tally.give_back()
            tally.last_connection_error = str(exc)
            return False
        except TemporaryFailure as exc:
            attempts = delivery.attempts + 1
            if attempts >= options.max_attempts:
                error = f"{exc} (gave up after {attempts} attempts)"
                tally.add(failed=1, suppressed=ledger.failed(delivery, error, upcoming=upcoming))
                tally.note(f"{email}: {error}")
            else:
                tally.add(retried=1, suppressed=ledger.retry_later(delivery, str(exc), options.backoff_s(attempts),
                                                                   upcoming=upcoming))
            return True
        except PermanentFailure as exc:
            tally.add(failed=1, bounced=int(exc.bounced),
                      suppressed=ledger.failed(delivery, str(exc), bounced=exc.bounced, upcoming=upcoming))
            tally.note(f"{email}: {exc}" + (" (marked bounced)" if exc.bounced else ""))
            return True
        except DeliveryError as exc:
            # The transport cannot work at all (certificate, login, no STARTTLS): stop the run.
            ledger.release(delivery)
            tally.give_back()
            with tally.lock:
                tally.fatal = tally.fatal or str(exc)
            halt.set()
            return True
        except Exception as exc:  # noqa: BLE001 - e.g. bytes smtplib cannot send: this message only
            tally.add(failed=1, suppressed=ledger.failed(delivery, f"cannot send: {exc!r}", upcoming=upcoming))
            tally.note(f"{email}: cannot send: {exc!r}")
            return True
        skipped = ledger.sent(delivery, message.message_id, upcoming)
        with tally.lock:
            tally.sent += 1
            tally.suppressed += skipped
        return True

    threads = [threading.Thread(target=worker, args=(n,), name=f"send-{n}", daemon=True)
               for n in range(max(1, options.concurrency))]
    for thread in threads:
        thread.start()
    aborted = False
    renewed = time.monotonic()
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=0.1)
            if stop is not None and stop.is_set():
                halt.set()
            if time.monotonic() - renewed >= ledger.renew_every_s:
                ledger.renew_claims()  # the lease on the rows in flight (see ledger.py)
                renewed = time.monotonic()
            if progress is not None:
                progress(tally.sent + tally.failed + tally.suppressed, total)
    except KeyboardInterrupt:
        # An abort (a second Ctrl-C): no waiting for a server that may not answer. The daemon
        # workers end with the process; their rows stay "sending" under this process id and the
        # next run releases them (such a message may then be sent once more).
        aborted = True
        raise
    finally:
        halt.set()
        if not aborted:
            for thread in threads:
                thread.join()
            ledger.close()
            transport.close()
    if progress is not None:
        progress(tally.sent + tally.failed + tally.suppressed, total)

    try:
        after = ledger.counts()
    finally:
        ledger.close()  # again: counts() reopened the connection
    errors = list(tally.errors)
    if tally.fatal:
        errors.insert(0, tally.fatal)
    if tally.capped:
        errors.append(f"{CAP_REACHED} of {options.daily_cap} messages reached; the rest is left for later")
    return RunReport(
        issue_key=issue_key,
        sent=tally.sent,
        failed=tally.failed,
        deferred=ledger.open_count(after),
        suppressed=tally.suppressed,
        # An outbox run counts what an SMTP run sent as done too (it never sends those again).
        already_sent=before[done_status] + (before[SENT] if done_status == WRITTEN else 0),
        elapsed_s=time.monotonic() - started,
        destination=transport.destination,
        errors=tuple(errors),
        error_count=tally.noted + len(errors) - len(tally.errors),
    )


@contextmanager
def progress_bar(console: Console, description: str = "sending", *, disable: bool = False) -> Iterator[ProgressCallback]:
    """A rich progress bar (count, rate, elapsed, ETA) fed by ``deliver_issue``'s callback."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=disable) as bar:
        task = bar.add_task(description, total=None, rate="")
        started = time.monotonic()

        def update(done: int, total: int) -> None:
            elapsed = time.monotonic() - started
            rate = f"{done / elapsed:,.0f} msg/s" if elapsed > 0.5 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        yield update
