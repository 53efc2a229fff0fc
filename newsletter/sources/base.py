"""What every reader returns, and the one function that turns raw fields into a ``Paper``.

Readers (text, JSON, CSV, feeds) only pick fields out of their format; ``build_paper`` does the
rest the same way for all of them: clean text, canonical id, arXiv links, UTC time, and the
decision that an entry without a title or a link is skipped (and counted), never stored
half-empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from newsletter.models import Paper
from newsletter.sources import normalize
from newsletter.sources.categories import clean_categories

MAX_SCORE = 2**63 - 1
# Longer than any real one: a title, abstract or name past these is cut on a word (with an
# ellipsis) rather than stored whole, so a hostile source cannot put megabytes into every issue.
MAX_TITLE_CHARS = 500
MAX_ABSTRACT_CHARS = 20_000
MAX_NAME_CHARS = 200
MAX_AUTHORS = 5_000


def bounded(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters cut back to a word and ended with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "\u2026"


@dataclass
class ParsedSource:
    """The papers one source yielded, the entries it skipped (with why) and warnings."""

    name: str
    papers: list[Paper] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    format: str = ""

    def add(self, result: "Paper | str", where: str) -> None:
        if isinstance(result, Paper):
            self.papers.append(result)
        else:
            self.skipped.append(f"{where}: {result}")


def _link(value: object) -> str | None:
    if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
        return value.strip()
    return None


def _names(authors: Iterable[object]) -> tuple[str, ...]:
    """Clean author names, without repeats, in order, at most ``MAX_AUTHORS``.

    Most lists are plain ASCII names already clean: one check of all of them joined by spaces
    says so (a name empty, or with a space at either end, makes a double space or an outer
    one), which costs a fraction of cleaning them one by one and gives the same names.
    """
    if type(authors) in (list, tuple) and 0 < len(authors) <= MAX_AUTHORS:  # type: ignore[arg-type]
        try:
            joined = " ".join(authors)  # type: ignore[arg-type]
        except TypeError:  # not all strings
            joined = ""
        if (joined and normalize.is_clean(joined)
                and (len(joined) <= MAX_NAME_CHARS or max(map(len, authors)) <= MAX_NAME_CHARS)):  # type: ignore[arg-type]
            return tuple(dict.fromkeys(authors))  # type: ignore[arg-type]
    names: dict[str, None] = {}  # insertion-ordered, without repeats
    for a in authors:
        name = bounded(normalize.clean_text(a), MAX_NAME_CHARS) if isinstance(a, str) else ""
        if name:
            names[name] = None
            if len(names) == MAX_AUTHORS:
                break
    return tuple(names)


def _score(score: object) -> int | None:
    if type(score) is int:
        return score if -MAX_SCORE <= score <= MAX_SCORE else None
    try:
        score_i = int(score) if score is not None and score != "" and not isinstance(score, bool) else None  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None
    if score_i is not None and not -MAX_SCORE <= score_i <= MAX_SCORE:
        return None  # beyond what the store's integer holds: not a real score
    return score_i


_new_instance = object.__new__
_set_attribute = object.__setattr__


def _paper(values: dict[str, Any]) -> Paper:
    """``Paper(**values)``, for ``values`` naming every field (a test checks ``build_paper``'s).

    ``Paper`` is a frozen dataclass: its constructor sets each of its 15 fields through
    ``object.__setattr__``, ~1.7 us a paper, a tenth of a JSON paper's whole normalisation. A
    new instance given its attribute dict is the same value (``==``, hash, repr) for ~0.3 us.
    """
    paper = _new_instance(Paper)
    _set_attribute(paper, "__dict__", values)  # the dict itself: one object fewer than update()
    return paper


# Long: one flat sequence of field-by-field steps, each a line; split, it would only pass them around.
def build_paper(
    *,
    title: object,
    url: object = None,
    ids: Iterable[object] = (),
    authors: Iterable[object] = (),
    abstract: object = None,
    pdf_url: object = None,
    code_url: object = None,
    thumbnail_url: object = None,
    score: object = None,
    published_at: object = None,
    page_url: object = None,
    categories: Iterable[object] = (),
    source: str,
) -> Paper | str:
    """A normalised ``Paper``, or the reason (a string) the entry is skipped.

    ``ids`` are extra identifiers (an arXiv id, a DOI, a guid) tried before ``url`` for the
    canonical id; the abstract page of an arXiv paper is always ``https://arxiv.org/abs/ID``.
    ``categories`` are subject classes, primary first (``categories.clean_categories``).
    """
    clean = bounded(normalize.clean_title(title if isinstance(title, str) else None), MAX_TITLE_CHARS)
    if not clean:
        return "no title"
    url_s = _link(url) if url else None
    # Blank ones are left to canonical_id, which skips them.
    candidates = [i if type(i) is str else str(i) for i in ids if isinstance(i, (str, int))]
    paper_id = normalize.canonical_id(url_s, *candidates)
    if paper_id is None:
        return "no link or id"
    pdf = _link(pdf_url) if pdf_url else None
    if paper_id.startswith("arxiv:"):
        url_s, pdf = normalize.arxiv_links(paper_id[6:])
    elif url_s is None:
        if paper_id.startswith("doi:"):
            url_s = f"https://doi.org/{paper_id[4:]}"
        else:
            url_s = paper_id[4:]
    return _paper({
        "id": paper_id,
        "title": clean,
        "url": url_s,
        "authors": _names(authors) if authors else (),
        "abstract": bounded(normalize.clean_abstract(abstract if isinstance(abstract, str) else None),
                            MAX_ABSTRACT_CHARS),
        "pdf_url": pdf,
        "code_url": _link(code_url) if code_url else None,
        "thumbnail_url": _link(thumbnail_url) if thumbnail_url else None,
        "score": _score(score) if score is not None else None,
        "published_at": normalize.utc_datetime(published_at) if published_at else None,
        "first_seen_at": None,
        "last_seen_at": None,
        "sources": (source,),
        "page_url": _link(page_url) if page_url else None,
        "categories": clean_categories(categories) if categories else (),
    })
