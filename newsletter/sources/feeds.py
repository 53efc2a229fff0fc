"""RSS 0.9x/1.0/2.0 and Atom through feedparser, from bytes we fetched ourselves.

feedparser never touches the network here: the fetcher (``fetch.py``) owns timeouts, size limits
and conditional GET, and hands the bytes over. feedparser does not expand DOCTYPE entities
(it rewrites the DOCTYPE first) and expat caps entity amplification, so an entity bomb parses in
bounded time; the size cap is applied before we get here. Nesting is the one thing neither
bounds: feedparser keeps a stack per open element, so a few megabytes of ``<a><a><a>...`` take
tens of seconds and hundreds of megabytes. libxml2 (through lxml, without entities, DTDs or
network) stops at 256 levels in milliseconds, so it looks first; no real feed nests that deep.

A document feedparser flags as malformed (``bozo``) is still ingested when entries were
recovered, with a warning; with nothing recovered it is an error. An empty, well-formed feed is
simply empty.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin

import feedparser
from lxml import etree

from newsletter.errors import SourceError
from newsletter.sources import categories, normalize
from newsletter.sources.base import ParsedSource, build_paper

# "First Author, Second Author — abstract": the description shape of Hugging Face paper feeds.
_AUTHORS_PREFIX_RE = re.compile(r"^(?P<authors>[^—\n]{1,600}?)\s+—\s+(?P<abstract>.+)$", re.DOTALL)


def _describe(exc: object) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


def _authors(entry: Any) -> list[str]:
    names: list[str] = []
    for author in entry.get("authors") or []:
        name = author.get("name") if isinstance(author, dict) else None
        if name:
            names.extend(normalize.split_authors(name))
    if not names and entry.get("author"):
        names = normalize.split_authors(entry["author"])
    return names


def _abstract(entry: Any) -> str:
    summary = entry.get("summary")
    if summary:
        return summary
    for content in entry.get("content") or []:
        if content.get("value"):
            return content["value"]
    return ""


def _link_of(entry: Any, base: str | None) -> str | None:
    link = entry.get("link")
    if not link:
        for candidate in entry.get("links") or []:
            if candidate.get("rel", "alternate") == "alternate" and candidate.get("href"):
                link = candidate["href"]
                break
    if link and base and not link.lower().startswith(("http://", "https://")):
        link = urljoin(base, link)
    return link


def _pdf_of(entry: Any) -> str | None:
    for link in entry.get("links") or []:
        if link.get("type") == "application/pdf" or link.get("title") == "pdf":
            return link.get("href")
    return None


def _thumbnail_of(entry: Any) -> str | None:
    for thumb in entry.get("media_thumbnail") or []:
        if thumb.get("url"):
            return thumb["url"]
    for link in entry.get("links") or []:
        if link.get("rel") == "enclosure" and str(link.get("type", "")).startswith("image/"):
            return link.get("href")
    return None


def _categories_of(entry: Any, paper_id: str | None, feed_category: str | None) -> list[str]:
    """An entry's categories, primary first: the arXiv API's ``arxiv:primary_category``, the
    legacy listing title's ``[hep-ex]``, the entry's ``<category>`` / ``dc:subject`` tags, then
    the category of the whole feed (``categories.feed_category``); only those that are
    categories for this kind of paper (``categories.of_feed_entry``)."""
    primary = entry.get("arxiv_primary_category")
    terms = [primary.get("term") if isinstance(primary, dict) else None,
             categories.legacy_title_category(entry.get("title"))]
    terms += [tag.get("term") for tag in entry.get("tags") or () if isinstance(tag, dict)]
    terms.append(feed_category)
    return categories.of_feed_entry(paper_id, terms)


def _is_absolute(url: object) -> bool:
    return isinstance(url, str) and url.strip().lower().startswith(("http://", "https://"))


def _base_url(parsed: Any, location: str | None) -> str | None:
    """Where relative links in the feed point from: the URL we fetched, else the feed's own.

    A feed read from a file has no URL of its own, so the feed has to say where it lives: its
    ``rel="self"`` link (the feed's address, what a relative link is relative to), else its
    ``alternate`` link (the site), else an id that is an http(s) URL. feedparser has already
    applied any ``xml:base`` to these hrefs (and to the entries' links), so an absolute
    ``xml:base`` on the root gives a base here too.
    """
    if _is_absolute(location):
        return location
    links = [link for link in parsed.feed.get("links") or [] if _is_absolute(link.get("href"))]
    for rel in ("self", "alternate"):
        for link in links:
            if link.get("rel", "alternate") == rel:
                return link["href"].strip()
    if links:
        return links[0]["href"].strip()
    for candidate in (parsed.feed.get("link"), parsed.feed.get("id")):
        if _is_absolute(candidate):
            return candidate.strip()
    return None


def _refuse_deep_nesting(data: bytes, source: str) -> None:
    """``SourceError`` when the document nests elements deeper than libxml2's default limit (256).

    Costs ~2 % of feedparser's time on a real feed; other XML faults are left for feedparser
    to judge (it recovers entries from many of them).
    """
    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, load_dtd=False)
    try:
        etree.fromstring(data, parser)
    except (etree.Error, ValueError):
        pass
    if any("Excessive depth" in entry.message for entry in parser.error_log):
        raise SourceError("refused: elements nested more than 256 deep (no feed is; a hostile or broken document)",
                          where=source)


def parse_feed(data: bytes, source: str, location: str | None = None) -> ParsedSource:
    """Papers from an RSS/Atom document; relative links are resolved against ``location`` (the
    URL fetched) or, for a file, the base the feed gives itself (see ``_base_url``)."""
    _refuse_deep_nesting(data, source)
    parsed = feedparser.parse(data, sanitize_html=True, resolve_relative_uris=False)
    result = ParsedSource(source, format=f"feed ({parsed.get('version') or 'unknown'})")
    entries = parsed.entries
    if parsed.bozo:
        exc = parsed.get("bozo_exception")
        is_encoding_only = isinstance(exc, (feedparser.CharacterEncodingOverride,
                                            feedparser.NonXMLContentType))
        if not entries and not is_encoding_only:
            raise SourceError(f"not a readable feed: {_describe(exc)}", where=source)
        if not is_encoding_only or entries:
            result.warnings.append(f"malformed feed, {len(entries)} entries recovered: {_describe(exc)}")
    elif not entries and not parsed.get("version"):
        raise SourceError("not a feed: no RSS or Atom root element", where=source)

    base = _base_url(parsed, location)
    # In Atom an entry without authors has its feed's (RFC 4287 4.2.1); RSS has no such rule.
    feed_authors = _authors(parsed.feed) if str(parsed.get("version", "")).startswith("atom") else []
    feed_category = categories.feed_category(parsed.feed.get("title"))
    for number, entry in enumerate(entries, start=1):
        guid = entry.get("id") or ""
        link = _link_of(entry, base)
        if "arxiv.org/api/errors" in guid or "arxiv.org/api/errors" in (link or ""):
            # The arXiv API answers a bad query with a feed whose one entry is the error.
            raise SourceError(f"the arXiv API reported an error: {normalize.clean_text(entry.get('summary')) or guid}",
                              where=source)
        ids = [guid, entry.get("arxiv_doi"), entry.get("dc_identifier"), entry.get("prism_doi")]
        authors = _authors(entry)
        abstract = _abstract(entry)
        paper_id = normalize.canonical_id(*[i for i in ids if i], link)
        if paper_id is None and link and base is None and not _is_absolute(link):
            result.add(f"relative link {link.strip()[:80]!r} and no absolute base to resolve it against "
                       "(no xml:base or http(s) self/alternate link in the feed); read the feed from its URL, "
                       "or give the address it was saved from (newsletter ingest --base-url URL)",
                       f"entry {number}")
            continue
        if not authors and paper_id and paper_id.startswith("arxiv:"):
            m = _AUTHORS_PREFIX_RE.match(normalize.clean_text(abstract))
            if m and m.group("authors").count(" ") <= 4 * (m.group("authors").count(",") + 1):
                authors = normalize.split_authors(m.group("authors"))
                abstract = m.group("abstract")
        authors = authors or feed_authors  # after the abstract's own author prefix, which is closer
        paper = build_paper(
            title=entry.get("title"),
            url=link,
            ids=[i for i in ids if i],
            authors=authors,
            abstract=abstract,
            pdf_url=_pdf_of(entry),
            thumbnail_url=_thumbnail_of(entry),
            published_at=entry.get("published_parsed") or entry.get("updated_parsed"),
            categories=_categories_of(entry, paper_id, feed_category),
            source=source,
        )
        result.add(paper, f"entry {number}")
    return result
