"""Per-subscriber values are filled in *after* the issue is rendered and inlined once.

The tokens are plain ``[A-Z_]`` words: lxml, premailer, HTML escaping and URL quoting all leave
them alone (``{{ x }}`` inside an ``href`` would come out of lxml as ``{{%20x%20}}``). The values
put in their place are escaped for the part they land in: HTML-escaped in HTML, as-is in text.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from newsletter.render.headers import header_text  # noqa: F401  (the one header-cleaning function; imported from here too)

NAME = "XNLNAMEX"
EMAIL = "XNLEMAILX"
UNSUBSCRIBE_URL = "XNLUNSUBSCRIBEURLX"
PREFERENCES_URL = "XNLPREFERENCESURLX"
TOKENS: tuple[str, ...] = (NAME, EMAIL, UNSUBSCRIBE_URL, PREFERENCES_URL)
# A reader's own issue (render/personal.py): per card, its rank, the reason it is there and the
# reader's rating token; per issue, what depends on which papers the reader got.
RANK = "XNLRANKX"
REASON = "XNLREASONX"
RATE = "XNLRATEX"
SUBJECT = "XNLSUBJECTX"
PREHEADER = "XNLPREHEADERX"
GREETING = "XNLGREETINGX"
CARD_TOKENS: tuple[str, ...] = (RANK, REASON, RATE)
DOCUMENT_TOKENS: tuple[str, ...] = (SUBJECT, PREHEADER, GREETING)
# The markers around each card of a candidate rendering, cut there; a title holding one would
# cut a card in two.
CARD_MARKERS: tuple[str, ...] = ("<!--xnl-card-->", "<!--/xnl-card-->")

_TOKEN_RE = re.compile("|".join(re.escape(t) for t in TOKENS + CARD_TOKENS + DOCUMENT_TOKENS + CARD_MARKERS))


def defuse_tokens(text: str) -> str:
    """Break any token that appears in untrusted text (a title, an abstract), so a paper can
    never pull a reader's address or unsubscribe link into the body where it chooses."""
    return _TOKEN_RE.sub(lambda m: m.group(0)[0] + "\u200b" + m.group(0)[1:], text)


def has_token(text: str) -> bool:
    """True when ``text`` holds a token that would be filled with a subscriber's values."""
    return _TOKEN_RE.search(text) is not None


def greeting_name(name: str, *, fallback: str = "there", max_chars: int = 80) -> str:
    """A display name safe for a greeting and a To header: ``header_text``, length capped (the
    fast message path relies on short lines)."""
    return defuse_tokens(header_text(name, max_chars=max_chars)) or fallback


@dataclass(frozen=True)
class Personal:
    """The values one subscriber's copy differs by.

    ``preferences_url`` may be left empty by callers that only estimate a size or fill a
    rendering made without a preferences page: the unsubscribe URL then stands in, so a token
    never becomes an empty ``href``.
    """

    name: str
    email: str
    unsubscribe_url: str
    preferences_url: str = ""

    def for_html(self) -> dict[str, str]:
        return {NAME: html.escape(self.name), EMAIL: html.escape(self.email),
                UNSUBSCRIBE_URL: html.escape(self.unsubscribe_url),
                PREFERENCES_URL: html.escape(self.preferences_url or self.unsubscribe_url)}

    def for_text(self) -> dict[str, str]:
        return {NAME: self.name, EMAIL: self.email, UNSUBSCRIBE_URL: self.unsubscribe_url,
                PREFERENCES_URL: self.preferences_url or self.unsubscribe_url}


def fill(template: str, values: dict[str, str]) -> str:
    """Replace every token; four ``str.replace`` calls cost microseconds on a 60 KB body."""
    for token, value in values.items():
        template = template.replace(token, value)
    return template


def fill_bytes(template: bytes, values: dict[str, str]) -> bytes:
    for token, value in values.items():
        template = template.replace(token.encode("ascii"), value.encode("utf-8"))
    return template
