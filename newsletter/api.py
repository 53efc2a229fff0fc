"""The public Python API: what the CLI, the scheduler and the web app use, and what a script of
your own may use. Everything else in the package may change between releases; these names and
signatures are kept.

    from newsletter import api

    config = api.load_config("newsletter.toml")
    store = api.open_store(config.store_url)
    api.ingest(store, config, ["https://export.arxiv.org/rss/cs.CL"])
    issue = api.next_issue(store, config)
    report = api.send(store, config)          # to the outbox, or by SMTP with [smtp]
    print(report.sent, report.failed)

Every function raises ``NewsletterError`` (or a child) with a message that says where and what
is wrong; none prints anything.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from newsletter import pipeline
from newsletter.bounces.run import BounceRun, process_bounces as _process_bounces
from newsletter.config import Config, load_config
from newsletter.deliver.golive import Check, GoLiveError, dns_advice, settings_checks, smtp_checks
from newsletter.deliver.journal import Journal, journal_path
from newsletter.deliver.sender import ProgressCallback
from newsletter.errors import IssueFrozenError, NewsletterError
from newsletter.models import (Issue, IssueEdits, IssuePlan, LeftOut, Paper, Rating, ReaderProfile, RenderedIssue,
                               RunReport, Subscriber)
from newsletter.render.preview import PreviewFiles
from newsletter.sources.report import IngestReport
from newsletter.store import Store, open_store
from newsletter.store.bounces import counts_by_issue as bounce_counts_by_issue
from newsletter.store.copy import CopyReport, copy_store
from newsletter.store.deliveries import issues_with_counts
from newsletter.sources.normalize import canonical_id
from newsletter.store import profiles as _profiles
from newsletter.store import bounces as _bounces, subscribers as _subscribers
from newsletter.store.papers import get_paper, list_papers, papers_named
from newsletter.store.access import Transactions
from newsletter.store.subscribers import (AlreadySubscribedError, NotSubscribedError, get_subscriber,
                                          get_subscriber_by_id, set_status)
from newsletter.store.subscribers import rename_subscriber as _rename_subscriber
from newsletter.subscribers.exporter import export_subscribers
from newsletter.subscribers.importer import ImportReport, import_subscribers
from newsletter.subscribers.likes import LikesFile, read_likes
from newsletter.subscribers.profiles import ProfileError, merge_profile

__all__ = [
    "BounceRun", "Check", "Config", "CopyReport", "GoLiveError", "ImportReport", "IngestReport", "Issue", "IssueEdits",
    "IssueFrozenError", "IssuePlan", "LeftOut", "NewsletterError", "Paper", "PreviewFiles", "ProfileError", "Rating",
    "Reader", "ReaderProfile", "RenderedIssue", "RunReport", "StatusChange", "Store", "Subscriber",
    "check", "copy_store", "dns_advice", "edit_issue", "export_subscribers", "import_subscribers", "ingest", "issues",
    "load_config", "next_issue", "next_issue_plan", "open_store", "papers", "preview", "process_bounces", "render",
    "rate", "reader", "reader_issue", "resend", "send", "set_profile",
    # the web app's doors
    "NotSubscribedError", "add_pending_subscriber", "change_subscriber_status", "find_papers", "find_subscriber",
    "rename_subscriber", "withdraw_pending_subscriber",
]


def ingest(store: Store, config: Config, sources: Sequence[str] | None = None, *,
           on_source: Callable[[str], None] | None = None, base_url: str | None = None) -> IngestReport:
    """Read each source (a path or an http(s) URL; default: ``sources.urls``, else the bundled
    sample) into the store, each in its own transaction: one broken source never stops the
    others, and its error is in the report."""
    return pipeline.ingest(store, config, sources, on_source=on_source, base_url=base_url)


def papers(store: Store, *, limit: int | None = None) -> list[Paper]:
    """The papers in the store: the newest publication day first, the highest score first
    within a day."""
    with store.atomic() as conn:
        return list_papers(conn, limit=limit)


def next_issue(store: Store, config: Config, now: datetime | None = None) -> Issue | None:
    """The issue the next send delivers (the week's frozen issue if it went out to anyone);
    None when there is no paper for it."""
    return pipeline.build_issue(store, config, now=now)


def next_issue_plan(store: Store, config: Config, now: datetime | None = None) -> IssuePlan:
    """Exactly what the next issue holds, in order, the editor's changes, and every other
    paper in the store with why it was left out (dropped, below min_score, over max_papers,
    outside the window, already sent)."""
    return pipeline.plan_next_issue(store, config, now=now)


def edit_issue(store: Store, config: Config, action: str, paper_id: str | None = None, *,
               position: int | None = None, text: str | None = None, now: datetime | None = None) -> IssuePlan:
    """The editor's hand on the next issue: ``pin``, ``drop``, ``move`` (``position``, from 1),
    ``subject`` (``text``), ``note`` (``text``, Markdown; None: the configured note) or
    ``reset``. Stored in the store; refused (``IssueFrozenError``) once the issue was sent.
    The plan returned holds the issue and the edits, not the left-out papers
    (``next_issue_plan`` lists those)."""
    return pipeline.edit_next_issue(store, config, action, paper_id, position=position, text=text, now=now)


def reader_issue(store: Store, config: Config, email: str, now: datetime | None = None
                 ) -> tuple[Issue, list[tuple[Paper, str]], bool] | None:
    """The next issue as the reader ``email`` will get it: (issue, [(paper, why it is there)],
    own). ``own`` is False when they get the shared issue (no profile and no ratings); None
    when there are no papers."""
    return pipeline.reader_next_issue(store, config, email, now=now)


def render(store: Store, config: Config, issue: Issue) -> RenderedIssue:
    """The issue's subject, HTML (CSS inlined) and plain text, before per-reader values."""
    return pipeline.render_issue(store, config, issue)


def preview(store: Store, config: Config, out_dir: Path, *, subscriber_email: str | None = None) -> PreviewFiles | None:
    """Write the next issue as one reader would get it (HTML, text, .eml) into ``out_dir``."""
    return pipeline.preview_issue(store, config, out_dir, subscriber_email=subscriber_email)


def send(store: Store, config: Config, *, dry_run: bool = False, to: str | None = None, limit: int | None = None,
         rate: float | None = None, concurrency: int | None = None, stop: threading.Event | None = None,
         now: datetime | None = None, progress: ProgressCallback | None = None,
         allow_placeholders: bool = False) -> RunReport:
    """Deliver the next issue to every active subscriber who has not had it (see
    ``newsletter send --help`` for each option; ``stop`` ends the run after the messages in
    flight). Raises ``GoLiveError`` before a real SMTP send with placeholder settings."""
    return pipeline.send_issue(store, config, dry_run=dry_run, to=to, limit=limit, rate=rate,
                               concurrency=concurrency, stop=stop, now=now, progress=progress,
                               allow_placeholders=allow_placeholders)


def resend(store: Store, config: Config, issue_key: str | None = None, *, status: str = "failed",
           stop: threading.Event | None = None, progress: ProgressCallback | None = None,
           allow_placeholders: bool = False) -> RunReport:
    """Send again, on purpose, an issue's ``failed`` or ``uncertain`` deliveries."""
    return pipeline.resend(store, config, issue_key, status=status, stop=stop, progress=progress,
                           allow_placeholders=allow_placeholders)


def issues(store: Store) -> list[dict[str, Any]]:
    """Every issue, newest first, with its delivery counts per state (a delivery journal left
    by a run whose store refused to record is applied first)."""
    Journal(journal_path(store)).apply(store)
    with store.atomic() as conn:
        found = issues_with_counts(conn)
        reports = bounce_counts_by_issue(conn)
    for row in found:
        _add_bounce_rates(row, reports.get(row["number"], {}))
    return found


# Above these, an issue's readers' providers start to distrust the sender (Gmail asks senders to
# stay below 0.3% of complaints; 0.1% is its "keep under" line; 2% of hard bounces means a stale list).
COMPLAINT_RATE_WARNING = 0.001
HARD_BOUNCE_RATE_WARNING = 0.02


def _add_bounce_rates(row: dict[str, Any], counts: dict[str, int]) -> None:
    """``bounces`` (hard, soft, complaint: readers), ``rates`` (of those sent or written) and
    ``warnings`` of one issue row."""
    delivered = row["deliveries"].get("sent", 0) + row["deliveries"].get("written", 0)
    bounces = {k: counts.get(k, 0) for k in ("hard", "soft", "complaint")}
    rates = {k: (v / delivered if delivered else 0.0) for k, v in bounces.items()}
    warnings = []
    if rates["complaint"] > COMPLAINT_RATE_WARNING:
        warnings.append(f"issue {row['key']}: complaint rate {rates['complaint']:.2%} is above 0.1% "
                        "(providers throttle or junk a sender past 0.3%)")
    if rates["hard"] > HARD_BOUNCE_RATE_WARNING:
        warnings.append(f"issue {row['key']}: hard-bounce rate {rates['hard']:.2%} is above 2% (a stale list)")
    row.update(sent_total=delivered, bounces=bounces, rates=rates, warnings=warnings)


def check(config: Config, *, smtp: bool = True) -> list[Check]:
    """The go-live checklist: the settings a real send needs, then (``smtp``) what the SMTP
    server says to our login and MAIL FROM. Sends nothing."""
    checks = settings_checks(config)
    if smtp:
        checks += smtp_checks(config)
    return checks


def process_bounces(store: Store, config: Config, sources: Sequence[str] | None = None, *,
                    now: datetime | None = None) -> BounceRun:
    """Read bounces, complaints and auto-replies from ``sources`` (maildir, mbox, .eml files,
    ``imaps://`` or ``pop3s://``; default ``[bounces] mailbox``), each message in its own
    transaction: hard bounces and complaints suppress at once, soft bounces after
    ``[bounces] soft_limit`` within ``soft_days``. Messages acted on are marked as
    ``[bounces] processed`` says; one that cannot be tied to our mail is left alone and counted."""
    return _process_bounces(store, config, sources, now=now)


# -- what each reader follows --------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """A subscriber with what they follow and how they rated papers (newest first)."""

    subscriber: Subscriber
    profile: ReaderProfile
    ratings: tuple[Rating, ...]


def _lookup(conn: Any, who: str | int) -> Subscriber | None:
    """The subscriber with this address (any spelling) or id, or None."""
    return get_subscriber_by_id(conn, who) if isinstance(who, int) else get_subscriber(conn, who)


def _subscriber(conn: Any, who: str | int) -> Subscriber:
    found = _lookup(conn, who)
    if found is None or found.id is None:
        raise NotSubscribedError("not on the list", where=str(who).strip())
    return found


def reader(store: Store, who: str | int) -> Reader:
    """The reader (by address or subscriber id) with their profile and ratings."""
    with store.atomic() as conn:
        subscriber = _subscriber(conn, who)
        assert subscriber.id is not None
        return Reader(subscriber, _profiles.get_profile(conn, subscriber.id),
                      tuple(_profiles.ratings_of(conn, subscriber.id)))


def set_profile(store: Store, who: str | int, *, interests: str | None = None,
                categories: str | Sequence[str] | None = None, authors: str | Sequence[str] | None = None,
                mutes: str | Sequence[str] | None = None, likes: str | Sequence[str] | None = None,
                size: int | str | None = None, clear_size: bool = False) -> ReaderProfile:
    """Change the fields given (``None`` keeps one, an empty value clears it) of what the reader
    follows, and return the whole profile. A bad entry raises ``ProfileError`` naming it, and
    nothing changes."""
    with store.atomic() as conn:
        subscriber = _subscriber(conn, who)
        assert subscriber.id is not None
        profile = merge_profile(_profiles.get_profile(conn, subscriber.id), interests=interests,
                                categories=categories, authors=authors, mutes=mutes, likes=likes, size=size,
                                clear_size=clear_size)
        _profiles.set_profile(conn, subscriber.id, profile)
        return profile


def rate(store: Store, who: str | int, paper: str, value: int, *, require_known: bool = True) -> bool:
    """The reader's "more like this" (+1), "less like this" (-1) or undo (0) on ``paper`` (an
    arXiv id, DOI, URL or canonical id). True when it changed something: rating twice is one
    rating. A paper not in the store is refused unless ``require_known`` is False."""
    paper_id = paper if paper.startswith(("arxiv:", "doi:", "url:", "title:")) else canonical_id(paper)
    if paper_id is None:
        raise ProfileError("not an arXiv id, DOI or URL of a paper", where=paper)
    with store.atomic() as conn:
        subscriber = _subscriber(conn, who)
        assert subscriber.id is not None
        if require_known and get_paper(conn, paper_id) is None:
            raise ProfileError("no such paper in the store (ingest it first)", where=paper_id)
        return _profiles.rate(conn, subscriber.id, paper_id, value)


# -- the web app's doors: subscribing, confirming, leaving, a reader's page, paper titles ---------
# The web's pages read through a read-only store and its unsubscribe through a quick-write one
# (newsletter.store.access); every function here takes either, or a ``Store``.


@dataclass(frozen=True)
class StatusChange:
    """A subscriber before and after ``change_subscriber_status`` (None: not on file)."""

    before: Subscriber | None
    after: Subscriber | None

    @property
    def changed(self) -> bool:
        return self.before is not None and self.after is not None and self.before.status != self.after.status


def find_subscriber(store: Store | Transactions, who: str | int) -> Subscriber | None:
    """The subscriber with this address (any spelling) or id; None when not on file."""
    with store.atomic() as conn:
        return _lookup(conn, who)


def add_pending_subscriber(store: Store | Transactions, email: str, name: str = "", *,
                           detail: str = "asked on the web form", now: datetime | None = None) -> Subscriber | None:
    """Put a new address on file as ``pending`` (waiting for its confirmation link). None when it
    is already on file, in any state: nothing about it changes, so a request can neither reveal
    nor undo an address's state (one that left comes back only through a confirmation)."""
    try:
        with store.atomic() as conn:
            if get_subscriber(conn, email) is not None:
                return None
            return _subscribers.add_subscriber(conn, email, name=name, status="pending", now=now, detail=detail)
    except AlreadySubscribedError:
        return None  # a concurrent request for the same address added it first


def withdraw_pending_subscriber(store: Store | Transactions, subscriber_id: int) -> bool:
    """Remove a ``pending`` subscriber whose confirmation could not be sent, so nothing stays on
    file for a message that never went. Left alone (False) when it is no longer pending."""
    with store.atomic() as conn:
        subscriber = get_subscriber_by_id(conn, subscriber_id)
        if subscriber is None or subscriber.status != "pending":
            return False
        _subscribers.remove_subscriber(conn, subscriber.email)
        return True


def change_subscriber_status(store: Store | Transactions, email: str, status: str, reason: str, *,
                             expected: Subscriber | None = None, allow_reactivate: bool = False,
                             now: datetime | None = None) -> StatusChange:
    """Set a subscriber's status, with an event saying why (the same status again changes
    nothing). With ``expected``, only if the status and when it last changed are still those of
    ``expected``: a decision made on what was read earlier never overrides a change made since.
    A suppressed address becomes pending or active only with ``allow_reactivate``
    (``SuppressedError`` otherwise). Not on file: ``before`` and ``after`` are None."""
    with store.atomic() as conn:
        before = get_subscriber(conn, email)
        if before is None:
            return StatusChange(None, None)
        if expected is not None and (before.status, before.status_changed_at) != (expected.status,
                                                                                  expected.status_changed_at):
            return StatusChange(before, before)
        after = set_status(conn, before.email, status, reason, now=now, allow_reactivate=allow_reactivate)
        return StatusChange(before, after)


def rename_subscriber(store: Store | Transactions, who: str | int, name: str) -> Subscriber | None:
    """Change the name a subscriber is greeted by (cleaned to one line); the status is left
    alone. None when not on file."""
    with store.atomic() as conn:
        found = _lookup(conn, who)
        return None if found is None else _rename_subscriber(conn, found.email, name)


def find_papers(store: Store | Transactions, paper_ids: Sequence[str]) -> dict[str, Paper]:
    """The papers of these canonical ids that are in the store, by id (the rest are left out)."""
    with store.atomic() as conn:
        return papers_named(conn, list(dict.fromkeys(paper_ids)))


# -- the mailing list, as the ``subscribers`` commands use it -------------------------------


def add_subscriber(store: Store, email: str, *, name: str = "", pending: bool = False, force: str | None = None,
                   how: str = "by a script") -> StatusChange:
    """Add one address, active (or ``pending``); ``before`` is None. An address already on file
    is refused (``AlreadySubscribedError``) unless ``force`` names the suppressed status it has:
    on its owner's request, that makes it active (or pending) again, recorded as an event
    ``how``, and ``before`` is it as it was."""
    status = "pending" if pending else "active"
    with store.atomic() as conn:
        existing = get_subscriber(conn, email) if force else None
        if existing is None:
            return StatusChange(None, _subscribers.add_subscriber(conn, email, name=name, status=status,
                                                                  detail=f"added {how}"))
        if existing.status != force:
            raise _subscribers.SuppressedError(f"is {existing.status}, not {force}: --force must name the status "
                                               "it has", where=existing.email)
        subscriber = _subscribers.set_status(conn, email, status, f"reactivated {how} (was {force})",
                                             allow_reactivate=True)
        if name:
            subscriber = _subscribers.rename_subscriber(conn, email, name)
        return StatusChange(existing, subscriber)


def remove_subscriber(store: Store, email: str, *, forget: bool = False) -> Subscriber:
    """Delete an address with its delivery records, profile and ratings; returns it as it was.
    An unsubscribed or bounced address is kept (so it is never mailed again) unless ``forget``."""
    with store.atomic() as conn:
        return _subscribers.remove_subscriber(conn, email, forget=forget)


def unsubscribe(store: Store, email: str, reason: str, *, bounced: bool = False) -> StatusChange:
    """Suppress an address (``bounced``: as bounced), keeping it on file with ``reason``. An
    unsubscribe is kept over a later bounce: compare ``after.status`` with what you asked."""
    with store.atomic() as conn:
        before = get_subscriber(conn, email)
        change = _subscribers.mark_bounced if bounced else _subscribers.unsubscribe
        after = change(conn, email, reason)
    return StatusChange(before, after)


def subscribers(store: Store, *, status: str | None = None) -> Iterator[Subscriber]:
    """Every subscriber (or those with ``status``) in the order they were added, streamed in
    batches inside one read transaction: iterate to the end, or close the iterator."""
    with store.atomic() as conn:
        yield from _subscribers.iter_subscribers(conn, status)


RECENT_DAYS = 30
RECENT_ISSUES = 5


def subscriber_stats(store: Store, *, now: datetime | None = None) -> dict[str, Any]:
    """Counts by status (``by_status``, ``total``, ``suppressed``), the last 30 days' events by
    kind (``last_30_days``) and bounce reports by kind (``bounce_reports_last_30_days``), and the
    last five issues' bounce and complaint rates (``issues``), as ``subscribers stats --json``."""
    now = now or datetime.now(timezone.utc)
    with store.atomic() as conn:
        stats = _subscribers.subscriber_stats(conn, now)
        stats["bounce_reports_last_30_days"] = _bounces.counts_since(conn, now - timedelta(days=RECENT_DAYS))
    stats["issues"] = [{"key": row["key"], "sent": row["sent_total"],
                        **{f"{k}_rate": v for k, v in row["rates"].items()}, "warnings": row["warnings"]}
                       for row in issues(store)[:RECENT_ISSUES]]
    return stats


@dataclass(frozen=True)
class SubscriberRecord:
    """Everything on file about one subscriber: what ``subscribers show`` prints. ``events`` and
    ``bounce_reports`` are dicts, oldest first; ``titles`` has the title of each liked or rated
    paper that is in the store."""

    subscriber: Subscriber
    profile: ReaderProfile
    ratings: tuple[Rating, ...]
    titles: dict[str, str]
    events: list[dict[str, Any]]
    bounce_reports: list[dict[str, Any]]


def subscriber_record(store: Store, who: str | int) -> SubscriberRecord:
    """One subscriber (by address or id) with their profile, ratings (newest first), events
    and bounce reports, read in one transaction."""
    with store.atomic() as conn:
        subscriber = _subscriber(conn, who)
        assert subscriber.id is not None
        profile = _profiles.get_profile(conn, subscriber.id)
        ratings = tuple(_profiles.ratings_of(conn, subscriber.id))
        named = papers_named(conn, list(dict.fromkeys([*profile.likes, *(r.paper_id for r in ratings)])))
        titles = {paper_id: paper.title for paper_id, paper in named.items()}
        return SubscriberRecord(subscriber, profile, ratings, titles,
                                _subscribers.subscriber_events(conn, subscriber.email),
                                _bounces.reports_of(conn, subscriber.id))


__all__ += ["LikesFile", "SubscriberRecord", "add_subscriber", "read_likes", "remove_subscriber",
            "subscriber_record", "subscriber_stats", "subscribers", "unsubscribe"]
