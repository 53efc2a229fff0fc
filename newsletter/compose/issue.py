"""Choosing what goes into an issue: the window, the ranking and the key.

Pure functions over ``Paper`` values (the store is read by the caller), so the ranking can be
tested without a database and reused by ``newsletter papers``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo
from typing import Iterable

from newsletter.models import Issue, Paper

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
