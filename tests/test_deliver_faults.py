"""Faults spoken in SMTP by a real aiosmtpd server: 421 and 451 answers, a server that hangs up
every few messages, a slow server, 550 for chosen recipients, a server that goes away mid-run
and comes back, a login refused. What arrived is read from the server."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from conftest import free_port
from newsletter.deliver.sender import SendOptions, deliver_issue
from newsletter.deliver.transports import (PermanentFailure, SenderRefused, SmtpPool, SmtpSettings, TemporaryFailure,
                                            Throttled, classify_reply)
from newsletter.store.deliveries import reset_status
from newsletter.store.schema import deliveries, events, subscribers
from newsletter.store.subscribers import get_subscriber
from test_deliver_support import RecordingHandler, SmtpServer, build_message, seed

FAST = dict(concurrency=4, rate_per_second=0, retry_delay_s=0.01, max_retry_delay_s=0.05, max_attempts=5)


def run(store, server: SmtpServer, **changes):  # type: ignore[no-untyped-def]
    transport = SmtpPool(SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout_s=5))
    return deliver_issue(store, 1, "2026-W48", build_message, transport, SendOptions(**{**FAST, **changes}))


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    s = SmtpServer(RecordingHandler(), free_port()).start()
    yield s
    s.stop()


def ledger(store) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    with store.atomic() as conn:
        return {r.email: r._asdict() for r in conn.execute(select(deliveries))}


def exactly_once(server: SmtpServer, emails: list[str]) -> bool:
    got = server.handler.recipients()
    return sorted(got) == sorted(emails) and set(got.values()) == {1}


def test_451_answers_are_retried_with_backoff_until_accepted(store, server) -> None:
    emails = seed(store, 20)
    server.handler.temp_fail_data = {emails[0]: 2, emails[7]: 1}
    report = run(store, server)
    assert (report.sent, report.failed, report.deferred) == (20, 0, 0)
    assert exactly_once(server, emails)
    rows = ledger(store)
    assert rows[emails[0]]["attempts"] == 3 and rows[emails[7]]["attempts"] == 2
    assert rows[emails[1]]["attempts"] == 1


def test_a_temporary_failure_that_never_ends_fails_after_max_attempts(store, server) -> None:
    emails = seed(store, 5)
    server.handler.temp_fail_data = {emails[2]: 100}
    report = run(store, server, max_attempts=3)
    assert (report.sent, report.failed) == (4, 1)
    row = ledger(store)[emails[2]]
    assert row["status"] == "failed" and row["attempts"] == 3
    assert "451 4.3.0" in row["last_error"] and "gave up after 3 attempts" in row["last_error"]
    assert emails[2] not in server.handler.recipients()


def test_421_closing_answers_reconnect_and_every_message_arrives_once(store, server) -> None:
    emails = seed(store, 40)
    server.handler.answer_421_every = 7
    report = run(store, server)
    assert (report.sent, report.failed) == (40, 0)
    assert exactly_once(server, emails)
    assert server.handler.sessions > 4  # the 421s forced new connections


def test_server_hanging_up_every_few_messages_is_reconnected_transparently(store, server) -> None:
    emails = seed(store, 60)
    server.handler.drop_every = 5
    report = run(store, server, concurrency=3)
    assert (report.sent, report.failed, report.deferred) == (60, 0, 0)
    assert exactly_once(server, emails)
    assert server.handler.sessions >= 12
    # Reconnecting after a hang-up between messages does not cost the message an attempt.
    assert {r["attempts"] for r in ledger(store).values()} == {1}


def test_slow_server_still_gets_everything_once(store, server) -> None:
    emails = seed(store, 16)
    server.handler.delay_s = 0.05
    report = run(store, server, concurrency=4)
    assert report.sent == 16 and exactly_once(server, emails)


def test_a_reply_lost_after_data_is_uncertain_and_never_sent_again_on_its_own(store, server) -> None:
    """The server queued the message and its 250 came too late: sending it again could deliver
    it twice, so it is set aside as uncertain, counted, and the run goes on with the rest."""
    emails = seed(store, 8)
    server.handler.withhold_reply = {emails[2]: 1.5}
    transport = SmtpPool(SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout_s=0.4))
    report = deliver_issue(store, 1, "2026-W48", build_message, transport, SendOptions(**{**FAST, "concurrency": 1}))
    assert (report.sent, report.failed, report.uncertain, report.deferred) == (7, 0, 1, 0)
    assert exactly_once(server, emails)  # emails[2] arrived once, and only once
    row = ledger(store)[emails[2]]
    assert row["status"] == "uncertain" and row["attempts"] == 1
    assert "reply was lost" in row["last_error"] and row["message_id"]
    assert any(e.startswith(emails[2]) and "resend --uncertain" in e for e in report.errors)
    assert server.handler.sessions == 2  # the timed-out connection was dropped, a new one opened
    again = run(store, server)
    assert (again.sent, again.uncertain) == (0, 0) and exactly_once(server, emails)


def test_a_reply_that_comes_too_late_is_uncertain_even_if_the_server_kept_nothing(store, server) -> None:
    """Past the timeout the client cannot tell a message the server queued from one it dropped
    (here it stalls, then answers 451 and keeps nothing): either way it is uncertain, never
    retried on its own."""
    emails = seed(store, 4)
    server.handler.stall_once = {emails[1]: 1.0}
    transport = SmtpPool(SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout_s=0.4))
    report = deliver_issue(store, 1, "2026-W48", build_message, transport, SendOptions(**{**FAST, "concurrency": 1}))
    assert (report.sent, report.uncertain, report.failed) == (3, 1, 0)
    assert emails[1] not in server.handler.recipients() and ledger(store)[emails[1]]["status"] == "uncertain"


def test_550_5_1_1_fails_with_the_servers_words_and_marks_the_subscriber_bounced(store, server) -> None:
    emails = seed(store, 10)
    server.handler.refuse = {
        emails[3]: "550 5.1.1 Recipient address rejected: User unknown in virtual mailbox table",
        emails[5]: "550 5.7.1 Message rejected as spam",
    }
    report = run(store, server)
    assert (report.sent, report.failed) == (8, 2)
    rows = ledger(store)
    assert rows[emails[3]]["status"] == "failed"
    assert "550 5.1.1 Recipient address rejected: User unknown" in rows[emails[3]]["last_error"]
    assert "550 5.7.1 Message rejected as spam" in rows[emails[5]]["last_error"]
    assert rows[emails[3]]["attempts"] == 1  # permanent: never retried
    with store.atomic() as conn:
        assert get_subscriber(conn, emails[3]).status == "bounced"
        assert get_subscriber(conn, emails[5]).status == "active"  # 5.7.x is not a bad address
        kinds = [(e.email, e.kind) for e in conn.execute(select(events).where(events.c.kind == "bounced"))]
    assert kinds == [(emails[3], "bounced")]
    assert exactly_once(server, [e for e in emails if e not in (emails[3], emails[5])])
    # A refusal resets the session (RSET) and the connection goes on: no reconnect per error.
    assert server.handler.sessions <= FAST["concurrency"]


def test_server_going_away_mid_run_and_coming_back(store, server) -> None:
    emails = seed(store, 80)
    server.handler.delay_s = 0.01
    restarted = threading.Event()

    def bounce_server() -> None:
        while sum(server.handler.recipients().values()) < 20:
            time.sleep(0.005)
        server.stop()
        time.sleep(0.3)
        server.start()
        restarted.set()

    threading.Thread(target=bounce_server, daemon=True).start()
    report = run(store, server, concurrency=3, max_attempts=8, retry_delay_s=0.05, max_retry_delay_s=0.2)
    assert restarted.is_set()
    got = server.handler.recipients()
    # A message in flight when the server went away lost its reply: it is uncertain (at most
    # one per connection), never sent a second time on its own.
    uncertain = {e for e, r in ledger(store).items() if r["status"] == "uncertain"}
    assert len(uncertain) <= 3 and report.uncertain == len(uncertain)
    assert (report.sent + report.uncertain, report.failed, report.deferred) == (80, 0, 0)
    assert set(got) >= set(emails) - uncertain and set(got.values()) == {1}
    # Sending them again is the operator's choice; then everyone has it.
    with store.atomic() as conn:
        assert reset_status(conn, 1, "uncertain", datetime.now(timezone.utc)) == len(uncertain)
    run(store, server)
    assert sorted(server.handler.recipients()) == sorted(emails)


def test_server_gone_for_good_leaves_the_rest_for_later_not_failed(store, server) -> None:
    emails = seed(store, 10)
    server.stop()
    report = run(store, server, concurrency=2, max_attempts=3)
    assert (report.sent, report.failed, report.deferred) == (0, 0, 10)
    assert "server unreachable" in report.errors[0] and "cannot connect" in report.errors[0]
    assert {r["status"] for r in ledger(store).values()} == {"pending"}
    assert {r["attempts"] for r in ledger(store).values()} == {0}
    server.start()
    again = run(store, server)
    assert again.sent == 10 and exactly_once(server, emails)


def test_server_without_smtputf8_fails_an_internationalised_address_at_once_and_sends_the_rest(
        store, tmp_path) -> None:
    """A server without SMTPUTF8 (``python -m aiosmtpd -n``) can never take a message to
    dörte@münchen.de: it fails at once, with that reason, not after five retries and half a
    minute of backoff; the connection goes on and every ASCII subscriber gets the issue."""
    from test_deliver import real_factory, seed_internationalised

    # aiosmtpd's Controller offers SMTPUTF8 unless told not to.
    server = SmtpServer(RecordingHandler(), free_port(), enable_SMTPUTF8=False).start()
    ascii_emails, international = seed_internationalised(store, 6)
    transport = SmtpPool(SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout_s=5))
    try:
        report = deliver_issue(store, 1, "2026-W48", real_factory(tmp_path).build, transport,
                               SendOptions(concurrency=1, rate_per_second=0, retry_delay_s=2.0, max_attempts=5))
    finally:
        server.stop()
    assert (report.sent, report.failed, report.deferred) == (6, 2, 0)
    assert report.elapsed_s < 1.5  # not a single backoff (2 s, then 4, 8, 16) was waited out
    assert exactly_once(server, ascii_emails)
    rows = ledger(store)
    for address in international:
        row = rows[address]
        assert row["status"] == "failed" and row["attempts"] == 1
        assert row["last_error"] == ("the server does not support SMTPUTF8, needed for the "
                                     f"internationalised address {address}")
        assert any(e.startswith(f"{address}: the server does not support SMTPUTF8") for e in report.errors)
        with store.atomic() as conn:
            assert get_subscriber(conn, address).status == "active"  # not a bounce: the address may be fine
    assert server.handler.sessions == 1  # the same connection went on with the ASCII subscribers


def test_login_refused_stops_the_run_and_sends_nothing(store) -> None:
    from aiosmtpd.smtp import AuthResult

    seed(store, 5)
    handler = RecordingHandler()
    server = SmtpServer(handler, free_port(), auth_require_tls=False,
                        authenticator=lambda *a: AuthResult(success=False, handled=False)).start()
    try:
        transport = SmtpPool(SmtpSettings(host="127.0.0.1", port=server.port, security="none",
                                          username="digest", password="wrong", timeout_s=5))
        report = deliver_issue(store, 1, "2026-W48", build_message, transport, SendOptions(**FAST))
    finally:
        server.stop()
    assert (report.sent, report.failed, report.deferred) == (0, 0, 5)
    assert "login refused: 535" in report.errors[0]
    assert handler.messages == []


@pytest.mark.parametrize("stage, code, reply, kind, bounced", [
    ("DATA", 451, b"4.3.0 try later", TemporaryFailure, False),
    ("RCPT TO a@x", 452, b"4.2.2 mailbox full", TemporaryFailure, False),
    ("DATA", 421, b"4.3.2 closing", Throttled, False),
    ("DATA", 451, b"4.7.1 Too many messages, slow down", Throttled, False),
    ("RCPT TO a@x", 450, b"4.7.1 Service unavailable, try again later", Throttled, False),
    ("MAIL FROM", 451, b"4.3.0 Mail server temporarily rejected message", Throttled, False),
    ("connect", 421, b"4.7.0 Try again later, closing connection", Throttled, False),
    ("RCPT TO a@x", 550, b"5.1.1 no such user", PermanentFailure, True),
    ("RCPT TO a@x", 553, b"5.1.3 bad address syntax", PermanentFailure, True),
    ("RCPT TO a@x", 550, b"5.2.1 mailbox disabled", PermanentFailure, True),
    ("RCPT TO a@x", 550, b"Requested action not taken: mailbox unavailable", PermanentFailure, True),
    ("DATA", 550, b"5.1.1 no such user", PermanentFailure, False),  # only RCPT names a mailbox
    ("RCPT TO a@x", 550, b"5.7.1 rejected", PermanentFailure, False),
    ("DATA", 554, b"transaction failed", PermanentFailure, False),
    ("MAIL FROM", 553, b"5.1.8 Sender address rejected: Domain not found", SenderRefused, False),
    ("MAIL FROM", 550, b"5.1.1 no such user", SenderRefused, False),  # about our sender, not a reader
    ("RCPT TO a@x", 553, b"5.1.8 <digest@x>: Sender address rejected: Domain not found", SenderRefused, False),
    ("RCPT TO a@x", 554, b"5.7.1 <a@x>: Relay access denied", SenderRefused, False),
    ("DATA", 554, b"5.7.1 Message rejected: sender not authorised", SenderRefused, False),
    ("connect", 554, b"5.7.1 Your IP is on a block list", SenderRefused, False),
    ("EHLO", 550, b"5.7.1 go away", SenderRefused, False),
])
def test_answers_are_classified_by_step_and_enhanced_code(stage: str, code: int, reply: bytes, kind: type,
                                                          bounced: bool) -> None:
    failure = classify_reply(code, reply, stage)
    assert type(failure) is kind
    assert getattr(failure, "bounced", False) is bounced
    assert str(failure).startswith(f"{stage}: {code} {reply.decode()}")


def seeded_statuses(store) -> set[str]:  # type: ignore[no-untyped-def]
    with store.atomic() as conn:
        return {r.status for r in conn.execute(select(subscribers.c.status))}


def test_a_refused_sender_stops_the_run_at_once_and_suppresses_nobody(store, server) -> None:
    """553 5.1.8 at MAIL FROM (an unverified From): every message would meet it. Before, all 25
    subscribers were marked bounced, for good."""
    emails = seed(store, 25)
    server.handler.mail_from_answer = "553 5.1.8 <digest@example.org>: Sender address rejected: Domain not found"
    report = run(store, server)
    assert (report.sent, report.failed, report.deferred) == (0, 0, 25)
    assert report.stopped.startswith("MAIL FROM: 553 5.1.8") and "newsletter.from" in report.stopped
    assert {(r["status"], r["attempts"]) for r in ledger(store).values()} == {("pending", 0)}
    assert seeded_statuses(store) == {"active"}
    with store.atomic() as conn:
        assert conn.execute(select(events).where(events.c.kind == "bounced")).first() is None
    assert server.handler.messages == []
    server.handler.mail_from_answer = ""  # the operator fixed the From address
    again = run(store, server)
    assert again.sent == 25 and exactly_once(server, emails)


def test_a_policy_refusal_of_every_message_at_data_stops_the_run(store, server) -> None:
    seed(store, 12)
    server.handler.data_answer = "554 5.7.1 Message rejected: sender not authorised by SPF"
    report = run(store, server, concurrency=2)
    assert (report.sent, report.failed) == (0, 0) and report.deferred == 12
    assert "554 5.7.1" in report.stopped and "SPF" in report.stopped
    assert {(r["status"], r["attempts"]) for r in ledger(store).values()} == {("pending", 0)}
    assert seeded_statuses(store) == {"active"}


@pytest.mark.parametrize("answer, stage", [
    ("451 4.7.1 Too many messages, slow down", "DATA"),
    ("421 4.7.0 Try again later, closing connection", "MAIL"),
])
def test_a_throttling_server_slows_the_whole_run_and_every_message_arrives(store, server, answer, stage) -> None:
    """Throttled for the first 1.5 s (as Gmail or Outlook do to a new sender): before, each 4xx
    spent an attempt of one message and all of them ended failed."""
    emails = seed(store, 30)
    server.handler.throttle_for_s = 1.5
    server.handler.throttle_answer = answer
    server.handler.throttle_stage = stage
    report = run(store, server, rate_per_second=40, max_attempts=2)
    assert (report.sent, report.failed, report.deferred) == (30, 0, 0)
    assert exactly_once(server, emails)
    assert report.throttled == server.handler.throttled > 0
    # No message spent an attempt on the throttle, and the run did not hammer the server:
    # each throttle cut the rate (or paused every worker after a dropped connection).
    assert {r["attempts"] for r in ledger(store).values()} == {1}
    assert server.handler.throttled < 20


@pytest.mark.sqlite_only("the store is made to refuse by holding SQLite's file lock past its busy timeout")
def test_store_refusing_the_record_after_acceptance_keeps_it_in_the_journal(store, server, db_url) -> None:
    """The store's write lock held past the busy timeout right after the server accepted the
    10th message: the acceptance goes to the journal, the run stops with the reason, and the
    next run records it and sends none of the accepted messages again."""
    import sqlite3

    from sqlalchemy import event

    from newsletter.deliver.journal import journal_path

    emails = seed(store, 30)
    store.engine.dispose()
    event.listen(store.engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA busy_timeout=200"))
    blocker = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)

    def hold_lock(count: int) -> None:
        if count == 10:
            blocker.execute("BEGIN IMMEDIATE")

    server.handler.on_message = hold_lock
    try:
        report = run(store, server, concurrency=1)
    finally:
        blocker.execute("ROLLBACK") if blocker.in_transaction else None
    accepted = server.handler.recipients()
    assert len(accepted) == 10 and report.sent == 10
    assert "the store cannot record deliveries" in report.stopped and "journal" in report.stopped
    assert journal_path(store).exists()
    blocker.close()
    again = run(store, server)
    assert not journal_path(store).exists()
    assert exactly_once(server, emails), (server.handler.recipients().most_common(3), ledger(store))  # the 10th was recorded from the journal, not sent again
    assert again.sent == 20
    assert {r["status"] for r in ledger(store).values()} == {"sent"}


def test_a_claim_taken_over_is_never_overwritten_by_its_old_holder(store) -> None:
    from datetime import datetime, timezone

    from newsletter.store.deliveries import (claim_deliveries, create_deliveries, mark_failed, mark_sent,
                                             release_stale_claims)

    seed(store, 2)
    now = datetime(2026, 11, 23, 9, tzinfo=timezone.utc)
    with store.atomic() as conn:
        create_deliveries(conn, 1, now)
        (old, _), _ = claim_deliveries(conn, 1, claimed_by="host:1:a:w0", now=now, limit=2)
        release_stale_claims(conn, 1, stale_before=now.replace(hour=10), is_dead=lambda _: False, now=now)
        (new, _), _ = claim_deliveries(conn, 1, claimed_by="host:2:b:w0", now=now, limit=2)
        assert new.id == old.id
        # The old holder's late failure changes nothing: the row is the new holder's.
        assert mark_failed(conn, old.id, error="late", now=now, holder=old.claimed_by) is False
        # Its late acceptance is recorded all the same (it happened), and says it was not held.
        assert mark_sent(conn, old.id, message_id="<m@x>", now=now, holder=old.claimed_by) is False
        assert mark_failed(conn, new.id, error="x", now=now, holder=new.claimed_by) is False
        row = conn.execute(select(deliveries).where(deliveries.c.id == old.id)).one()
    assert (row.status, row.last_error, row.message_id) == ("sent", "", "<m@x>")


@pytest.mark.sqlite_only("the unsubscribe spool exists only beside a SQLite file")
def test_an_unsubscribe_spooled_mid_send_skips_a_row_already_claimed(store, server) -> None:
    """The web app spools an unsubscribe while the store is busy; rows this run claimed in a
    batch before that are re-checked before each message, and the spool is read then too."""
    emails = seed(store, 20)
    server.handler.on_message = lambda count: count == 3 and store.unsubscribe_spool.append(emails[12], "one-click")
    report = run(store, server, concurrency=1)
    assert emails[12] not in server.handler.recipients()
    assert report.sent == 19 and report.suppressed == 1
    assert ledger(store)[emails[12]]["status"] == "skipped"
    with store.atomic() as conn:
        assert get_subscriber(conn, emails[12]).status == "unsubscribed"
