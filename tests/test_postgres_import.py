"""``subscribers import`` on both stores: the import tests that matter most, run once on a SQLite
file and once on a real PostgreSQL (``pgserver``, or ``NEWSLETTER_TEST_POSTGRES_URL``), and
files whose every row merges into others imported into both and compared row for row.

The shared tests are those of tests/test_subscribers_import.py and tests/test_imports_own.py,
imported here by name: pytest runs them again with this module's ``db_url``, which is each store
in turn (conftest's ``store`` and the CLI's ``run`` are built on it).
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import func, select, text

from newsletter.errors import ImportRowsError
from newsletter.store import Store, open_store
from newsletter.store.schema import events, subscribers
from newsletter.store.subscribers import add_subscriber, list_subscribers
from newsletter.subscribers.exporter import export_subscribers
from newsletter.subscribers.importer import import_subscribers
from test_imports_own import (  # noqa: F401 - collected again here, on both stores
    _no_test_variables_in_the_environment,
    run,
    test_an_unsubscribed_export_suppresses_and_a_later_subscribed_one_never_reactivates,
    test_bad_rows_are_listed_by_file_and_line_and_nothing_is_imported,
    test_buttondown_subscriber_types_times_fields_and_events,
    test_cli_lists_bad_rows_with_file_and_line,
    test_cli_reimport_leaves_suppressed_addresses_alone,
    test_each_export_is_recognised_and_keeps_its_statuses,
    test_everything_exported_imports_into_an_empty_store_as_the_same_list,
    test_listmonk_import_file_crlf_blank_line_typed_attributes_and_domains,
)
from test_subscribers_import import (  # noqa: F401 - collected again here, on both stores
    test_a_failed_import_records_no_events,
    test_an_import_can_suppress_and_records_when_and_why,
    test_an_import_never_reactivates_a_suppressed_address,
    test_any_invalid_row_means_nothing_changes_and_every_bad_row_is_listed,
    test_duplicate_rows_merge_case_insensitively,
    test_every_row_is_counted_once_when_rows_carry_suppressed_statuses,
    test_export_then_import_into_an_empty_store_gives_the_same_list,
    test_imported_sign_ups_are_in_the_last_30_days,
    test_progress_reports_bytes,
    test_reimport_counts_unchanged_apart_from_updated,
    test_skip_invalid_imports_the_good_rows_and_lists_the_rest,
)

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
LATER = datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc)


def new_postgres_database(server_url: str) -> str:
    """A new, empty database on the session's PostgreSQL (``postgres_url`` gives one per test;
    a comparison needs two)."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base, _, query = server_url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store in turn, for this module's tests and those imported above."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'newsletter.db'}"
    return new_postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def both(tmp_path: Path, postgres_server: str) -> Iterator[tuple[Store, Store]]:
    """A SQLite store and a PostgreSQL store, both empty: the first judges the second."""
    pair = (open_store(f"sqlite:///{tmp_path / 'judge.db'}"), open_store(new_postgres_database(postgres_server)))
    yield pair
    for store in pair:
        store.dispose()


def rows_of(store: Store) -> tuple[list[tuple], list[tuple]]:
    """Every subscriber and event as plain values, in id order (JSON compared as values; ids as
    the address they name: PostgreSQL's sequence skips the numbers an upsert did not use)."""
    with store.atomic() as conn:
        found = list_subscribers(conn)
        email_of = {s.id: s.email for s in found}
        people = [(s.email, s.name, s.status, s.status_reason, json.dumps(s.attributes, sort_keys=True),
                   s.created_at, s.updated_at, s.confirmed_at, s.status_changed_at) for s in found]
        happened = [(email_of.get(r.subscriber_id), *r[1:]) for r in conn.execute(
            select(events.c.subscriber_id, events.c.email, events.c.kind, events.c.detail, events.c.at)
            .order_by(events.c.id))]
    return people, happened


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_rows_of_one_address_merge_in_file_order_as_on_sqlite(both: tuple[Store, Store], tmp_path: Path) -> None:
    """PostgreSQL applies the file's rows in rounds (one upsert may not touch a row twice);
    the outcome, counts, order and events included, is SQLite's row-by-row merge."""
    sqlite_store, pg_store = both
    for store in both:
        with store.atomic() as conn:
            add_subscriber(conn, "on.file@example.org", "On File", attributes={"keep": 1, "deep": {"a": 1, "b": 2}},
                           now=NOW)
            add_subscriber(conn, "pending@example.org", status="pending", now=NOW)
            add_subscriber(conn, "gone@example.org", status="unsubscribed", now=NOW)
    path = write_csv(tmp_path / "messy.csv", ["email", "name", "status", "attributes"], [
        ["new@example.org", "First", "pending", '{"a": 1, "nested": {"x": 1, "y": 2}}'],
        ["On.File@example.org", "", "active", '{"deep": {"a": null, "c": 3}, "new": [1, 2]}'],
        ["NEW@example.org", "", "active", '{"nested": {"x": null, "z": 3}, "b": null}'],
        ["pending@example.org", "Pat", "", ""],
        ["new@example.org", "Second", "unsubscribed", '{"a": 2}'],
        ["gone@example.org", "Back", "active", ""],
        ["new@example.org", "Third", "active", '{"c": {"d": null}}'],
        ["pending@example.org", "", "bounced", ""],
        ["on.file@example.org", "Renamed", "pending", '{"keep": {"now": "an object"}, "e": {"f": null}}'],
        ["pending@example.org", "", "active", ""],
        *[[f"r{i % 7}@example.org", f"R {i}", "active" if i % 5 else "pending", f'{{"n": {i}}}'] for i in range(40)],
    ])
    reports = [import_subscribers(store, path, now=LATER) for store in both]
    counts = [(r.rows, r.added, r.updated, r.unchanged, r.suppressed_kept, r.duplicates, r.newly_suppressed)
              for r in reports]
    assert counts[1] == counts[0] == (50, 8, 2, 0, 3, 37, 2)
    assert rows_of(pg_store) == rows_of(sqlite_store)
    with pg_store.atomic() as conn:
        found = dict(conn.execute(select(subscribers.c.email, subscribers.c.attributes)).all())
    # RFC 7396, as SQLite's json_patch; new@'s last row (active after unsubscribed) left alone
    assert found["new@example.org"] == {"a": 2, "nested": {"y": 2, "z": 3}}
    assert found["on.file@example.org"] == {"keep": {"now": "an object"}, "deep": {"b": 2, "c": 3}, "new": [1, 2],
                                           "e": {}}
    # Imported again: every address unchanged or left alone, nothing written.
    before = rows_of(pg_store)
    again = [import_subscribers(store, path, now=LATER) for store in both]
    assert [(r.added, r.updated) for r in again] == [(0, 0), (0, 0)]
    assert (again[1].unchanged, again[1].suppressed_kept) == (again[0].unchanged, again[0].suppressed_kept)
    assert rows_of(pg_store) == before


def test_a_generated_list_imports_the_same_on_both_stores(both: tuple[Store, Store], tmp_path: Path) -> None:
    """Bench-like data (mixed case, duplicates now and then, some unsubscribed) in batches, then
    an export of each store: the same file, byte for byte."""
    path = write_csv(tmp_path / "list.csv", ["email", "name", "status"], [
        [f"Reader.{n}@Example{n % 13}.org", f"Zoë {n}", "unsubscribed" if n % 50 == 0 else "active"]
        for n in (i - 7 if i % 100 == 99 else i for i in range(12_000))])
    reports = [import_subscribers(store, path, now=NOW) for store in both]
    assert (reports[1].added, reports[1].duplicates) == (reports[0].added, reports[0].duplicates) == (11_880, 120)
    exports = []
    for store in both:
        out = io.StringIO(newline="")
        export_subscribers(store, out)
        exports.append(out.getvalue())
    assert exports[1] == exports[0] and exports[0].count("\n") == 11_881


def test_a_bad_row_late_in_a_long_file_leaves_the_postgresql_store_as_it_was(postgres_url: str,
                                                                              tmp_path: Path) -> None:
    store = open_store(postgres_url)
    try:
        with store.atomic() as conn:
            add_subscriber(conn, "kept@example.org", "Kept", now=NOW)
        rows = [[f"u{i}@example.org", "U"] for i in range(11_000)] + [["not-an-address", "Bad"]]
        path = write_csv(tmp_path / "late.csv", ["email", "name"], rows)
        with pytest.raises(ImportRowsError) as info:
            import_subscribers(store, path, now=NOW)
        assert [str(e) for e in info.value.errors] == [f"{path}:11002: not-an-address: An email address must have an @-sign."]
        with store.atomic() as conn:
            assert conn.execute(select(func.count()).select_from(subscribers)).scalar_one() == 1
            assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 1
            # The staging tables went with the import's connection state: none is left behind.
            assert conn.execute(text("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'import_%'")).scalar_one() == 0
        assert import_subscribers(store, path, now=NOW, skip_invalid=True).added == 11_000
    finally:
        store.dispose()


def test_postgresql_store_can_be_written_while_an_import_stages_its_rows(postgres_url: str, tmp_path: Path) -> None:
    """Staging holds no lock of the store: an unsubscribe from another connection, with a
    0.2 s lock timeout, goes through while the import reads its file. Only the merge locks
    ``subscribers`` against writers, as SQLite's write lock does."""
    import psycopg

    store = open_store(postgres_url)
    try:
        with store.atomic() as conn:
            add_subscriber(conn, "reader@example.org", now=NOW)
        path = write_csv(tmp_path / "big.csv", ["email", "name"], [[f"r{i}@example.org", f"R {i}"] for i in range(12_000)])
        writes: list[str] = []

        def meanwhile(done: int, total: int) -> None:
            if writes or done >= total:
                return
            with psycopg.connect(postgres_url, autocommit=True) as other:
                other.execute("SET lock_timeout = '200ms'")
                other.execute("UPDATE subscribers SET status = 'unsubscribed' WHERE email = 'reader@example.org'")
            writes.append("done")

        report = import_subscribers(store, path, progress=meanwhile, now=NOW)
        assert writes == ["done"] and report.added == 12_000
        with store.atomic() as conn:
            status = conn.execute(select(subscribers.c.status).where(subscribers.c.email == "reader@example.org"))
            assert status.scalar_one() == "unsubscribed"
    finally:
        store.dispose()


def test_two_imports_into_one_postgresql_store_at_once_count_each_address_once(postgres_url: str,
                                                                                tmp_path: Path) -> None:
    """Two imports of overlapping files at the same time (two hosts, say): the merges take
    turns, so every address is added by exactly one of them and both reports add up."""
    store = open_store(postgres_url)
    try:
        paths = [write_csv(tmp_path / f"part{k}.csv", ["email", "name"],
                           [[f"p{i}@example.org", f"P {i}"] for i in range(k * 3000, k * 3000 + 6000)]) for k in (0, 1)]
        reports: list = []
        errors: list[BaseException] = []

        def run(path: Path) -> None:
            try:
                reports.append(import_subscribers(store, path, now=NOW))
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(p,)) for p in paths]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        assert sorted((r.added, r.unchanged) for r in reports) == [(3000, 3000), (6000, 0)]
        with store.atomic() as conn:
            assert conn.execute(select(func.count()).select_from(subscribers)).scalar_one() == 9000
            imported = conn.execute(select(func.count()).select_from(events).where(events.c.kind == "imported"))
            assert imported.scalar_one() == 9000
    finally:
        store.dispose()


def test_a_nul_character_in_attributes_is_an_invalid_row_on_postgresql(store: Store, tmp_path: Path) -> None:
    """PostgreSQL's JSON functions refuse ``\\u0000``: there such a row is named as invalid, not a
    failed merge; SQLite takes it. An escaped backslash before ``u0000`` is only text."""
    path = write_csv(tmp_path / "nul.csv", ["email", "attributes"], [
        ["a@example.org", '{"k": "x\\u0000y"}'], ["b@example.org", '{"k": "x\\\\u0000y"}']])
    if store.engine.dialect.name == "sqlite":
        assert import_subscribers(store, path, now=NOW).added == 2
        return
    with pytest.raises(ImportRowsError) as info:
        import_subscribers(store, path, now=NOW)
    assert [str(e) for e in info.value.errors] == [
        f"{path}:2: a@example.org: attributes: a NUL character (\\u0000), which a PostgreSQL store cannot hold"]
    report = import_subscribers(store, path, now=NOW, skip_invalid=True)
    assert report.added == 1
    assert import_subscribers(store, path, now=LATER, skip_invalid=True).unchanged == 1
    with store.atomic() as conn:
        assert [s.attributes for s in list_subscribers(conn)] == [{"k": "x\\u0000y"}]

