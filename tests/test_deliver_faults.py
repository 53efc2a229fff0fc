"""Faults spoken in SMTP by a real aiosmtpd server: 421 and 451 answers, a server that hangs up
every few messages, a slow server, 550 for chosen recipients, a server that goes away mid-run
and comes back, a login refused. What arrived is read from the server."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from conftest import free_port
from newsletter.deliver.sender import SendOptions, deliver_issue
from newsletter.deliver.transports import SmtpPool, SmtpSettings, classify_reply, PermanentFailure, TemporaryFailure
from newsletter.store.schema import deliveries, events
from newsletter.store.subscribers import get_subscriber
from test_deliver_support import RecordingHandler, SmtpServer, build_message, seed

FAST = dict(concurrency=4, rate_per_second=0, retry_delay_s=0.01, max_retry_delay_s=0.05)


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


def test_a_server_that_does_not_answer_in_time_is_retried_on_a_new_connection(store, server) -> None:
    emails = seed(store, 8)
    server.handler.stall_once = {emails[2]: 1.5}
    transport = SmtpPool(SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout_s=0.4))
    report = deliver_issue(store, 1, "2026-W48", build_message, transport, SendOptions(**{**FAST, "concurrency": 1}))
    assert (report.sent, report.failed, report.deferred) == (8, 0, 0)
    assert exactly_once(server, emails)
    row = ledger(store)[emails[2]]
    assert row["status"] == "sent" and row["attempts"] == 2  # the timeout cost one attempt
    assert server.handler.sessions == 2  # the timed-out connection was dropped, a new one opened


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
    assert sorted(got) == sorted(emails)
    # A message whose 250 was lost with the server may come twice; at most one per connection.
    assert sum(got.values()) - len(emails) <= 3
    assert (report.sent, report.failed, report.deferred) == (80, 0, 0)


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


@pytest.mark.parametrize("code, reply, kind, bounced", [
    (451, b"4.3.0 try later", TemporaryFailure, False),
    (421, b"4.3.2 closing", TemporaryFailure, False),
    (550, b"5.1.1 no such user", PermanentFailure, True),
    (553, b"5.1.3 bad address syntax", PermanentFailure, True),
    (550, b"5.7.1 rejected", PermanentFailure, False),
    (554, b"transaction failed", PermanentFailure, False),
])
def test_answers_are_classified_by_their_code(code: int, reply: bytes, kind: type, bounced: bool) -> None:
    failure = classify_reply(code, reply, "DATA")
    assert type(failure) is kind
    assert getattr(failure, "bounced", False) is bounced
    assert str(failure) == f"DATA: {code} {reply.decode()}"
