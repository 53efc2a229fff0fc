"""Choosing what goes into an issue: the window, the ranking and the key.

Pure functions over ``Paper`` values (the store is read by the caller), so the ranking can be
tested without a database and reused by ``newsletter papers``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo
from typing import Iterable

from newsletter.models import Issue, IssueEdits, LeftOut, Paper

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def issue_key(now: datetime, zone: tzinfo | str | None = None) -> str:
    """The ISO week of ``now`` in ``zone`` (the schedule's timezone; UTC when None): ``2026-W48``.

    One weekly issue per key, ever. The week is counted where the operator lives: counted in UTC,
    a send near local midnight falls on a different UTC day in summer and in winter, and at one of
    the daylight-saving changes two sends a week apart would share a key (a week skipped).
    """
    if isinstance(zone, str):
        zone = ZoneInfo(zone)
    year, week, _ = now.astimezone(zone or timezone.utc).isocalendar()
    return f"{year}-W{week:02d}"


def window_start(now: datetime, days: int) -> datetime:
    """The earliest ``first_seen_at`` an issue composed at ``now`` draws from."""
    return now.astimezone(timezone.utc) - timedelta(days=days)


def rank_papers(papers: Iterable[Paper], *, max_papers: int, min_score: int = 0,
                exclude_ids: Iterable[str] = ()) -> list[Paper]:
    """Best first: highest score (unknown scores after known ones), then the most recently seen.

    A paper with a known score below ``min_score`` is left out; one without a score is kept,
    because many sources (arXiv listings) have no votes at all. Ties end on the id so the order
    never depends on the store's.
    """
    excluded = set(exclude_ids)
    kept = [p for p in papers if p.id not in excluded and (p.score is None or p.score >= min_score)]

    def recency(p: Paper) -> float:
        return (p.first_seen_at or p.published_at or _EPOCH).timestamp()

    def published(p: Paper) -> float:
        return (p.published_at or _EPOCH).timestamp()

    kept.sort(key=lambda p: (p.score is None, -(p.score or 0), -recency(p), -published(p), p.id))
    return kept[:max_papers]


def compose_issue(papers: Iterable[Paper], *, key: str, number: int, name: str, now: datetime,
                  max_papers: int, min_score: int = 0, exclude_ids: Iterable[str] = (),
                  editor_note: str = "") -> Issue | None:
    """The draft issue for ``key`` from the window's ``papers``; None when none qualifies."""
    chosen = rank_papers(papers, max_papers=max_papers, min_score=min_score, exclude_ids=exclude_ids)
    if not chosen:
        return None
    return Issue(key=key, number=number, title=f"{name} #{number}", papers=tuple(chosen),
                 created_at=now, editor_note=editor_note, status="draft")


def _day(when: datetime | None) -> str:
    return f"{when.day} {when:%b %Y}" if when else "unknown"


def apply_moves(papers: list[Paper], moves: Iterable[tuple[str, int]]) -> list[Paper]:
    """``papers`` with each moved paper taken out and put back at its 1-based position (clamped
    to the list), in the order the moves were made; a move of a paper not in the list is ignored."""
    order = list(papers)
    for paper_id, position in moves:
        found = next((p for p in order if p.id == paper_id), None)
        if found is None:
            continue
        order.remove(found)
        order.insert(max(0, min(len(order), position - 1)), found)
    return order


def plan_issue(papers: Iterable[Paper], *, since: datetime, max_papers: int, min_score: int = 0,
               sent: dict[str, str] | None = None, edits: IssueEdits = IssueEdits()
               ) -> tuple[list[Paper], list[LeftOut]]:
    """The next issue's papers in order, and every other paper with why it was left out.

    Pinned papers are always in (even outside the window or below ``min_score``), in pin order,
    ahead of the ranked ones; a dropped paper never is; a paper sent in an earlier issue never
    goes out again, pinned or not. The ranked papers (``rank_papers``) fill what is left of
    ``max_papers``; then the editor's moves are applied.
    """
    sent = sent or {}
    since = since.astimezone(timezone.utc)
    by_id = {p.id: p for p in papers}
    dropped, pinned_ids = set(edits.dropped), list(dict.fromkeys(edits.pinned))
    left: list[LeftOut] = []
    ranked_pool: list[Paper] = []
    pinned: list[Paper] = []
    for paper in by_id.values():
        if paper.id in sent:
            left.append(LeftOut(paper, "already sent", f"in issue {sent[paper.id]}"))
        elif paper.id in dropped:
            left.append(LeftOut(paper, "dropped", "by the editor (issue drop)"))
        elif paper.id in pinned_ids:
            continue
        elif paper.first_seen_at is not None and paper.first_seen_at < since:
            left.append(LeftOut(paper, "outside the window", f"first seen {_day(paper.first_seen_at)}"))
        elif paper.score is not None and paper.score < min_score:
            left.append(LeftOut(paper, "below min_score", f"score {paper.score} < min_score {min_score}"))
        else:
            ranked_pool.append(paper)
    pinned = [by_id[i] for i in pinned_ids if i in by_id and i not in sent and i not in dropped]
    room = max(0, max_papers - len(pinned))
    ranked = rank_papers(ranked_pool, max_papers=len(ranked_pool))
    chosen = pinned + ranked[:room]
    for rank, paper in enumerate(ranked[room:], start=room + 1):
        left.append(LeftOut(paper, "over max_papers", f"rank {len(pinned) + rank} > max_papers {max_papers}"))
    reasons = ("dropped", "below min_score", "over max_papers", "outside the window", "already sent")
    left.sort(key=lambda lo: reasons.index(lo.reason))  # stable: ranking order within a reason
    return apply_moves(chosen, edits.moves), left
