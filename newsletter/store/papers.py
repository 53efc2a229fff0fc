"""Papers in the store: upsert with merging, and the listing the next issue draws from.

Merging is order-independent and idempotent, so ingesting the same source twice changes
nothing and two sources reporting one paper converge whatever order they come in: the first
title stays, the longer abstract and author list win, missing links are filled in, the score is
the highest seen, the publication time the earliest, and sources and categories accumulate (the
first source's categories first, so its primary stays first). ``last_seen_at``
moves on every sighting without counting as an update.

On SQLite the upsert binds values it has serialised itself (``_sqlite_values``: the same text
SQLAlchemy's ``JSON`` and ``UTCDateTime`` types would store) through ``exec_driver_sql``, in the
transaction of ``store.atomic()``: SQLAlchemy's per-value type processing cost more than SQLite
writing the rows. A known paper whose stored columns already equal the incoming ones is
unchanged without being decoded; only the others are read back as ``Paper`` values and merged.
Other databases take the SQLAlchemy Core path. A test checks both store identical rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any, Iterable, Sequence

from sqlalchemy import and_, bindparam, func, null, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import StatementError

from newsletter.models import Paper
from newsletter.store.db import utcnow
from newsletter.store.schema import papers, source_state, sqlite_time

_CHUNK = 500
_CONTENT = ("title", "authors", "abstract", "url", "pdf_url", "code_url", "thumbnail_url",
            "page_url", "score", "published_at", "sources", "categories")
# As the sources bound them (sources/categories.py); a merge keeps the union within it too.
MAX_CATEGORIES = 20


@dataclass(frozen=True)
class UpsertCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


def _row_to_paper(row: Any) -> Paper:
    return Paper(
        id=row.id, title=row.title, url=row.url, authors=tuple(row.authors or ()), abstract=row.abstract,
        pdf_url=row.pdf_url, code_url=row.code_url, thumbnail_url=row.thumbnail_url, score=row.score,
        published_at=row.published_at, first_seen_at=row.first_seen_at, last_seen_at=row.last_seen_at,
        sources=tuple(row.sources or ()), page_url=row.page_url, categories=tuple(row.categories or ()),
    )


def _content(paper: Paper) -> dict[str, Any]:
    return {
        "title": paper.title, "authors": list(paper.authors), "abstract": paper.abstract, "url": paper.url,
        "pdf_url": paper.pdf_url, "code_url": paper.code_url, "thumbnail_url": paper.thumbnail_url,
        "page_url": paper.page_url, "score": paper.score, "published_at": paper.published_at,
        "sources": list(paper.sources), "categories": list(paper.categories),
    }


def _bound(content: dict[str, Any]) -> dict[str, Any]:
    """``_content`` as the Core path binds it: no categories is SQL NULL ("none known"), as in
    rows stored before the column existed, not the JSON text ``[]``."""
    if not content["categories"]:
        return {**content, "categories": null()}
    return content


def _union_categories(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    """``old``, then what ``new`` adds (compared case-insensitively), at most ``MAX_CATEGORIES``."""
    if not new or new == old:
        return old
    known = {c.casefold() for c in old}
    added = tuple(c for c in new if c.casefold() not in known)
    return (old + added)[:MAX_CATEGORIES] if added else old


def merge_papers(old: Paper, new: Paper) -> Paper:
    """One paper from two sightings of it (see the module docstring for the rules)."""
    authors = new.authors if len(new.authors) > len(old.authors) else old.authors
    scores = [s for s in (old.score, new.score) if s is not None]
    times = [t for t in (old.published_at, new.published_at) if t is not None]
    return replace(
        old,
        title=old.title or new.title,
        abstract=new.abstract if len(new.abstract) > len(old.abstract) else old.abstract,
        authors=authors,
        url=old.url or new.url,
        pdf_url=old.pdf_url or new.pdf_url,
        code_url=old.code_url or new.code_url,
        thumbnail_url=old.thumbnail_url or new.thumbnail_url,
        page_url=old.page_url or new.page_url,
        score=max(scores) if scores else None,
        published_at=min(times) if times else None,
        sources=old.sources + tuple(s for s in new.sources if s not in old.sources),
        categories=_union_categories(old.categories, new.categories),
    )


def papers_named(conn: Connection, ids: Sequence[str]) -> dict[str, Paper]:
    """The papers of ``ids`` that are in the store, by id."""
    ids = list(ids)
    found: dict[str, Paper] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        for row in conn.execute(select(papers).where(papers.c.id.in_(chunk))):
            found[row.id] = _row_to_paper(row)
    return found


def upsert_papers(conn: Connection, incoming: Iterable[Paper], now: datetime | None = None) -> UpsertCounts:
    """Insert new papers, merge known ones; returns how many were new, updated and unchanged."""
    now = now or utcnow()
    batch: dict[str, Paper] = {}
    for paper in incoming:
        batch[paper.id] = merge_papers(batch[paper.id], paper) if paper.id in batch else paper
    if not batch:
        return UpsertCounts()
    if conn.dialect.name != "sqlite":
        return _upsert_core(conn, batch, now)
    return _upsert_sqlite(conn, batch, now)


def _upsert_core(conn: Connection, batch: dict[str, Paper], now: datetime) -> UpsertCounts:
    existing = papers_named(conn, list(batch))
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    seen: list[str] = []
    for pid, paper in batch.items():
        old = existing.get(pid)
        if old is None:
            inserts.append({"id": pid, **_bound(_content(paper)), "first_seen_at": now, "last_seen_at": now})
            continue
        merged = merge_papers(old, paper)
        if _content(merged) != _content(old):
            updates.append({"b_id": pid, **_bound(_content(merged)), "last_seen_at": now})
        else:
            seen.append(pid)
    if inserts:
        conn.execute(papers.insert(), inserts)
    if updates:
        conn.execute(papers.update().where(papers.c.id == bindparam("b_id"))
                     .values({c: bindparam(c) for c in (*_CONTENT, "last_seen_at")}), updates)
    for start in range(0, len(seen), _CHUNK):
        conn.execute(papers.update().where(papers.c.id.in_(seen[start:start + _CHUNK])).values(last_seen_at=now))
    return UpsertCounts(new=len(inserts), updated=len(updates), unchanged=len(seen))


# --- SQLite: pre-serialised values through the driver -----------------------------------------

_INSERT_SQL = (f"INSERT INTO papers (id, {', '.join(_CONTENT)}, first_seen_at, last_seen_at) "
               f"VALUES ({', '.join('?' * (len(_CONTENT) + 3))})")
_UPDATE_SQL = f"UPDATE papers SET {', '.join(f'{c} = ?' for c in _CONTENT)}, last_seen_at = ? WHERE id = ?"


def _json_names(names: Sequence[str]) -> str:
    """``json.dumps(list(names))`` for strings, without building an encoder per call."""
    try:
        return "[" + ", ".join(map(encode_basestring_ascii, names)) + "]"
    except TypeError:
        return json.dumps(list(names))


class _Serialised:
    """Text already made for this batch: source and category lists and times repeat from paper
    to paper (one source; a few categories; a listing's one announcement time), and a dict
    lookup costs a tenth of serialising them again."""

    def __init__(self) -> None:
        self.lists: dict[tuple[str, ...], str] = {}
        self.times: dict[datetime, str | None] = {}

    def names(self, names: tuple[str, ...]) -> str:
        text = self.lists[names] = _json_names(names)
        return text

    def time(self, value: datetime) -> str | None:
        text = self.times[value] = sqlite_time(value)
        return text


def _sqlite_values(paper: Paper, done: _Serialised) -> tuple[Any, ...]:
    """The ``_CONTENT`` columns of ``paper`` as SQLite stores them (no categories: NULL). The
    caches are looked up here, not through methods: this runs once per paper."""
    published, sources, categories = paper.published_at, paper.sources, paper.categories
    lists = done.lists
    return (paper.title, _json_names(paper.authors), paper.abstract, paper.url, paper.pdf_url, paper.code_url,
            paper.thumbnail_url, paper.page_url, paper.score,
            None if published is None else done.times.get(published) or done.time(published),
            lists.get(sources) or done.names(sources),
            (lists.get(categories) or done.names(categories)) if categories else None)


def _stored_values(conn: Connection, ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """The ``_CONTENT`` columns of the papers already stored, as stored, by id."""
    found: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = tuple(ids[start:start + _CHUNK])
        sql = f"SELECT id, {', '.join(_CONTENT)} FROM papers WHERE id IN ({', '.join('?' * len(chunk))})"
        for row in conn.exec_driver_sql(sql, chunk).fetchall():
            found[row[0]] = tuple(row[1:])
    return found


def _upsert_sqlite(conn: Connection, batch: dict[str, Paper], now: datetime) -> UpsertCounts:
    try:
        return _upsert_sqlite_values(conn, batch, now)
    except ValueError as exc:
        # As the type processors of the Core path report it, so callers catch one kind of error.
        raise StatementError(f"(builtins.ValueError) {exc}", _INSERT_SQL, None, exc) from None


def _upsert_sqlite_values(conn: Connection, batch: dict[str, Paper], now: datetime) -> UpsertCounts:
    now_s = sqlite_time(now)
    ids = list(batch)
    stored = _stored_values(conn, ids)
    done = _Serialised()
    inserts: list[tuple[Any, ...]] = []
    seen: list[str] = []
    to_merge: list[str] = []
    for pid, paper in batch.items():
        values = _sqlite_values(paper, done)
        old = stored.get(pid)
        if old is None:
            inserts.append((pid, *values, now_s, now_s))
        elif old == values:  # merging a paper with itself changes nothing
            seen.append(pid)
        else:
            to_merge.append(pid)
    updates: list[tuple[Any, ...]] = []
    for pid, old_paper in papers_named(conn, to_merge).items():
        merged = merge_papers(old_paper, batch[pid])
        if _content(merged) != _content(old_paper):
            updates.append((*_sqlite_values(merged, done), now_s, pid))
        else:
            seen.append(pid)
    if inserts:
        conn.exec_driver_sql(_INSERT_SQL, inserts)
    if updates:
        conn.exec_driver_sql(_UPDATE_SQL, updates)
    # One statement per chunk: measured ~1.5x faster than an executemany of one row each.
    for start in range(0, len(seen), _CHUNK):
        chunk = seen[start:start + _CHUNK]
        conn.exec_driver_sql(f"UPDATE papers SET last_seen_at = ? WHERE id IN ({', '.join('?' * len(chunk))})",
                             (now_s, *chunk))
    return UpsertCounts(new=len(inserts), updated=len(updates), unchanged=len(seen))


def get_paper(conn: Connection, paper_id: str) -> Paper | None:
    row = conn.execute(select(papers).where(papers.c.id == paper_id)).first()
    return _row_to_paper(row) if row else None


def count_papers(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(papers)).scalar_one()


def list_papers(conn: Connection, *, first_seen_since: datetime | None = None, limit: int | None = None,
                exclude_ids: Iterable[str] = ()) -> list[Paper]:
    """Papers newest first (publication day, else first seen), highest score first within a day."""
    when = func.coalesce(papers.c.published_at, papers.c.first_seen_at)
    query = select(papers).order_by(
        func.date(when).desc(), papers.c.score.desc().nulls_last(), when.desc(), papers.c.id)
    conditions = []
    if first_seen_since is not None:
        conditions.append(papers.c.first_seen_at >= first_seen_since)
    excluded = list(exclude_ids)
    if excluded:
        conditions.append(papers.c.id.not_in(excluded))
    if conditions:
        query = query.where(and_(*conditions))
    if limit is not None:
        query = query.limit(limit)
    return [_row_to_paper(row) for row in conn.execute(query)]


@dataclass(frozen=True)
class SourceState:
    """What the last good fetch of a URL told us, sent back as a conditional GET."""

    source: str
    etag: str | None = None
    last_modified: str | None = None
    last_fetched_at: datetime | None = None
    last_status: str | None = None


def get_source_state(conn: Connection, source: str) -> SourceState:
    row = conn.execute(select(source_state).where(source_state.c.source == source)).first()
    if row is None:
        return SourceState(source)
    return SourceState(source, row.etag, row.last_modified, row.last_fetched_at, row.last_status)


def save_source_state(conn: Connection, state: SourceState) -> None:
    values = {"etag": state.etag, "last_modified": state.last_modified,
              "last_fetched_at": state.last_fetched_at, "last_status": state.last_status}
    done = conn.execute(source_state.update().where(source_state.c.source == state.source).values(values))
    if done.rowcount == 0:
        conn.execute(source_state.insert().values(source=state.source, **values))
