"""Reader profiles (what each reader follows) and ratings (more / less like this).

A profile row exists only for a reader who told us something; an empty profile is deleted, so
"has a row" means "gets their own issue". Ratings are one row per reader and paper: rating the
same paper again replaces the value, so a replayed link changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.engine import Connection

from newsletter.models import Paper, ReaderProfile, Rating
from newsletter.store.db import utcnow
from newsletter.store.papers import _row_to_paper as row_to_paper
from newsletter.store.schema import papers, ratings, reader_profiles, subscribers


def _to_profile(row: Any) -> ReaderProfile:
    return ReaderProfile(interests=row.interests, categories=tuple(row.categories), authors=tuple(row.authors),
                         mutes=tuple(row.mutes), likes=tuple(row.likes), size=row.size)


def get_profile(conn: Connection, subscriber_id: int) -> ReaderProfile:
    """The reader's profile; an empty one when they never told us anything."""
    row = conn.execute(select(reader_profiles).where(reader_profiles.c.subscriber_id == subscriber_id)).first()
    return _to_profile(row) if row is not None else ReaderProfile()


def set_profile(conn: Connection, subscriber_id: int, profile: ReaderProfile, now: datetime | None = None) -> None:
    """Store ``profile`` whole (callers merge field by field first); an empty one removes the row."""
    conn.execute(delete(reader_profiles).where(reader_profiles.c.subscriber_id == subscriber_id))
    if profile.is_empty:
        return
    conn.execute(insert(reader_profiles).values(
        subscriber_id=subscriber_id, interests=profile.interests, categories=list(profile.categories),
        authors=list(profile.authors), mutes=list(profile.mutes), likes=list(profile.likes), size=profile.size,
        updated_at=now or utcnow()))


def iter_profiles(conn: Connection, subscriber_ids: Iterable[int] | None = None) -> Iterator[tuple[int, ReaderProfile]]:
    """(subscriber id, profile) of every reader with one (or of those among ``subscriber_ids``)."""
    query = select(reader_profiles).order_by(reader_profiles.c.subscriber_id)
    if subscriber_ids is not None:
        wanted = list(subscriber_ids)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            for row in conn.execute(query.where(reader_profiles.c.subscriber_id.in_(chunk))):
                yield row.subscriber_id, _to_profile(row)
        return
    for row in conn.execute(query):
        yield row.subscriber_id, _to_profile(row)


def rate(conn: Connection, subscriber_id: int, paper_id: str, value: int, now: datetime | None = None) -> bool:
    """Record the reader's rating of a paper (+1 or -1); 0 takes it back. True when it changed."""
    if value not in (-1, 0, 1):
        raise ValueError(f"a rating is +1, -1 or 0 (undo), not {value!r}")
    where = and_(ratings.c.subscriber_id == subscriber_id, ratings.c.paper_id == paper_id)
    current = conn.execute(select(ratings.c.value).where(where)).scalar_one_or_none()
    if value == 0:
        if current is None:
            return False
        conn.execute(delete(ratings).where(where))
        return True
    if current == value:
        return False
    if current is None:
        conn.execute(insert(ratings).values(subscriber_id=subscriber_id, paper_id=paper_id, value=value,
                                            at=now or utcnow()))
    else:
        conn.execute(update(ratings).where(where).values(value=value, at=now or utcnow()))
    return True


def ratings_of(conn: Connection, subscriber_id: int) -> list[Rating]:
    """The reader's ratings, newest first."""
    rows = conn.execute(select(ratings).where(ratings.c.subscriber_id == subscriber_id)
                        .order_by(ratings.c.at.desc(), ratings.c.paper_id))
    return [Rating(subscriber_id=r.subscriber_id, paper_id=r.paper_id, value=r.value, at=r.at) for r in rows]


def iter_ratings(conn: Connection) -> Iterator[Rating]:
    """Every rating in the store, by reader: what the ranking learns from."""
    for r in conn.execute(select(ratings).order_by(ratings.c.subscriber_id, ratings.c.at)):
        yield Rating(subscriber_id=r.subscriber_id, paper_id=r.paper_id, value=r.value, at=r.at)


def personal_subscriber_ids(conn: Connection) -> set[int]:
    """Readers who get their own issue: a profile or at least one rating."""
    ids = set(conn.execute(select(reader_profiles.c.subscriber_id)).scalars())
    ids.update(conn.execute(select(ratings.c.subscriber_id).distinct()).scalars())
    return ids


def active_subscriber_ids(conn: Connection) -> set[int]:
    """Ids of everyone who gets the next issue."""
    return set(conn.execute(select(subscribers.c.id).where(subscribers.c.status == "active")).scalars())


def papers_named(conn: Connection, ids: Sequence[str]) -> dict[str, Paper]:
    """The papers of ``ids`` that are in the store, by id (liked, rated or picked papers)."""
    found: dict[str, Paper] = {}
    wanted = list(ids)
    for start in range(0, len(wanted), 500):
        for row in conn.execute(select(papers).where(papers.c.id.in_(wanted[start:start + 500]))):
            found[row.id] = row_to_paper(row)
    return found


def forget_reader(conn: Connection, subscriber_id: int) -> None:
    """Delete the reader's profile and ratings (the subscriber is being removed)."""
    conn.execute(delete(reader_profiles).where(reader_profiles.c.subscriber_id == subscriber_id))
    conn.execute(delete(ratings).where(ratings.c.subscriber_id == subscriber_id))


__all__ = ["get_profile", "set_profile", "iter_profiles", "rate", "ratings_of", "iter_ratings",
           "personal_subscriber_ids", "forget_reader", "active_subscriber_ids", "papers_named"]
