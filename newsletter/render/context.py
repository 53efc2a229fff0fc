"""What the templates see: papers shaped for reading, and the issue's labels.

Everything here is computed once per issue. Untrusted text (titles, authors, abstracts) is
folded to single spaces (arXiv titles carry newlines and runs of spaces) but *not* escaped:
escaping is the template's job (autoescape), so the text template gets the plain characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timezone
from email.utils import parseaddr
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

from newsletter.config import Config
from newsletter.models import Issue, Paper
from newsletter.render import placeholders

_WHITESPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")
# A full stop after these ends an abbreviation, not a sentence: abstracts are full of them.
_ABBREVIATION = re.compile(r"(?:\b(?:e\.g|i\.e|et al|cf|vs|viz|approx|resp|Fig|Figs|Eq|Eqs|Sec|Secs|Ref|Refs|Tab|"
                           r"Thm|Def|Prop|No|Dr|Prof|Mr|Ms|Mrs|St))\.$")
_MAX_AUTHORS = 3
_EXCERPT_MAX_CHARS = 420


def fold(text: str | None) -> str:
    """Whitespace folded to single spaces, tokens defused."""
    return placeholders.defuse_tokens(_WHITESPACE.sub(" ", text or "").strip())


def shorten_authors(authors: tuple[str, ...] | list[str], limit: int = _MAX_AUTHORS) -> str:
    """``A, B, C`` or ``A, B, C et al.`` past ``limit`` names."""
    names = [fold(a) for a in authors if fold(a)]
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + " et al."


def split_sentences(text: str) -> list[str]:
    """``text`` cut after each sentence's closing ``.``, ``!`` or ``?``; a stop that ends an
    abbreviation ("et al.", "e.g.", "Fig.") does not end the sentence."""
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(text):
        if sentences and _ABBREVIATION.search(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return sentences


def excerpt(abstract: str, *, sentences: int = 3, max_chars: int = _EXCERPT_MAX_CHARS) -> str:
    """The first two or three sentences of the abstract, cut on a word past ``max_chars``."""
    text = fold(abstract)
    if not text:
        return ""
    parts = split_sentences(text)
    chosen = ""
    for part in parts[:sentences]:
        candidate = f"{chosen} {part}".strip()
        if chosen and len(candidate) > max_chars:
            break
        chosen = candidate
    if len(chosen) > max_chars:
        cut = chosen[:max_chars].rsplit(" ", 1)[0].rstrip(",;:")
        chosen = cut + "\u2026"
    elif len(chosen) < len(text):
        chosen = chosen if chosen.endswith((".", "!", "?")) else chosen + "\u2026"
    return chosen


def shorten(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return text[:max_chars].rsplit(" ", 1)[0].rstrip(",;:") + "\u2026"


def https_or_none(url: str | None) -> str | None:
    """Only absolute http(s) links reach the email; anything else (``javascript:``, relative
    paths from a careless feed) is dropped rather than sent. So is a link that holds one of the
    per-subscriber tokens: filled in, it would carry each reader's address or unsubscribe link
    to whoever wrote the feed (an image would do it as soon as the mail is opened)."""
    url = (url or "").strip()
    if placeholders.has_token(url):
        return None
    return url if re.match(r"^https?://[^\s<>\"']+$", url) else None


@dataclass(frozen=True)
class PaperView:
    id: str
    title: str
    title_short: str
    url: str | None
    authors: str
    excerpt: str
    score: int | None
    pdf_url: str | None
    code_url: str | None
    page_url: str | None
    thumbnail_url: str | None


def paper_view(paper: Paper) -> PaperView:
    title = fold(paper.title or paper.id)
    thumb = https_or_none(paper.thumbnail_url)
    url = https_or_none(paper.url)
    if url is None and paper.id.startswith("arxiv:"):
        url = f"https://arxiv.org/abs/{paper.id.split(':', 1)[1]}"
    return PaperView(
        id=fold(paper.id), title=title, title_short=shorten(title, 90), url=url,
        authors=shorten_authors(paper.authors), excerpt=excerpt(paper.abstract), score=paper.score,
        pdf_url=https_or_none(paper.pdf_url), code_url=https_or_none(paper.code_url),
        page_url=https_or_none(getattr(paper, "page_url", None)),
        thumbnail_url=thumb if thumb and thumb.startswith("https://") else None,
    )


def _markdown() -> MarkdownIt:
    # html=False: raw HTML in the note is shown as text, never passed through.
    return MarkdownIt("commonmark", {"html": False, "typographer": False})


def editor_note_html(markdown: str) -> Markup:
    """The note as HTML; headings move one level down so the issue keeps a single <h1>."""
    if not markdown.strip():
        return Markup("")
    md = _markdown()
    tokens = md.parse(placeholders.defuse_tokens(markdown))
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1]) + 1)}"
    return Markup(md.renderer.render(tokens, md.options, {}))


def week_monday(key: str) -> date | None:
    m = re.fullmatch(r"(\d{4})-W(\d{2})", key)
    if not m:
        return None
    return date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)


def date_label(issue: Issue) -> str:
    monday = week_monday(issue.key)
    if monday is not None:
        return f"Week of {monday.day} {monday:%B %Y}"
    when = issue.created_at.astimezone(timezone.utc)
    return f"{when.day} {when:%B %Y}"


def preheader(papers: list[PaperView]) -> str:
    """40-140 characters of real summary for the inbox line after the subject."""
    count = len(papers)
    lead = f"{count} paper{'s' if count != 1 else ''} this week, led by: {papers[0].title}"
    text = shorten(lead, 140)
    if len(text) < 40:
        text = (text + " - the week's trending research, best first.")[:140]
    return text


def sender(config: Config) -> tuple[str, str]:
    """(display name, address) of ``newsletter.from``."""
    name, address = parseaddr(config["newsletter.from"])
    return (name or config["newsletter.name"]), address


def template_context(issue: Issue, config: Config, subject: str = "") -> dict[str, Any]:
    """Everything ``issue.html.j2``/``issue.txt.j2``/``subject.txt.j2`` may use.

    ``subscriber`` holds tokens, not values: the per-subscriber step fills them in later.
    """
    papers = [paper_view(p) for p in issue.papers]
    sender_name, sender_address = sender(config)
    return {
        "newsletter": {
            "name": config["newsletter.name"],
            "base_url": config["newsletter.base_url"].rstrip("/"),
            "postal_address": config["newsletter.postal_address"],
            "sender_name": sender_name,
            "sender_address": sender_address,
            "reply_to": config["newsletter.reply_to"],
        },
        "issue": {
            "key": issue.key, "number": issue.number, "title": issue.title,
            "date_label": date_label(issue), "created_at": issue.created_at,
        },
        "papers": papers,
        "subject": subject,
        "preheader": preheader(papers) if papers else "",
        "editor_note_html": editor_note_html(issue.editor_note),
        "editor_note_text": issue.editor_note.strip(),
        "subscriber": {
            "name": placeholders.NAME,
            "email": placeholders.EMAIL,
            "unsubscribe_url": placeholders.UNSUBSCRIBE_URL,
            # Only meaningful with newsletter.base_url (the web app's page); templates check it.
            "preferences_url": placeholders.PREFERENCES_URL,
        },
    }
