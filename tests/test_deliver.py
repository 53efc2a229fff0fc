"""The sender, ledger, rate limit and both transports, against a real SQLite file and a real
aiosmtpd server on 127.0.0.1; what arrived is read from the server."""

from __future__ import annotations

import email
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from email.policy import default as default_policy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update

from conftest import free_port
from newsletter.deliver.ledger import _HOST, claim_holder_is_dead
from newsletter.store.locks import pid_namespace
from newsletter.deliver.ratelimit import RateLimiter
from newsletter.deliver.sender import SendOptions, deliver_issue
from newsletter.deliver.transports import OutboxTransport, SmtpPool, SmtpSettings, dot_stuff
from newsletter.models import Issue, RenderedIssue
from newsletter.render.messages import MessageFactory
from newsletter.store.deliveries import status_counts
from newsletter.store.schema import deliveries
from newsletter.store.subscribers import add_subscriber, get_subscriber, unsubscribe
from newsletter.tokens import Signer
from test_deliver_support import FROM, RecordingHandler, SmtpServer, build_message, seed

FAST = SendOptions(concurrency=4, rate_per_second=0, retry_delay_s=0.01, max_retry_delay_s=0.05)


def options(**changes) -> SendOptions:  # type: ignore[no-untyped-def]
    return SendOptions(**{**FAST.__dict__, **changes})


@pytest.fixture
def smtp():  # type: ignore[no-untyped-def]
    handler = RecordingHandler()
    server = SmtpServer(handler, free_port()).start()
    yield server
    server.stop()


def pool(server: SmtpServer) -> SmtpPool:
    return SmtpPool(SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout_s=5))


def rows(store, issue_number: int = 1) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    with store.atomic() as conn:
        return {r.email: r._asdict() for r in conn.execute(
            select(deliveries).where(deliveries.c.issue_number == issue_number))}


INTERNATIONALISED = ["dörte@münchen.de", "δοκιμή@παράδειγμα.δοκιμή"]


def seed_internationalised(store, n_ascii: int) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    """``seed`` plus the INTERNATIONALISED addresses: (ASCII addresses, internationalised ones)."""
    emails = seed(store, n_ascii)
    with store.atomic() as conn:
        for address in INTERNATIONALISED:
            add_subscriber(conn, address, name="Dörte")
    return emails, list(INTERNATIONALISED)


def real_factory(tmp_path: Path) -> MessageFactory:
    """The render area's MessageFactory (what ``newsletter send`` uses) for a tiny issue."""
    from test_render import NOW, SECRET, make_config

    config = make_config(tmp_path, **{"from": f"Trending Papers <{FROM}>"})
    issue = Issue(key="2026-W48", number=1, title="Issue 1", papers=(), created_at=NOW)
    rendered = RenderedIssue(issue=issue, subject="Subject", html="<p>x</p>", text="x")
    return MessageFactory(rendered, config, Signer(SECRET))


# -- outbox ------------------------------------------------------------------------------


def test_outbox_gets_one_eml_per_subscriber_and_a_rerun_sends_nothing(store, tmp_path: Path) -> None:
    emails = seed(store, 25)
    outbox = OutboxTransport(tmp_path / "outbox")
    report = deliver_issue(store, 1, "2026-W48", build_message, outbox, FAST)
    assert (report.sent, report.failed, report.deferred, report.already_sent) == (25, 0, 0, 0)
    assert report.destination == str((tmp_path / "outbox").resolve())
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 25
    assert not list((tmp_path / "outbox").glob(".tmp-*"))
    to = sorted(email.message_from_bytes(f.read_bytes(), policy=default_policy)["To"] for f in files)
    assert to == sorted(emails)
    assert {r["status"] for r in rows(store).values()} == {"written"}
    assert all(r["message_id"] and r["sent_at"] for r in rows(store).values())

    again = deliver_issue(store, 1, "2026-W48", build_message, OutboxTransport(tmp_path / "outbox"), FAST)
    assert (again.sent, again.already_sent, again.deferred) == (0, 25, 0)
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 25


def test_an_outbox_that_cannot_be_written_stops_the_run_and_fails_nobody(store, tmp_path: Path) -> None:
    """The folder is the problem, not the messages: they stay pending for the next run."""
    import shutil

    seed(store, 5)
    outbox = OutboxTransport(tmp_path / "outbox")
    shutil.rmtree(tmp_path / "outbox")
    (tmp_path / "outbox").write_text("a file where the folder was")  # writing into it now fails
    report = deliver_issue(store, 1, "2026-W48", build_message, outbox, FAST)
    assert (report.sent, report.failed, report.deferred) == (0, 0, 5)
    assert report.errors and "cannot write into the outbox folder" in report.errors[0]
    assert str(tmp_path / "outbox") in report.errors[0]
    assert {r["status"] for r in rows(store).values()} == {"pending"}


def test_outbox_names_never_clobber_a_different_message(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path)
    first = build_message(type("S", (), {"email": "a@example.com", "name": "A"})())  # type: ignore[arg-type]
    second = build_message(type("S", (), {"email": "a@example.com", "name": "A"})())  # type: ignore[arg-type]
    p1 = outbox.send(FROM, [first.recipient], first.data)
    p1_again = outbox.send(FROM, [first.recipient], first.data)
    p2 = outbox.send(FROM, [second.recipient], second.data)
    assert p1 == p1_again and p1 != p2
    assert Path(p1).read_bytes() == first.data and Path(p2).read_bytes() == second.data
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([Path(p1).name, Path(p2).name])


# -- SMTP --------------------------------------------------------------------------------


# group_commit=None: SQLite's direct path (each "sent" its own statement); True: the group
# commit thread a server database uses; both must keep the same promises.
@pytest.mark.parametrize("group_commit", [None, True])
def test_smtp_each_subscriber_gets_exactly_one_message_over_reused_connections(store, smtp, group_commit) -> None:
    emails = seed(store, 120)
    report = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp),
                           options(concurrency=4, group_commit=group_commit))
    assert (report.sent, report.failed, report.deferred) == (120, 0, 0)
    got = smtp.handler.recipients()
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}
    # Each worker reused one connection for all its messages.
    assert smtp.handler.sessions <= 4
    # The ledger's Message-ID is the one the server received.
    received_ids = {email.message_from_bytes(data)["Message-ID"] for _, _, data in smtp.handler.messages}
    assert {r["message_id"] for r in rows(store).values()} == received_ids
    # The time written straight to the driver reads back as the aware UTC time it was.
    assert all(timedelta(0) <= datetime.now(timezone.utc) - r["sent_at"] < timedelta(minutes=5)
               for r in rows(store).values())
    assert report.destination.startswith(f"smtp://127.0.0.1:{smtp.port}")


def test_internationalised_addresses_arrive_when_the_server_offers_smtputf8(store, tmp_path: Path) -> None:
    handler = RecordingHandler()
    server = SmtpServer(handler, free_port(), enable_SMTPUTF8=True).start()
    factory = real_factory(tmp_path)
    try:
        ascii_emails, international = seed_internationalised(store, 4)
        report = deliver_issue(store, 1, "2026-W48", factory.build, pool(server), options(concurrency=2))
    finally:
        server.stop()
    assert (report.sent, report.failed, report.deferred) == (6, 0, 0)
    got = handler.recipients()
    assert sorted(got) == sorted(ascii_emails + international) and set(got.values()) == {1}
    for address in international:
        assert rows(store)[address]["status"] == "sent"
        data = next(d for _, rcpts, d in handler.messages if rcpts == (address,))
        url = factory.unsubscribe_url(address)
        assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in data.split(b"\r\n\r\n", 1)[0]
        assert email.message_from_bytes(data, policy=default_policy)["List-Unsubscribe"] == f"<{url}>"


def test_limit_then_resume_sends_the_rest_exactly_once(store, smtp) -> None:
    emails = seed(store, 30)
    first = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), options(limit=7))
    assert (first.sent, first.deferred) == (7, 23)
    assert sum(smtp.handler.recipients().values()) == 7
    second = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), FAST)
    assert (second.sent, second.already_sent, second.deferred) == (23, 7, 0)
    got = smtp.handler.recipients()
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}


def test_stop_finishes_messages_in_flight_and_records_them(store, smtp) -> None:
    emails = seed(store, 60)
    stop = threading.Event()
    built = []

    def build_then_stop(subscriber):  # type: ignore[no-untyped-def]
        built.append(subscriber.email)
        if len(built) == 10:
            stop.set()
        return build_message(subscriber)

    report = deliver_issue(store, 1, "2026-W48", build_then_stop, pool(smtp), options(concurrency=3), stop=stop)
    received = smtp.handler.recipients()
    ledger = rows(store)
    sent_in_ledger = {e for e, r in ledger.items() if r["status"] == "sent"}
    assert sent_in_ledger == set(received) and report.sent == len(received) < 60
    assert {r["status"] for e, r in ledger.items() if e not in sent_in_ledger} == {"pending"}
    deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), FAST)
    got = smtp.handler.recipients()
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}


@pytest.mark.parametrize("group_commit", [None, True])
def test_subscriber_who_unsubscribes_mid_send_gets_nothing_more(store, smtp, group_commit) -> None:
    emails = seed(store, 20)
    leaving = emails[15]

    def build_and_unsubscribe(subscriber):  # type: ignore[no-untyped-def]
        if subscriber.email == emails[3]:
            with store.atomic() as conn:
                unsubscribe(conn, leaving, reason="one-click")
        return build_message(subscriber)

    # One worker claims all 20 rows at once: the check before each message still sees it.
    report = deliver_issue(store, 1, "2026-W48", build_and_unsubscribe, pool(smtp),
                           options(concurrency=2 if group_commit else 1, claim_batch=32, group_commit=group_commit))
    assert (report.sent, report.suppressed, report.deferred) == (19, 1, 0)
    assert leaving not in smtp.handler.recipients()
    assert rows(store)[leaving]["status"] == "skipped"


def test_subscriber_added_after_the_send_started_is_included_on_resume(store, tmp_path: Path) -> None:
    seed(store, 3)
    deliver_issue(store, 1, "2026-W48", build_message, OutboxTransport(tmp_path), FAST)
    with store.atomic() as conn:
        add_subscriber(conn, "late@example.com", name="Late")
    report = deliver_issue(store, 1, "2026-W48", build_message, OutboxTransport(tmp_path), FAST)
    assert (report.sent, report.already_sent) == (1, 3)
    assert rows(store)["late@example.com"]["status"] == "written"


def test_daily_cap_is_shared_by_runs_through_the_store(store, smtp) -> None:
    seed(store, 12)
    first = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), options(daily_cap=5))
    assert (first.sent, first.deferred) == (5, 7)
    assert any("daily cap of 5" in e for e in first.errors)
    second = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), options(daily_cap=5))
    assert (second.sent, second.deferred) == (0, 7)
    assert sum(smtp.handler.recipients().values()) == 5
    # A day later the budget is back.
    with store.atomic() as conn:
        conn.execute(update(deliveries).values(sent_at=datetime.now(timezone.utc) - timedelta(hours=25))
                     .where(deliveries.c.status == "sent"))
    third = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), options(daily_cap=5))
    assert (third.sent, third.deferred) == (5, 2)
    assert sum(smtp.handler.recipients().values()) == 10


def test_outbox_rehearsal_then_smtp_sends_each_message_once_for_real(store, smtp, tmp_path: Path) -> None:
    emails = seed(store, 9)
    rehearsal = deliver_issue(store, 1, "2026-W48", build_message, OutboxTransport(tmp_path), FAST)
    assert rehearsal.sent == 9 and smtp.handler.messages == []
    real = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), FAST)
    assert (real.sent, real.already_sent, real.deferred) == (9, 0, 0)
    again = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), FAST)
    assert (again.sent, again.already_sent) == (0, 9)
    got = smtp.handler.recipients()
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}
    assert {r["status"] for r in rows(store).values()} == {"sent"}


# -- claims left by a dead process -------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_row_claimed_by_a_dead_process_is_sent_by_the_next_run(store, smtp) -> None:
    emails = seed(store, 5)
    deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), options(limit=0))  # rows only
    holder = f"{_HOST}:{dead_pid()}:{pid_namespace()}:abc:w0"
    assert claim_holder_is_dead(holder)
    with store.atomic() as conn:
        conn.execute(update(deliveries).where(deliveries.c.email == emails[2]).values(
            status="sending", claimed_by=holder, claimed_at=datetime.now(timezone.utc)))
    report = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), FAST)
    assert report.sent == 5 and sorted(smtp.handler.recipients()) == sorted(emails)


def test_a_dead_pid_proves_nothing_from_another_pid_namespace_or_an_old_tag() -> None:
    """Two containers may share a host name and pid numbers: a claim from another pid namespace,
    or in the old ``host:pid:run`` form, is judged by its lease only, never by its pid."""
    pid = dead_pid()
    assert claim_holder_is_dead(f"{_HOST}:{pid}:{pid_namespace()}:abc:w0")
    assert not claim_holder_is_dead(f"{_HOST}:{pid}:4026532999:abc:w0")  # another namespace
    assert not claim_holder_is_dead(f"{_HOST}:{pid}:abc:w0")  # the old form, no namespace
    assert not claim_holder_is_dead("another-host:1:x:y:w0")


def test_row_claimed_elsewhere_is_left_alone_until_its_claim_is_stale(store, smtp) -> None:
    emails = seed(store, 4)
    deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), options(limit=0))
    holder = f"another-host:4242:{pid_namespace()}:abc:w0"
    assert not claim_holder_is_dead(holder)
    with store.atomic() as conn:
        conn.execute(update(deliveries).where(deliveries.c.email == emails[0]).values(
            status="sending", claimed_by=holder, claimed_at=datetime.now(timezone.utc)))
    report = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), FAST)
    assert report.sent == 3 and emails[0] not in smtp.handler.recipients()
    assert report.deferred == 1  # still in flight elsewhere: left for later
    with store.atomic() as conn:
        conn.execute(update(deliveries).where(deliveries.c.email == emails[0]).values(
            claimed_at=datetime.now(timezone.utc) - timedelta(hours=2)))
    report = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), options(stale_after_s=3600))
    assert report.sent == 1 and smtp.handler.recipients()[emails[0]] == 1


def test_a_slow_living_sender_renews_its_claims_and_is_never_raced(store, smtp) -> None:
    """A claim is a lease: a run that holds rows longer than ``stale_after_s`` (a slow server)
    renews them, so a second run started meanwhile leaves them alone instead of sending them
    again."""
    emails = seed(store, 12)
    smtp.handler.delay_s = 0.4  # 12 messages one after the other: ~5 s, claimed in one batch
    first: list = []
    slow = threading.Thread(target=lambda: first.append(deliver_issue(
        store, 1, "2026-W48", build_message, pool(smtp), options(concurrency=1, stale_after_s=1.5))))
    slow.start()
    time.sleep(3.0)  # the first run's claims are now twice as old as stale_after_s
    second = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), options(stale_after_s=1.5))
    slow.join(timeout=60)
    assert not slow.is_alive()
    got = smtp.handler.recipients()
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}, got
    assert first[0].sent + second.sent == 12
    assert {r["status"] for r in rows(store).values()} == {"sent"}


def test_two_runs_at_once_never_send_the_same_message_twice(db_url: str, smtp) -> None:
    from newsletter.store import open_store

    stores = [open_store(db_url) for _ in range(2)]
    emails = seed(stores[0], 150)
    reports = []

    def run(s) -> None:  # type: ignore[no-untyped-def]
        reports.append(deliver_issue(s, 1, "2026-W48", build_message, pool(smtp), options(concurrency=3)))

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = smtp.handler.recipients()
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}
    assert sum(r.sent for r in reports) == 150
    with stores[0].atomic() as conn:
        assert status_counts(conn, 1)["sent"] == 150


# -- rate limit --------------------------------------------------------------------------


def test_rate_limiter_shared_by_threads_never_exceeds_the_rate() -> None:
    clock = [0.0]
    lock = threading.Lock()
    wakeups: list[float] = []

    def fake_sleep(seconds: float) -> None:
        with lock:
            wakeups.append(clock[0] + seconds)

    limiter = RateLimiter(10, clock=lambda: clock[0], sleep=fake_sleep)
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(10)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 40 tokens at 10/s from a bucket of one: the first now, the 40th at 3.9 s, evenly spaced.
    times = sorted([0.0] + wakeups)
    assert len(times) == 40
    assert times[-1] == pytest.approx(3.9)
    assert all(b - a == pytest.approx(0.1) for a, b in zip(times, times[1:]))


def test_rate_zero_means_no_limit_and_stop_interrupts_a_wait() -> None:
    assert all(RateLimiter(0).acquire() for _ in range(1000))
    stop = threading.Event()
    stop.set()
    limiter = RateLimiter(0.001)
    assert limiter.acquire(stop)       # the first token is there
    assert not limiter.acquire(stop)   # the next one is 1000 s away: stop wins


def test_a_throttle_halves_the_rate_and_accepted_messages_grow_it_back() -> None:
    """Additive increase, multiplicative decrease: one cut per round of messages in flight,
    back to the configured rate step by step, never past it; the progress line says why."""
    clock = [0.0]
    limiter = RateLimiter(40, clock=lambda: clock[0], sleep=lambda s: None)
    limiter.slow_down("451 4.7.1 slow down")
    assert limiter.rate == 20 and "slowed: 451 4.7.1 slow down" in limiter.describe()
    limiter.slow_down("451 4.7.1 slow down")  # an answer to a message sent before the cut
    assert limiter.rate == 20 and limiter.throttles == 2
    clock[0] += 0.2
    limiter.slow_down("451 4.7.1 slow down")
    assert limiter.rate == 10
    for _ in range(19):
        limiter.speed_up()
    assert 10 < limiter.rate < 20
    for _ in range(200):
        limiter.speed_up()
    assert limiter.rate == 40 and limiter.describe() == "limit 40.0/s"


def test_a_dropped_connection_pauses_every_worker_longer_each_time_in_a_row() -> None:
    clock = [0.0]
    waits: list[float] = []
    limiter = RateLimiter(0, clock=lambda: clock[0], sleep=waits.append)
    limiter.slow_down("421 4.7.0 try again later", closed=True)
    limiter.acquire()
    clock[0] += 5
    limiter.slow_down("421 4.7.0 try again later", closed=True)
    limiter.acquire()
    assert waits == [pytest.approx(1.0), pytest.approx(2.0)]
    assert 0 < limiter.rate  # an unlimited run now has a limit, cut from what it was sending
    limiter.speed_up()       # accepted again: the next drop pauses 1 s, not 4
    clock[0] += 5
    limiter.slow_down("421", closed=True)
    limiter.acquire()
    assert waits[-1] == pytest.approx(1.0)


def test_bounced_subscriber_is_recorded_through_the_subscribers_store(store, smtp) -> None:
    emails = seed(store, 6)
    smtp.handler.refuse[emails[1]] = "550 5.1.1 <%s>: Recipient address rejected: User unknown" % emails[1]
    report = deliver_issue(store, 1, "2026-W48", build_message, pool(smtp), FAST)
    assert (report.sent, report.failed) == (5, 1)
    row = rows(store)[emails[1]]
    assert row["status"] == "failed" and "550 5.1.1" in row["last_error"] and "User unknown" in row["last_error"]
    with store.atomic() as conn:
        assert get_subscriber(conn, emails[1]).status == "bounced"
    assert any(emails[1] in e and "bounced" in e for e in report.errors)


def test_progress_bar_shows_count_rate_and_eta(store, tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from newsletter.cli.progress import progress_bar

    seed(store, 40)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with progress_bar(console, "writing") as progress:
        report = deliver_issue(store, 1, "2026-W48", build_message, OutboxTransport(tmp_path), FAST,
                               progress=progress)
    text = out.getvalue()
    assert report.sent == 40
    assert "writing" in text and "40/40" in text and "ETA" in text


@given(st.binary(max_size=200) | st.lists(st.sampled_from([b".", b"\r\n", b"\n", b"\r", b"a", b".."])).map(b"".join))
def test_dot_stuffing_is_exactly_what_smtplib_would_send(data: bytes) -> None:
    import smtplib

    expected = smtplib._quote_periods(data)  # the reference this replaces
    expected += (b"" if expected[-2:] == b"\r\n" else b"\r\n") + b".\r\n"
    assert dot_stuff(data) == expected


def test_lines_starting_with_a_dot_arrive_intact(store, smtp) -> None:
    seed(store, 1)
    body = b"\r\n".join([b"From: digest@example.org", b"To: reader0000@example.com", b"Subject: dots",
                         b"Message-ID: <dots@example.org>", b"", b".leading dot", b".", b"..two", b"end", b""])
    transport = pool(smtp)
    try:
        transport.send(FROM, ["reader0000@example.com"], body)
        transport.send(FROM, ["reader0000@example.com"], body[:-2])  # no final CRLF
    finally:
        transport.close()
    assert [data for _, _, data in smtp.handler.messages] == [body, body]
