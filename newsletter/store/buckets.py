"""Token buckets kept in the store, shared by every process on it: the send rate of all the
senders that use one SMTP server, and the web app's subscribe limits across ``serve``
processes. One row per bucket; each change is made in the caller's transaction, with the row
locked (PostgreSQL) or the store's write lock held (SQLite), so two processes never spend the
same token."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from newsletter.store.schema import rate_buckets


def take_tokens(conn: Connection, name: str, *, rate_per_second: float, burst: float, want: int,
                     now: datetime) -> tuple[int, float]:
    """Take up to ``want`` tokens from the store's bucket ``name`` (refilled at
    ``rate_per_second``, holding at most ``burst``): (tokens granted, seconds until one more
    is there when none was). Every sender on the store takes from the same bucket in its own
    transaction (rows locked on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises), so together
    they never go faster than the rate plus one burst."""
    full = {"name": name, "tokens": burst, "updated_at": now}
    if conn.dialect.name == "postgresql":  # two senders starting at once: one row, no error
        conn.execute(pg_insert(rate_buckets).values(**full).on_conflict_do_nothing(index_elements=["name"]))
    else:
        conn.execute(insert(rate_buckets).prefix_with("OR IGNORE").values(**full))
    row = conn.execute(select(rate_buckets.c.tokens, rate_buckets.c.updated_at)
                       .where(rate_buckets.c.name == name).with_for_update()).one()
    # ``now`` was read before this transaction waited for the row: another sender may have
    # written a later time meanwhile. The bucket's clock never goes back, or the time between
    # would be refilled twice.
    elapsed = max(0.0, (now - row.updated_at).total_seconds())
    tokens = min(burst, row.tokens + elapsed * rate_per_second)
    granted = max(0, min(want, int(tokens)))
    tokens -= granted
    conn.execute(update(rate_buckets).where(rate_buckets.c.name == name).values(
        tokens=tokens, updated_at=max(now, row.updated_at)))
    wait_s = 0.0 if granted else ((1.0 - tokens) / rate_per_second if rate_per_second > 0 else float("inf"))
    return granted, wait_s


def peek_tokens(conn: Connection, name: str, *, rate_per_second: float, burst: float, now: datetime) -> float:
    """How many tokens bucket ``name`` holds now (a missing bucket is full); changes nothing."""
    row = conn.execute(select(rate_buckets.c.tokens, rate_buckets.c.updated_at)
                       .where(rate_buckets.c.name == name)).first()
    if row is None:
        return burst
    return min(burst, row.tokens + max(0.0, (now - row.updated_at).total_seconds()) * rate_per_second)


def give_back_token(conn: Connection, name: str, *, burst: float) -> None:
    """Return one token to bucket ``name`` (a request that did nothing after all)."""
    conn.execute(update(rate_buckets).where(rate_buckets.c.name == name).values(
        tokens=rate_buckets.c.tokens + 1))
    conn.execute(update(rate_buckets).where(rate_buckets.c.name == name, rate_buckets.c.tokens > burst).values(
        tokens=burst))


def prune_buckets(conn: Connection, prefix: str, *, full_after_s: float, now: datetime) -> int:
    """Delete the buckets named ``prefix...`` untouched for longer than they take to refill:
    a full bucket says nothing a missing one does not."""
    result = conn.execute(delete(rate_buckets).where(and_(
        rate_buckets.c.name.startswith(prefix, autoescape=True),
        rate_buckets.c.updated_at < now - timedelta(seconds=full_after_s))))
    return int(result.rowcount or 0)
