"""A reader's own issue, assembled from cards rendered once per run.

The templates are run, and premailer is run, once for the whole candidate set: every paper a
reader's issue may hold gets its card, with tokens where a reader's copy differs (its rank, the
reason it is there, the reader's rating links) and markers around it. The inlined result is cut
at the markers into a head, one piece per card and a tail. A reader's copy is then the head, the
cards of their picks in their order and the tail, with the tokens filled in: string joins, never
Jinja or premailer per reader. ``render_personal`` renders the same copy from scratch (the
reference a test compares the assembly with).

The subject, preheader and greeting depend on which papers a reader got, so they are tokens in
the head too, filled with what ``context.py``'s own functions say for that reader's papers.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from datetime import date
from typing import Callable, Mapping, Sequence

import jinja2
from jinja2.filters import do_wordwrap
from markupsafe import Markup

from newsletter.config import Config
from newsletter.errors import RenderError
from newsletter.models import Issue, Paper, Pick, RenderedIssue
from newsletter.render.context import (PaperView, default_subject, fold, paper_view, preheader, range_label,
                                       range_words, template_context, window)
from newsletter.render.inline import inline_css
from newsletter.render.issue import finish_text, render_template
from newsletter.render.placeholders import CARD_TOKENS, DOCUMENT_TOKENS, GREETING, PREHEADER, RANK, RATE, REASON, \
    SUBJECT

CARD_BEGIN = Markup("<!--xnl-card-->")
CARD_END = Markup("<!--/xnl-card-->")
# The default text template wraps the greeting at 72 columns; a reader's greeting is wrapped the
# same way when it is filled in.
GREETING_WIDTH = 72


_STYLE_ATTRIBUTE = re.compile(r' (?=style=")')


def break_lines(html_text: str) -> str:
    """Each inline ``style`` attribute on a line of its own (a line break between attributes is
    a space to HTML): premailer writes long lines, and a reader's copy is sent as 8bit text, whose
    lines must stay within 998 octets with the reader's links in them."""
    return _STYLE_ATTRIBUTE.sub("\n", html_text)


def personal_greeting(count: int, found: int, span: tuple[date, date]) -> str:
    """The sentence after "Hi NAME," in a reader's own issue."""
    words = range_words(*span)
    if count == 1:
        return f"here is the paper we picked for you from the {found} we found {words}."
    return (f"here are the {count} papers we picked for you from the {found} we found {words}, "
            "the closest to what you follow first.")


def rate_base(config: Config) -> str:
    """``https://BASE/rate``: a card's links are ``{rate_base}/{token}/up`` and ``/down``; "" with
    no web app (no base_url), and the cards then carry no rating links."""
    base = config["newsletter.base_url"].rstrip("/")
    return f"{base}/rate" if base else ""


def _views(papers: Sequence[Paper], config: Config) -> list[PaperView]:
    return [paper_view(p, rank=i, max_authors=config["issue.max_authors"], excerpt_chars=config["issue.excerpt_chars"])
            for i, p in enumerate(papers, start=1)]


def _split(text: str, where: str) -> tuple[str, list[str], str, str]:
    """(head, cards, separator, tail) of a rendering with markers around each card."""
    head, found, rest = text.partition(CARD_BEGIN)
    if not found:
        raise RenderError("the template shows no paper card with {{ paper.begin }} ... {{ paper.end }} around it; "
                          "personal issues need those markers (see templates/issue.html.j2)", where=where)
    cards: list[str] = []
    separators: set[str] = set()
    while True:
        card, found, rest = rest.partition(CARD_END)
        if not found:
            raise RenderError("a paper card's {{ paper.begin }} has no {{ paper.end }}", where=where)
        cards.append(card)
        between, found, after = rest.partition(CARD_BEGIN)
        if not found:
            return head, cards, (separators.pop() if separators else ""), rest
        separators.add(between)
        if len(separators) > 1:
            raise RenderError("paper cards must follow one another the same way", where=where)
        rest = after


@dataclass(frozen=True)
class Copy:
    """One reader's subject, HTML and text, tokens of the subscriber (name, links) still in."""

    subject: str
    html: str
    text: str


class CardSet:
    """Every candidate's card rendered and inlined once; ``assemble`` makes a reader's copy.

    Safe to share between threads: nothing changes after ``__init__`` but the small caches.
    """

    def __init__(self, issue: Issue, candidates: Sequence[Paper], config: Config,
                 *, env: jinja2.Environment, found: int | None = None) -> None:
        if not candidates:
            raise RenderError("no candidate papers to render cards for", where=issue.key)
        self.issue = issue
        self.config = config
        self.env = env
        self.found = found if found is not None else len(candidates)
        self.span = window(issue, config["issue.days"])
        self.preheader_tail = f"Issue #{issue.number}, {range_label(*self.span)}"
        self.rate_base = rate_base(config)
        self.subject_chars = config["issue.subject_chars"]
        self.papers: dict[str, Paper] = {p.id: p for p in candidates}
        self.views: dict[str, PaperView] = {v.id: v for v in _views(candidates, config)}
        context = template_context(replace(issue, papers=tuple(candidates)), config)
        context["papers"] = [replace(v, rank=RANK, reason=REASON, begin=CARD_BEGIN, end=CARD_END,
                                     rate_url=f"{self.rate_base}/{RATE}" if self.rate_base else "")
                             for v in context["papers"]]
        context["issue"]["greeting"] = GREETING
        context["personal"] = True
        context["default_subject"] = SUBJECT
        context["preheader"] = PREHEADER
        self.subject_line = " ".join(render_template(env, "subject.txt.j2", context).split())
        context["subject"] = self.subject_line
        self.editor_subject = fold(issue.subject)
        html_text = break_lines(inline_css(render_template(env, "issue.html.j2", context)))
        text = finish_text(render_template(env, "issue.txt.j2", context))
        head, cards, self.html_separator, self.html_tail = _split(html_text, "issue.html.j2")
        self.html_head = head
        thead, tcards, self.text_separator, self.text_tail = _split(text, "issue.txt.j2")
        self.text_head = thead
        ids = [p.id for p in candidates]
        if len(cards) != len(ids) or len(tcards) != len(ids):
            raise RenderError(f"expected one card per paper ({len(ids)}), the templates made "
                              f"{len(cards)} (HTML) and {len(tcards)} (text)", where="issue templates")
        self.html_cards = dict(zip(ids, cards))
        self.text_cards = dict(zip(ids, tcards))
        self._greetings: dict[tuple[int, int], tuple[str, str]] = {}

    # -- what a reader's picks say in the head ---------------------------------------------

    def greeting(self, count: int) -> tuple[str, str]:
        """(html, text) of the greeting for an issue of ``count`` papers (cached: few counts)."""
        key = (count, self.found)
        cached = self._greetings.get(key)
        if cached is None:
            sentence = fold(personal_greeting(count, self.found, self.span))
            cached = (html.escape(sentence, quote=False),
                      do_wordwrap(self.env, sentence, GREETING_WIDTH, False, None, False))
            self._greetings[key] = cached
        return cached

    def head_values(self, picks: Sequence[Pick]) -> tuple[str, str, str]:
        """(subject, preheader, default subject) for a reader with these picks."""
        views = [self.views[p.paper_id] for p in picks]
        default = default_subject(views, self.subject_chars)
        subject = " ".join(self.subject_line.replace(SUBJECT, default).split())
        pre = preheader(views, self.editor_subject or default, tail=self.preheader_tail)
        return subject, pre, default

    def check(self, picks: Sequence[Pick]) -> None:
        unknown = [p.paper_id for p in picks if p.paper_id not in self.html_cards]
        if unknown or not picks:
            raise RenderError(f"a reader's issue names papers without a card: {', '.join(unknown[:3]) or 'none'}",
                              where=self.issue.key)

    def assemble(self, picks: Sequence[Pick], rate_token: Callable[[str], str]) -> Copy:
        """A reader's copy as text (for previews and tests; sending uses the byte pieces)."""
        self.check(picks)
        subject, pre, _ = self.head_values(picks)
        greet_html, greet_text = self.greeting(len(picks))
        heads = {SUBJECT: html.escape(subject, quote=False), PREHEADER: html.escape(pre, quote=False),
                 GREETING: greet_html}
        html_parts = [_fill(self.html_head, heads)]
        text_parts = [_fill(self.text_head, {GREETING: greet_text})]
        for rank, pick in enumerate(picks, start=1):
            token = rate_token(pick.paper_id) if self.rate_base else ""
            reason = fold(pick.reason)
            html_parts.append(_fill(self.html_cards[pick.paper_id],
                                    {RANK: str(rank), REASON: html.escape(reason, quote=False), RATE: token}))
            text_parts.append(_fill(self.text_cards[pick.paper_id], {RANK: str(rank), REASON: reason, RATE: token}))
        tails = {SUBJECT: heads[SUBJECT], PREHEADER: heads[PREHEADER], GREETING: greet_html}
        html_body = html_parts[0] + self.html_separator.join(html_parts[1:]) + _fill(self.html_tail, tails)
        text_body = text_parts[0] + self.text_separator.join(text_parts[1:]) + _fill(self.text_tail,
                                                                                   {GREETING: greet_text})
        return Copy(subject=subject, html=html_body, text=text_body)


def _fill(text: str, values: Mapping[str, str]) -> str:
    for token, value in values.items():
        if token in text:
            text = text.replace(token, value)
    return text


def render_personal(issue: Issue, picks: Sequence[Pick], papers: Mapping[str, Paper], config: Config, *,
                    env: jinja2.Environment, rate_token: Callable[[str], str], found: int) -> RenderedIssue:
    """The reader's copy rendered from scratch: Jinja and premailer on exactly their papers. The
    reference for ``CardSet.assemble`` (tests compare them), too slow to run per reader."""
    chosen = [papers[p.paper_id] for p in picks]
    personal = replace(issue, papers=tuple(chosen))
    context = template_context(personal, config)
    base = rate_base(config)
    context["papers"] = [replace(v, reason=fold(p.reason), rate_url=f"{base}/{rate_token(p.paper_id)}" if base else "")
                         for v, p in zip(context["papers"], picks)]
    span = window(issue, config["issue.days"])
    context["issue"]["greeting"] = personal_greeting(len(picks), found, span)
    context["personal"] = True
    subject = " ".join(render_template(env, "subject.txt.j2", context).split())
    context["subject"] = subject
    html_text = break_lines(inline_css(render_template(env, "issue.html.j2", context)))
    text = finish_text(render_template(env, "issue.txt.j2", context))
    return RenderedIssue(issue=personal, subject=subject, html=html_text, text=text)


__all__ = ["CARD_BEGIN", "CARD_END", "CARD_TOKENS", "DOCUMENT_TOKENS", "CardSet", "Copy", "personal_greeting",
           "rate_base", "render_personal"]
