"""A plain-text page of trending papers: a short header, then "title, blank line, abstract".

Such pages (copied from a trending-papers site) have no ids or links, so the header is told apart
from papers by shape: a paper is a one-line paragraph of title length followed by a paragraph
long enough to be an abstract. Header lines ("Subscribe", "Mar 11") are short lines followed by
short lines. A paper whose title or abstract mentions an arXiv id or URL gets that id; otherwise
its id is ``title:<title folded>`` and its link an arXiv title search, so the reader can find it.
"""

from __future__ import annotations

import re
from urllib.parse import quote_plus

from newsletter.errors import SourceError
from newsletter.models import Paper
from newsletter.sources import normalize
from newsletter.sources.base import ParsedSource, build_paper

MAX_TITLE_CHARS = 300
MIN_ABSTRACT_CHARS = 120

_ID_OR_URL_RE = re.compile(
    r"(https?://\S+|arXiv:\s*\d{4}\.\d{4,5}(?:v\d+)?|\b\d{4}\.\d{4,5}(?:v\d+)?\b)", re.IGNORECASE
)


def _paragraphs(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each blank-line separated paragraph."""
    out: list[tuple[int, str]] = []
    start, lines = 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not lines:
                start = number
            lines.append(line.strip())
        elif lines:
            out.append((start, "\n".join(lines)))
            lines = []
    if lines:
        out.append((start, "\n".join(lines)))
    return out


def _find_ids(*texts: str) -> list[str]:
    found: list[str] = []
    for text in texts:
        for m in _ID_OR_URL_RE.finditer(text):
            candidate = m.group(1).rstrip(".,;)")
            cid = normalize.canonical_id(candidate) or ""
            if cid.startswith(("arxiv:", "doi:")):
                found.append(candidate)
    return found


def parse_text(text: str, source: str) -> ParsedSource:
    result = ParsedSource(source, format="text page")
    paragraphs = _paragraphs(text)
    i = 0
    while i < len(paragraphs):
        line, title = paragraphs[i]
        nxt = paragraphs[i + 1][1] if i + 1 < len(paragraphs) else ""
        is_title = "\n" not in title and len(title) <= MAX_TITLE_CHARS
        if is_title and len(nxt) >= MIN_ABSTRACT_CHARS and len(nxt) > len(title):
            abstract = nxt
            ids = _find_ids(title, abstract)
            paper: Paper | str
            if ids:
                paper = build_paper(title=title, ids=ids, abstract=abstract, source=source)
            else:
                folded = normalize.clean_title(title)
                paper = build_paper(
                    title=title,
                    url=f"https://arxiv.org/search/?searchtype=title&query={quote_plus(folded)}",
                    abstract=abstract, source=source)
                if isinstance(paper, Paper):
                    paper = _with_title_id(paper, folded)
            result.add(paper, f"line {line}")
            i += 2
        else:
            i += 1  # header line, or a stray paragraph: not a paper
    if not result.papers and text.strip():
        raise SourceError("no papers found: expected a header, then title line, blank line, abstract paragraph", where=source)
    return result


def _with_title_id(paper: Paper, folded: str) -> Paper:
    from dataclasses import replace

    return replace(paper, id="title:" + folded.casefold())
