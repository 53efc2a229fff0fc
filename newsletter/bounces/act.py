"""A classified report -> whom it is about -> what happens to them (the suppression rules).

Attribution, first that answers wins (a forged or altered token names no one, and the next clue
is tried):

1. a VERP token in the address the bounce was sent to (``Delivered-To``, ``X-Original-To``, ``To``);
2. an ``X-Newsletter-Token`` line in the returned original (feedback reports quote headers only);
3. a ``Message-ID`` of the returned original found in the deliveries ledger;
4. the failed recipient's address (``Final-Recipient``, ``Original-Rcpt-To``, the address a
   plain-text bounce names) matched against the subscribers on file.

Rules: one hard bounce -> ``bounced``; ``soft_limit`` soft bounces (one per issue) within
``soft_days`` -> ``bounced``; a complaint -> ``complained`` at once. Every report about a
subscriber is kept in ``bounce_reports`` with its evidence, and every action is an event.
An unsubscribed or complained address is never turned into a bounced one: those are the
stronger statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from newsletter.bounces.classify import AUTO_REPLY, COMPLAINT, HARD, IGNORED, NOT_BOUNCE, SOFT, UNREADABLE, Report
from newsletter.bounces.verp import read_token
from newsletter.models import Subscriber
from newsletter.store import bounces as store_bounces
from newsletter.store import subscribers as store_subscribers
from newsletter.store.db import utcnow
from newsletter.tokens import Signer

# What a message counted as, in the summary ``newsletter bounces`` prints.
OUTCOMES: tuple[str, ...] = ("hard", "soft", "complaint", "auto_reply", "not_ours", "unreadable", "already_done")


@dataclass(frozen=True)
class Rules:
    soft_limit: int = 3
    soft_days: int = 30


@dataclass(frozen=True)
class Attribution:
    subscriber: Subscriber
    issue_number: int | None
    by: str                 # envelope-token | quoted-token | message-id | address
    kind: str               # this subscriber's verdict: hard | soft | complaint | auto_reply
    status: str = ""
    diagnostic: str = ""


@dataclass(frozen=True)
class Outcome:
    counted_as: str                       # one of OUTCOMES
    attributions: tuple[Attribution, ...] = ()
    actions: tuple[str, ...] = ()         # "ada@example.org: bounced", ...

    @property
    def is_processed(self) -> bool:
        """True when the message may be marked processed in its mailbox: it was tied to a reader
        (or was, on an earlier run). An auto-reply from no one we know is left alone too."""
        return bool(self.attributions) or self.counted_as == "already_done"


def _from_token(conn: Connection, signer: Signer, token: str) -> tuple[Subscriber, int] | None:
    ids = read_token(signer, token)
    if ids is None:
        return None
    issue_number, subscriber_id = ids
    subscriber = store_subscribers.get_subscriber_by_id(conn, subscriber_id)
    return (subscriber, issue_number) if subscriber is not None else None


def attribute(conn: Connection, signer: Signer, report: Report) -> list[Attribution]:
    """Whom the report is about, with each one's verdict; [] when it is not about our mail."""
    by_address = {r.address: r for r in report.recipients}
    failing = [r for r in report.recipients if r.kind != IGNORED]
    kind = AUTO_REPLY if report.kind in (AUTO_REPLY, IGNORED) else report.kind

    def one(subscriber: Subscriber, issue_number: int | None, by: str) -> list[Attribution]:
        recipient = by_address.get(subscriber.email.lower()) or (failing[0] if len(failing) == 1 else None)
        verdict = recipient.kind if recipient is not None and recipient.kind != IGNORED and kind != COMPLAINT else kind
        if recipient is not None and recipient.kind == IGNORED and kind != COMPLAINT:
            verdict = AUTO_REPLY
        return [Attribution(subscriber, issue_number, by, verdict, recipient.status if recipient else "",
                            recipient.diagnostic if recipient else "")]

    for by, tokens in (("envelope-token", report.envelope_tokens), ("quoted-token", report.quoted_tokens)):
        for token in tokens:
            found = _from_token(conn, signer, token)
            if found is not None:
                return one(found[0], found[1], by)
    for message_id in report.quoted_message_ids:
        delivery = store_bounces.delivery_by_message_id(conn, message_id)
        if delivery is not None:
            subscriber = store_subscribers.get_subscriber_by_id(conn, delivery[1])
            if subscriber is not None:
                return one(subscriber, delivery[0], "message-id")
    if report.kind == AUTO_REPLY:
        return []  # an auto-reply's sender is not evidence of anything
    found_by_address = []
    for recipient in report.recipients:
        if recipient.kind == IGNORED:
            continue
        subscriber = store_subscribers.get_subscriber(conn, recipient.address)
        if subscriber is not None:
            found_by_address.append(Attribution(subscriber, None, "address",
                                                COMPLAINT if kind == COMPLAINT else recipient.kind,
                                                recipient.status, recipient.diagnostic))
    return found_by_address


def act_on(conn: Connection, signer: Signer, report: Report, *, message_key: str, source: str,
           rules: Rules = Rules(), now: datetime | None = None) -> Outcome:
    """Attribute ``report`` and apply the rules, in the caller's transaction."""
    if report.kind == UNREADABLE:
        return Outcome("unreadable")
    if report.kind == NOT_BOUNCE:
        return Outcome("not_ours")
    if store_bounces.report_seen(conn, message_key):
        return Outcome("already_done")
    attributions = attribute(conn, signer, report)
    if not attributions:
        return Outcome("auto_reply" if report.kind in (AUTO_REPLY, IGNORED) else "not_ours")
    now = now or utcnow()
    actions: list[str] = []
    for a in attributions:
        issue_key = store_bounces.issue_key_of(conn, a.issue_number)
        store_bounces.add_report(
            conn, message_key=message_key, kind=a.kind, subscriber_id=a.subscriber.id, issue_number=a.issue_number,
            email=a.subscriber.email, status_code=a.status, reporting_mta=report.reporting_mta[:200],
            diagnostic=a.diagnostic or report.evidence, attributed_by=a.by, source=source[:500], at=now)
        evidence = report.evidence + (f" (issue {issue_key})" if issue_key else "")
        actions.extend(_apply(conn, a, evidence, rules, now))
    kinds = {a.kind for a in attributions}
    counted = next(k for k in (COMPLAINT, HARD, SOFT, AUTO_REPLY) if k in kinds)
    return Outcome(counted, tuple(attributions), tuple(actions))


def _apply(conn: Connection, a: Attribution, evidence: str, rules: Rules, now: datetime) -> list[str]:
    email, status = a.subscriber.email, a.subscriber.status
    if a.kind == COMPLAINT:
        if status != "complained":
            store_subscribers.mark_complained(conn, email, f"complaint: {evidence}", now=now)
            return [f"{email}: complained"]
        return []
    if a.kind == HARD:
        if status in ("bounced", "complained", "unsubscribed"):
            store_subscribers.record_event(conn, email, "hard_bounce", evidence, now=now)
            return []
        store_subscribers.mark_bounced(conn, email, f"hard bounce: {evidence}", now=now)
        return [f"{email}: bounced"]
    if a.kind == SOFT:
        store_subscribers.record_event(conn, email, "soft_bounce", evidence, now=now)
        count = store_bounces.soft_bounces_since(conn, a.subscriber.id, now - timedelta(days=rules.soft_days))  # type: ignore[arg-type]
        if count >= rules.soft_limit and status not in ("bounced", "complained", "unsubscribed"):
            store_subscribers.mark_bounced(
                conn, email, f"{count} soft bounces in {rules.soft_days} days; last: {evidence}", now=now)
            return [f"{email}: bounced after {count} soft bounces"]
        return []
    return []
