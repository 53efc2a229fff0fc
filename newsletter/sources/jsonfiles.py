"""JSON sources: our own list of papers, the Hugging Face daily papers API, and JSON Feed 1.x.

feedparser does not read JSON Feed, so it is read here with ``json``. The shape decides the
format: a ``version`` naming jsonfeed.org is a JSON Feed; a list whose items hold a ``paper``
object is the Hugging Face ``/api/daily_papers`` response; anything else is our own format (a
list of papers, or ``{"papers": [...]}``), documented in README.md.
"""

from __future__ import annotations

import json
import re
from typing import Any

from newsletter.errors import SourceError
from newsletter.models import Paper
from newsletter.sources import categories, normalize
from newsletter.sources.base import ParsedSource, build_paper

HF_PAPER_PAGE = "https://huggingface.co/papers/{id}"


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    """The first value present and not empty; 0 and false are values."""
    for key in keys:
        value = mapping.get(key)
        # Truthiness first: comparing a long string with "", [] and {} costs more than the rest.
        if value or (value is not None and not isinstance(value, (str, list, dict))):
            return value
    return None


def _names(value: Any) -> list[str]:
    """Authors as a list of strings or of ``{"name": ...}``, or one ``;``-separated string."""
    if isinstance(value, str):
        return [p.strip() for p in value.split(";") if p.strip()]
    if not isinstance(value, list):
        return []  # a number, true or an object where names belong: no names, not a crash
    for item in value:
        if type(item) is not str:
            break
    else:
        return value  # the common case: names only
    names: list[str] = []
    for item in value:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict) and isinstance(item.get("name"), str) and not item.get("hidden"):
            names.append(item["name"])
    return names


def load_json(text: str, source: str) -> Any:
    try:
        data = json.loads(text)
        if "\\" in text and _SURROGATE_ESCAPE.search(text):  # memchr first: most files escape nothing
            data = _without_lone_surrogates(data)
    except json.JSONDecodeError as exc:
        raise SourceError(f"not valid JSON: {exc.msg} (column {exc.colno})", where=source, line=exc.lineno) from None
    except RecursionError:
        raise SourceError("not readable JSON: nested too deeply", where=source) from None
    return data


# "\ud800" alone is legal JSON but no UTF-8 text: one such character in an id or a link would
# make the whole source unstorable. Only files that escape a surrogate at all are walked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _without_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    return value


def parse_json(text: str, source: str) -> ParsedSource:
    data = load_json(text, source)
    if isinstance(data, dict) and str(data.get("version", "")).startswith("https://jsonfeed.org/version/"):
        return _json_feed(data, source)
    if isinstance(data, dict) and isinstance(data.get("papers"), list):
        return _our_list(data["papers"], source)
    if isinstance(data, list):
        if data and all(isinstance(item, dict) and isinstance(item.get("paper"), dict) for item in data):
            return _hf_daily_papers(data, source)
        return _our_list(data, source)
    raise SourceError("JSON of an unknown shape: expected a list of papers, {\"papers\": [...]}, "
                      "a Hugging Face daily papers response or a JSON Feed", where=source)


def _our_list(items: list[Any], source: str) -> ParsedSource:
    """Our format; also takes the keys of common community scrapes (``paper_url``, ``details``)."""
    result = ParsedSource(source, format="JSON list")
    papers, skipped = result.papers, result.skipped
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            skipped.append(f"entry {number}: not an object")
            continue
        paper = _plain_item(item, source) if item.keys().isdisjoint(_OTHER_KEYS) else _item(item, source)
        if type(paper) is str:
            skipped.append(f"entry {number}: {paper}")
        else:
            papers.append(paper)  # type: ignore[arg-type]
    return result


# Keys that only ``_item`` reads: alternative names and community scrapes' ``details``.
_OTHER_KEYS = frozenset(("link", "paper_url", "arxiv_id", "doi", "summary", "github", "thumbnail", "upvotes",
                         "stars", "published", "date", "details"))


def _item(item: dict[str, Any], source: str) -> Paper | str:
    details = item.get("details") if isinstance(item.get("details"), dict) else {}
    github = details.get("github_links") or []
    return build_paper(
        title=_first(item, "title") or details.get("title"),
        url=_first(item, "url", "link", "paper_url") or details.get("arxiv_page_url"),
        ids=[x for x in (item.get("id"), item.get("arxiv_id"), item.get("doi"),
                         details.get("arxiv_page_url")) if x],
        authors=_names(item.get("authors")),
        abstract=_first(item, "abstract", "summary") or details.get("abstract"),
        pdf_url=_first(item, "pdf_url") or details.get("pdf_url"),
        code_url=_first(item, "code_url", "github") or (github[0] if github and isinstance(github, list) else None),
        thumbnail_url=_first(item, "thumbnail_url", "thumbnail"),
        score=_first(item, "score", "upvotes", "stars"),
        published_at=_first(item, "published_at", "published", "date"),
        page_url=_first(item, "page_url") or details.get("page_url"),
        categories=categories.from_value(item.get("categories")),
        source=source,
    )


def _plain_item(item: dict[str, Any], source: str) -> Paper | str:
    """``_item`` for an item without ``_OTHER_KEYS`` (as ``newsletter papers --json`` writes
    them): each field is one lookup. Where ``_first`` would pass None for an empty string, list
    or object, this passes the empty value, which ``build_paper`` takes for missing alike; a
    test checks both give the same papers. Half the time of ``_item`` per paper."""
    get = item.get
    id_ = get("id")
    return build_paper(
        title=get("title"), url=get("url"), ids=[id_] if id_ else (), authors=_names(get("authors")),
        abstract=get("abstract"), pdf_url=get("pdf_url"), code_url=get("code_url"),
        thumbnail_url=get("thumbnail_url"), score=get("score"), published_at=get("published_at"),
        page_url=get("page_url"), categories=categories.from_value(get("categories")), source=source,
    )


def _hf_daily_papers(items: list[dict[str, Any]], source: str) -> ParsedSource:
    """``/api/daily_papers``: ``paper.id`` is the arXiv id, ``paper.upvotes`` the score."""
    result = ParsedSource(source, format="Hugging Face daily papers")
    for number, item in enumerate(items, start=1):
        paper = item["paper"]
        media_urls = paper.get("mediaUrls") or item.get("mediaUrls")
        media = [u for u in (media_urls if isinstance(media_urls, list) else [])
                 if isinstance(u, str) and u.lower().rsplit(".", 1)[-1] in ("png", "jpg", "jpeg", "gif", "webp")]
        hf_id = paper.get("id")
        result.add(build_paper(
            title=_first(paper, "title") or item.get("title"),
            ids=[hf_id] if isinstance(hf_id, str) else [],
            authors=_names(paper.get("authors")),
            abstract=_first(paper, "summary") or item.get("summary"),
            code_url=_first(paper, "githubRepo"),
            thumbnail_url=item.get("thumbnail") or (media[0] if media else None),
            score=paper.get("upvotes"),
            published_at=_first(paper, "publishedAt") or item.get("publishedAt"),
            page_url=HF_PAPER_PAGE.format(id=hf_id) if isinstance(hf_id, str) and hf_id else None,
            source=source,
        ), f"entry {number}")
    return result


def _json_feed(data: dict[str, Any], source: str) -> ParsedSource:
    """JSON Feed 1.0/1.1: ``external_url`` (the thing linked to) before ``url`` (the post)."""
    result = ParsedSource(source, format="JSON Feed")
    feed_authors = _names(data.get("authors")) or _names([data["author"]] if isinstance(data.get("author"), dict) else [])
    items = data.get("items")
    if not isinstance(items, list):
        raise SourceError("JSON Feed without an items list", where=source)
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            result.skipped.append(f"item {number}: not an object")
            continue
        authors = _names(item.get("authors")) or _names([item["author"]] if isinstance(item.get("author"), dict) else [])
        url = _first(item, "external_url", "url")
        ids = [x for x in (item.get("id"),) if isinstance(x, str)]
        tags = item.get("tags")
        paper_id = normalize.canonical_id(url if isinstance(url, str) else None, *ids) if tags else None
        result.add(build_paper(
            title=item.get("title"),
            url=url,
            ids=ids,
            authors=authors or feed_authors,
            abstract=_first(item, "summary", "content_text", "content_html"),
            thumbnail_url=_first(item, "image", "banner_image"),
            published_at=_first(item, "date_published", "date_modified"),
            categories=categories.of_feed_entry(paper_id, tags if isinstance(tags, list) else []),
            source=source,
        ), f"item {number}")
    return result
