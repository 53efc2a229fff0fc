"""Tables of the store, as SQLAlchemy Core objects, and the numbered migrations that create them.

The ``Table`` objects describe the latest schema and are what queries use; ``MIGRATIONS`` is the
history that gets an older file there. A test checks that both agree.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)



class UTCDateTime(TypeDecorator):
    """Stored as UTC, returned timezone-aware: SQLite would otherwise hand back naive times."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: times in the store are timezone-aware")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def sqlite_time(value: datetime | None) -> str | None:
    """What ``UTCDateTime`` stores on SQLite (naive UTC text, ``YYYY-MM-DD HH:MM:SS.ffffff``), for
    the few hot paths and staging tables that write through the driver or copy rows by SQL.
    ``isoformat`` gives the same text as ``strftime``, several times cheaper."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: times in the store are timezone-aware")
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")


metadata = MetaData()

meta = Table(
    "meta", metadata,
    Column("key", String, primary_key=True),
    Column("value", Text, nullable=False),
)

papers = Table(
    "papers", metadata,
    Column("id", String, primary_key=True),          # canonical id: arxiv:..., doi:..., url:...
    Column("title", Text, nullable=False),
    Column("authors", JSON, nullable=False),          # list of names
    Column("abstract", Text, nullable=False),
    Column("url", Text, nullable=False),              # abstract page
    Column("pdf_url", Text),
    Column("code_url", Text),
    Column("thumbnail_url", Text),
    Column("score", Integer),                         # upvotes where the source has them
    Column("published_at", UTCDateTime()),
    Column("first_seen_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("sources", JSON, nullable=False),          # list of source names that reported it
    Column("page_url", Text),                         # discussion page (Hugging Face papers)
    Column("categories", JSON),                       # subject classes, primary first; NULL: none known
)

source_state = Table(
    "source_state", metadata,
    Column("source", Text, primary_key=True),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("last_fetched_at", UTCDateTime()),
    Column("last_status", Text),
)

issues = Table(
    "issues", metadata,
    Column("number", Integer, primary_key=True),      # the running number
    Column("key", String, nullable=False, unique=True),  # 2026-W48: one issue per week, ever
    Column("title", Text, nullable=False),
    Column("subject", Text),
    Column("status", String, nullable=False),         # draft | frozen | sent
    Column("paper_ids", JSON, nullable=False),
    Column("papers", JSON),                           # frozen copy of the papers as sent
    Column("editor_note", Text, nullable=False),
    Column("html", Text),                             # frozen rendered parts
    Column("text", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("frozen_at", UTCDateTime()),
)

subscribers = Table(
    "subscribers", metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String, nullable=False),          # normalised, as given
    Column("email_key", String, nullable=False, unique=True),  # lower-cased, for comparison
    Column("name", Text, nullable=False),
    Column("status", String, nullable=False),         # pending | active | unsubscribed | bounced | complained
    Column("status_reason", Text, nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("confirmed_at", UTCDateTime()),
    Column("status_changed_at", UTCDateTime()),
)

deliveries = Table(
    "deliveries", metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_number", Integer, ForeignKey("issues.number"), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("email", String, nullable=False),          # the address it went to
    Column("status", String, nullable=False),         # pending | sending | sent | failed
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("message_id", Text),
    Column("claimed_by", Text),                       # worker/process holding it while sending
    Column("claimed_at", UTCDateTime()),
    Column("next_attempt_at", UTCDateTime()),
    Column("sent_at", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
    # A reader's own issue: [[paper id, reason], ...] in order, fixed when the row is made so a
    # resumed send and a later look (``issues``) see the same; NULL: the shared issue.
    Column("picks", JSON),
    UniqueConstraint("issue_number", "subscriber_id", name="uq_delivery_issue_subscriber"),
    # The claim query (next pending row of an issue, in id order) and the daily cap's count of
    # the last 24 hours must stay index lookups at 100,000 rows.
    Index("ix_deliveries_claim", "issue_number", "status", "id"),
    Index("ix_deliveries_sent_at", "sent_at"),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id")),
    Column("email", String, nullable=False),
    Column("kind", String, nullable=False),           # subscribed | confirmed | unsubscribed | bounced | removed | imported
    Column("detail", Text, nullable=False),           # how: "one-click", "550 5.1.1 ...", "import FILE"
    Column("at", UTCDateTime(), nullable=False),
)

# What each bounce, complaint or auto-reply read from the bounce mailbox said, about whom: the
# evidence behind a status change, the soft-bounce count, the per-issue rates, and (by
# ``message_key``, a digest of the raw message) what a second read of the mailbox must not count again.
bounce_reports = Table(
    "bounce_reports", metadata,
    Column("id", Integer, primary_key=True),
    Column("message_key", String, nullable=False),   # sha256 of the message as read
    Column("kind", String, nullable=False),          # hard | soft | complaint | auto_reply
    Column("subscriber_id", Integer, ForeignKey("subscribers.id")),
    Column("issue_number", Integer),                 # when the token or Message-ID names it
    Column("email", String, nullable=False),
    Column("status_code", String, nullable=False),   # 5.1.1
    Column("reporting_mta", Text, nullable=False),
    Column("diagnostic", Text, nullable=False),
    Column("attributed_by", String, nullable=False),  # envelope-token | quoted-token | message-id | address
    Column("source", Text, nullable=False),          # the mailbox or hook it came from
    Column("at", UTCDateTime(), nullable=False),
    UniqueConstraint("message_key", "subscriber_id", name="uq_bounce_report_message_subscriber"),
    Index("ix_bounce_reports_subscriber", "subscriber_id", "kind", "at"),
    Index("ix_bounce_reports_issue", "issue_number", "kind"),
)

issue_edits = Table(
    "issue_edits", metadata,
    Column("key", String, primary_key=True),          # the issue they change: 2026-W49
    Column("pinned", JSON, nullable=False),           # paper ids, in pin order: always in
    Column("dropped", JSON, nullable=False),          # paper ids never in this issue
    Column("moves", JSON, nullable=False),            # [[paper id, 1-based position], ...] applied in order
    Column("subject", Text),                          # the editor's subject line, or NULL
    Column("note", Text),                             # the editor's note (Markdown), or NULL: the configured one
    Column("updated_at", UTCDateTime(), nullable=False),
)

# What each reader follows (one row per reader who told us anything) and their ratings; both go
# with the subscriber when they are removed.
reader_profiles = Table(
    "reader_profiles", metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("interests", Text, nullable=False),        # free text
    Column("categories", JSON, nullable=False),       # ["cs.CL", "eess.AS"]
    Column("authors", JSON, nullable=False),          # names to follow
    Column("mutes", JSON, nullable=False),            # keywords never to show
    Column("likes", JSON, nullable=False),            # canonical paper ids
    Column("size", Integer),                          # papers wanted (3-30), NULL: the issue's count
    Column("updated_at", UTCDateTime(), nullable=False),
)

ratings = Table(
    "ratings", metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("paper_id", String, primary_key=True),
    Column("value", Integer, nullable=False),         # +1 more like this, -1 less like this
    Column("at", UTCDateTime(), nullable=False),
)

locks = Table(
    "locks", metadata,
    Column("name", String, primary_key=True),
    Column("holder", Text, nullable=False),           # host:pid
    Column("acquired_at", UTCDateTime(), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
)

rate_buckets = Table(
    "rate_buckets", metadata,                         # send rates shared by every sender on the store
    Column("name", String, primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)


def _initial_schema(conn) -> None:  # type: ignore[no-untyped-def]
    """Migration 1: the schema of the first release. The tables above are still as it made them,
    plus ``sends``, which migration 2 drops. A later migration that alters one of those tables
    must first give this function a copy of the table as it was (``tests/data/store-v1.sql`` is
    a store of that release, and a test upgrades it)."""
    first = MetaData()
    for table in metadata.sorted_tables:
        if table.name not in _LATER_TABLES:
            copy = table.to_metadata(first)
            for name in _LATER_COLUMNS.get(table.name, ()):
                copy._columns.remove(copy.c[name])
    Table("sends", first, Column("id", Integer, primary_key=True), Column("at", UTCDateTime(), nullable=False))
    first.create_all(conn)


def _create_table(name: str):  # type: ignore[no-untyped-def]
    """A migration that creates table ``name`` as declared above."""
    def create(conn) -> None:  # type: ignore[no-untyped-def]
        metadata.tables[name].create(conn)
    return create


def _add_column(table: str, column: str):  # type: ignore[no-untyped-def]
    """A migration that adds ``table.column`` as declared above (nullable, so no default needed)."""
    def add(conn) -> None:  # type: ignore[no-untyped-def]
        declared = metadata.tables[table].c[column]
        kind = declared.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    return add


# Tables and columns a later migration creates, so migration 1 leaves them out.
_LATER_TABLES = {"rate_buckets", "bounce_reports", "issue_edits", "reader_profiles", "ratings"}
_LATER_COLUMNS = {"papers": ("categories",), "deliveries": ("picks",)}


def _drop_sends(conn) -> None:  # type: ignore[no-untyped-def]
    """``sends`` once counted messages for the daily cap; the ledger does that now."""
    conn.exec_driver_sql("DROP TABLE IF EXISTS sends")


# Numbered steps from an empty store to the schema above, each run once and recorded. A new
# step is written against what the earlier ones made (ALTER, CREATE, DROP), never by editing one.
MIGRATIONS = (
    (1, "initial schema: papers, sources, issues, subscribers, deliveries, events, locks", _initial_schema),
    (2, "drop the unused sends table", _drop_sends),
    (3, "rate_buckets: the send rate shared by every sender on the store", _create_table("rate_buckets")),
    (4, "bounce_reports: bounces and complaints read back, with their evidence", _create_table("bounce_reports")),
    (5, "the editor's changes to the next issue", _create_table("issue_edits")),
    (6, "papers.categories: subject classes for readers who follow them", _add_column("papers", "categories")),
    (7, "reader_profiles: what each reader follows", _create_table("reader_profiles")),
    (8, "ratings: more / less like this, per reader and paper", _create_table("ratings")),
    (9, "deliveries.picks: a reader's own papers and why", _add_column("deliveries", "picks")),
)
