"""Subject categories of a paper: arXiv's (``cs.CL``, ``hep-ex``, ``astro-ph.CO``) and other
preprint servers' subject names (bioRxiv's ``Plant Biology``), primary first.

Readers follow categories, so what is stored must be a subject class, not any tag a feed
carries: a blog's free tags ("releases", "Snippets") are not. Hence three rules. Our JSON and
CSV name categories in a field of their own: taken as written. A feed entry that is an arXiv
paper (API, listing, or a blog entry linking one) keeps only the tags that are arXiv categories
(the API also lists ACM and MSC classes, such as ``I.2.7``); one that is a DOI paper keeps its
subjects (bioRxiv's ``dc:subject``); any other (a blog post) gets none. arXiv categories are
written the one way arXiv writes them (``CS.cl`` becomes ``cs.CL``), so a reader following
``cs.CL`` finds the paper whatever the source.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

from newsletter.sources import normalize

# Bounds on untrusted input, far above real papers (arXiv cross-lists rarely exceed six).
MAX_CATEGORIES = 20
MAX_CATEGORY_CHARS = 100  # longer is not a subject name: dropped, not cut (half a name is wrong)

# Every arXiv archive, current and merged ones that old papers still carry (``alg-geom``).
_ARCHIVES = (
    "astro-ph cond-mat cs econ eess gr-qc hep-ex hep-lat hep-ph hep-th math math-ph nlin nucl-ex nucl-th "
    "physics q-bio q-fin quant-ph stat "
    "acc-phys adap-org alg-geom ao-sci atom-ph bayes-an chao-dyn chem-ph cmp-lg comp-gas dg-ga funct-an "
    "mtrl-th patt-sol plasm-ph q-alg solv-int supr-con").split()
_ARXIV_CATEGORY_RE = re.compile(
    rf"(?P<archive>{'|'.join(map(re.escape, _ARCHIVES))})(?:\.(?P<subject>[a-z][a-z\-]{{0,24}}))?",
    re.IGNORECASE)
# Legacy listing titles end "(arXiv:2106.00550v2 [math.GR] CROSS LISTED)": the primary category.
_LEGACY_TITLE_RE = re.compile(r"\(arXiv:[^\s)]+\s+\[(?P<category>[^\]\s]+)\]")
# A listing feed's title: "cs.CL updates on arXiv.org" (the feed of one category).
_LISTING_TITLE_RE = re.compile(r"^\s*(?P<category>\S+)\s+updates on arXiv\.org\s*$", re.IGNORECASE)
# bioRxiv and medRxiv subject feeds: "bioRxiv Subject Collection: Plant Biology".
_COLLECTION_TITLE_RE = re.compile(r"\bSubject Collection:\s*(?P<subject>.+?)\s*$", re.IGNORECASE)


def arxiv_category(text: str) -> str | None:
    """``text`` as arXiv writes the category (archive lower-case, a two-letter subject class
    upper-case: ``cs.CL``, ``physics.optics``), or None when it is no arXiv category."""
    return _arxiv_category_cached(text) if len(text) <= 40 else None  # the pattern allows 34 at most


def _arxiv_category(text: str) -> str | None:
    m = _ARXIV_CATEGORY_RE.fullmatch(text)
    if m is None:
        return None
    archive, subject = m.group("archive").lower(), m.group("subject")
    if subject is None:
        return archive
    return f"{archive}.{subject.upper() if len(subject) == 2 else subject.lower()}"


# The archive pattern costs ~0.5 us; a feed names the same few categories on every entry.
_arxiv_category_cached = lru_cache(maxsize=4096)(_arxiv_category)


def clean_categories(values: Iterable[object]) -> tuple[str, ...]:
    """Categories with their text cleaned like any other untrusted text (tags, control
    characters, whitespace), arXiv ones written arXiv's way, repeats (whatever their case) and
    over-long ones dropped, at most ``MAX_CATEGORIES``, in their order: the primary first."""
    kept: dict[str, str] = {}  # case-folded -> as kept, in order
    for value in values:
        if not isinstance(value, str):
            continue
        found = _category(value) if len(value) <= _CACHED_CHARS else _clean_category(value)
        if found is not None and found[1] not in kept:
            kept[found[1]] = found[0]
            if len(kept) == MAX_CATEGORIES:
                break
    return tuple(kept.values())


def _clean_category(value: str) -> tuple[str, str] | None:
    """One category as kept and its case-folded key, or None when it is dropped."""
    text = normalize.clean_text(value)
    if not text or len(text) > MAX_CATEGORY_CHARS:
        return None
    canonical = arxiv_category(text) or text
    return canonical, canonical.casefold()


# A source names few categories, each on many papers: each distinct one is cleaned once
# (~1.5 us, mostly the archive pattern), then found in the cache (~0.1 us). Only short values
# are kept in it, so hostile input cannot fill memory through it.
_CACHED_CHARS = 2 * MAX_CATEGORY_CHARS
_category = lru_cache(maxsize=4096)(_clean_category)


def split_categories(text: str) -> list[str]:
    """Categories from one string: separated by ``;`` if it has one, else by ``,``; a string
    with neither is split on spaces only when every part is an arXiv category (``cs.CL cs.LG``,
    as arXiv's metadata dumps write them), so ``Plant Biology`` stays one subject."""
    for separator in (";", ","):
        if separator in text:
            return text.split(separator)
    parts = text.split()
    if len(parts) > 1 and all(arxiv_category(p) for p in parts):
        return parts
    return [text]


def from_value(value: object) -> list[object]:
    """Categories given as a list, or as one string (see ``split_categories``); anything else
    (a number, an object) gives none."""
    if isinstance(value, str):
        return list(split_categories(value))
    if isinstance(value, list):
        return value
    return []


def of_feed_entry(paper_id: str | None, terms: Iterable[object]) -> list[str]:
    """The tags of a feed entry that are categories: an arXiv paper's arXiv categories, every
    tag of a DOI paper (bioRxiv's ``dc:subject``), none of anything else (a blog post, whose
    tags are free words)."""
    if paper_id is None:
        return []
    if paper_id.startswith("arxiv:"):
        return [t for t in terms if isinstance(t, str) and arxiv_category(t.strip())]
    if paper_id.startswith("doi:"):
        return [t for t in terms if isinstance(t, str)]
    return []


def legacy_title_category(title: object) -> str | None:
    """The primary category in a legacy arXiv listing title, ``... (arXiv:ID [hep-ex])``."""
    if not isinstance(title, str) or "(arXiv:" not in title:
        return None
    m = _LEGACY_TITLE_RE.search(title)
    return m.group("category") if m else None


def feed_category(feed_title: object) -> str | None:
    """The category every entry of a feed is in, told by the feed's title: an arXiv listing of
    one category (``hep-ex updates on arXiv.org``) or a bioRxiv subject collection
    (``bioRxiv Subject Collection: Plant Biology``)."""
    if not isinstance(feed_title, str):
        return None
    m = _LISTING_TITLE_RE.match(feed_title)
    if m:
        return arxiv_category(m.group("category"))
    m = _COLLECTION_TITLE_RE.search(feed_title)
    return m.group("subject") if m else None
