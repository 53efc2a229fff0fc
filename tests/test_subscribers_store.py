"""The subscriber queries other areas call (delivery, web), on a real SQLite file."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from newsletter.errors import SubscriberError
from newsletter.store import Store
from newsletter.store.schema import events
from newsletter.store.subscribers import (
    AlreadySubscribedError,
    NotSubscribedError,
    SuppressedError,
    active_subscribers,
    add_subscriber,
    get_subscriber,
    get_subscriber_by_id,
    is_active,
    list_subscribers,
    mark_bounced,
    remove_subscriber,
    set_status,
    subscriber_stats,
    unsubscribe,
)

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


def event_rows(store: Store) -> list[tuple]:
    with store.atomic() as conn:
        return [tuple(r) for r in conn.execute(
            select(events.c.email, events.c.kind, events.c.detail).order_by(events.c.id))]


def test_add_normalises_keeps_unicode_name_and_compares_case_insensitively(store: Store) -> None:
    with store.atomic() as conn:
        s = add_subscriber(conn, " Zoe.Mueller@EXAMPLE.org ", name="Zoë\nMüller", attributes={"k": "v"}, now=NOW)
    assert (s.email, s.name, s.status, dict(s.attributes)) == ("Zoe.Mueller@example.org", "Zoë Müller", "active", {"k": "v"})
    assert (s.created_at, s.confirmed_at, s.status_changed_at) == (NOW, NOW, NOW)
    with store.atomic() as conn:
        assert get_subscriber(conn, "zoe.mueller@example.org") == s
        assert get_subscriber_by_id(conn, s.id) == s
        assert get_subscriber(conn, "not an address") is None
        with pytest.raises(AlreadySubscribedError, match="already on the list"):
            add_subscriber(conn, "ZOE.MUELLER@example.org")
        with pytest.raises(SubscriberError, match="^bad@: "):
            add_subscriber(conn, "bad@")
        with pytest.raises(SubscriberError, match="unknown status"):
            add_subscriber(conn, "x@example.org", status="subscribed")
    assert event_rows(store) == [("Zoe.Mueller@example.org", "subscribed", "added")]


def test_set_status_records_events_and_refuses_to_reactivate(store: Store) -> None:
    with store.atomic() as conn:
        s = add_subscriber(conn, "ada@example.org", status="pending", now=NOW)
        assert s.confirmed_at is None
        confirmed = set_status(conn, "ada@example.org", "active", "confirmed by link", now=NOW + timedelta(hours=1))
        assert (confirmed.status, confirmed.confirmed_at) == ("active", NOW + timedelta(hours=1))
        gone = unsubscribe(conn, "ADA@example.org", "one-click", now=NOW + timedelta(days=1))
        assert (gone.status, gone.status_reason, gone.status_changed_at) == (
            "unsubscribed", "one-click", NOW + timedelta(days=1))
        assert unsubscribe(conn, "ada@example.org", "clicked again") == gone  # idempotent, no event
        with pytest.raises(SuppressedError, match="ada@example.org: unsubscribed \\(one-click\\); it stays suppressed"):
            set_status(conn, "ada@example.org", "active", "import")
        back = set_status(conn, "ada@example.org", "active", "subscribed again on the web", allow_reactivate=True)
        assert back.status == "active"
        with pytest.raises(NotSubscribedError):
            set_status(conn, "nobody@example.org", "unsubscribed", "x")
    assert [k for _, k, _ in event_rows(store)] == ["subscribed", "confirmed", "unsubscribed", "subscribed"]


def test_bounce_and_active_list(store: Store) -> None:
    with store.atomic() as conn:
        a = add_subscriber(conn, "a@example.org", now=NOW)
        b = add_subscriber(conn, "b@example.org", now=NOW)
        c = add_subscriber(conn, "c@example.org", now=NOW)
        add_subscriber(conn, "p@example.org", status="pending", now=NOW)
        mark_bounced(conn, "b@example.org", "550 5.1.1 no such user", now=NOW)
        unsubscribe(conn, "c@example.org", now=NOW)
        assert mark_bounced(conn, "c@example.org", "later bounce").status == "unsubscribed"
        assert [s.email for s in active_subscribers(conn)] == ["a@example.org"]
        assert is_active(conn, a.id) and not is_active(conn, b.id) and not is_active(conn, c.id)
        assert not is_active(conn, 9999)
        assert [s.email for s in list_subscribers(conn, "bounced")] == ["b@example.org"]
        stats = subscriber_stats(conn, now=NOW)
    assert stats == {"total": 4, "by_status": {"pending": 1, "active": 1, "unsubscribed": 1, "bounced": 1,
                                                  "complained": 0},
                     "suppressed": 2, "last_30_days": {"bounced": 1, "subscribed": 4, "unsubscribed": 1}}


def test_remove_keeps_suppressed_addresses_unless_forgotten(store: Store) -> None:
    with store.atomic() as conn:
        add_subscriber(conn, "typo@exmaple.org", now=NOW)
        add_subscriber(conn, "gone@example.org", now=NOW)
        unsubscribe(conn, "gone@example.org", now=NOW)
        assert remove_subscriber(conn, "typo@exmaple.org").email == "typo@exmaple.org"
        assert get_subscriber(conn, "typo@exmaple.org") is None
        with pytest.raises(SuppressedError, match="--forget"):
            remove_subscriber(conn, "gone@example.org")
        assert get_subscriber(conn, "gone@example.org").status == "unsubscribed"
        remove_subscriber(conn, "gone@example.org", forget=True)
        assert list_subscribers(conn) == []
        with pytest.raises(NotSubscribedError):
            remove_subscriber(conn, "gone@example.org")
    assert [(e, k) for e, k, _ in event_rows(store)][-2:] == [("typo@exmaple.org", "removed"), ("gone@example.org", "removed")]


def test_a_failed_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(AlreadySubscribedError):
        with store.atomic() as conn:
            add_subscriber(conn, "a@example.org")
            add_subscriber(conn, "A@example.org")
    with store.atomic() as conn:
        assert list_subscribers(conn) == []
    assert event_rows(store) == []


def test_an_address_stored_before_the_local_part_limit_can_still_be_unsubscribed(store: Store) -> None:
    """A local part over 64 octets is refused now, but one already on file must stay reachable:
    the unsubscribe link and `unsubscribe`/`remove` look it up."""
    from sqlalchemy import insert

    from newsletter.store.schema import subscribers

    old = "x" * 80 + "@example.org"
    with store.atomic() as conn:
        conn.execute(insert(subscribers).values(
            email=old, email_key=old, name="", status="active", status_reason="", attributes={},
            created_at=NOW, updated_at=NOW, confirmed_at=NOW, status_changed_at=NOW))
        with pytest.raises(SubscriberError, match="too long before the @-sign"):
            add_subscriber(conn, "y" * 80 + "@example.org")
        assert get_subscriber(conn, old.upper()).email == old
        assert unsubscribe(conn, old, "asked", now=NOW).status == "unsubscribed"
        assert remove_subscriber(conn, old, forget=True).email == old
