"""Limits on how fast and how much mail goes out.

``RateLimiter`` is one token bucket shared by every worker thread of a run, so
``rate_per_second`` is the rate of the whole run, not of each connection. It adapts to a server
that throttles us, as TCP does to a congested path (additive increase, multiplicative
decrease): each throttling answer cuts the rate (``slow_down``), each accepted message grows it
back a little (``speed_up``), never past the configured rate. ``DailyCap`` counts in the store
(messages sent in the last 24 hours plus those in flight), so two processes, or a run today and
one an hour ago, share one budget.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy.engine import Connection

from newsletter.store.deliveries import sent_or_sending_since

DECREASE = 0.5          # a throttle halves the rate
INCREASE_STEPS = 20     # ... and this many accepted messages climb back to where it was cut
MIN_RATE = 0.2          # messages per second: never slower than one each five seconds
MAX_PAUSE_S = 60.0      # the longest wait before reconnecting after a dropped connection


class RateLimiter:
    """A token bucket of capacity ``burst`` filled at the current rate; 0 means no limit (until
    a server throttles us: then the limit starts at half the rate we were sending at).

    The default burst of one paces messages evenly: over any window the count never exceeds
    ``rate x seconds + 1``, which is what an operator's "10 per second" promise to a provider means.
    """

    def __init__(self, rate_per_second: float, burst: float = 1.0,
                 clock=time.monotonic, sleep=time.sleep) -> None:  # type: ignore[no-untyped-def]
        self.target = float(rate_per_second)   # the configured rate: never exceeded (0: none)
        self.rate = self.target                # the current rate (0: none)
        self.burst = max(1.0, float(burst))
        self.reason = ""                       # why the rate is below the configured one
        self.throttles = 0                     # throttling answers met in this run
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._updated = clock()
        self._step = 0.0
        self._last_cut = float("-inf")
        self._pause_s = 0.0
        self._paused_until = float("-inf")
        self._recent: deque[float] = deque(maxlen=64)  # times of recent acceptances, for rate 0

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Take one token, waiting for it; False if ``stop`` was set while waiting."""
        with self._lock:
            now = self._clock()
            wait_s = max(0.0, self._paused_until - now)
            if self.rate > 0:
                self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                # Take the token now even if it goes negative: the debt is this caller's wait, and
                # the next caller queues behind it, so waits are fair and the total rate is exact.
                self._tokens -= 1.0
                wait_s = max(wait_s, -self._tokens / self.rate if self._tokens < 0 else 0.0)
        if wait_s <= 0:
            return self.rate > 0 or not (stop is not None and stop.is_set())
        if stop is not None:
            return not stop.wait(wait_s)
        self._sleep(wait_s)
        return True

    def slow_down(self, reason: str, *, closed: bool = False) -> None:
        """A server throttled us: cut the rate (once per round of messages already in flight)
        and, when it dropped the connection, make every worker wait before the next message,
        longer each time in a row (1 s, 2 s, ... ``MAX_PAUSE_S``)."""
        with self._lock:
            now = self._clock()
            self.throttles += 1
            self.reason = reason
            current = self.rate if self.rate > 0 else self._observed_rate(now)
            # Answers to messages sent before the last cut say nothing new about the new rate.
            if now - self._last_cut >= min(1.0, 2.0 / max(current, MIN_RATE)):
                self.rate = max(MIN_RATE, current * DECREASE)
                self._step = max(current - self.rate, MIN_RATE) / INCREASE_STEPS
                self._last_cut = now
            if closed:
                self._pause_s = min(MAX_PAUSE_S, max(1.0, self._pause_s * 2))
                self._paused_until = max(self._paused_until, now + self._pause_s)

    def speed_up(self) -> None:
        """A message was accepted: grow the rate back by one step (additive increase)."""
        with self._lock:
            now = self._clock()
            self._recent.append(now)
            self._pause_s = 0.0
            if self._step <= 0:
                return
            self.rate += self._step
            if self.target > 0 and self.rate >= self.target:
                self.rate, self._step, self.reason = self.target, 0.0, ""

    def _observed_rate(self, now: float) -> float:
        """Messages per second accepted lately (for a run with no configured limit)."""
        if len(self._recent) < 2:
            return 1.0
        span = max(now - self._recent[0], 1e-3)
        return max(MIN_RATE, len(self._recent) / span)

    def describe(self) -> str:
        """The progress line's words: the current limit, and why it is lower than configured."""
        with self._lock:
            if self.rate <= 0:
                return ""
            text = f"limit {self.rate:,.1f}/s"
            if self.reason and (self.target <= 0 or self.rate < self.target):
                text += f" (slowed: {self.reason[:60]})"
            return text


class SharedBudget:
    """The configured rate as one budget for every sender on the store: tokens are taken from
    the store's bucket a batch at a time (about a tenth of a second's worth, so the store is not
    asked per message) and spent here. ``take(want) -> (granted, wait_s)`` asks the store."""

    def __init__(self, rate_per_second: float, take: Callable[[int], tuple[int, float]]) -> None:
        self.rate = float(rate_per_second)
        self.batch = max(1, math.ceil(self.rate / 10))
        self._take = take
        self._lock = threading.Lock()
        self._stash = 0

    def acquire(self, stop: threading.Event) -> bool:
        """One token, waiting for the store's bucket to refill; False if ``stop`` was set."""
        if self.rate <= 0:
            return True
        while not stop.is_set():
            with self._lock:
                if self._stash:
                    self._stash -= 1
                    return True
                granted, wait_s = self._take(self.batch)
                if granted:
                    self._stash = granted - 1
                    return True
            stop.wait(min(max(wait_s, 0.001), 1.0))
        return False


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
