"""Moving a whole store between SQLite and PostgreSQL: every table (papers, issues with their
frozen parts, subscribers with their events, deliveries, the secret key in ``meta``), row for row,
ids kept, in one transaction on the target, then counted on both sides.

The target is migrated first, so it has exactly the schema the rows came from. A target that
already holds rows is refused unless ``replace`` is given (its rows are then deleted in the same
transaction): copying a list over another one by mistake must be impossible.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Integer, func, select
from sqlalchemy.engine import Connection

from newsletter.errors import StoreError
from newsletter.store.db import Store, open_store, without_password
from newsletter.store.schema import metadata

BATCH_ROWS = 5000


@dataclass(frozen=True)
class CopyReport:
    """Rows copied per table (and checked: the target counts the same)."""

    source: str
    target: str
    rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _counts(conn: Connection) -> dict[str, int]:
    return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in metadata.sorted_tables}


def copy_store(source_url: str, target_url: str, *, replace: bool = False) -> CopyReport:
    """Copy every row of the store at ``source_url`` into the one at ``target_url``."""
    if source_url == target_url:
        raise StoreError("the source and the target are the same store", where=without_password(target_url))
    source, target = open_store(source_url), open_store(target_url)
    try:
        return _copy(source, target, replace=replace)
    finally:
        source.dispose()
        target.dispose()


def _copy(source: Store, target: Store, *, replace: bool) -> CopyReport:
    shown = without_password(target.url)
    with source.atomic() as src, target.atomic() as dst:
        existing = {name: n for name, n in _counts(dst).items() if n}
        if existing and not replace:
            raise StoreError(f"the target already holds rows ({', '.join(f'{n} in {t}' for t, n in existing.items())}); "
                             f"nothing was copied (--replace deletes them first)", where=shown)
        for table in reversed(metadata.sorted_tables):
            dst.execute(table.delete())
        for table in metadata.sorted_tables:
            result = src.execute(select(table).order_by(*table.primary_key.columns)).mappings()
            while batch := [dict(row) for row in result.fetchmany(BATCH_ROWS)]:
                dst.execute(table.insert(), batch)
        _advance_sequences(dst)
        copied, landed = _counts(src), _counts(dst)
        if copied != landed:
            raise StoreError(f"the copy does not count the same as the source ({landed} against {copied}); "
                             f"nothing was kept", where=shown)
    return CopyReport(without_password(source.url), shown, copied)


def _advance_sequences(conn: Connection) -> None:
    """PostgreSQL hands out ids from a sequence that rows inserted with their own ids do not
    move: set each to the table's largest id, or the next new row would collide."""
    if conn.dialect.name != "postgresql":
        return
    for table in metadata.sorted_tables:
        keys = list(table.primary_key.columns)
        if len(keys) == 1 and isinstance(keys[0].type, Integer):
            name, column = table.name, keys[0].name
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{name}', '{column}'), "
                f"COALESCE((SELECT MAX({column}) FROM {name}), 0) + 1, false) "
                f"WHERE pg_get_serial_sequence('{name}', '{column}') IS NOT NULL")
