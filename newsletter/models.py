"""The plain typed values the pipeline stages pass to each other.

Frozen dataclasses: a stage can never mutate what an earlier stage produced, and every value
can be compared in tests. Times are always timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Mapping

SubscriberStatus = Literal["pending", "active", "unsubscribed", "bounced", "complained"]
SUBSCRIBER_STATUSES: tuple[str, ...] = ("pending", "active", "unsubscribed", "bounced", "complained")
# Never mailed again, and never made active by an import, an add or a form without a deliberate
# act naming the status (``complained``: the reader marked an issue as spam).
SUPPRESSED_STATUSES: tuple[str, ...] = ("unsubscribed", "bounced", "complained")


@dataclass(frozen=True)
class Paper:
    """One research paper, whatever source reported it.

    ``id`` is canonical (``arxiv:2403.05525``, ``doi:10.1000/xyz``, ``url:https://...``) so the
    same paper from several sources merges into one record.
    """

    id: str
    title: str
    url: str
    authors: tuple[str, ...] = ()
    abstract: str = ""
    pdf_url: str | None = None
    code_url: str | None = None
    thumbnail_url: str | None = None
    score: int | None = None
    published_at: datetime | None = None
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    sources: tuple[str, ...] = ()
    page_url: str | None = None  # the paper's page where readers discuss it (Hugging Face papers)
    categories: tuple[str, ...] = ()  # arXiv-style subject classes, primary first: ("cs.CL", "cs.LG")


@dataclass(frozen=True)
class Subscriber:
    """A person on the list. ``email`` is normalised; comparison is case-insensitive."""

    email: str
    name: str = ""
    status: str = "active"
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    confirmed_at: datetime | None = None
    status_changed_at: datetime | None = None
    status_reason: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_suppressed(self) -> bool:
        return self.status in SUPPRESSED_STATUSES


PROFILE_SIZE_RANGE: tuple[int, int] = (3, 30)  # how many papers a reader may ask for


@dataclass(frozen=True)
class ReaderProfile:
    """What one reader follows, as they (or the operator) told us; ratings are kept apart.

    Every field is optional: an empty profile is no profile, and that reader gets the shared
    issue. ``likes`` are canonical paper ids (``arxiv:2403.05525``, ``doi:10.1000/xyz``);
    ``size`` is how many papers they want (``PROFILE_SIZE_RANGE``), None for the issue's own count.
    """

    interests: str = ""                      # free text: "speech recognition; low-resource languages"
    categories: tuple[str, ...] = ()         # arXiv categories: ("cs.CL", "eess.AS")
    authors: tuple[str, ...] = ()            # names to follow, as written: ("Tri Dao",)
    mutes: tuple[str, ...] = ()              # keywords whose papers never appear
    likes: tuple[str, ...] = ()              # canonical paper ids the reader liked
    size: int | None = None

    @property
    def is_empty(self) -> bool:
        return self == ReaderProfile()


# What a rating is called where a person gives it (a link's path, a command's word): +1, -1, or 0
# to take it back.
RATING_WORDS: dict[str, int] = {"up": 1, "down": -1, "undo": 0}


@dataclass(frozen=True)
class Rating:
    """One reader's "more like this" (+1) or "less like this" (-1) on one paper."""

    subscriber_id: int
    paper_id: str
    value: int                               # +1 or -1
    at: datetime | None = None


@dataclass(frozen=True)
class Pick:
    """One paper of a reader's own issue, and why it is there, in a few words."""

    paper_id: str
    reason: str                              # "matches: speech recognition", "top of the week"


@dataclass(frozen=True)
class Issue:
    """One edition of the newsletter: its key (``2026-W48``), running number and papers."""

    key: str
    number: int
    title: str
    papers: tuple[Paper, ...]
    created_at: datetime
    editor_note: str = ""
    status: str = "draft"  # draft | frozen (sent to someone: parts and papers never change)
    subject: str = ""      # the editor's subject line; empty: the templates choose one


@dataclass(frozen=True)
class IssueEdits:
    """The editor's hand on an issue not yet sent: stored per issue key, applied on every build."""

    pinned: tuple[str, ...] = ()               # paper ids always in, in pin order, ahead of the ranked ones
    dropped: tuple[str, ...] = ()              # paper ids never in this issue
    moves: tuple[tuple[str, int], ...] = ()    # (paper id, 1-based position), applied in order
    subject: str | None = None                 # the editor's subject line
    note: str | None = None                    # the editor's note (Markdown); None: newsletter.editor_note

    @property
    def is_empty(self) -> bool:
        return self == IssueEdits()


@dataclass(frozen=True)
class LeftOut:
    """A paper the next issue does not hold, and why."""

    paper: Paper
    reason: str          # "dropped" | "already sent" | "outside the window" | "below min_score" | "over max_papers"
    detail: str = ""     # "score 3 < min_score 5", "first seen 2 Oct 2026", "in issue 2026-W47"


@dataclass(frozen=True)
class IssuePlan:
    """What ``newsletter papers`` shows: the next issue, in order, and what was left out."""

    issue: Issue | None
    left_out: tuple[LeftOut, ...] = ()
    edits: IssueEdits = IssueEdits()
    frozen: bool = False


@dataclass(frozen=True)
class RenderedIssue:
    """An issue rendered once: HTML (CSS already inlined) and text, with placeholders for the
    per-subscriber values that are filled in after, cheaply, for each message."""

    issue: Issue
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to one message: ``sent``, ``failed`` (permanent), ``deferred`` (temporary)."""

    email: str
    status: str
    message_id: str | None = None
    error: str = ""
    attempts: int = 1


@dataclass(frozen=True)
class RunReport:
    """The summary of one delivery run, printed at the end of ``newsletter send``."""

    issue_key: str
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    suppressed: int = 0
    already_sent: int = 0
    elapsed_s: float = 0.0
    destination: str = ""
    errors: tuple[str, ...] = ()  # the first ones, to show
    error_count: int = 0          # how many there were in all (at least len(errors))
    uncertain: int = 0            # sent whole, reply lost: left for ``resend --uncertain``
    throttled: int = 0            # throttling answers met (each cut the rate; no attempt spent)
    next_retry_at: datetime | None = None  # when the earliest message left for later is due
    stopped: str = ""             # why the run stopped early ("" when it ran to the end)
    distinct_issues: int = 0      # dry run: how many different issues the messages hold
    personal: int = 0             # dry run: readers getting their own issue
