"""The one place where the stages are chained (behind ``newsletter.api``). Stages never call
each other; the CLI, the scheduler and the web app reach them through the API.

    sources -> store (ingest)
    store -> compose -> Issue (build_issue)
    Issue -> render -> RenderedIssue -> one message per subscriber -> deliver (send_issue)
"""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

from sqlalchemy.exc import SQLAlchemyError

from newsletter.compose import issue_key, load_editor_note
from newsletter.compose.issue import plan_issue, window_start
from newsletter.config import Config, parse_duration
from newsletter.deliver.golive import require_go_live
from newsletter.deliver.sender import ProgressCallback, SendOptions, deliver_issue
from newsletter.deliver.transports import PermanentFailure, SmtpSettings, TemporaryFailure, open_transport
from newsletter.errors import DeliveryError, IssueFrozenError, NewsletterError, NothingToSendError, SubscriberError
from newsletter.models import Issue, IssueEdits, IssuePlan, Paper, RenderedIssue, RunReport, Subscriber
from newsletter.render.issue import render_issue as render
from newsletter.personal import Personal, prepare as prepare_personal
from newsletter.render.messages import MessageFactory
from newsletter.render.personal_messages import PersonalMessages
from newsletter.render.preview import SAMPLE_READER, PreviewFiles, write_preview
from newsletter.sources import collector_paused, load_source
from newsletter.sources.fetch import is_url, user_agent
from newsletter.sources.report import IngestReport, SourceReport
from newsletter.store import Store
from newsletter.store.db import utcnow
from newsletter.store.deliveries import (PENDING, SENT, WRITTEN, UnknownIssueError, issue_key_for_number,
                                         issue_number_for_key, latest_issue_with, reset_status,
                                         settled_subscriber_ids, status_counts)
from newsletter.store.issues import (freeze_issue, get_edits, get_frozen_rendering, get_issue, is_frozen,
                                     next_issue_number, save_draft, save_edits, sent_paper_keys)
from newsletter.store.papers import (SourceState, get_paper, get_source_state, list_papers, save_source_state,
                                     upsert_papers)
from newsletter.store.subscribers import active_subscribers, get_subscriber, subscriber_stats
from newsletter.subscribers.addresses import normalize_address
from newsletter.tokens import Signer, secret_key


# --- ingest: sources -> store ---------------------------------------------------------------

SAMPLE_PAPERS = Path(__file__).resolve().parent / "data" / "sample-papers.json"
SAMPLE_SOURCE = "bundled:sample-papers.json"


def _resolve_source(name: str, config: Config) -> str:
    """A configured relative path is relative to the configuration file, not the current folder."""
    if is_url(name) or config.path is None or Path(name).expanduser().is_absolute():
        return name
    return str(config.path.parent / name)


def ingest(store: Store, config: Config, sources: Sequence[str] | None = None, *,
           now: datetime | None = None, on_source: Callable[[str], None] | None = None,
           base_url: str | None = None) -> IngestReport:
    """Read each source and store its papers, each source in its own transaction.

    Without ``sources`` the configured ``sources.urls`` are read, and without those the bundled
    sample. A source that fails is reported (``SOURCE: what is wrong``) and leaves the store as
    it was; the others are still ingested. A URL answering 304 Not Modified is "unchanged".
    ``base_url`` resolves relative links in feed files (a URL's own address does that for it).
    """
    started = time.monotonic()
    used_sample = False
    if sources:
        names = list(sources)
    else:
        names = [_resolve_source(n, config) for n in config["sources.urls"]]
        if not names:
            names, used_sample = [SAMPLE_SOURCE], True
    reports: list[SourceReport] = []
    for name in names:
        if on_source is not None:
            on_source(name)
        # One pause of the cyclic collector for the whole source (read, normalise, store): between
        # the steps it would otherwise walk the growing list of papers again (sources.collector_paused).
        with collector_paused():
            reports.append(_ingest_one(store, config, name, now or utcnow(), base_url))
    return IngestReport(tuple(reports), used_sample=used_sample, elapsed_s=time.monotonic() - started)


# --- compose and render: store -> Issue -> RenderedIssue -------------------------------------


def _ingest_one(store: Store, config: Config, name: str, when: datetime, base_url: str | None) -> SourceReport:
    """Read one source and store its papers in one transaction; its error, if any, is in the report."""
    try:
        with store.atomic() as conn:
            state = get_source_state(conn, name)
        loaded = load_source(name, timeout_s=config["sources.timeout_s"], max_bytes=config["sources.max_bytes"],
                             etag=state.etag, last_modified=state.last_modified,
                             path=SAMPLE_PAPERS if name == SAMPLE_SOURCE else None,
                             agent=user_agent(config["newsletter.base_url"]), base_url=base_url)
        with store.atomic() as conn:
            if loaded.not_modified:
                save_source_state(conn, SourceState(name, state.etag, state.last_modified, when, "304 not modified"))
                return SourceReport(name, format="unchanged since last fetch", not_modified=True)
            parsed = loaded.parsed
            assert parsed is not None
            counts = upsert_papers(conn, parsed.papers, now=when)
            if loaded.fetched is not None:
                save_source_state(conn, SourceState(name, loaded.fetched.etag, loaded.fetched.last_modified,
                                                    when, str(loaded.fetched.status)))
        return SourceReport(name, format=parsed.format, new=counts.new, updated=counts.updated,
                            unchanged=counts.unchanged, skipped=len(parsed.skipped), warnings=tuple(parsed.warnings),
                            skip_reasons=tuple(parsed.skipped))
    except NewsletterError as exc:
        return SourceReport(name, error=str(exc) if exc.where else f"{name}: {exc}")
    except SQLAlchemyError as exc:
        return SourceReport(name, error=f"{name}: cannot store the papers: {exc.__class__.__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 -- a reader's bug on odd input must not stop the other sources
        return SourceReport(name, error=f"{name}: could not be read ({exc.__class__.__name__}: {exc}); "
                                        "nothing from it was stored")


def build_issue(store: Store, config: Config, now: datetime | None = None) -> Issue | None:
    """The current week's issue: the frozen one if it already went to anyone, else a fresh draft
    from the window's best papers not sent before, with the editor's pins, drops, moves,
    subject and note applied (saved, so its number is stable); None when there is no paper."""
    return plan_next_issue(store, config, now=now, with_left_out=False).issue


def plan_next_issue(store: Store, config: Config, now: datetime | None = None, *,
                    with_left_out: bool = True) -> IssuePlan:
    """The next issue (as ``build_issue``) and, with ``with_left_out``, every other paper in the
    store with why it is not in it."""
    now = now or utcnow()
    key = issue_key(now, config["schedule.timezone"])
    with store.atomic() as conn:
        existing = get_issue(conn, key)
        if existing is not None and is_frozen(existing):
            return IssuePlan(issue=existing, frozen=True, edits=get_edits(conn, key))
        edits = get_edits(conn, key)
        since = window_start(now, config["issue.days"])
        candidates = list_papers(conn) if with_left_out else list_papers(conn, first_seen_since=since)
        known = {p.id for p in candidates}
        candidates += [p for p in (get_paper(conn, i) for i in edits.pinned if i not in known) if p is not None]
        chosen, left_out = plan_issue(candidates, since=since, max_papers=config["issue.max_papers"],
                                      min_score=config["issue.min_score"], sent=sent_paper_keys(conn), edits=edits)
        if not chosen:
            return IssuePlan(issue=None, left_out=tuple(left_out), edits=edits)
        number = next_issue_number(conn, key)
        note = edits.note if edits.note is not None else load_editor_note(config)
        issue = Issue(key=key, number=number, title=f"{config['newsletter.name']} #{number}", papers=tuple(chosen),
                      created_at=now, editor_note=note, status="draft", subject=edits.subject or "")
        saved = save_draft(conn, issue)
        if not is_frozen(saved):
            # A draft is dated now: its papers were chosen from the window ending now, and the
            # dates the issue says it covers must be those (the row keeps its first date).
            saved = Issue(key=saved.key, number=saved.number, title=saved.title, papers=saved.papers,
                          created_at=now, editor_note=saved.editor_note, status=saved.status,
                          subject=edits.subject or "")
        return IssuePlan(issue=saved, left_out=tuple(left_out), edits=edits, frozen=is_frozen(saved))


def _resolve_paper_id(conn, paper_id: str) -> str:  # type: ignore[no-untyped-def]
    """``2401.12345`` and ``arxiv:2401.12345`` name the same paper; an unknown id is an error."""
    for candidate in (paper_id.strip(), f"arxiv:{paper_id.strip()}"):
        if get_paper(conn, candidate) is not None:
            return candidate
    raise NewsletterError("no such paper in the store (see `newsletter papers --all`)", where=paper_id)


def edit_next_issue(store: Store, config: Config, action: str, paper_id: str | None = None, *,
                    position: int | None = None, text: str | None = None,
                    now: datetime | None = None) -> IssuePlan:
    """Change the next issue before it is sent: ``pin``, ``drop``, ``move`` (to ``position``),
    ``subject`` (``text``; empty: the default again), ``note`` (``text``; None: the configured
    note again) or ``reset``. Refused with ``IssueFrozenError`` once the issue went to anyone.
    Returns the plan after the change."""
    now = now or utcnow()
    key = issue_key(now, config["schedule.timezone"])
    with store.atomic() as conn:
        existing = get_issue(conn, key)
        if existing is not None and is_frozen(existing):
            raise IssueFrozenError(f"issue #{existing.number} has been sent, so it can no longer change; "
                                   "edits apply to an issue not yet sent", where=key)
        edits = get_edits(conn, key)
        pinned, dropped, moves = list(edits.pinned), list(edits.dropped), list(edits.moves)
        if action == "reset":
            edits = IssueEdits()
        elif action in ("pin", "drop", "move"):
            assert paper_id is not None
            pid = _resolve_paper_id(conn, paper_id)
            if action == "pin":
                if pid in sent_paper_keys(conn):
                    raise NewsletterError(f"went out in issue {sent_paper_keys(conn)[pid]}; a paper is never sent twice",
                                          where=pid)
                pinned = [p for p in pinned if p != pid] + [pid]
                dropped = [p for p in dropped if p != pid]
            elif action == "drop":
                dropped = [p for p in dropped if p != pid] + [pid]
                pinned = [p for p in pinned if p != pid]
                moves = [m for m in moves if m[0] != pid]
            else:
                moves.append((pid, int(position or 1)))
            edits = IssueEdits(pinned=tuple(pinned), dropped=tuple(dropped), moves=tuple(moves),
                               subject=edits.subject, note=edits.note)
        elif action == "subject":
            edits = IssueEdits(pinned=edits.pinned, dropped=edits.dropped, moves=edits.moves,
                               subject=" ".join((text or "").split()) or None, note=edits.note)
        elif action == "note":
            edits = IssueEdits(pinned=edits.pinned, dropped=edits.dropped, moves=edits.moves,
                               subject=edits.subject, note=text)
        else:
            raise ValueError(action)
        save_edits(conn, key, edits, now=now)
    plan = plan_next_issue(store, config, now=now, with_left_out=False)
    if action == "move":
        assert paper_id is not None
        with store.atomic() as conn:
            pid = _resolve_paper_id(conn, paper_id)
        if plan.issue is None or pid not in {p.id for p in plan.issue.papers}:
            with store.atomic() as conn:  # a move of a paper the issue does not hold is not kept
                save_edits(conn, key, IssueEdits(pinned=edits.pinned, dropped=edits.dropped, moves=edits.moves[:-1],
                                                 subject=edits.subject, note=edits.note), now=now)
            raise NewsletterError("is not in the next issue: `newsletter issue pin` it first", where=pid)
    return plan


def render_issue(store: Store, config: Config, issue: Issue) -> RenderedIssue:
    """The issue's subject, HTML and text: the stored parts of a frozen issue, verbatim, else
    rendered now from the templates (so a template edit shows in the next preview)."""
    if is_frozen(issue):
        with store.atomic() as conn:
            frozen = get_frozen_rendering(conn, issue.key)
        if frozen is not None:
            return frozen
    return render(issue, config)


def preview_issue(store: Store, config: Config, out_dir: Path, *, subscriber_email: str | None = None,
                  now: datetime | None = None) -> PreviewFiles | None:
    """Write the next issue as one subscriber would get it (HTML, text, .eml) into ``out_dir``;
    None when there are no papers. Without ``subscriber_email`` a sample reader is used."""
    issue = build_issue(store, config, now=now)
    if issue is None:
        return None
    rendered = render_issue(store, config, issue)
    subscriber = _preview_subscriber(store, subscriber_email)
    signer = Signer(secret_key(config, store))
    if subscriber.id is not None:
        personal = prepare_personal(store, config, issue, write=False, only=[subscriber.id])
        picks = personal.planned.get(subscriber.id)
        if picks and personal.cards is not None:
            return write_preview(rendered, config, signer, out_dir, subscriber, now=now, cards=personal.cards,
                                 picks=picks)
    return write_preview(rendered, config, signer, out_dir, subscriber, now=now)


def reader_next_issue(store: Store, config: Config, email: str, now: datetime | None = None
                      ) -> tuple[Issue, list[tuple[Paper, str]], bool] | None:
    """The next issue as one reader gets it: (issue, [(paper, why)], own), ``own`` False when
    they get the shared issue (no profile, no ratings). None when there are no papers."""
    issue = build_issue(store, config, now=now)
    if issue is None:
        return None
    subscriber = _preview_subscriber(store, email)
    assert subscriber.id is not None
    personal = prepare_personal(store, config, issue, write=False, only=[subscriber.id])
    picks = personal.planned.get(subscriber.id)
    if not picks or personal.cards is None:
        return issue, [(p, "") for p in issue.papers], False
    return issue, [(personal.cards.papers[p.paper_id], p.reason) for p in picks], True


def _preview_subscriber(store: Store, email: str | None):  # type: ignore[no-untyped-def]

    if email is None:
        return SAMPLE_READER

    with store.atomic() as conn:
        found = get_subscriber(conn, email)
    if found is None:
        raise SubscriberError("no such subscriber (see `newsletter subscribers list`)", where=email)
    return found


# --- deliver: Issue -> one message per subscriber -> transport ------------------------------


def _send_options(config: Config, limit: int | None):  # type: ignore[no-untyped-def]

    return SendOptions(concurrency=config["delivery.concurrency"], rate_per_second=config["delivery.rate_per_second"],
                       daily_cap=config["delivery.daily_cap"], max_attempts=config["delivery.max_attempts"],
                       retry_delay_s=parse_duration(config["delivery.retry_delay"]),
                       retry_for_s=parse_duration(config["delivery.retry_for"]), limit=limit)


def _message_builder(store: Store, config: Config, rendered: RenderedIssue, *,  # type: ignore[no-untyped-def]
                     test_copy: bool = False, personal: Personal | None = None):
    """``build(subscriber)`` for this issue.

    Each message is dated when it is built, never at the issue's time: a send the scheduler
    catches up, or one a rate limit stretches over hours, must not arrive looking hours old.
    The Message-ID is fixed per issue and address, so a message re-sent after a crash is
    recognisably the same one (mail clients fold such duplicates; the outbox rewrites the same
    file). A test copy gets a Message-ID of its own: it is not the subscriber's message, and a
    mail service that drops a repeated Message-ID would otherwise hide the real one.
    """
    factory = MessageFactory(rendered, config, Signer(secret_key(config, store)))
    own = PersonalMessages(factory, personal.cards) if personal is not None and personal.cards is not None else None
    if test_copy:
        return factory.build
    key = rendered.issue.key

    def build(subscriber, picks=None):  # type: ignore[no-untyped-def]
        digest = hashlib.sha256(f"{key}\n{subscriber.email.lower()}".encode()).hexdigest()[:20]
        message_id = f"<{key}.{digest}@{factory.domain}>"
        if picks is not None and own is not None:
            return own.build(subscriber, picks, message_id=message_id)
        return factory.build(subscriber, message_id=message_id)

    return build


def send_issue(store: Store, config: Config, *, dry_run: bool = False, to: str | None = None,
               limit: int | None = None, rate: float | None = None, concurrency: int | None = None,
               stop: threading.Event | None = None, now: datetime | None = None,
               progress: ProgressCallback | None = None, allow_placeholders: bool = False) -> RunReport:
    """Deliver the current issue to every active subscriber not yet sent it.

    The issue is frozen (its rendered parts stored) before the first message, so every later
    message, resumed run or resend carries exactly the same content. ``to`` sends one test copy
    outside the ledger; ``dry_run`` builds every message and counts, delivering nothing
    (``deferred`` is then the number a real run would send). Raises ``NothingToSendError``
    when there are no papers, and ``GoLiveError`` when a real SMTP send would go out with
    placeholder settings or without an https unsubscribe page (see ``deliver/golive.py``).
    """
    if to is not None and dry_run:
        raise DeliveryError("--to sends a test copy and --dry-run sends nothing: use one of them")
    started = time.monotonic()
    config = config.with_overrides({"delivery.rate_per_second": rate, "delivery.concurrency": concurrency})
    issue = build_issue(store, config, now=now)
    if issue is None:
        raise NothingToSendError("no papers for this issue: run `newsletter ingest` first")
    rendered = render_issue(store, config, issue)
    if to is not None:
        return _send_test_copy(store, config, rendered, to, started)
    if dry_run:
        return _dry_run(store, config, rendered, limit, progress, started)
    if config.smtp_enabled:
        require_go_live(config, allow_placeholders=allow_placeholders)
    with store.atomic() as conn:
        if not subscriber_stats(conn)["by_status"]["active"]:
            # Freezing would spend this week's issue on nobody: the papers stay for a later send.
            raise NothingToSendError("no active subscribers: add some with `newsletter subscribers add` or "
                                     "`newsletter subscribers import`")
        issue = freeze_issue(conn, issue, rendered)
    rendered = render_issue(store, config, issue)  # the parts as frozen, even if another run froze first
    build = _message_builder(store, config, rendered, personal=prepare_personal(store, config, issue))
    transport = open_transport(config)
    return deliver_issue(store, issue.number, issue.key, build, transport, _send_options(config, limit),
                         stop=stop, progress=progress)


def _send_test_copy(store: Store, config: Config, rendered: RenderedIssue, to: str, started: float) -> RunReport:
    """One copy to ``to``, outside the ledger (with the subscriber's name if ``to`` is one)."""
    address = normalize_address(to)
    with store.atomic() as conn:
        known = get_subscriber(conn, address)
    build = _message_builder(store, config, rendered, test_copy=True)
    message = build(known or Subscriber(email=address, name=""))
    transport = open_transport(config)
    key = rendered.issue.key
    try:
        transport.send(message.sender, [message.recipient], message.data)
    except (TemporaryFailure, PermanentFailure) as exc:
        return RunReport(key, failed=1, elapsed_s=time.monotonic() - started,
                         destination=transport.destination, errors=(f"{address}: {exc}",))
    finally:
        transport.close()
    return RunReport(key, sent=1, elapsed_s=time.monotonic() - started, destination=transport.destination)


def _dry_run(store: Store, config: Config, rendered: RenderedIssue, limit: int | None,
             progress: ProgressCallback | None, started: float) -> RunReport:
    """Build every message a real run would send now and count them; deliver nothing."""
    if config.smtp_enabled:
        SmtpSettings.from_config(config)  # refused settings are refused here too, not only for real
    key = rendered.issue.key
    with store.atomic() as conn:
        subscribers = active_subscribers(conn)
        number = issue_number_for_key(conn, key)
        # What a real run would leave alone: an SMTP run still sends rows only written to the
        # outbox; an outbox run counts them done.
        claimable = (PENDING, WRITTEN) if config.smtp_enabled else (PENDING,)
        done = settled_subscriber_ids(conn, number, claimable) if number is not None else set()
        already = status_counts(conn, number)[SENT if config.smtp_enabled else WRITTEN] if number is not None else 0
        suppressed = subscriber_stats(conn)["suppressed"]
    todo = [s for s in subscribers if s.id not in done][:limit]
    personal = prepare_personal(store, config, rendered.issue, write=False, only=[s.id for s in todo if s.id])
    build = _message_builder(store, config, rendered, personal=personal)
    errors = []
    distinct: set[tuple[str, ...]] = set()
    for i, subscriber in enumerate(todo, start=1):
        picks = personal.planned.get(subscriber.id) if subscriber.id is not None else None
        distinct.add(tuple(p.paper_id for p in picks) if picks else ())
        try:
            build(subscriber, picks)
        except NewsletterError as exc:
            errors.append(f"{subscriber.email}: {exc}")
        if progress is not None and (i % 500 == 0 or i == len(todo)):
            progress(i, len(todo))
    return RunReport(key, deferred=len(todo) - len(errors), failed=len(errors), suppressed=suppressed,
                     already_sent=already, elapsed_s=time.monotonic() - started,
                     destination="nothing (dry run)", errors=tuple(errors), distinct_issues=len(distinct),
                     personal=sum(1 for s in todo if s.id in personal.planned))


def resend(store: Store, config: Config, issue_key: str | None = None, *, status: str = "failed",
           stop: threading.Event | None = None, progress: ProgressCallback | None = None,
           allow_placeholders: bool = False) -> RunReport:
    """Send again, on purpose, the deliveries of an issue (default: the latest with such rows)
    that ended ``failed`` or ``uncertain`` (sent whole, reply lost).

    Those rows go back to pending with a fresh attempt budget and are sent with the issue's
    frozen parts and the same Message-ID (so a receiver that deduplicates can drop a copy it
    already has); nothing already accepted is sent again, suppressed subscribers are skipped,
    and no new subscribers are added.
    """
    if config.smtp_enabled:
        require_go_live(config, allow_placeholders=allow_placeholders)
    with store.atomic() as conn:
        if issue_key is None:
            number = latest_issue_with(conn, status)
            if number is None:
                raise NothingToSendError(f"no issue has {status} deliveries")
            issue_key = issue_key_for_number(conn, number)
        else:
            number = issue_number_for_key(conn, issue_key)
            if number is None:
                raise UnknownIssueError("no such issue (see `newsletter issues`)", where=issue_key)
        issue = get_issue(conn, issue_key)
        if reset_status(conn, number, status, utcnow()) == 0:
            raise NothingToSendError(f"no {status} deliveries to send again", where=issue_key)
    assert issue is not None
    rendered = render_issue(store, config, issue)
    build = _message_builder(store, config, rendered, personal=prepare_personal(store, config, issue, rank=False))
    return deliver_issue(store, number, issue_key, build, open_transport(config), _send_options(config, None),
                         stop=stop, progress=progress, add_subscribers=False)
