"""Queries of the delivery ledger: one row per issue x subscriber.

A row moves ``pending -> sending -> sent | failed | uncertain`` (or ``skipped`` when the
subscriber stopped being active before their turn). ``uncertain`` is a message sent whole whose
reply was lost: the server may have it, so only ``resend --uncertain`` sends it again. A message written to the outbox folder ends ``written``: done
for the outbox, still to send when the same issue is later sent by SMTP. Every move is its own
short transaction, so what the ledger says is always what the server last answered. Claiming
runs inside ``BEGIN IMMEDIATE`` on SQLite: two processes can never claim the same row. Every
change to a claimed row names its holder (``claimed_by``) and touches the row only while that
holder still has it, so a sender whose lease was taken over never overwrites the new holder's
outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import and_, bindparam, case, func, insert, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from newsletter.errors import NewsletterError
from newsletter.models import Pick, Subscriber
from newsletter.store.schema import deliveries, issues, sqlite_time, subscribers

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
WRITTEN = "written"
FAILED = "failed"
SKIPPED = "skipped"
UNCERTAIN = "uncertain"
DELIVERY_STATUSES: tuple[str, ...] = (PENDING, SENDING, SENT, WRITTEN, FAILED, SKIPPED, UNCERTAIN)


class UnknownIssueError(NewsletterError):
    """An issue key that is not in the store (a typo in ``resend --failed KEY``)."""


@dataclass(frozen=True)
class ClaimedDelivery:
    """A row this worker now holds: who to send to, and how many tries came before."""

    id: int
    subscriber: Subscriber
    attempts: int
    claimed_by: str = ""
    picks: tuple[Pick, ...] | None = None  # the reader's own issue; None: the shared one


def picks_from_json(value: Any) -> tuple[Pick, ...] | None:
    """A row's ``picks`` column as ``Pick`` values (None: the shared issue)."""
    if not value:
        return None
    return tuple(Pick(paper_id=str(item[0]), reason=str(item[1])) for item in value)


def set_picks(conn: Connection, issue_number: int, picks: dict[int, list[Pick]], now: datetime) -> int:
    """Give each reader in ``picks`` (subscriber id -> their papers) their own issue: a pending
    row made for them, or their pending row that has none yet. Rows already sent, or given
    picks by another sender, are left as they are, so every copy of a reader's issue is the same.
    Returns how many rows got picks."""
    if not picks:
        return 0
    create_deliveries(conn, issue_number, now)
    changed = 0
    statement = (update(deliveries)
                 .where(deliveries.c.issue_number == issue_number,
                        deliveries.c.subscriber_id == bindparam("sid"),
                        deliveries.c.status == PENDING, deliveries.c.picks.is_(None))
                 .values(picks=bindparam("value"), updated_at=now))
    rows = [{"sid": sid, "value": [[p.paper_id, p.reason] for p in chosen]} for sid, chosen in picks.items() if chosen]
    for start in range(0, len(rows), 1000):
        result = conn.execute(statement, rows[start:start + 1000])
        changed += int(result.rowcount or 0)
    return changed


def picked_paper_ids(conn: Connection, issue_number: int) -> set[str]:
    """Every paper some reader's own issue of ``issue_number`` holds (cards to render)."""
    found: set[str] = set()
    for value in conn.execute(select(deliveries.c.picks).where(deliveries.c.issue_number == issue_number,
                                                               deliveries.c.picks.is_not(None))).scalars():
        found.update(str(item[0]) for item in value or [])
    return found


def readers_without_picks(conn: Connection, issue_number: int, subscriber_ids: set[int]) -> set[int]:
    """Those of ``subscriber_ids`` still to be given their own issue: no row yet, or a pending
    row with no picks."""
    done = set(conn.execute(select(deliveries.c.subscriber_id).where(
        deliveries.c.issue_number == issue_number,
        or_(deliveries.c.status != PENDING, deliveries.c.picks.is_not(None)))).scalars())
    return subscriber_ids - done


def create_deliveries(conn: Connection, issue_number: int, now: datetime) -> int:
    """Add a pending row for every active subscriber who has none yet for this issue.

    One INSERT ... SELECT, so 100,000 rows cost one statement; running it again (a resumed send)
    adds only subscribers who joined since and never touches existing rows.
    """
    existing = select(deliveries.c.subscriber_id).where(deliveries.c.issue_number == issue_number)
    source = select(
        literal(issue_number), subscribers.c.id, subscribers.c.email, literal(PENDING), literal(0),
        literal(""), literal(now, type_=deliveries.c.updated_at.type),
    ).where(subscribers.c.status == "active", subscribers.c.id.not_in(existing)).order_by(subscribers.c.id)
    columns = ["issue_number", "subscriber_id", "email", "status", "attempts", "last_error", "updated_at"]
    if conn.dialect.name == "postgresql":
        # Two senders starting at once both see the rows missing (READ COMMITTED): the second's
        # copies are dropped instead of failing its whole run on the unique constraint. (SQLite's
        # BEGIN IMMEDIATE already runs the two one after the other.)
        # (psycopg reports no row count for INSERT ... SELECT: the rows made are counted.)
        statement = pg_insert(deliveries).from_select(columns, source).on_conflict_do_nothing(
            index_elements=["issue_number", "subscriber_id"]).returning(literal(1))
        return len(conn.execute(statement).all())
    return int(conn.execute(insert(deliveries).from_select(columns, source)).rowcount or 0)


# The statements run once per message are built once: constructing a SQLAlchemy statement
# and its cache key costs more than the SQLite commit itself. One status per query: with
# ``status IN (...)`` SQLite sorts every matching row for ORDER BY id (O(n) per claim), with
# ``status = ?`` the index hands them over in order.
_CLAIM_SELECT = (
    select(deliveries.c.id, deliveries.c.email, deliveries.c.attempts, subscribers.c.id.label("sid"),
           subscribers.c.name, subscribers.c.status.label("sstatus"), subscribers.c.attributes, deliveries.c.picks)
    .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
    .where(deliveries.c.issue_number == bindparam("issue_number"),
           deliveries.c.status == bindparam("status"),
           or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= bindparam("now")))
    .order_by(deliveries.c.id).limit(bindparam("limit"))
    # PostgreSQL: two processes claiming at once each skip the other's rows (SQLite ignores
    # this; its BEGIN IMMEDIATE already serialises claims).
    .with_for_update(skip_locked=True, of=deliveries)
)
_CLAIM_UPDATE = update(deliveries).where(deliveries.c.id.in_(bindparam("ids", expanding=True))).values(
    status=SENDING, claimed_by=bindparam("claimed_by"), claimed_at=bindparam("now"), updated_at=bindparam("now"))
# A skipped row keeps the error that came before (a bounce's 550 answer, say) after the reason.
_NO_LONGER_ACTIVE = "subscriber no longer active"
_SKIP_UPDATE = update(deliveries).where(deliveries.c.id.in_(bindparam("ids", expanding=True))).values(
    status=SKIPPED, claimed_by=None, claimed_at=None, updated_at=bindparam("now"),
    last_error=case((func.coalesce(deliveries.c.last_error, "") == "", literal(_NO_LONGER_ACTIVE)),
                    else_=literal(f"{_NO_LONGER_ACTIVE}; before: ") + deliveries.c.last_error))
_MARK_SENT = update(deliveries).where(deliveries.c.id == bindparam("delivery_id"),
                                      deliveries.c.claimed_by == bindparam("holder")).values(
    status=bindparam("status"), attempts=deliveries.c.attempts + 1, message_id=bindparam("message_id"),
    last_error="", sent_at=bindparam("now"), claimed_by=None, claimed_at=None, next_attempt_at=None,
    updated_at=bindparam("now"))
# The server accepted a message whose row this sender no longer holds (its lease was taken
# over): the acceptance happened all the same and is recorded, unless the row is settled.
_MARK_SENT_ANYWAY = update(deliveries).where(
    deliveries.c.id == bindparam("delivery_id"), deliveries.c.status.not_in((SENT, UNCERTAIN))).values(
    status=bindparam("status"), attempts=deliveries.c.attempts + 1, message_id=bindparam("message_id"),
    last_error="", sent_at=bindparam("now"), claimed_by=None, claimed_at=None, next_attempt_at=None,
    updated_at=bindparam("now"))

_MARK_SENT_SQLITE = (
    "UPDATE deliveries SET status = ?, attempts = attempts + 1, message_id = ?, last_error = '', sent_at = ?, "
    "claimed_by = NULL, claimed_at = NULL, next_attempt_at = NULL, updated_at = ? WHERE id = ? AND claimed_by = ?")
_MARK_SENT_ANYWAY_SQLITE = _MARK_SENT_SQLITE.replace("AND claimed_by = ?", "AND status NOT IN ('sent', 'uncertain')")


# The per-message statements of a SQLite run, for the DBAPI connection itself: through
# SQLAlchemy (begin, execute, commit) one "sent" record costs ~0.14 ms of CPU, on the driver
# ~0.02 ms, and the sender runs them once per message.
_SUBSCRIBER_STATUS_SQLITE = "SELECT status FROM subscribers WHERE id = ?"
_MARK_SKIPPED_SQLITE = (
    "UPDATE deliveries SET status = 'skipped', last_error = CASE WHEN coalesce(last_error, '') = '' "
    f"THEN '{_NO_LONGER_ACTIVE}' ELSE '{_NO_LONGER_ACTIVE}; before: ' || last_error END, claimed_by = NULL, "
    "claimed_at = NULL, updated_at = ? WHERE id = ? AND status = 'sending'")


def sqlite_mark_sent(dbapi_conn: Any, delivery_id: int, *, message_id: str, now: datetime,
                     holder: str, status: str = SENT) -> bool:
    """``mark_sent`` on a SQLite DBAPI connection in autocommit mode: one statement, its own
    transaction, durable (WAL) when this returns. False when ``holder`` had lost the row."""
    stamp = sqlite_time(now)
    if dbapi_conn.execute(_MARK_SENT_SQLITE, (status, message_id, stamp, stamp, delivery_id, holder)).rowcount:
        return True
    dbapi_conn.execute(_MARK_SENT_ANYWAY_SQLITE, (status, message_id, stamp, stamp, delivery_id))
    return False


def sqlite_drop_inactive(dbapi_conn: Any, upcoming: list[ClaimedDelivery], now: datetime) -> int:
    """Take from the front of ``upcoming`` (rows this worker holds, next first) every row whose
    subscriber is no longer active, marking it ``skipped``; stop at the first still active.
    Returns how many were dropped. Run right before that next message goes out, so someone who
    unsubscribed a moment ago is not sent it even though their row was claimed earlier."""
    dropped = 0
    while upcoming:
        row = dbapi_conn.execute(_SUBSCRIBER_STATUS_SQLITE, (upcoming[0].subscriber.id,)).fetchone()
        if row is not None and row[0] == "active":
            break
        dbapi_conn.execute(_MARK_SKIPPED_SQLITE, (sqlite_time(now), upcoming.pop(0).id))
        dropped += 1
    return dropped


# The per-message statement of a PostgreSQL run, for the psycopg connection in autocommit mode:
# the "sent" record and the status of the subscriber the worker mails next, in one statement,
# so one round trip and one commit a message where BEGIN, UPDATE, COMMIT, BEGIN, SELECT, COMMIT
# took six. The data-modifying WITH runs whether or not its rows are read; the SELECT sees the
# subscriber as committed when the statement starts, right before that next message goes out.
_MARK_SENT_POSTGRES = (
    "WITH sent AS (UPDATE deliveries SET status = %(status)s, attempts = attempts + 1, "
    "message_id = %(message_id)s, last_error = '', sent_at = %(now)s, claimed_by = NULL, claimed_at = NULL, "
    "next_attempt_at = NULL, updated_at = %(now)s WHERE id = %(id)s AND claimed_by = %(holder)s RETURNING 1) "
    "SELECT (SELECT count(*) FROM sent), (SELECT status FROM subscribers WHERE id = %(next_id)s)")
_MARK_SENT_ANYWAY_POSTGRES = (
    "UPDATE deliveries SET status = %(status)s, attempts = attempts + 1, message_id = %(message_id)s, "
    "last_error = '', sent_at = %(now)s, claimed_by = NULL, claimed_at = NULL, next_attempt_at = NULL, "
    "updated_at = %(now)s WHERE id = %(id)s AND status NOT IN ('sent', 'uncertain')")


def _naive_utc(value: datetime) -> datetime:
    """What ``UTCDateTime`` binds on PostgreSQL (naive UTC in a ``timestamp`` column)."""
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def postgres_mark_sent(dbapi_conn: Any, delivery_id: int, *, message_id: str, now: datetime, holder: str,
                       status: str = SENT, next_subscriber_id: int | None = None) -> tuple[bool, str | None]:
    """``mark_sent`` on a psycopg connection in autocommit mode, durable when this returns, and
    the status of subscriber ``next_subscriber_id`` read in the same statement (None: no such
    subscriber, or none asked). Returns (whether ``holder`` still held the row, that status)."""
    params = {"status": status, "message_id": message_id, "now": _naive_utc(now), "id": delivery_id}
    with dbapi_conn.cursor() as cursor:
        cursor.execute(_MARK_SENT_POSTGRES, {**params, "holder": holder, "next_id": next_subscriber_id})
        row = cursor.fetchone()
        held, next_status = bool(row[0]), row[1]
        if not held:
            cursor.execute(_MARK_SENT_ANYWAY_POSTGRES, params)
    return held, next_status


def drop_inactive(conn: Connection, upcoming: list[ClaimedDelivery], now: datetime) -> int:
    """``sqlite_drop_inactive`` for any store, inside a transaction."""
    dropped = 0
    while upcoming:
        status = conn.execute(select(subscribers.c.status).where(
            subscribers.c.id == upcoming[0].subscriber.id)).scalar()
        if status == "active":
            break
        conn.execute(_SKIP_UPDATE.where(deliveries.c.status == SENDING), {"ids": [upcoming.pop(0).id], "now": now})
        dropped += 1
    return dropped


# A claim on PostgreSQL: pick, lock, skip and claim in one statement, so one round trip a batch
# (in autocommit mode, the statement its own transaction) where BEGIN, SELECT ... FOR UPDATE,
# UPDATE, COMMIT took four. The subscriber's status is the one committed when it starts; the
# picked rows stay locked until it ends, so no other claim (SKIP LOCKED) can take them between.
_CLAIM_POSTGRES = (
    "WITH picked AS (SELECT d.id FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
    "WHERE d.issue_number = %(issue_number)s AND d.status = %(status)s "
    "AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= %(now)s) "
    "ORDER BY d.id LIMIT %(limit)s FOR UPDATE OF d SKIP LOCKED) "
    "UPDATE deliveries d SET status = CASE WHEN s.status = 'active' THEN 'sending' ELSE 'skipped' END, "
    "claimed_by = CASE WHEN s.status = 'active' THEN %(claimed_by)s END, "
    "claimed_at = CASE WHEN s.status = 'active' THEN %(now)s END, updated_at = %(now)s, "
    "last_error = CASE WHEN s.status = 'active' THEN d.last_error "
    f"WHEN coalesce(d.last_error, '') = '' THEN '{_NO_LONGER_ACTIVE}' "
    f"ELSE '{_NO_LONGER_ACTIVE}; before: ' || d.last_error END "
    "FROM picked, subscribers s WHERE d.id = picked.id AND s.id = d.subscriber_id "
    "RETURNING d.id, d.email, d.attempts, s.id, s.name, s.status, s.attributes, d.picks")


def _claim_postgres(dbapi_conn: Any, issue_number: int, *, claimed_by: str, now: datetime, limit: int,
                    claimable: tuple[str, ...]) -> tuple[list[ClaimedDelivery], int]:
    """``claim_deliveries`` on a psycopg connection: one statement a status, and one more only
    when rows of inactive subscribers left the batch short of ``limit``."""
    claimed: list[ClaimedDelivery] = []
    skipped = 0
    statuses = list(claimable)
    params = {"issue_number": issue_number, "now": _naive_utc(now), "claimed_by": claimed_by}
    with dbapi_conn.cursor() as cursor:
        while len(claimed) < limit and statuses:
            wanted = limit - len(claimed)
            cursor.execute(_CLAIM_POSTGRES, {**params, "status": statuses[0], "limit": wanted})
            picked = sorted(cursor.fetchall(), key=lambda row: row[0])  # RETURNING keeps no order
            if len(picked) < wanted:
                statuses.pop(0)  # none left in this status (but rows other claims hold)
            skipped += sum(1 for row in picked if row[5] != "active")
            claimed.extend(ClaimedDelivery(
                id=row_id, attempts=attempts, claimed_by=claimed_by,
                subscriber=Subscriber(email=email, name=name, status="active", id=sid,
                                      attributes=dict(attributes or {})),
                picks=picks_from_json(picks),
            ) for row_id, email, attempts, sid, name, status, attributes, picks in picked if status == "active")
    return claimed, skipped


def claim_deliveries(conn: Connection, issue_number: int, *, claimed_by: str, now: datetime,
                     limit: int = 1, claimable: tuple[str, ...] = (PENDING,)) -> tuple[list[ClaimedDelivery], int]:
    """Claim up to ``limit`` due rows in a ``claimable`` status; returns (claimed, skipped as no
    longer active).

    The subscriber's status is read in the same transaction as the claim, right before the
    message goes out: someone who unsubscribed a second ago is marked ``skipped`` instead.
    Call inside ``store.atomic()``; on PostgreSQL, where each status's claim is one statement,
    a connection in autocommit mode will do as well (see ``_CLAIM_POSTGRES``).
    """
    if conn.dialect.name == "postgresql":
        return _claim_postgres(conn.connection.dbapi_connection, issue_number, claimed_by=claimed_by,
                               now=now, limit=limit, claimable=claimable)
    claimed: list[ClaimedDelivery] = []
    skipped = 0
    statuses = list(claimable)
    while len(claimed) < limit and statuses:
        rows = conn.execute(_CLAIM_SELECT, {"issue_number": issue_number, "status": statuses[0],
                                            "now": now, "limit": limit - len(claimed)}).all()
        if not rows:
            statuses.pop(0)
            continue
        inactive = [r.id for r in rows if r.sstatus != "active"]
        active = [r for r in rows if r.sstatus == "active"]
        if inactive:
            conn.execute(_SKIP_UPDATE, {"ids": inactive, "now": now})
            skipped += len(inactive)
        if active:
            conn.execute(_CLAIM_UPDATE, {"ids": [r.id for r in active], "claimed_by": claimed_by, "now": now})
            claimed.extend(ClaimedDelivery(
                id=r.id, attempts=r.attempts, claimed_by=claimed_by,
                subscriber=Subscriber(email=r.email, name=r.name, status="active", id=r.sid,
                                      attributes=dict(r.attributes or {})),
                picks=picks_from_json(r.picks),
            ) for r in active)
    return claimed, skipped


def release_stale_claims(conn: Connection, issue_number: int, *, stale_before: datetime,
                         is_dead: Callable[[str], bool], now: datetime) -> int:
    """Put back to ``pending`` rows left in ``sending`` by a process that died (or stalled).

    A row claimed by a process known dead is released at once; any other claim only once it is
    older than ``stale_before``. A running send renews its claims well within that time
    (``renew_claims``), so a slow but living sender is never raced.
    """
    rows = conn.execute(select(deliveries.c.id, deliveries.c.claimed_by, deliveries.c.claimed_at).where(
        deliveries.c.issue_number == issue_number, deliveries.c.status == SENDING)).all()
    ids = [r.id for r in rows
           if r.claimed_at is None or r.claimed_at < stale_before or is_dead(r.claimed_by or "")]
    if ids:
        conn.execute(update(deliveries).where(deliveries.c.id.in_(ids), deliveries.c.status == SENDING).values(
            status=PENDING, claimed_by=None, claimed_at=None, updated_at=now))
    return len(ids)


def renew_claims(conn: Connection, issue_number: int, *, run_tag: str, now: datetime) -> int:
    """Move ``claimed_at`` of the rows a running send holds (``claimed_by`` starting with
    ``run_tag:``) to ``now``: a lease, so a slow sender is never taken for a dead one."""
    done = conn.execute(update(deliveries).where(
        deliveries.c.issue_number == issue_number, deliveries.c.status == SENDING,
        deliveries.c.claimed_by.startswith(f"{run_tag}:", autoescape=True)).values(claimed_at=now))
    return done.rowcount


def mark_sent(conn: Connection, delivery_id: int, *, message_id: str, now: datetime, holder: str,
              status: str = SENT) -> bool:
    """Accepted by the server (``sent``) or written to the outbox (``written``). False when
    ``holder`` no longer held the row (the acceptance is recorded all the same)."""
    params = {"delivery_id": delivery_id, "status": status, "message_id": message_id, "now": now}
    if conn.execute(_MARK_SENT, {**params, "holder": holder}).rowcount:
        return True
    conn.execute(_MARK_SENT_ANYWAY, params)
    return False


def _held(delivery_id: int, holder: str):  # type: ignore[no-untyped-def]
    """The row, only while ``holder`` still has it claimed."""
    return update(deliveries).where(deliveries.c.id == delivery_id, deliveries.c.status == SENDING,
                                    deliveries.c.claimed_by == holder)


def mark_failed(conn: Connection, delivery_id: int, *, error: str, now: datetime, holder: str) -> bool:
    """Refused for good. False (and nothing changed) when ``holder`` no longer held the row."""
    return bool(conn.execute(_held(delivery_id, holder).values(
        status=FAILED, attempts=deliveries.c.attempts + 1, last_error=error, claimed_by=None,
        claimed_at=None, next_attempt_at=None, updated_at=now)).rowcount)


def mark_uncertain(conn: Connection, delivery_id: int, *, error: str, message_id: str, now: datetime,
                   holder: str) -> bool:
    """Sent whole, reply lost: never retried on its own. ``sent_at`` is when it went out (the
    daily cap counts it: it may have been delivered)."""
    return bool(conn.execute(_held(delivery_id, holder).values(
        status=UNCERTAIN, attempts=deliveries.c.attempts + 1, last_error=error, message_id=message_id,
        sent_at=now, claimed_by=None, claimed_at=None, next_attempt_at=None, updated_at=now)).rowcount)


def mark_retry(conn: Connection, delivery_id: int, *, error: str, next_attempt_at: datetime,
               now: datetime, holder: str) -> bool:
    """A temporary failure: back to pending, not to be claimed before ``next_attempt_at``."""
    return bool(conn.execute(_held(delivery_id, holder).values(
        status=PENDING, attempts=deliveries.c.attempts + 1, last_error=error, claimed_by=None,
        claimed_at=None, next_attempt_at=next_attempt_at, updated_at=now)).rowcount)


def release_claim(conn: Connection, *claimed: ClaimedDelivery, now: datetime) -> None:
    """Give claimed rows back untried (the run stopped before sending them), each only while its
    holder still has it."""
    for holder in {d.claimed_by for d in claimed}:
        ids = [d.id for d in claimed if d.claimed_by == holder]
        conn.execute(update(deliveries).where(
            deliveries.c.id.in_(ids), deliveries.c.status == SENDING, deliveries.c.claimed_by == holder).values(
            status=PENDING, claimed_by=None, claimed_at=None, updated_at=now))


def record_journaled(conn: Connection, *, delivery_id: int, status: str, message_id: str, error: str,
                     at: datetime) -> None:
    """Apply one outcome from the delivery journal (see ``deliver/journal.py``): the server
    accepted the message (``sent``) or may have (``uncertain``), whoever holds the row now."""
    conn.execute(update(deliveries).where(
        deliveries.c.id == delivery_id, deliveries.c.status.not_in((SENT, UNCERTAIN))).values(
        status=status, attempts=deliveries.c.attempts + 1, message_id=message_id, last_error=error,
        sent_at=at, claimed_by=None, claimed_at=None, next_attempt_at=None, updated_at=at))


def next_attempt_due(conn: Connection, issue_number: int,
                     claimable: tuple[str, ...] = (PENDING,)) -> datetime | None:
    """When the earliest deferred row of the issue may be tried again (None: nothing deferred)."""
    return conn.execute(select(func.min(deliveries.c.next_attempt_at)).where(
        deliveries.c.issue_number == issue_number, deliveries.c.status.in_(claimable))).scalar()


def due_retries(conn: Connection, issue_number: int, now: datetime) -> int:
    """Rows of the issue deferred after a temporary failure whose next try is due by ``now``."""
    return int(conn.execute(select(func.count()).where(
        deliveries.c.issue_number == issue_number, deliveries.c.status.in_((PENDING, WRITTEN)),
        deliveries.c.next_attempt_at.is_not(None), deliveries.c.next_attempt_at <= now)).scalar() or 0)


def status_counts(conn: Connection, issue_number: int) -> dict[str, int]:
    """How many rows of the issue are in each status (every status present, zero if none)."""
    counts = {status: 0 for status in DELIVERY_STATUSES}
    for status, n in conn.execute(select(deliveries.c.status, func.count()).where(
            deliveries.c.issue_number == issue_number).group_by(deliveries.c.status)):
        counts[status] = n
    return counts


def sent_or_sending_since(conn: Connection, since: datetime) -> int:
    """Messages accepted since ``since`` plus those in flight, across issues and processes:
    what the daily cap is measured against."""
    return int(conn.execute(select(func.count()).where(or_(
        and_(deliveries.c.sent_at >= since, deliveries.c.status.in_((SENT, UNCERTAIN))),
        deliveries.c.status == SENDING))).scalar() or 0)


def reset_status(conn: Connection, issue_number: int, status: str, now: datetime) -> int:
    """Rows of the issue in ``status`` (failed, uncertain) back to pending with a fresh attempt
    budget: what ``resend`` asks for on purpose."""
    result = conn.execute(update(deliveries).where(
        deliveries.c.issue_number == issue_number, deliveries.c.status == status).values(
        status=PENDING, attempts=0, next_attempt_at=None, updated_at=now))
    return int(result.rowcount or 0)


def failed_deliveries(conn: Connection, issue_number: int, limit: int = 20) -> list[tuple[str, str]]:
    """(address, server's words) of failed rows, for the end-of-run summary."""
    return [(r.email, r.last_error) for r in conn.execute(
        select(deliveries.c.email, deliveries.c.last_error).where(
            deliveries.c.issue_number == issue_number, deliveries.c.status == FAILED)
        .order_by(deliveries.c.id).limit(limit))]


def settled_subscriber_ids(conn: Connection, issue_number: int, claimable: tuple[str, ...] = (PENDING,)) -> set[int]:
    """Subscribers whose row of the issue a ``send`` would not take again: rows in any status
    but ``claimable`` (and ``sending``, which a crashed run leaves behind and the next run
    releases). What a dry run leaves out."""
    open_statuses = (*claimable, SENDING)
    return set(conn.execute(select(deliveries.c.subscriber_id).where(
        deliveries.c.issue_number == issue_number, deliveries.c.status.not_in(open_statuses))).scalars())


def latest_issue_with(conn: Connection, status: str) -> int | None:
    """The newest issue with a row in ``status`` (failed, uncertain), for ``resend``."""
    return conn.execute(select(func.max(deliveries.c.issue_number)).where(
        deliveries.c.status == status)).scalar()


def issue_number_for_key(conn: Connection, key: str) -> int | None:
    return conn.execute(select(issues.c.number).where(issues.c.key == key)).scalar()


def issue_key_for_number(conn: Connection, number: int) -> str:
    return conn.execute(select(issues.c.key).where(issues.c.number == number)).scalar_one()


def issues_with_counts(conn: Connection) -> list[dict[str, Any]]:
    """Every issue, newest first, with its delivery counts per status."""
    counts: dict[int, dict[str, int]] = {}
    for number, status, n in conn.execute(select(
            deliveries.c.issue_number, deliveries.c.status, func.count()).group_by(
            deliveries.c.issue_number, deliveries.c.status)):
        counts.setdefault(number, {s: 0 for s in DELIVERY_STATUSES})[status] = n
    last_sent = dict(conn.execute(select(deliveries.c.issue_number, func.max(deliveries.c.sent_at))
                                  .group_by(deliveries.c.issue_number)).all())
    out = []
    for row in conn.execute(select(issues.c.number, issues.c.key, issues.c.title, issues.c.status,
                                   issues.c.created_at, issues.c.frozen_at).order_by(issues.c.number.desc())):
        out.append({
            "number": row.number, "key": row.key, "title": row.title, "status": row.status,
            "created_at": row.created_at, "frozen_at": row.frozen_at,
            "last_sent_at": last_sent.get(row.number),
            "deliveries": counts.get(row.number, {s: 0 for s in DELIVERY_STATUSES}),
        })
    return out

