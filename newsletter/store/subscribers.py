"""Queries on subscribers and their events: the only SQL about who is on the list.

Two rules hold everywhere here, because the law and the mailbox providers hold the operator to
them: an address is compared by its lower-cased key (``Ada@x.org`` and ``ada@x.org`` are one
person), and an address that unsubscribed or bounced stays on file as *suppressed*, so nothing
(an import, an ``add``, a web form) can quietly make it active again.

Bulk imports go through a temporary staging table (``stage_rows`` then ``merge_staged``): rows
are streamed into it in batches, and one set-based ``INSERT ... ON CONFLICT`` merges them, so a
million rows cost a few seconds of SQLite and no Python memory, inside the caller's transaction.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Mapping, Sequence

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateTable

from newsletter.errors import SubscriberError
from newsletter.models import SUBSCRIBER_STATUSES, SUPPRESSED_STATUSES, Subscriber
from newsletter.store.db import Store, utcnow
from newsletter.store.profiles import forget_reader
from newsletter.store.schema import UTCDateTime, deliveries, events, subscribers
from newsletter.subscribers.addresses import clean_name, email_key, normalize_address


class AlreadySubscribedError(SubscriberError):
    """``add`` of an address that is already on file (in whatever status)."""


class NotSubscribedError(SubscriberError):
    """An address that is not on file."""


class SuppressedError(SubscriberError):
    """An attempt to mail-enable (or silently drop) an address that unsubscribed or bounced."""


def _check_status(status: str) -> None:
    if status not in SUBSCRIBER_STATUSES:
        raise SubscriberError(f"unknown status {status!r}; one of {', '.join(SUBSCRIBER_STATUSES)}")


def _to_subscriber(row: Any) -> Subscriber:
    return Subscriber(
        email=row.email, name=row.name, status=row.status, id=row.id,
        created_at=row.created_at, updated_at=row.updated_at, confirmed_at=row.confirmed_at,
        status_changed_at=row.status_changed_at, status_reason=row.status_reason,
        attributes=dict(row.attributes or {}),
    )


def _record_event(conn: Connection, subscriber_id: int | None, email: str, kind: str, detail: str,
                  at: datetime) -> None:
    conn.execute(insert(events).values(subscriber_id=subscriber_id, email=email, kind=kind,
                                       detail=detail, at=at))


def _key_of(email: str) -> str | None:
    try:
        # lookup: an address stored before the local-part length rule can still be found.
        return email_key(normalize_address(email, lookup=True))
    except SubscriberError:
        return None


def get_subscriber(conn: Connection, email: str) -> Subscriber | None:
    """The subscriber with this address (compared case-insensitively); None if not on file or
    not an address at all."""
    key = _key_of(email)
    if key is None:
        return None
    row = conn.execute(select(subscribers).where(subscribers.c.email_key == key)).first()
    return _to_subscriber(row) if row else None


def get_subscriber_by_id(conn: Connection, subscriber_id: int) -> Subscriber | None:
    row = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    return _to_subscriber(row) if row else None


def add_subscriber(conn: Connection, email: str, name: str = "", status: str = "active",
                   attributes: Mapping[str, Any] | None = None, now: datetime | None = None,
                   *, detail: str = "added") -> Subscriber:
    """Put a new address on the list; raises ``AlreadySubscribedError`` if it is on file.

    Adding never changes an existing subscriber: an address that unsubscribed must come back
    through ``set_status(..., allow_reactivate=True)``, a deliberate act.
    """

    _check_status(status)
    normalized = normalize_address(email)
    key = email_key(normalized)
    existing = conn.execute(select(subscribers.c.email, subscribers.c.status)
                            .where(subscribers.c.email_key == key)).first()
    if existing is not None:
        spelled = "" if existing.email == normalized else f" as {existing.email}"
        raise AlreadySubscribedError(f"already on the list{spelled} ({existing.status})", where=normalized)
    now = now or utcnow()
    result = conn.execute(insert(subscribers).values(
        email=normalized, email_key=key, name=clean_name(name), status=status,
        status_reason=detail if status in SUPPRESSED_STATUSES else "",
        attributes=dict(attributes or {}), created_at=now, updated_at=now,
        confirmed_at=now if status == "active" else None, status_changed_at=now,
    ))
    subscriber_id = result.inserted_primary_key[0]
    kind = status if status in SUPPRESSED_STATUSES else "subscribed"
    _record_event(conn, subscriber_id, normalized, kind, detail, now)
    found = get_subscriber_by_id(conn, subscriber_id)
    assert found is not None
    return found


def set_status(conn: Connection, email: str, status: str, reason: str, now: datetime | None = None,
               allow_reactivate: bool = False) -> Subscriber:
    """Change one subscriber's status and record an event saying when and why.

    Setting the status it already has changes nothing (an unsubscribe link clicked twice is one
    unsubscribe). Making a suppressed address pending or active raises ``SuppressedError``
    unless ``allow_reactivate``: only the person asking again may undo an unsubscribe.
    """
    _check_status(status)
    current = get_subscriber(conn, email)
    if current is None:
        raise NotSubscribedError("not on the list", where=email.strip())
    if current.status == status:
        return current
    if current.is_suppressed and status not in SUPPRESSED_STATUSES and not allow_reactivate:
        raise SuppressedError(
            f"{current.status} ({current.status_reason or 'no reason recorded'}); it stays suppressed",
            where=current.email)
    now = now or utcnow()
    values: dict[str, Any] = {"status": status, "status_reason": reason, "status_changed_at": now,
                              "updated_at": now}
    if status == "active" and current.confirmed_at is None:
        values["confirmed_at"] = now
    conn.execute(update(subscribers).where(subscribers.c.id == current.id).values(**values))
    kind = {"active": "confirmed" if current.status == "pending" else "subscribed",
            "pending": "subscribed"}.get(status, status)
    _record_event(conn, current.id, current.email, kind, reason, now)
    found = get_subscriber_by_id(conn, current.id)  # type: ignore[arg-type]
    assert found is not None
    return found


def rename_subscriber(conn: Connection, email: str, name: str, now: datetime | None = None) -> Subscriber:
    """Change the name a subscriber is greeted by (cleaned to one line); raises
    ``NotSubscribedError`` if the address is not on file. The status is left alone: a suppressed
    reader may still correct their name without being mailed again."""

    current = get_subscriber(conn, email)
    if current is None:
        raise NotSubscribedError("not on the list", where=email.strip())
    cleaned = clean_name(name)
    if cleaned != current.name:
        conn.execute(update(subscribers).where(subscribers.c.id == current.id)
                     .values(name=cleaned, updated_at=now or utcnow()))
    found = get_subscriber_by_id(conn, current.id)  # type: ignore[arg-type]
    assert found is not None
    return found


def unsubscribe(conn: Connection, email: str, reason: str = "unsubscribed", now: datetime | None = None) -> Subscriber:
    """Suppress an address because its owner asked; idempotent."""
    return set_status(conn, email, "unsubscribed", reason, now=now)


def mark_bounced(conn: Connection, email: str, reason: str, now: datetime | None = None) -> Subscriber:
    """Suppress an address the mail system refuses for good (a hard bounce); idempotent."""
    current = get_subscriber(conn, email)
    if current is not None and current.status == "unsubscribed":
        return current  # already suppressed, and "unsubscribed" is the stronger statement
    return set_status(conn, email, "bounced", reason, now=now)


def mark_complained(conn: Connection, email: str, reason: str, now: datetime | None = None) -> Subscriber:
    """Suppress an address whose owner reported an issue as spam (a feedback report); idempotent.
    A complaint outranks a bounce and an unsubscribe: it is what the mailbox providers count."""
    return set_status(conn, email, "complained", reason, now=now)


def record_event(conn: Connection, email: str, kind: str, detail: str, now: datetime | None = None) -> None:
    """An event about a subscriber on file that changes no status (a soft bounce, an auto-reply)."""
    current = get_subscriber(conn, email)
    if current is None:
        raise NotSubscribedError("not on the list", where=email.strip())
    _record_event(conn, current.id, current.email, kind, detail, now or utcnow())


def subscriber_events(conn: Connection, email: str) -> list[dict[str, Any]]:
    """Every event of one address, oldest first: what happened, when, and the evidence."""
    key = _key_of(email)
    current = get_subscriber(conn, email)
    query = select(events.c.kind, events.c.detail, events.c.at, events.c.email).order_by(events.c.at, events.c.id)
    if current is not None:
        query = query.where((events.c.subscriber_id == current.id) | (func.lower(events.c.email) == key))
    else:
        query = query.where(func.lower(events.c.email) == key)
    return [{"kind": row.kind, "detail": row.detail, "at": row.at} for row in conn.execute(query)]


def remove_subscriber(conn: Connection, email: str, *, forget: bool = False,
                      now: datetime | None = None) -> Subscriber:
    """Delete a subscriber (added by mistake, or asking to be forgotten) with their delivery rows.

    A suppressed address is kept unless ``forget``: once gone from the file, nothing would stop
    a later import from adding it back. An event row records the removal either way.
    """
    current = get_subscriber(conn, email)
    if current is None:
        raise NotSubscribedError("not on the list", where=email.strip())
    if current.is_suppressed and not forget:
        raise SuppressedError(
            f"{current.status}: kept on file so it is never mailed again; pass --forget to erase it anyway",
            where=current.email)
    now = now or utcnow()
    conn.execute(delete(deliveries).where(deliveries.c.subscriber_id == current.id))
    forget_reader(conn, current.id)
    conn.execute(update(events).where(events.c.subscriber_id == current.id).values(subscriber_id=None))
    conn.execute(delete(subscribers).where(subscribers.c.id == current.id))
    _record_event(conn, None, current.email, "removed", "forgotten" if current.is_suppressed else "removed", now)
    return current


def iter_subscribers(conn: Connection, status: str | None = None, batch_size: int = 2000) -> Iterator[Subscriber]:
    """Every subscriber (or those with ``status``) in id order, fetched in batches so an export
    of a million rows holds one batch in memory."""
    if status is not None:
        _check_status(status)
    query = select(subscribers).order_by(subscribers.c.id)
    if status is not None:
        query = query.where(subscribers.c.status == status)
    result = conn.execution_options(yield_per=batch_size).execute(query)
    for row in result:
        yield _to_subscriber(row)


def list_subscribers(conn: Connection, status: str | None = None) -> list[Subscriber]:
    return list(iter_subscribers(conn, status))


def active_subscribers(conn: Connection) -> list[Subscriber]:
    """Everyone who gets the next issue, in id order (a stable order for the delivery ledger)."""
    return list_subscribers(conn, "active")


def is_active(conn: Connection, subscriber_id: int) -> bool:
    """Checked again just before each message goes out: someone may unsubscribe mid-run."""
    status = conn.execute(select(subscribers.c.status).where(subscribers.c.id == subscriber_id)).scalar()
    return status == "active"


def subscriber_stats(conn: Connection, now: datetime | None = None) -> dict[str, Any]:
    """Counts by status, suppressed in total, and the last 30 days' events by kind."""
    now = now or utcnow()
    by_status = {status: 0 for status in SUBSCRIBER_STATUSES}
    for row in conn.execute(select(subscribers.c.status, func.count()).group_by(subscribers.c.status)):
        by_status[row[0]] = row[1]
    recent = {row[0]: row[1] for row in conn.execute(
        select(events.c.kind, func.count()).where(events.c.at >= now - timedelta(days=30)).group_by(events.c.kind))}
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "suppressed": sum(by_status[s] for s in SUPPRESSED_STATUSES),
        "last_30_days": dict(sorted(recent.items())),
    }


# --- bulk import: staging table and merge ---------------------------------------------------

# Times and attributes are text on SQLite (copied verbatim, in the store's own text form) and
# typed on PostgreSQL, where COPY parses the same text into the column's type once.
_TIME = Text().with_variant(DateTime(), "postgresql")
_JSON_TEXT = Text().with_variant(JSON(), "postgresql")

_staging_meta = MetaData()
import_rows = Table(
    "import_rows", _staging_meta,
    Column("line", Integer, primary_key=True),        # where the row starts in the file
    Column("email", String, nullable=False),
    Column("email_key", String, nullable=False),
    Column("name", Text, nullable=False),
    Column("status", String, nullable=False),
    Column("status_reason", Text, nullable=False),
    Column("attributes", _JSON_TEXT, nullable=False),  # JSON text, merged into the stored object
    Column("created_at", _TIME),                      # times in the store's own text form
    Column("confirmed_at", _TIME),
    Column("status_changed_at", _TIME),
    prefixes=["TEMPORARY"],
)
STAGED_COLUMNS: tuple[str, ...] = tuple(c.name for c in import_rows.columns)
_STAGE_SQL = (f"INSERT INTO import_rows ({', '.join(STAGED_COLUMNS)}) "
              f"VALUES ({', '.join('?' for _ in STAGED_COLUMNS)})")
_COPY_SQL = f"COPY import_rows ({', '.join(STAGED_COLUMNS)}) FROM STDIN"


import_suppressions = Table(
    "import_suppressions", _staging_meta,
    Column("email_key", String, primary_key=True),
    prefixes=["TEMPORARY"],
)

# The open (not suppressed) subscribers a file names, as they were before the merge: comparing
# them afterwards tells "updated" from "unchanged", and lets an unchanged row keep its old
# ``updated_at``. Raw column text is copied, so nothing is converted on the way.
import_before = Table(
    "import_before", _staging_meta,
    Column("email_key", String, primary_key=True),
    Column("name", Text),
    Column("status", String),
    Column("attributes", _JSON_TEXT),
    Column("confirmed_at", _TIME),
    Column("updated_at", _TIME),
    Column("unchanged", Integer, nullable=False, server_default="0"),
    prefixes=["TEMPORARY"],
)

# PostgreSQL only: the rows of the file after the first of each address, applied in rounds (one
# ``ON CONFLICT DO UPDATE`` may not touch a row twice).
import_later = Table(
    "import_later", _staging_meta,
    *(Column(c.name, c.type) for c in import_rows.columns),
    prefixes=["TEMPORARY"],
)

# SQLite's ``json_patch`` (RFC 7396 merge patch) for PostgreSQL, as a function of the session
# (``pg_temp``): objects merge key by key, recursively, a null removes the key, anything else
# replaces; the target's keys keep their order, new keys follow in the patch's order.
_PG_JSON_PATCH = """
CREATE OR REPLACE FUNCTION pg_temp.json_patch(target json, patch json) RETURNS json
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF patch IS NULL OR json_typeof(patch) <> 'object' THEN
    RETURN patch;
  END IF;
  IF target IS NULL OR json_typeof(target) <> 'object' THEN
    target := '{}'::json;
  END IF;
  RETURN coalesce((SELECT json_object_agg(k, v ORDER BY part, ord) FROM (
      SELECT t.key AS k, CASE WHEN p.key IS NULL THEN t.value ELSE pg_temp.json_patch(t.value, p.value) END AS v,
             0 AS part, t.ord
        FROM json_each(target) WITH ORDINALITY AS t(key, value, ord)
        LEFT JOIN json_each(patch) AS p ON p.key = t.key
       WHERE p.key IS NULL OR json_typeof(p.value) <> 'null'
      UNION ALL
      SELECT p.key, pg_temp.json_patch(NULL, p.value), 1, p.ord
        FROM json_each(patch) WITH ORDINALITY AS p(key, value, ord)
       WHERE json_typeof(p.value) <> 'null'
         AND NOT EXISTS (SELECT 1 FROM json_each(target) AS t WHERE t.key = p.key)) AS merged), '{}'::json);
END $$"""

_SUP = "(" + ", ".join(f"'{status}'" for status in SUPPRESSED_STATUSES) + ")"  # for SQL text below


@dataclass(frozen=True)
class MergeCounts:
    """What merging staged rows did, by address (not by row); every row is counted once:
    ``added + updated + unchanged + suppressed_kept + duplicates == rows``.

    ``suppressed_kept`` counts addresses on file as suppressed that a row would have mailed again,
    and addresses an earlier row of the file suppressed that a later row would have mailed again
    (that later row is then not counted among ``duplicates``). A suppressed address on file whose
    rows are all unsubscribed or bounced is ``unchanged``. ``newly_suppressed`` is not a further
    category: those addresses are among ``added`` or ``updated``.
    """

    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    suppressed_kept: int = 0
    duplicates: int = 0
    newly_suppressed: int = 0


@contextmanager
def import_session(store: Store) -> Iterator[Connection]:
    """A connection of its own holding the staging tables for one import, outside any
    transaction of the store (see ``begin_import``); the tables are dropped however it ends."""
    with store.engine.connect() as conn:
        begin_import(conn)
        try:
            yield conn
        finally:
            end_import(conn)


def _is_postgresql(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def json_refuses_nul(store: Store) -> bool:
    """True when the store's JSON functions cannot take a NUL character (``\\u0000``) in an
    attribute (PostgreSQL's cannot), so the import names such a row as invalid."""
    return store.engine.dialect.name == "postgresql"


def begin_import(conn: Connection) -> None:
    """Create the staging tables: temporary, so private to this connection, and created and
    filled *outside* a transaction of the store (call it on a connection that has not begun
    one; ``merge_staged`` then runs in ``with conn.begin()``).

    Staging writes only the connection's temporary tables, so it takes no lock of the store: a
    web unsubscribe during a long import is not kept waiting (past SQLite's busy timeout it
    failed) while the file is read and checked, only during the merge. If the import stops
    before the merge, nothing of the store was touched. On PostgreSQL temporary tables are
    written without the write-ahead log, and each batch arrives by COPY.
    """
    if conn.dialect.name not in ("sqlite", "postgresql"):
        raise SubscriberError(f"subscribers import works on SQLite and PostgreSQL stores, and this store is "
                              f"{conn.dialect.name}; nothing was imported")
    raw = conn.connection.driver_connection  # no transaction until the merge asks for one
    end_import(conn)
    if _is_postgresql(conn):
        for table in _staging_meta.sorted_tables:
            raw.execute(str(CreateTable(table).compile(dialect=conn.dialect)))  # type: ignore[union-attr]
        raw.execute(_PG_JSON_PATCH)  # type: ignore[union-attr]
        raw.commit()  # type: ignore[union-attr]
        return
    # A bigger page cache for this connection only: the staging table and the merge then touch
    # the disk far less. Bounded, so memory stays flat.
    raw.execute("PRAGMA cache_size=-32768")  # type: ignore[union-attr]
    raw.execute("PRAGMA temp.cache_size=-32768")  # type: ignore[union-attr]
    for table in _staging_meta.sorted_tables:
        raw.execute(str(CreateTable(table).compile(dialect=conn.dialect)))  # type: ignore[union-attr]


def end_import(conn: Connection) -> None:
    """Drop the staging tables, if there are any (the connection goes back to the pool). Inside
    the merge's transaction they go with it; outside, on PostgreSQL, a failed batch's
    transaction is rolled back first and the drop committed."""
    raw = conn.connection.driver_connection
    if not _is_postgresql(conn):
        for table in reversed(_staging_meta.sorted_tables):
            raw.execute(f"DROP TABLE IF EXISTS temp.{table.name}")  # type: ignore[union-attr]
        return
    merging = conn.in_transaction()
    if not merging:
        raw.rollback()  # type: ignore[union-attr]
    for table in reversed(_staging_meta.sorted_tables):
        raw.execute(f"DROP TABLE IF EXISTS pg_temp.{table.name}")  # type: ignore[union-attr]
    raw.execute("DROP FUNCTION IF EXISTS pg_temp.json_patch(json, json)")  # type: ignore[union-attr]
    if not merging:
        raw.commit()  # type: ignore[union-attr]


def stage_rows(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Append a batch of checked rows, tuples in ``STAGED_COLUMNS`` order, times through
    ``staged_time``.

    Straight to the driver (``executemany`` on SQLite, COPY on PostgreSQL) on the import's own
    connection: SQLAlchemy's per-row parameter processing would cost more than the insert itself.
    """
    if not rows:
        return
    raw = conn.connection.driver_connection
    if _is_postgresql(conn):
        # Outside the merge, one transaction per batch, on temporary tables only: no lock of the
        # store is held while the file is read (a failed batch is rolled back by ``end_import``).
        with raw.cursor() as cursor, cursor.copy(_COPY_SQL) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
        if not conn.in_transaction():
            raw.commit()  # type: ignore[union-attr]
        return
    if raw.in_transaction:  # type: ignore[union-attr]
        raw.executemany(_STAGE_SQL, rows)  # type: ignore[union-attr]
        return
    # One deferred transaction per batch: it writes only the temporary database, so it takes no
    # lock of the store; without it, every row would be a transaction of its own (1.5x slower).
    raw.execute("BEGIN")  # type: ignore[union-attr]
    try:
        raw.executemany(_STAGE_SQL, rows)  # type: ignore[union-attr]
    except BaseException:
        raw.execute("ROLLBACK")  # type: ignore[union-attr]
        raise
    raw.execute("COMMIT")  # type: ignore[union-attr]


# Long: one transaction of set-based statements in the order the suppression rules need;
# split up, the order would be spread over functions that mean nothing alone.
def merge_staged(conn: Connection, *, source: str, now: datetime | None = None) -> MergeCounts:
    """Merge the staged rows into ``subscribers`` in file order, then drop the staging tables.

    New addresses are added with the file's status; rows for an address already on file update
    its name (when given), attributes (merged) and status, except that a suppressed address is
    never touched: it is counted as left alone when a row would have mailed it, unchanged
    otherwise. A row that says unsubscribed or bounced always wins over active or pending.
    Duplicate rows in the file are applied one after the other under the same rules, so they merge.

    An address on file whose name, status, attributes and confirmation come out as they were is
    counted ``unchanged``, not ``updated``, and keeps its ``updated_at``. Every address added
    gets an ``imported`` event, a suppressed one its ``unsubscribed``/``bounced`` event too.
    """
    now = now or utcnow()
    typed_now = bindparam("now", now, type_=UTCDateTime())
    postgresql = _is_postgresql(conn)
    if postgresql:
        # What SQLite's BEGIN IMMEDIATE gives: no other writer adds or changes a subscriber
        # between the counts below and the merge (readers are not kept waiting).
        conn.execute(text("LOCK TABLE subscribers IN SHARE ROW EXCLUSIVE MODE"))
    # Indexed after loading, not before: building it once is cheaper than keeping it up to date.
    conn.execute(text("CREATE INDEX import_rows_key ON import_rows (email_key, line)"))
    if postgresql:
        conn.execute(text("ANALYZE import_rows"))  # temporary tables are never analysed on their own
    rows, distinct = conn.execute(select(func.count(), func.count(import_rows.c.email_key.distinct()))).one()
    added = conn.execute(text(
        "SELECT count(DISTINCT r.email_key) FROM import_rows r WHERE NOT EXISTS "
        "(SELECT 1 FROM subscribers s WHERE s.email_key = r.email_key)")).scalar_one()
    on_file_open = conn.execute(text(
        "INSERT INTO import_before (email_key, name, status, attributes, confirmed_at, updated_at)"
        " SELECT s.email_key, s.name, s.status, s.attributes, s.confirmed_at, s.updated_at FROM subscribers s"
        f" WHERE s.status NOT IN {_SUP} AND EXISTS (SELECT 1 FROM import_rows r WHERE r.email_key = s.email_key)"
    )).rowcount
    # ``id`` is SQLite's rowid without AUTOINCREMENT, or PostgreSQL's sequence, the table locked:
    # every row added below gets a larger one, so this one number tells the new subscribers apart
    # without a list of their keys.
    max_id_before = conn.execute(select(func.coalesce(func.max(subscribers.c.id), 0))).scalar_one()
    # Suppressed addresses the file names. On file: left alone when a row would mail them again,
    # otherwise unchanged (the merge never touches them). Suppressed by an earlier row of the file
    # itself: the address is counted added or updated, and the later row that would mail it is
    # the one left alone (so it is not also counted as a duplicate merged).
    suppressed_named, kept_on_file, kept_in_file = conn.execute(text(
        f"SELECT count(DISTINCT CASE WHEN s.status IN {_SUP} THEN r.email_key END),"
        f" count(DISTINCT CASE WHEN s.status IN {_SUP} AND r.status NOT IN {_SUP} THEN r.email_key END),"
        f" count(DISTINCT CASE WHEN (s.status IS NULL OR s.status NOT IN {_SUP}) AND r.status NOT IN {_SUP}"
        f" AND EXISTS (SELECT 1 FROM import_rows p WHERE p.email_key = r.email_key AND p.line < r.line"
        f" AND p.status IN {_SUP}) THEN r.email_key END)"
        " FROM import_rows r LEFT JOIN subscribers s ON s.email_key = r.email_key")).one()
    newly_suppressed = conn.execute(text(
        f"INSERT INTO import_suppressions (email_key) SELECT DISTINCT r.email_key FROM import_rows r"
        f" WHERE r.status IN {_SUP} AND NOT EXISTS (SELECT 1 FROM subscribers s"
        f" WHERE s.email_key = r.email_key AND s.status IN {_SUP})")).rowcount
    new_status = (f"CASE WHEN excluded.status IN {_SUP} THEN excluded.status"
                  f" WHEN subscribers.status = 'active' THEN 'active' ELSE excluded.status END")
    upsert = (
        "INSERT INTO subscribers (email, email_key, name, status, status_reason, attributes,"
        " created_at, updated_at, confirmed_at, status_changed_at)"
        " SELECT email, email_key, name, status, status_reason, attributes,"
        " coalesce(created_at, :now), :now, confirmed_at, status_changed_at"
        " FROM {rows} ORDER BY line"
        " ON CONFLICT (email_key) DO UPDATE SET"
        " name = CASE WHEN excluded.name <> '' THEN excluded.name ELSE subscribers.name END,"
        f" attributes = {'pg_temp.' if postgresql else ''}json_patch(subscribers.attributes, excluded.attributes),"
        f" status_changed_at = CASE WHEN ({new_status}) <> subscribers.status"
        "   THEN coalesce(excluded.status_changed_at, :now) ELSE subscribers.status_changed_at END,"
        f" status_reason = CASE WHEN ({new_status}) <> subscribers.status"
        "   THEN excluded.status_reason ELSE subscribers.status_reason END,"
        f" status = {new_status},"
        " confirmed_at = coalesce(subscribers.confirmed_at, excluded.confirmed_at),"
        " updated_at = :now"
        f" WHERE subscribers.status NOT IN {_SUP}")

    def merge_from(rows_sql: str) -> None:
        conn.execute(text(upsert.format(rows=rows_sql)).bindparams(typed_now))

    if postgresql:
        _merge_in_rounds(conn, merge_from, more=rows > distinct, now=typed_now)
    else:  # SQLite applies the rows one by one: a later row of an address merges into the first
        merge_from("import_rows WHERE true")
    # A new row whose file gave no status time: its status dates from when it was created
    # (on PostgreSQL set as it was inserted).
    conn.execute(text(
        "UPDATE subscribers SET status_changed_at = created_at"
        " WHERE status_changed_at IS NULL AND updated_at = :now").bindparams(typed_now))
    # Unchanged: name, status, attributes (compared as JSON values, not text) and confirmation
    # all as before. Those keep their old updated_at and attribute text: nothing happened to them.
    same, as_json = ("IS NOT DISTINCT FROM", "({})::jsonb") if postgresql else ("IS", "json({})")
    unchanged = conn.execute(text(
        "UPDATE import_before SET unchanged = 1 WHERE EXISTS (SELECT 1 FROM subscribers s"
        f" WHERE s.email_key = import_before.email_key AND s.name {same} import_before.name"
        f" AND s.status {same} import_before.status"
        f" AND {as_json.format('s.attributes')} {same} {as_json.format('import_before.attributes')}"
        f" AND s.confirmed_at {same} import_before.confirmed_at)")).rowcount
    if unchanged:
        conn.execute(text(
            "UPDATE subscribers SET updated_at = b.updated_at, attributes = b.attributes"
            " FROM import_before b WHERE b.email_key = subscribers.email_key AND b.unchanged = 1"))
    detail = bindparam("detail", f"import {source}")
    # One sign-up event per address the file added (before any suppression event of the same
    # address), so "last 30 days" in the stats counts imported sign-ups as well as added ones.
    conn.execute(text(
        "INSERT INTO events (subscriber_id, email, kind, detail, at)"
        " SELECT id, email, 'imported', :detail, :now FROM subscribers WHERE id > :max_id ORDER BY id"
    ).bindparams(typed_now, detail, bindparam("max_id", max_id_before)))
    conn.execute(text(
        "INSERT INTO events (subscriber_id, email, kind, detail, at)"
        " SELECT s.id, s.email, s.status, :detail, :now FROM subscribers s"
        " JOIN import_suppressions x ON x.email_key = s.email_key ORDER BY s.id"
    ).bindparams(typed_now, detail))
    end_import(conn)
    return MergeCounts(rows=rows, added=added, updated=on_file_open - unchanged,
                       unchanged=unchanged + suppressed_named - kept_on_file,
                       suppressed_kept=kept_on_file + kept_in_file, duplicates=rows - distinct - kept_in_file,
                       newly_suppressed=newly_suppressed)


def _merge_in_rounds(conn: Connection, merge_from: Callable[[str], None], *, more: bool, now: Any) -> None:
    """PostgreSQL's ``ON CONFLICT DO UPDATE`` may not touch one row twice in a statement, so the
    file's rows are applied as SQLite applies them, in rounds: each address's first row, then
    each one's next, and so on, every round in file order. Only files with duplicate addresses
    need a second round, and it reads only the duplicates.

    In the first round the rows of addresses on file are merged, then new addresses are a plain
    insert (the table is locked, so nothing else adds one meanwhile), their status time set there
    rather than by the later ``UPDATE``: an update of every new row would write each one twice on
    PostgreSQL, and the sequence does not skip the numbers of rows that turn out to be on file."""
    if more:  # the rows after each address's first: a few, usually
        conn.execute(text(
            "INSERT INTO import_later SELECT r.* FROM import_rows r WHERE EXISTS (SELECT 1 FROM import_rows p"
            " WHERE p.email_key = r.email_key AND p.line < r.line)"))
        conn.execute(text("CREATE INDEX import_later_key ON import_later (email_key, line)"))
        conn.execute(text("ANALYZE import_later"))
    first = "import_rows r WHERE NOT EXISTS (SELECT 1 FROM import_later l WHERE l.line = r.line)"
    on_file = "EXISTS (SELECT 1 FROM subscribers s WHERE s.email_key = r.email_key)"
    # Addresses on file first, while the planner's idea of ``subscribers`` is still right.
    merge_from(f"{first} AND {on_file}")
    conn.execute(text(
        "INSERT INTO subscribers (email, email_key, name, status, status_reason, attributes,"
        " created_at, updated_at, confirmed_at, status_changed_at)"
        " SELECT email, email_key, name, status, status_reason, attributes,"
        " coalesce(created_at, :now), :now, confirmed_at, coalesce(status_changed_at, created_at, :now)"
        f" FROM {first} AND NOT {on_file} ORDER BY line").bindparams(now))
    later = "(SELECT DISTINCT ON (email_key) * FROM import_later ORDER BY email_key, line) AS r"
    while more and conn.execute(text("SELECT EXISTS (SELECT 1 FROM import_later)")).scalar_one():
        merge_from(later)
        conn.execute(text("DELETE FROM import_later WHERE line IN (SELECT DISTINCT ON (email_key) line"
                          " FROM import_later ORDER BY email_key, line)"))
