"""Small named values kept in the store (the signing key, the scheduler's last runs)."""

from __future__ import annotations

import zlib

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from newsletter.store.schema import meta


def get_value(conn: Connection, key: str) -> str | None:
    return conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()


def set_value(conn: Connection, key: str, value: str) -> None:
    conn.execute(delete(meta).where(meta.c.key == key))
    conn.execute(meta.insert().values(key=key, value=value))


def take_turns(conn: Connection, what: str) -> None:
    """Make every transaction that does ``what`` (on any process or host) wait for the others
    until it ends. PostgreSQL runs transactions side by side under READ COMMITTED, so two that
    both read "not there yet" and then write (an issue's draft, the signing key, a claim under
    the daily cap) would both write; a transaction-scoped advisory lock makes them take turns.
    SQLite's BEGIN IMMEDIATE already runs every writer one after the other."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(key)s)", {"key": zlib.crc32(what.encode())})
