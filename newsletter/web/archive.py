"""Sent issues as public web pages and as an Atom feed of the newsletter itself.

Only frozen issues (sent to at least one reader) are public; drafts never are. The page is the
frozen HTML every reader got, with the per-subscriber values (name, address, unsubscribe and
preferences links) replaced by neutral ones, so an archived page carries no one's personal data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from xml.etree import ElementTree as ET

from newsletter.models import Issue
from newsletter.render import placeholders
# not through the API: the public archive reads sent issues' frozen HTML through the read-only
# store (newsletter.store.access); newsletter.api has no call that returns a frozen rendering.
from newsletter.store.access import Transactions
from newsletter.store.issues import get_frozen_rendering, list_issues

ATOM_NS = "http://www.w3.org/2005/Atom"
ISSUE_KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ArchivedIssue:
    """What the archive shows of one sent issue."""

    key: str
    title: str
    sent_at: datetime
    papers: tuple[tuple[str, str], ...]  # (title, url) in the issue's order


def sent_issues(store: Transactions) -> list[ArchivedIssue]:
    """Every frozen issue, newest first."""
    with store.atomic() as conn:
        issues = [issue for issue in list_issues(conn) if issue.status != "draft"]
    return [_archived(issue) for issue in issues]


def latest_sent_issue(store: Transactions) -> ArchivedIssue | None:
    issues = sent_issues(store)
    return issues[0] if issues else None


def public_issue_html(store: Transactions, key: str, *, home_url: str) -> str | None:
    """The frozen HTML of a sent issue with personal values made neutral, or None (unknown key,
    or a draft)."""
    if not ISSUE_KEY_PATTERN.match(key):
        return None
    with store.atomic() as conn:
        rendered = get_frozen_rendering(conn, key)
    if rendered is None:
        return None
    return neutralize(rendered.html, home_url=home_url)


def neutralize(html: str, *, home_url: str) -> str:
    """Replace the per-subscriber placeholders of a frozen rendering with neutral values: the
    greeting's name falls back to the templates' own default, the address becomes words, and the
    unsubscribe and preferences links point at the subscribe page (a reader's signed tokens
    would let anyone who reads the archive change that reader's subscription)."""
    neutral = placeholders.Personal(name=placeholders.greeting_name(""), email="your email address",
                                    unsubscribe_url=home_url, preferences_url=home_url)
    return placeholders.fill(html, neutral.for_html())


def _archived(issue: Issue) -> ArchivedIssue:
    return ArchivedIssue(
        key=issue.key, title=issue.title,
        sent_at=issue.created_at.astimezone(timezone.utc),
        papers=tuple((paper.title, _web_url(paper.url)) for paper in issue.papers),
    )


def _web_url(url: str) -> str:
    """Only http(s) links reach a page: a feed could carry ``javascript:`` in a paper's URL."""
    return url if url.lower().startswith(("https://", "http://")) else ""


def atom_feed(issues: list[ArchivedIssue], *, name: str, base_url: str) -> bytes:
    """An Atom 1.0 document of the sent issues. Built with ElementTree so every title is escaped
    as XML text, whatever characters a paper's title holds."""
    base = base_url.rstrip("/")
    ET.register_namespace("", ATOM_NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            element.text = _xml_safe(text)
        return element

    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    sub(feed, "id", f"{base}/feed.xml")
    sub(feed, "title", name)
    updated = max((i.sent_at for i in issues), default=datetime(2000, 1, 1, tzinfo=timezone.utc))
    sub(feed, "updated", _rfc3339(updated))
    sub(feed, "link", rel="self", href=f"{base}/feed.xml", type="application/atom+xml")
    sub(feed, "link", rel="alternate", href=f"{base}/archive", type="text/html")
    author = sub(feed, "author")
    sub(author, "name", name)
    for issue in issues:
        entry = sub(feed, "entry")
        sub(entry, "id", f"{base}/archive/{issue.key}")
        sub(entry, "title", issue.title)
        sub(entry, "updated", _rfc3339(issue.sent_at))
        sub(entry, "published", _rfc3339(issue.sent_at))
        sub(entry, "link", rel="alternate", href=f"{base}/archive/{issue.key}", type="text/html")
        summary = "\n".join(f"{n}. {title}" for n, (title, _) in enumerate(issue.papers, start=1))
        sub(entry, "summary", summary or issue.title, type="text")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    """XML 1.0 cannot carry most control characters even escaped; a feed title might."""
    return _XML_INVALID.sub("", text)
