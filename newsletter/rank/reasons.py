"""The few words on each card saying why the paper is in this reader's issue.

Plain text (the caller escapes it), at most ``MAX_REASON`` characters, naming the one signal that
weighed most: a reader can act on "matches: speech recognition" (keep it, or change their
interests), not on a score.
"""

from __future__ import annotations

from newsletter.models import Paper

MAX_REASON = 60
EDITORS_PICK = "editor's pick"
TOP_OF_THE_WEEK = "top of the week"      # in the shared issue: what every reader gets
NEW_THIS_WEEK = "new this week"          # not in the shared issue, and nothing of the reader's matched


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with "…" when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0] if " " in text[:limit - 1] else text[:limit - 1]
    return cut.rstrip(" ,;:-") + "…"


def short_title(paper: Paper, limit: int) -> str:
    """A title a reader recognises in few words: the name before a colon when there is one
    ("Whisper: Robust Speech Recognition via ..." -> "Whisper"), else the title cut short."""
    head, colon, _ = paper.title.partition(":")
    if colon and 2 <= len(head.strip()) <= limit:
        return head.strip()
    return shorten(paper.title, limit)


def _fit(prefix: str, name: str, suffix: str = "") -> str:
    return prefix + shorten(name, MAX_REASON - len(prefix) - len(suffix)) + suffix


def matches(topic: str) -> str:
    return _fit("matches: ", topic)


def like(paper: Paper, rated: bool) -> str:
    suffix = " (you rated it)" if rated else " (you liked it)"
    return "like: " + short_title(paper, MAX_REASON - len("like: ") - len(suffix)) + suffix


def followed_author(name: str) -> str:
    return _fit("followed author: ", name)


def in_category(category: str) -> str:
    return _fit("in ", category)
