"""The store: migrations recorded once, WAL on SQLite, transactions that roll back as a whole."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import func, inspect, select

from newsletter.errors import StoreError
from newsletter.store import Store, open_store
from newsletter.store.db import schema_migrations
from newsletter.store.schema import MIGRATIONS, metadata, meta


def test_migrations_apply_once_and_are_recorded(db_url: str) -> None:
    store = Store(db_url)
    assert store.migrate() == [number for number, _, _ in MIGRATIONS]
    assert store.migrate() == []
    with store.atomic() as conn:
        assert conn.execute(select(func.count()).select_from(schema_migrations)).scalar_one() == len(MIGRATIONS)


@pytest.mark.sqlite_only("SQLite's journal mode")
def test_a_sqlite_store_runs_in_wal_mode(store: Store) -> None:
    with store.atomic() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"


def test_migrated_schema_matches_the_tables_queries_use(store: Store) -> None:
    inspector = inspect(store.engine)
    for table in metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name


def test_atomic_rolls_back_everything_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError):
        with store.atomic() as conn:
            conn.execute(meta.insert().values(key="a", value="1"))
            raise RuntimeError("boom")
    with store.atomic() as conn:
        assert conn.execute(select(meta)).all() == []


def test_times_come_back_timezone_aware(store: Store) -> None:
    from newsletter.store.schema import locks

    at = datetime(2026, 11, 29, 12, 30, tzinfo=timezone.utc)
    with store.atomic() as conn:
        conn.execute(locks.insert().values(name="x", holder="h:1", acquired_at=at, heartbeat_at=at))
        row = conn.execute(select(locks)).one()
    assert row.acquired_at == at and row.acquired_at.tzinfo is not None


def test_missing_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path / 'no' / 'such' / 'x.db'}")


def test_a_forked_child_opens_its_own_connections(store: Store) -> None:
    """Pooled connections are dropped in a forked child, so parent and child never share one."""
    import os

    with store.atomic() as conn:
        conn.execute(meta.insert().values(key="parent", value="1"))
    assert store.engine.pool.checkedin() == 1
    pid = os.fork()
    if pid == 0:  # the child: write through the inherited Store, then leave without cleanup
        code = 1
        try:
            if store.engine.pool.checkedin() != 0:  # the parent's pooled connection is still there
                os._exit(2)
            with store.atomic() as conn:
                conn.execute(meta.insert().values(key="child", value="1"))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with store.atomic() as conn:
        assert {row.key for row in conn.execute(select(meta))} == {"parent", "child"}


@pytest.mark.sqlite_only("the shortcut is an adapter registered with Python's sqlite3")
def test_missing_values_are_stored_as_sql_null(store: Store) -> None:
    """The store adapts None itself (a shortcut past sqlite3's adapter search): it must still
    arrive as SQL NULL, through the driver and through SQLAlchemy alike."""
    from newsletter.models import Paper
    from newsletter.store.papers import upsert_papers

    with store.atomic() as conn:
        upsert_papers(conn, [Paper(id="arxiv:2403.05525", title="T", url="https://arxiv.org/abs/2403.05525")])
        types = conn.exec_driver_sql(
            "SELECT typeof(pdf_url), typeof(code_url), typeof(score), typeof(published_at) FROM papers").one()
        raw = conn.exec_driver_sql("SELECT count(*) FROM papers WHERE ? IS NULL AND thumbnail_url IS NULL",
                                   (None,)).scalar_one()
    assert tuple(types) == ("null", "null", "null", "null")
    assert raw == 1


def test_a_database_without_its_driver_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(StoreError) as info:
        Store("postgresql+psycopg2://reader:s3cret@127.0.0.1:1/papers")  # psycopg 3 is ours; psycopg2 is not here
    message = str(info.value)
    assert "the Python driver for postgresql+psycopg2:// is not installed" in message
    assert "pip install 'psycopg2-binary'" in message
    assert "s3cret" not in message and "reader:***@127.0.0.1" in message


def test_a_damaged_store_is_one_line_naming_it_not_a_traceback(tmp_path, monkeypatch) -> None:
    import sqlite3

    from click.testing import CliRunner

    from newsletter.cli import main

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "damaged.db"
    open_store(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE events")  # by hand, behind the migrations' back
    result = CliRunner().invoke(main, ["--db", f"sqlite:///{path}", "subscribers", "add", "ada@example.org"])
    assert result.exit_code == 1
    assert f"sqlite:///{path}: the store cannot be used: no such table: events" in result.output
    assert "Traceback" not in result.output and "[SQL:" not in result.output
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    result = CliRunner().invoke(main, ["--db", f"sqlite:///{junk}", "papers"])
    assert result.exit_code == 1 and "Traceback" not in result.output and str(junk) in result.output


def _schema(engine) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    """Every table's columns (name, type, nullable), indexes and unique constraints."""
    inspector = inspect(engine)
    found = {}
    for name in inspector.get_table_names():
        columns = tuple((c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name))
        indexes = tuple(sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                               for i in inspector.get_indexes(name)))
        uniques = tuple(sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)))
        found[name] = (columns, indexes, uniques)
    return found


@pytest.mark.sqlite_only("the first release wrote SQLite files only; this upgrades one")
def test_a_store_of_the_first_release_is_upgraded_with_its_data(tmp_path, store: Store) -> None:
    """tests/data/store-v1.sql is a store made by the first release's schema (with its unused
    ``sends`` table), holding a paper, an issue, two subscribers and their deliveries."""
    import sqlite3
    from pathlib import Path

    from newsletter.store.schema import subscribers

    path = tmp_path / "old.db"
    dump = (Path(__file__).parent / "data" / "store-v1.sql").read_text(encoding="utf-8")
    with sqlite3.connect(path) as raw:
        raw.executescript(dump)
    old = Store(f"sqlite:///{path}")
    assert old.migrate() == [number for number, _, _ in MIGRATIONS if number > 1]
    assert _schema(old.engine) == _schema(store.engine)  # exactly what a new store has
    assert "sends" not in inspect(old.engine).get_table_names()
    with old.atomic() as conn:
        assert sorted(conn.execute(select(subscribers.c.email)).scalars()) == ["ada@example.org", "grace@example.org"]
        assert conn.execute(select(meta.c.value).where(meta.c.key == "secret_key")).scalar_one() == "v1-test-secret"
    old.dispose()
