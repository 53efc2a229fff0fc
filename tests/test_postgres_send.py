"""A send's per-message path on a real PostgreSQL (``pgserver``, or
``NEWSLETTER_TEST_POSTGRES_URL``): the "sent" record and the next row's status check are one
autocommit statement there (``store/runs.py``), so these tests hold it to the promises the SQLite
path keeps: the record is committed when it returns, someone who unsubscribed between two
messages of one claimed batch is not mailed, a row taken over is not overwritten, and an
acceptance the store cannot record goes to the journal."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select, update

from newsletter.deliver.journal import journal_path
from newsletter.deliver.ledger import Ledger
from newsletter.deliver.sender import deliver_issue
from newsletter.store import Store, open_store
from newsletter.store.deliveries import release_stale_claims
from newsletter.store.schema import deliveries
from newsletter.store.subscribers import unsubscribe
from test_deliver import options, pool, rows
from test_deliver_support import build_message, seed

# The delivery tests of test_deliver.py, collected here once more with ``store`` (below) on
# PostgreSQL: the same promises, on the other store. (Imported to be collected.)
from test_deliver import (  # noqa: F401
    smtp,
    test_bounced_subscriber_is_recorded_through_the_subscribers_store,
    test_daily_cap_is_shared_by_runs_through_the_store,
    test_limit_then_resume_sends_the_rest_exactly_once,
    test_smtp_each_subscriber_gets_exactly_one_message_over_reused_connections,
    test_stop_finishes_messages_in_flight_and_records_them,
    test_subscriber_who_unsubscribes_mid_send_gets_nothing_more,
)

NOW = datetime(2026, 11, 23, 9, tzinfo=timezone.utc)


@pytest.fixture
def store(postgres_url: str) -> Store:
    """A migrated store in a database of its own on the session's PostgreSQL."""
    s = open_store(postgres_url)
    yield s
    s.dispose()


# group_commit=None with one worker: the worker's own statement; True: the group-commit thread.
@pytest.mark.parametrize("group_commit", [None, True])
def test_an_unsubscribe_between_two_messages_of_one_claimed_batch_is_honoured(store, smtp, group_commit) -> None:
    emails = seed(store, 20)
    # After the message to the first address went out, the next in line leave.
    leaving = {emails[4]: [emails[5], emails[6]], emails[9]: [emails[10]]}

    def unsubscribe_next(_accepted: int) -> None:
        # Runs in the server before its 250: the unsubscribes are committed after the message
        # went out and before its "sent" record, which carries the check of the next row.
        for address in leaving.get(smtp.handler.messages[-1][1][0], []):
            with store.atomic() as conn:
                unsubscribe(conn, address, reason="one-click")

    smtp.handler.on_message = unsubscribe_next
    # One batch of 32 holds all 20 rows, claimed while everyone was still active.
    report = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp),
                           options(concurrency=2 if group_commit else 1, claim_batch=32, group_commit=group_commit))
    gone = {emails[5], emails[6], emails[10]}
    assert (report.sent, report.suppressed, report.deferred, report.failed) == (17, 3, 0, 0)
    got = smtp.handler.recipients()
    assert sorted(got) == sorted(set(emails) - gone) and set(got.values()) == {1}
    ledger = rows(store)
    assert {e for e, r in ledger.items() if r["status"] == "skipped"} == gone
    assert all(ledger[e]["last_error"] == "subscriber no longer active" for e in gone)


# None: the group-commit thread (several workers); False: the worker's own statement (one).
@pytest.mark.parametrize("group_commit", [None, False])
def test_the_record_is_committed_when_it_returns_and_transactions_work_after_it(store, group_commit) -> None:
    seed(store, 3)
    ledger = Ledger(store, 1, clock=lambda: NOW, group_commit=group_commit)
    try:
        ledger.prepare()
        claimed, _, _ = ledger.claim(ledger.worker_tag(0), limit=3)
        first, upcoming = claimed[0], claimed[1:]
        assert ledger.sent(first, "<m1@example.org>", upcoming) == (0, True)
        assert len(upcoming) == 2
        # Seen from another connection at once: committed, not waiting in an open transaction.
        with psycopg.connect(store.engine.url.set(drivername="postgresql").render_as_string(False)) as other:
            status, message_id, attempts = other.execute(
                "SELECT status, message_id, attempts FROM deliveries WHERE id = %s", (first.id,)).fetchone()
        assert (status, message_id, attempts) == ("sent", "<m1@example.org>", 1)
        # The run's connection is back to transactions: a change that fails is rolled back whole.
        with pytest.raises(RuntimeError):
            with ledger.db.transaction() as conn:
                conn.execute(update(deliveries).where(deliveries.c.id == upcoming[0].id).values(last_error="x"))
                raise RuntimeError("rolled back")
        assert rows(store)[upcoming[0].subscriber.email]["last_error"] == ""
    finally:
        ledger.close()


def test_a_late_record_of_a_row_taken_over_is_kept_and_says_it_was_not_held(store) -> None:
    seed(store, 2)
    ledger = Ledger(store, 1, clock=lambda: NOW)
    try:
        ledger.prepare()
        (old, _), _, _ = ledger.claim("host:1:a:w0", limit=2)
        with store.atomic() as conn:
            release_stale_claims(conn, 1, stale_before=NOW.replace(hour=10), is_dead=lambda _: False, now=NOW)
        (new, _), _, _ = ledger.claim("host:2:b:w0", limit=2)
        assert new.id == old.id
        # The old holder's acceptance happened: recorded, and reported as not held.
        assert ledger.sent(old, "<late@example.org>", []) == (0, False)
    finally:
        ledger.close()
    with store.atomic() as conn:
        row = conn.execute(select(deliveries).where(deliveries.c.id == old.id)).one()
    assert (row.status, row.message_id, row.claimed_by) == ("sent", "<late@example.org>", None)


def test_a_connection_dropped_after_acceptance_keeps_it_in_the_journal(store, smtp, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The server ends the run's session right after the 10th message was accepted: that
    acceptance goes to the journal, the run stops saying so (having given back the rows it held
    on a new connection), and the next run records it and sends none of them again."""
    monkeypatch.chdir(tmp_path)  # a server store's journal is kept in the working directory
    emails = seed(store, 30)
    admin_url = store.engine.url.set(drivername="postgresql").render_as_string(False)

    def end_sessions(accepted: int) -> None:
        if accepted == 10:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()")

    smtp.handler.on_message = end_sessions
    report = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), options(concurrency=1, claim_batch=4))
    assert report.sent == 10 and len(smtp.handler.recipients()) == 10
    assert "the store cannot record deliveries" in report.stopped and "journal" in report.stopped
    assert journal_path(store).exists()
    store.engine.dispose()  # the pool's other sessions were ended too
    # The 10th is still "sending" (the journal has it); the rows claimed after it were given back.
    statuses = {e: r["status"] for e, r in rows(store).items()}
    assert statuses[emails[9]] == "sending" and set(statuses.values()) == {"sent", "sending", "pending"}
    smtp.handler.on_message = None
    again = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), options(concurrency=2))
    assert not journal_path(store).exists()
    got = smtp.handler.recipients()
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}
    assert again.sent == 20 and {r["status"] for r in rows(store).values()} == {"sent"}
