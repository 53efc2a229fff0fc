"""Issues in the store: drafts that change until someone receives them, then frozen for good.

A frozen issue keeps its rendered parts and a copy of its papers *as sent*, so every later
delivery (a resend, a subscriber added mid-run) gets exactly the bytes the first reader got, even
if a paper's record is updated by a later ingest or the templates change.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from newsletter.models import Issue, IssueEdits, Paper, RenderedIssue
from newsletter.store.db import utcnow
from newsletter.store.meta import take_turns
from newsletter.store.schema import issue_edits, issues

# "frozen": sent to someone, parts stored; "sent": a delivery area may mark it done. Both are
# immutable; test with ``is_frozen``.
FROZEN_STATUSES: tuple[str, ...] = ("frozen", "sent")


def is_frozen(issue: Issue) -> bool:
    """True once the issue went to anyone: its parts and papers never change again."""
    return issue.status in FROZEN_STATUSES


def paper_to_json(paper: Paper) -> dict[str, Any]:
    """A JSON-safe dict of every field of a paper (times as ISO 8601), for the frozen copy;
    written from the dataclass's fields so a field added to ``Paper`` is kept too."""
    data: dict[str, Any] = {}
    for f in fields(Paper):
        value = getattr(paper, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        data[f.name] = value
    return data


def paper_from_json(data: dict[str, Any]) -> Paper:
    known = {f.name for f in fields(Paper)}
    values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
    for name in ("published_at", "first_seen_at", "last_seen_at"):
        if values.get(name):
            values[name] = datetime.fromisoformat(values[name])
    for name in ("authors", "sources", "categories"):
        values[name] = tuple(values.get(name) or ())
    return Paper(**values)


def _issue_from_row(row: Any) -> Issue:
    papers = tuple(paper_from_json(p) for p in (row.papers or []))
    return Issue(key=row.key, number=row.number, title=row.title, papers=papers,
                 created_at=row.created_at, editor_note=row.editor_note,
                 status=row.status)


def get_issue(conn: Connection, key: str) -> Issue | None:
    """The issue with this key (``2026-W48``), draft or frozen, or None."""
    row = conn.execute(select(issues).where(issues.c.key == key)).first()
    return _issue_from_row(row) if row else None


def list_issues(conn: Connection) -> list[Issue]:
    """Every issue, newest (highest number) first."""
    rows = conn.execute(select(issues).order_by(issues.c.number.desc())).all()
    return [_issue_from_row(row) for row in rows]


def get_edits(conn: Connection, key: str) -> IssueEdits:
    """The editor's changes to the issue ``key`` (none: an empty ``IssueEdits``)."""
    row = conn.execute(select(issue_edits).where(issue_edits.c.key == key)).first()
    if row is None:
        return IssueEdits()
    return IssueEdits(pinned=tuple(row.pinned or ()), dropped=tuple(row.dropped or ()),
                      moves=tuple((str(m[0]), int(m[1])) for m in (row.moves or ())),
                      subject=row.subject, note=row.note)


def save_edits(conn: Connection, key: str, edits: IssueEdits, now: datetime | None = None) -> None:
    """Store the editor's changes to ``key``; empty changes delete the row."""
    conn.execute(issue_edits.delete().where(issue_edits.c.key == key))
    if edits.is_empty:
        return
    conn.execute(issue_edits.insert().values(
        key=key, pinned=list(edits.pinned), dropped=list(edits.dropped),
        moves=[[paper_id, position] for paper_id, position in edits.moves],
        subject=edits.subject, note=edits.note, updated_at=now or utcnow()))


def sent_paper_keys(conn: Connection) -> dict[str, str]:
    """paper id -> the key of the frozen issue it went out in."""
    found: dict[str, str] = {}
    for key, paper_ids in conn.execute(select(issues.c.key, issues.c.paper_ids)
                                       .where(issues.c.status.in_(FROZEN_STATUSES))):
        for paper_id in paper_ids or []:
            found.setdefault(paper_id, key)
    return found


def sent_paper_ids(conn: Connection, *, except_key: str | None = None) -> set[str]:
    """Ids of papers that went out in a frozen issue: a paper is never sent twice."""
    query = select(issues.c.paper_ids).where(issues.c.status.in_(FROZEN_STATUSES))
    if except_key is not None:
        query = query.where(issues.c.key != except_key)
    ids: set[str] = set()
    for (paper_ids,) in conn.execute(query):
        ids.update(paper_ids or [])
    return ids


def next_issue_number(conn: Connection, key: str) -> int:
    """The running number for ``key``: its own once frozen, else one past the highest frozen
    issue, so drafts that were never sent leave no gap in the numbering readers see."""
    row = conn.execute(select(issues.c.number, issues.c.status).where(issues.c.key == key)).first()
    if row is not None and row.status in FROZEN_STATUSES:
        return int(row.number)
    highest = conn.execute(select(func.max(issues.c.number))
                           .where(issues.c.status.in_(FROZEN_STATUSES))).scalar()
    return int(highest or 0) + 1


def save_draft(conn: Connection, issue: Issue) -> Issue:
    """Insert or update the draft for ``issue.key``; a frozen issue is never touched.

    Returns what the store holds afterwards (the frozen issue if it was frozen meanwhile).
    """
    take_turns(conn, "issues")  # two senders starting at once: one draft, not a unique-key error
    row = conn.execute(select(issues).where(issues.c.key == issue.key)).first()
    if row is not None and row.status in FROZEN_STATUSES:
        return _issue_from_row(row)
    # Drafts of other weeks were never sent to anyone (delivery freezes first): they go, so
    # their numbers are free again.
    conn.execute(issues.delete().where(issues.c.status == "draft", issues.c.key != issue.key))
    values = {
        "number": issue.number, "title": issue.title, "status": "draft", "editor_note": issue.editor_note,
        "paper_ids": [p.id for p in issue.papers], "papers": [paper_to_json(p) for p in issue.papers],
    }
    if row is None:
        conn.execute(issues.insert().values(key=issue.key, created_at=issue.created_at, **values))
        return issue
    conn.execute(issues.update().where(issues.c.key == issue.key).values(**values))
    return Issue(key=row.key, number=issue.number, title=issue.title, papers=issue.papers,
                 created_at=row.created_at, editor_note=issue.editor_note, status="draft")


def freeze_issue(conn: Connection, issue: Issue, rendered: RenderedIssue,
                 now: datetime | None = None) -> Issue:
    """Freeze ``issue`` with its rendered parts, before its first message goes out.

    Idempotent: freezing an issue that is already frozen changes nothing, so two senders (or a
    resend) can both call it and the first one's parts win.
    """
    take_turns(conn, "issues")
    row = conn.execute(select(issues).where(issues.c.key == issue.key)).first()
    if row is not None and row.status in FROZEN_STATUSES:
        return _issue_from_row(row)
    values = {
        "title": issue.title, "subject": rendered.subject, "status": "frozen",
        "editor_note": issue.editor_note, "paper_ids": [p.id for p in issue.papers],
        "papers": [paper_to_json(p) for p in issue.papers], "html": rendered.html,
        "text": rendered.text, "frozen_at": now or utcnow(),
    }
    if row is None:
        conn.execute(issues.insert().values(number=issue.number, key=issue.key,
                                            created_at=issue.created_at, **values))
    else:
        conn.execute(issues.update().where(issues.c.key == issue.key).values(**values))
    stored = conn.execute(select(issues).where(issues.c.key == issue.key)).one()
    return _issue_from_row(stored)


def get_frozen_rendering(conn: Connection, key: str) -> RenderedIssue | None:
    """The parts stored when the issue was frozen, or None for a draft or unknown key."""
    row = conn.execute(select(issues).where(issues.c.key == key)).first()
    if row is None or row.status not in FROZEN_STATUSES or row.html is None:
        return None
    return RenderedIssue(issue=_issue_from_row(row), subject=row.subject or row.title,
                         html=row.html, text=row.text or "")
