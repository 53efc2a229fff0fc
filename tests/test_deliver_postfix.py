"""Delivery against Debian's Postfix, a real MTA, started on a loopback port for these tests:
its own "User unknown" answer bounces exactly the dead addresses, its sender refusal (given at
RCPT, as Postfix does by default) stops the run and suppresses nobody, and what it accepted is
in its maildirs."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from newsletter.deliver.sender import SendOptions, deliver_issue
from newsletter.deliver.transports import SmtpPool, SmtpSettings
from newsletter.store.schema import deliveries, subscribers
from newsletter.store.subscribers import add_subscriber
from postfix_support import BANNED_SENDER, DOMAIN, Postfix, start_postfix
from test_deliver_support import build_message, seed

LIVE = ("ann", "bob", "cy")


@pytest.fixture(scope="module")
def postfix():  # type: ignore[no-untyped-def]
    instance = start_postfix(LIVE)
    yield instance
    instance.stop()


def seed_inbox(store, dead: tuple[str, ...]) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    seed(store, 0)
    live = [f"{m}@{DOMAIN}" for m in LIVE]
    gone = [f"{m}@{DOMAIN}" for m in dead]
    with store.atomic() as conn:
        for address in live + gone:
            add_subscriber(conn, address)
    return live, gone


def send(store, postfix: Postfix, build=build_message):  # type: ignore[no-untyped-def]
    transport = SmtpPool(SmtpSettings(host="127.0.0.1", port=postfix.port, security="none", timeout_s=20))
    return deliver_issue(store, 1, "2026-W48", build, transport,
                         SendOptions(concurrency=2, rate_per_second=0, retry_delay_s=0.05))


def states(store) -> tuple[dict[str, str], dict[str, str]]:  # type: ignore[no-untyped-def]
    with store.atomic() as conn:
        rows = {r.email: r.status for r in conn.execute(select(deliveries.c.email, deliveries.c.status))}
        people = {r.email: r.status for r in conn.execute(select(subscribers.c.email, subscribers.c.status))}
    return rows, people


def test_postfix_user_unknown_bounces_only_the_dead_addresses(store, postfix: Postfix) -> None:
    live, gone = seed_inbox(store, ("nobody", "left-last-year"))
    report = send(store, postfix)
    assert (report.sent, report.failed, report.deferred) == (3, 2, 0)
    assert not report.stopped
    postfix.wait_for(live)
    for address in live:
        [message] = postfix.delivered(address)
        assert b"This week's papers." in message
    rows, people = states(store)
    assert {a: rows[a] for a in gone} == {a: "failed" for a in gone}
    assert {a: people[a] for a in gone} == {a: "bounced" for a in gone}
    assert {a: people[a] for a in live} == {a: "active" for a in live}
    assert any("550 5.1.1" in e and "User unknown" in e for e in report.errors)


def test_postfix_refusing_our_sender_stops_the_run_and_suppresses_nobody(store, postfix: Postfix) -> None:
    live, gone = seed_inbox(store, ("nobody",))
    before = {a: len(postfix.delivered(a)) for a in live}

    def banned(subscriber):  # type: ignore[no-untyped-def]
        return dataclasses.replace(build_message(subscriber), sender=BANNED_SENDER)

    report = send(store, postfix, banned)
    assert (report.sent, report.failed, report.deferred) == (0, 0, 4)
    assert "5.1.8" in report.stopped and "Sender address rejected" in report.stopped
    assert "newsletter.from" in report.stopped
    rows, people = states(store)
    assert set(rows.values()) == {"pending"}
    assert set(people.values()) == {"active"}  # the dead address too: nothing was learnt of it
    assert {a: len(postfix.delivered(a)) for a in live} == before
