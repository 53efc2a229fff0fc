"""Limits on how fast and how much mail goes out.

``RateLimiter`` is one token bucket shared by every worker thread of a run, so
``rate_per_second`` is the rate of the whole run, not of each connection. ``DailyCap`` counts in
the store (messages sent in the last 24 hours plus those in flight), so two processes, or a run
today and one an hour ago, share one budget.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from newsletter.store.deliveries import sent_or_sending_since


class RateLimiter:
    """A token bucket of capacity ``burst`` filled at ``rate_per_second``; 0 means no limit.

    The default burst of one paces messages evenly: over any window the count never exceeds
    ``rate x seconds + 1``, which is what an operator's "10 per second" promise to a provider means.
    """

    def __init__(self, rate_per_second: float, burst: float = 1.0,
                 clock=time.monotonic, sleep=time.sleep) -> None:  # type: ignore[no-untyped-def]
        self.rate = float(rate_per_second)
        self.burst = max(1.0, float(burst))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._updated = clock()

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Take one token, waiting for it; False if ``stop`` was set while waiting."""
        if self.rate <= 0:
            return not (stop is not None and stop.is_set())
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            # Take the token now even if it goes negative: the debt is this caller's wait, and
            # the next caller queues behind it, so waits are fair and the total rate is exact.
            self._tokens -= 1.0
            wait_s = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait_s <= 0:
            return True
        if stop is not None:
            return not stop.wait(wait_s)
        self._sleep(wait_s)
        return True


class DailyCap:
    """At most ``cap`` messages in any 24 hours (0: no cap), counted in the store."""

    def __init__(self, cap: int) -> None:
        self.cap = int(cap)

    def remaining(self, conn: Connection, now: datetime) -> int | None:
        """How many more may go out now; None when there is no cap. Call inside the claim
        transaction so the count and the claim cannot be split by another process."""
        if self.cap <= 0:
            return None
        used = sent_or_sending_since(conn, now - timedelta(hours=24))
        return max(0, self.cap - used)
