"""Checking and merging what a reader says they follow, from any door: the CLI, the preferences
page, an import.

Every field is untrusted text that ends up in the store, in a page and in the ranking, so each is
cleaned to one line, bounded, and refused with the entry that is wrong and why. A change names
only the fields it sets (``None`` keeps the current value; an empty value clears it).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Iterable

from newsletter.errors import SubscriberError
from newsletter.models import PROFILE_SIZE_RANGE, ReaderProfile
from newsletter.sources.categories import arxiv_category
from newsletter.sources.normalize import canonical_id
from newsletter.subscribers.addresses import clean_name, shorten

MAX_INTERESTS_CHARS = 1_000
MAX_ENTRIES = 50            # categories, authors, mutes each
MAX_LIKES = 500             # a Zotero library export can be long; only ids are kept
MAX_ENTRY_CHARS = 100
_SPLIT_RE = re.compile(r"[;\n]|,(?![^()]*\))")
# What separates entries in a list as well: no entry ever holds one, so a list written out joined
# by "; " (an export) reads back entry for entry, commas inside entries ("Dao, Tri") and all.
_LIST_SPLIT_RE = re.compile(r"[;\n]")
# arXiv's own DOIs (DataCite, 10.48550/arXiv.ID) name an arXiv paper: kept as its arXiv id, the
# id it has in the store.
_ARXIV_DOI_PREFIX = "doi:10.48550/arxiv."


class ProfileError(SubscriberError):
    """A profile field that cannot be taken, with the entry and why."""


def split_entries(value: str | Iterable[str]) -> list[str]:
    """``"a; b, c"`` or ``["a", "b"]`` -> cleaned non-empty entries (in text ``;``, ``,`` and
    line breaks separate; in a list, ``;`` and line breaks still do, a comma does not);
    duplicates dropped case-insensitively, first spelling kept."""
    if isinstance(value, str):
        items = _SPLIT_RE.split(value)
    else:
        items = [part for item in value for part in _LIST_SPLIT_RE.split(str(item))]
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        entry = clean_name(str(item))
        if entry and entry.casefold() not in seen:
            seen.add(entry.casefold())
            out.append(entry)
    return out


def _bounded(entries: list[str], what: str, limit: int = MAX_ENTRIES) -> tuple[str, ...]:
    if len(entries) > limit:
        raise ProfileError(f"{what}: at most {limit} entries, got {len(entries):,}")
    for entry in entries:
        if len(entry) > MAX_ENTRY_CHARS:
            raise ProfileError(f"{what}: {shorten(entry, 60)!r} is longer than {MAX_ENTRY_CHARS} characters")
    return tuple(entries)


def clean_interests(text: str) -> str:
    """Free text on one line, topics separated by ``;`` or line breaks (a comma stays inside a
    topic: "speech recognition, mostly ASR"), bounded."""
    cleaned = "; ".join(split_entries(re.split(r"[;\n]", text)))
    if len(cleaned) > MAX_INTERESTS_CHARS:
        raise ProfileError(f"interests: longer than {MAX_INTERESTS_CHARS:,} characters ({len(cleaned):,})")
    return cleaned


def clean_categories(value: str | Iterable[str]) -> tuple[str, ...]:
    """arXiv categories (``cs.CL``, ``hep-ph``): anything else is refused by name."""
    entries = split_entries(value.replace(" ", ",") if isinstance(value, str) else value)
    found: list[str] = []
    for entry in entries:
        category = arxiv_category(entry)  # the check ingest makes: one list of arXiv's archives
        if category is None:
            raise ProfileError(f"categories: {shorten(entry, 60)!r} is not an arXiv category such as cs.CL or hep-ph")
        if category not in found:
            found.append(category)
    return _bounded(found, "categories")


def split_likes(text: str) -> list[str]:
    """``"2403.05525, 10.1000/xyz 2401.00001"`` -> its entries, not yet checked (commas, ``;``,
    spaces and line breaks separate: no id holds one)."""
    return split_entries(text.replace(" ", ","))


def clean_likes(value: str | Iterable[str]) -> tuple[str, ...]:
    """Liked papers as canonical ids: arXiv ids or URLs, DOIs (``10.x/y``, doi.org links)."""
    entries = split_likes(value) if isinstance(value, str) else split_entries(value)
    ids: list[str] = []
    for entry in entries:
        found = liked_id(entry)
        if found is None:
            raise ProfileError(f"likes: {shorten(entry, 60)!r} is not an arXiv id or a DOI")
        if found not in ids:
            ids.append(found)
    return _bounded(ids, "likes", MAX_LIKES)


def liked_id(text: str) -> str | None:
    """The canonical id of a liked paper (``arxiv:...`` or ``doi:...``; arXiv's own DOIs become
    the arXiv id) named by ``text``, or None when it names no arXiv paper or DOI."""
    found = canonical_id(text)
    if found is None or not found.startswith(("arxiv:", "doi:")):
        return None
    if found.startswith(_ARXIV_DOI_PREFIX):
        return canonical_id(found[len(_ARXIV_DOI_PREFIX):])
    return found


def clean_size(value: int | str | None) -> int | None:
    """How many papers the reader wants, within ``PROFILE_SIZE_RANGE``; None or "" for the default."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    low, high = PROFILE_SIZE_RANGE
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ProfileError(f"size: expected a whole number from {low} to {high}, got {shorten(str(value), 40)!r}") from None
    if not low <= size <= high:
        raise ProfileError(f"size: expected a whole number from {low} to {high}, got {size}")
    return size


def merge_profile(current: ReaderProfile, *, interests: str | None = None,
                  categories: str | Iterable[str] | None = None, authors: str | Iterable[str] | None = None,
                  mutes: str | Iterable[str] | None = None, likes: str | Iterable[str] | None = None,
                  size: int | str | None = None, clear_size: bool = False) -> ReaderProfile:
    """``current`` with the given fields checked and replaced (``None``: keep). Raises
    ``ProfileError`` naming the first bad entry; nothing is half-applied."""
    changes: dict[str, object] = {}
    if interests is not None:
        changes["interests"] = clean_interests(interests)
    if categories is not None:
        changes["categories"] = clean_categories(categories)
    if authors is not None:
        changes["authors"] = _bounded(split_entries(authors), "authors")
    if mutes is not None:
        changes["mutes"] = _bounded(split_entries(mutes), "mutes")
    if likes is not None:
        changes["likes"] = clean_likes(likes)
    if size is not None or clear_size:
        changes["size"] = None if clear_size else clean_size(size)
    return replace(current, **changes)
