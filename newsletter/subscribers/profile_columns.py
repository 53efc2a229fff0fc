"""A reader's profile and ratings as cells of our CSV format, and back.

The export writes them beside the subscriber's own columns, so that moving a list (or asking for
one's data) carries what each reader follows, and importing an export into an empty store gives
back the same profiles and ratings:

- ``interests`` as stored (topics separated by ``; ``);
- ``categories``, ``authors``, ``mutes``, ``likes``: entries joined by ``; ``. A ``;`` never
  appears inside an entry (it separates entries wherever a profile is entered), so reading
  splits on ``;`` alone, and a comma stays inside an entry (``Dao, Tri``);
- ``size``: a whole number, empty for the issue's own count;
- ``ratings``: a JSON array, newest first, of ``{"paper": ID, "value": 1 or -1, "at": TIME}``.
  JSON because a paper's id may hold any character (``title:`` ids are titles), and the time
  is kept so that the order, newest first, survives the round trip.

Reading a row, an empty cell leaves that field as it is on file (as an empty name does); a bad
cell is a ``ValueError`` that names the column, which makes the row invalid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from newsletter.models import Rating, ReaderProfile
from newsletter.sources.normalize import canonical_id
from newsletter.subscribers.profiles import ProfileError, merge_profile

PROFILE_COLUMNS: tuple[str, ...] = ("interests", "categories", "authors", "mutes", "likes", "size", "ratings")
LIST_SEPARATOR = "; "
_PAPER_PREFIXES = ("arxiv:", "doi:", "url:", "title:")
# A paper id in a rating: canonical ids are short; a longer one is not ours.
MAX_PAPER_ID_CHARS = 1_000


@dataclass(frozen=True)
class ProfileCells:
    """What one row says about its reader: the profile fields it sets (already checked, as
    ``ReaderProfile`` holds them) and its ratings as (paper id, value, when)."""

    fields: dict[str, Any]
    ratings: tuple[tuple[str, int, datetime | None], ...] = ()


def profile_cells(profile: ReaderProfile, ratings: Sequence[Rating]) -> list[str]:
    """The ``PROFILE_COLUMNS`` cells of one reader, unescaped (the exporter escapes every cell)."""
    return [
        profile.interests,
        *(LIST_SEPARATOR.join(entries) for entries in (profile.categories, profile.authors, profile.mutes,
                                                      profile.likes)),
        "" if profile.size is None else str(profile.size),
        json.dumps([{"paper": r.paper_id, "value": r.value, "at": r.at.isoformat() if r.at else None}
                    for r in ratings], ensure_ascii=False) if ratings else "",
    ]


def _entries(text: str) -> list[str]:
    return text.split(";")


def _likes(text: str) -> list[str]:
    # Ids hold neither ";" nor white space: a hand-written "2403.05525 2401.00001" reads too.
    return [word for part in text.split(";") for word in part.split()]


# Each profile column's cell -> the value ``merge_profile`` takes for that field.
_READERS: dict[str, Callable[[str], Any]] = {
    "interests": str, "categories": str, "authors": _entries, "mutes": _entries, "likes": _likes, "size": str,
}


def read_profile_cells(cells: dict[str, str]) -> ProfileCells | None:
    """The profile and ratings of one row from its non-empty profile cells (column -> text);
    None when it has none. ``ValueError`` naming the column when a cell cannot be taken."""
    given = {column: _READERS[column](text) for column, text in cells.items() if column in _READERS and text.strip()}
    ratings_text = cells.get("ratings", "")
    if not given and not ratings_text.strip():
        return None
    try:
        profile = merge_profile(ReaderProfile(), **given)
    except ProfileError as exc:
        raise ValueError(exc.message) from None
    fields = {column: getattr(profile, column) for column in given}  # the columns are named as the fields
    return ProfileCells(fields, _read_ratings(ratings_text))


def _read_ratings(text: str) -> tuple[tuple[str, int, datetime | None], ...]:
    text = text.strip()
    if not text:
        return ()
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"ratings: not JSON ({exc.msg})") from None
    except RecursionError:
        raise ValueError("ratings: JSON nested too deeply") from None
    if not isinstance(items, list):
        raise ValueError(f"ratings: expected a JSON array, got {type(items).__name__}")
    ratings: dict[str, tuple[str, int, datetime | None]] = {}
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or not isinstance(item.get("paper"), str):
            raise ValueError(f"ratings: item {n} is not an object with a \"paper\"")
        paper = item["paper"]  # a canonical id as stored: kept exactly (a title may end in a space)
        paper_id = paper if paper.startswith(_PAPER_PREFIXES) else canonical_id(paper)
        if not paper_id or len(paper_id) > MAX_PAPER_ID_CHARS:
            raise ValueError(f"ratings: item {n}: {paper[:60]!r} is not a paper id")
        value = item.get("value")
        if value not in (1, -1) or isinstance(value, bool):
            raise ValueError(f"ratings: item {n}: value is 1 (more like this) or -1 (less), not {value!r}")
        at = item.get("at")
        if at is not None and not isinstance(at, str):  # null: the time of the import
            raise ValueError(f"ratings: item {n}: at is a date and time, not {at!r}")
        ratings[paper_id] = (paper_id, value, _time(at, n) if at else None)
    return tuple(ratings.values())


def _time(text: str, n: int) -> datetime:
    """An ISO 8601 time as the export writes it; UTC when it names no zone."""
    try:
        value = datetime.fromisoformat(text)
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # OverflowError: year 1 with a zone east of UTC
        raise ValueError(f"ratings: item {n}: at is not a date and time: {text[:40]!r}") from None
