"""What the templates see: papers shaped for reading, and the issue's labels.

Everything here is computed once per issue. Untrusted text (titles, authors, abstracts) is
folded to single spaces (arXiv titles carry newlines and runs of spaces) but *not* escaped:
escaping is the template's job (autoescape), so the text template gets the plain characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
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
    """The first two or three sentences of the abstract (more when ``max_chars`` is large),
    cut on a word past ``max_chars``."""
    sentences = max(sentences, max_chars // 140)
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
    rank: int | str = 0         # a number, or the rank token in a card rendered for every reader
    date_label: str = ""        # "12 Jan 2024": when it was published, "" when unknown
    score_label: str = ""       # "312 upvotes", "" without a score
    short_name: str = ""        # "Llama 3": the part before a title's colon, for summaries
    # Only in a reader's own issue (render/personal.py): why the paper is there, the base of its
    # rating links (``/up``, ``/down`` follow), and the markers the cards are cut at.
    reason: str = ""
    rate_url: str = ""
    begin: str = ""
    end: str = ""


def day_label(when: datetime | date | None) -> str:
    """``12 Jan 2024``, or "" for no date."""
    if when is None:
        return ""
    if isinstance(when, datetime):
        when = when.astimezone(timezone.utc).date()
    return f"{when.day} {when:%b %Y}"


def short_name(title: str, max_chars: int = 32) -> str:
    """What a paper is called in a list: ``Llama 3`` for ``Llama 3: Open Foundation ...``."""
    head = title.split(":", 1)[0].strip()
    if ":" in title and 2 <= len(head) <= max_chars:
        return head
    return shorten(title, max_chars)


def paper_view(paper: Paper, *, rank: int = 0, max_authors: int = _MAX_AUTHORS,
               excerpt_chars: int = _EXCERPT_MAX_CHARS) -> PaperView:
    title = fold(paper.title or paper.id)
    thumb = https_or_none(paper.thumbnail_url)
    url = https_or_none(paper.url)
    if url is None and paper.id.startswith("arxiv:"):
        url = f"https://arxiv.org/abs/{paper.id.split(':', 1)[1]}"
    return PaperView(
        id=fold(paper.id), title=title, title_short=shorten(title, 90), url=url,
        authors=shorten_authors(paper.authors, max_authors),
        excerpt=excerpt(paper.abstract, max_chars=excerpt_chars), score=paper.score,
        pdf_url=https_or_none(paper.pdf_url), code_url=https_or_none(paper.code_url),
        page_url=https_or_none(getattr(paper, "page_url", None)),
        thumbnail_url=thumb if thumb and thumb.startswith("https://") else None,
        rank=rank, date_label=day_label(paper.published_at),
        score_label="" if paper.score is None else f"{paper.score:,} upvote{'' if paper.score == 1 else 's'}",
        short_name=short_name(title),
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


def window(issue: Issue, days: int) -> tuple[date, date]:
    """The first and last day of the window the issue's papers were drawn from."""
    end = issue.created_at.astimezone(timezone.utc)
    return (end - timedelta(days=days)).date(), end.date()


def range_label(first: date, last: date) -> str:
    """``23-30 November 2026``, ``28 November - 4 December 2026``, ``28 December 2026 - 3 January 2027``
    (with an en dash)."""
    if first == last:
        return f"{last.day} {last:%B %Y}"
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}\u2013{last.day} {last:%B %Y}"
    if first.year == last.year:
        return f"{first.day} {first:%B} \u2013 {last.day} {last:%B %Y}"
    return f"{first.day} {first:%B %Y} \u2013 {last.day} {last:%B %Y}"


def range_words(first: date, last: date) -> str:
    """``from 23 to 30 November 2026``: a range for a sentence, where a dash reads badly."""
    if first == last:
        return f"on {last.day} {last:%B %Y}"
    if (first.year, first.month) == (last.year, last.month):
        return f"from {first.day} to {last.day} {last:%B %Y}"
    if first.year == last.year:
        return f"from {first.day} {first:%B} to {last.day} {last:%B %Y}"
    return f"from {first.day} {first:%B %Y} to {last.day} {last:%B %Y}"


def published_range(papers: list[Paper]) -> tuple[date, date] | None:
    days = sorted(p.published_at.astimezone(timezone.utc).date() for p in papers if p.published_at)
    return (days[0], days[-1]) if days else None


def greeting(papers: list[Paper], window: tuple[date, date]) -> str:
    """The sentence after "Hi NAME," saying what the issue holds and how it was ordered, from
    what the papers carry: "most upvoted" only when they have upvotes, and when they were
    published if that is not within the window (a feed's backlog is not this week's news)."""
    n = len(papers)
    window_words, window_first = range_words(*window), window[0]
    scored = sum(p.score is not None for p in papers)
    are, noun = ("is", "paper") if n == 1 else ("are", "papers")
    if scored == n:
        text = (f"here {are} the {n} {noun} readers upvoted most among those we found "
                f"{window_words}, most upvoted first.") if n > 1 else (
                f"here is the paper readers upvoted most among those we found {window_words}.")
    elif scored == 0:
        text = (f"here {are} {n} {noun} new to us, found {window_words}, newest first. "
                "Our sources give no upvotes for them, so they are not ranked by popularity.")
    else:
        text = (f"here are {n} papers we found {window_words}: the {scored} with upvotes first, "
                f"most upvoted first, then {n - scored} without upvotes, newest first.")
    published = published_range(papers) if all(p.published_at for p in papers) else None
    if published is not None and published[0] < window_first:
        text += f" {'It was' if n == 1 else 'They were'} published {range_words(*published)}."
    return text


def default_subject(papers: list[PaperView], max_chars: int) -> str:
    """The top paper's title, cut on a word to ``max_chars``; its name leads the inbox line."""
    return shorten(papers[0].title, max_chars)


def preheader(papers: list[PaperView], subject: str, *, tail: str = "") -> str:
    """40-140 characters summarising what the subject does not say: "+ 9 more: Llama 3, Mamba,
    ...". With an editor's subject every paper is listed; with one paper, its authors and
    abstract. Never a repeat of the subject."""
    subject_names_top = bool(subject) and papers[0].title.startswith(subject.rstrip("\u2026"))
    rest = papers[1:] if subject_names_top else papers
    if rest:
        lead = f"+ {len(rest)} more: " if subject_names_top else f"{len(rest)} paper{'s' if len(rest) != 1 else ''}: "
        names: list[str] = []
        for paper in rest:
            if len(lead + ", ".join(names + [paper.short_name])) > 136 and names:
                names.append("\u2026")
                break
            names.append(paper.short_name)
        text = shorten(lead + ", ".join(names), 140)
    else:
        text = shorten(" \u2013 ".join(x for x in (papers[0].authors, papers[0].excerpt) if x), 140)
    if len(text) < 40 and tail:
        text = shorten(f"{text} \u00b7 {tail}" if text else tail, 140)
    if len(text) < 40:
        text = (text + " \u00b7 this week's new research papers").strip(" \u00b7")[:140]
    return text


def sender(config: Config) -> tuple[str, str]:
    """(display name, address) of ``newsletter.from``."""
    name, address = parseaddr(config["newsletter.from"])
    return (name or config["newsletter.name"]), address


def template_context(issue: Issue, config: Config, subject: str = "") -> dict[str, Any]:
    """Everything ``issue.html.j2``/``issue.txt.j2``/``subject.txt.j2`` may use.

    ``subscriber`` holds tokens, not values: the per-subscriber step fills them in later.
    ``default_subject`` is what ``subject.txt.j2`` shows unless the editor set one
    (``issue.subject``); ``subject`` is the final line, set after that template ran.
    """
    papers = [paper_view(p, rank=i, max_authors=config["issue.max_authors"],
                         excerpt_chars=config["issue.excerpt_chars"])
              for i, p in enumerate(issue.papers, start=1)]
    sender_name, sender_address = sender(config)
    base_url = config["newsletter.base_url"].rstrip("/")
    first, last = window(issue, config["issue.days"])
    window_label = range_label(first, last)
    issue_subject = fold(issue.subject)
    default = default_subject(papers, config["issue.subject_chars"]) if papers else ""
    return {
        "newsletter": {
            "name": config["newsletter.name"],
            "base_url": base_url,
            "postal_address": config["newsletter.postal_address"],
            "sender_name": sender_name,
            "sender_address": sender_address,
            "reply_to": config["newsletter.reply_to"],
            "logo_url": https_or_none(config["newsletter.logo_url"]) or "",
            "accent": config["newsletter.accent"] or "#1a56db",
            "archive_url": f"{base_url}/archive" if base_url else "",
        },
        "issue": {
            "key": issue.key, "number": issue.number, "title": issue.title,
            "date_label": date_label(issue), "created_at": issue.created_at,
            "date_range": window_label,
            "greeting": greeting(list(issue.papers), (first, last)) if papers else "",
            "subject": issue_subject,
            "web_url": f"{base_url}/archive/{issue.key}" if base_url else "",
        },
        "papers": papers,
        "subject": subject,
        "default_subject": default,
        "preheader": (preheader(papers, issue_subject or default,
                                tail=f"Issue #{issue.number}, {window_label}") if papers else ""),
        "editor_note_html": editor_note_html(issue.editor_note),
        "editor_note_text": issue.editor_note.strip(),
        # A reader's own issue (render/personal.py): cards with reasons and rating links.
        "personal": False,
        "subscriber": {
            "name": placeholders.NAME,
            "email": placeholders.EMAIL,
            "unsubscribe_url": placeholders.UNSUBSCRIBE_URL,
            # Only meaningful with newsletter.base_url (the web app's page); templates check it.
            "preferences_url": placeholders.PREFERENCES_URL,
        },
    }
