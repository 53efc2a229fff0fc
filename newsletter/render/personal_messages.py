"""A reader's own issue as bytes for SMTP: the shared message's skeleton, their subject, and
bodies joined from the candidate cards (``render/personal.py``) with their values in.

The bodies go out as 8bit text (7bit when they are ASCII), not base64 like the shared issue's:
a personal body is some 30 pieces joined per reader, and base64 would have to be re-cut at every
join (about five times the cost of the shared splice, measured); a join of bytes costs
microseconds. 8bit has two rules, both kept: no line over 998 octets (RFC 5322) and an SMTP
server that takes 8BITMIME (the SMTP transport says ``BODY=8BITMIME``, and re-encodes the rare
message for a server without it). Every line of the cards is measured once per run with its
tokens at their longest allowed length; a reader whose value is longer (a very long address or
paper id), or a rendering with a line too long to hold tokens, takes the base64 path instead,
which gives the same message.
"""

from __future__ import annotations

import re
from html import escape
from itertools import chain
from operator import itemgetter
from typing import Sequence

from email.utils import make_msgid

from newsletter.errors import RenderError
from newsletter.models import Pick, Subscriber
from newsletter.render import placeholders
from newsletter.render.context import fold
from newsletter.render.headers import SMTP_POLICY, SMTPUTF8_POLICY, new_message, set_header
from newsletter.render.messages import MessageFactory, OutgoingMessage, base64_lines, crlf_body
from newsletter.render.personal import CardSet

_TOKENS = placeholders.TOKENS + placeholders.CARD_TOKENS + placeholders.DOCUMENT_TOKENS
_TOKEN_RE = re.compile("(" + "|".join(_TOKENS) + ")")
MAX_LINE = 998
# A value longer than this (in bytes, as filled in) sends that reader's copy by the base64
# path; every line of the rendering must hold its tokens at this length.
MAX_VALUE = 300
_RANKS = [str(n).encode("ascii") for n in range(64)]


def _crlf(text: str) -> bytes:
    """UTF-8 with CRLF line ends, for a stretch of a body."""
    return text.encode("utf-8").replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


class _Raw:
    """A stretch of a body with tokens: the static bytes around them, and a getter that
    interleaves them with a message's values in one C call (a reader's copy is ~25 of these,
    and a Python loop per token would cost more than the rest of the message).

    ``fill`` takes one value per token of ``_TOKENS``, or, for a card holding only the card's
    own tokens (``card_only``: the default templates), just (rank, reason, rating token)."""

    __slots__ = ("statics", "getter", "card_only")

    def __init__(self, text: str) -> None:
        parts = _TOKEN_RE.split(text)
        keys = parts[1::2]
        self.statics = tuple(_crlf(x) for x in parts[0::2])
        self.card_only = all(key in placeholders.CARD_TOKENS for key in keys)
        names = placeholders.CARD_TOKENS if self.card_only else _TOKENS
        n = len(self.statics)
        order: list[int] = [0]
        for i, key in enumerate(keys, start=1):
            order += [n + names.index(key), i]
        self.getter = itemgetter(*order) if len(order) > 1 else (lambda values: (values[0],))

    def fill(self, out: list[bytes], values: tuple[bytes, ...]) -> None:
        out.extend(self.getter(self.statics + values))


def _line_lengths(text: str) -> tuple[int, int, int]:
    """(first, longest inner, last) line lengths of ``text`` in bytes, each token counted at
    ``MAX_VALUE``: what the longest line of any message made from it can be."""
    lengths = [len(_TOKEN_RE.sub("", line).encode("utf-8")) + MAX_VALUE * len(_TOKEN_RE.findall(line))
               for line in text.split("\n")]
    return lengths[0], max(lengths[1:-1], default=0), lengths[-1]


def _fits(head: str, cards: Sequence[str], separator: str, tail: str) -> bool:
    """True when every line of every message assembled from these pieces stays within
    ``MAX_LINE`` octets (with CRLF), lines that run across a join included."""
    h, t = _line_lengths(head), _line_lengths(tail)
    c = [_line_lengths(card) for card in cards]
    sep = _line_lengths(separator)
    if "\n" in separator:
        join_in = max(x[2] for x in c) + sep[0]
        join_out = sep[2] + max(x[0] for x in c)
        between = max(join_in, join_out, sep[1])
    else:
        between = max(x[2] for x in c) + len(separator.encode("utf-8")) + max(x[0] for x in c)
    longest = max(h[1], t[1], between, h[2] + max(x[0] for x in c), max(x[2] for x in c) + t[0],
                  max(x[1] for x in c), h[0], t[2])
    return longest + 2 <= MAX_LINE


class PersonalMessages:
    """Builds readers' own issues from ``cards`` with ``factory``'s headers; safe to call from
    several sending threads."""

    def __init__(self, factory: MessageFactory, cards: CardSet) -> None:
        self.factory = factory
        self.cards = cards
        factory.cards = cards  # the reference path (build_email_message) assembles from them too
        pieces = factory._pieces
        self._subject_lines: dict[str, bytes] = {}
        if pieces[1] != self._subject_line(factory.subject):
            raise RenderError("the message skeleton has more than the Subject between To and Date", where="messages")
        self._boundary = re.search(rb'boundary="([^"]+)"', pieces[5]).group(1)  # type: ignore[union-attr]
        self._eight_bit = _fits(cards.html_head, list(cards.html_cards.values()), cards.html_separator,
                                cards.html_tail) and _fits(cards.text_head, list(cards.text_cards.values()),
                                                            cards.text_separator, cards.text_tail)
        self._parts = {cte: (pieces[5].replace(b"Transfer-Encoding: base64", b"Transfer-Encoding: " + cte),
                             pieces[6].replace(b"Transfer-Encoding: base64", b"Transfer-Encoding: " + cte))
                       for cte in (b"7bit", b"8bit", b"base64")}
        self._html = _Raw(cards.html_head), _Raw(cards.html_tail)
        self._text = _Raw(cards.text_head), _Raw(cards.text_tail)
        self._html_first = {pid: _Raw(text) for pid, text in cards.html_cards.items()}
        self._text_first = {pid: _Raw(text) for pid, text in cards.text_cards.items()}
        self._html_later = {pid: _Raw(cards.html_separator + text) for pid, text in cards.html_cards.items()}
        self._text_later = {pid: _Raw(cards.text_separator + text) for pid, text in cards.text_cards.items()}
        self._reasons: dict[str, tuple[bytes, bytes]] = {}
        self._paper_ids = {pid: pid.encode("utf-8") for pid in cards.html_cards}
        # What holds for every copy is checked once here; a copy then checks only its values.
        raws = [*self._html, *self._text, *self._html_later.values(), *self._text_later.values()]
        statics = [static for raw in raws for static in raw.statics]
        self._static_ascii = all(static.isascii() for static in statics)
        if any(self._boundary in static for static in statics):
            self._eight_bit = False  # a paper's text holds the MIME boundary: base64 cannot be mistaken

    @property
    def eight_bit(self) -> bool:
        """False when some line of the cards is too long for 8bit: every copy is then base64."""
        return self._eight_bit

    def _subject_line(self, subject: str) -> bytes:
        """The Subject line as the email package folds and encodes it (cached: readers share
        the subject of their top paper)."""
        line = self._subject_lines.get(subject)
        if line is None:
            msg = new_message()
            set_header(msg, "Subject", subject)
            line = msg.as_bytes(policy=SMTP_POLICY).partition(b"\r\n\r\n")[0] + b"\r\n"
            if len(self._subject_lines) < 10_000:
                self._subject_lines[subject] = line
        return line

    def _reason(self, reason: str) -> tuple[bytes, bytes]:
        """(html, text) bytes of a reason (cached: most readers share a few)."""
        found = self._reasons.get(reason)
        if found is None:
            text = fold(reason)
            found = (escape(text, quote=False).encode("utf-8"), text.encode("utf-8"))
            if len(self._reasons) < 100_000:
                self._reasons[reason] = found
        return found

    def _values(self, values: placeholders.Personal, picks: Sequence[Pick]
                ) -> tuple[tuple[bytes, ...], tuple[bytes, ...], str]:
        """(html, text) values of the document's tokens, in order (the
        subscriber's four, then subject, preheader, greeting), and the reader's subject."""
        subject, pre, _ = self.cards.head_values(picks)
        greet_html, greet_text = self.cards.greeting(len(picks))
        prefs = values.preferences_url or values.unsubscribe_url
        html_values = (escape(values.name).encode("utf-8"), escape(values.email).encode("utf-8"),
                       escape(values.unsubscribe_url).encode("utf-8"), escape(prefs).encode("utf-8"),
                       escape(subject, quote=False).encode("utf-8"), escape(pre, quote=False).encode("utf-8"),
                       greet_html.encode("utf-8"))
        text_values = (values.name.encode("utf-8"), values.email.encode("utf-8"),
                       values.unsubscribe_url.encode("utf-8"), prefs.encode("utf-8"), subject.encode("utf-8"),
                       pre.encode("utf-8"), _crlf(greet_text))
        return html_values, text_values, subject

    def _card_values(self, subscriber: Subscriber, picks: Sequence[Pick]) -> list[tuple[bytes, bytes, bytes, bytes]]:
        """(rank, rate token, html reason, text reason) of each pick."""
        if self.cards.rate_base:
            ids = self._paper_ids
            tokens = self.factory.signer.rating_tokens(subscriber.id or 0, [ids[pick.paper_id] for pick in picks])
        else:
            tokens = [b""] * len(picks)
        reasons = [self._reason(pick.reason) for pick in picks]
        return [(_RANKS[rank] if rank < len(_RANKS) else str(rank).encode("ascii"), token, *reason)
                for rank, token, reason in zip(range(1, len(picks) + 1), tokens, reasons)]

    def _eight_bit_bodies(self, html_doc: tuple[bytes, ...], text_doc: tuple[bytes, ...], picks: Sequence[Pick],
                          card_values: list[tuple[bytes, bytes, bytes, bytes]]
                          ) -> tuple[list[bytes], list[bytes]] | None:
        """(text, html) bodies as lists of pieces (joined once, with the headers), or None when
        this copy must go base64."""
        values = [*html_doc, *text_doc, *chain.from_iterable(card_values)]
        if max(map(len, values)) > MAX_VALUE or self._boundary in b"\n".join(values):
            return None  # a line could pass 998 octets, or a reader's text holds the MIME boundary
        # Values in _TOKENS order: the four subscriber tokens, the card's three, the document's three.
        h0, h1, h2, h3, *hd = html_doc
        t0, t1, t2, t3, *td = text_doc
        html: list[bytes] = []
        text: list[bytes] = []
        self._html[0].fill(html, (h0, h1, h2, h3, b"", b"", b"", *hd))
        self._text[0].fill(text, (t0, t1, t2, t3, b"", b"", b"", *td))
        html_cards, text_cards = self._html_first, self._text_first
        for pick, (rank, token, reason_html, reason_text) in zip(picks, card_values):
            card = html_cards[pick.paper_id]
            card.fill(html, (rank, reason_html, token) if card.card_only else
                      (h0, h1, h2, h3, rank, reason_html, token, *hd))
            card = text_cards[pick.paper_id]
            card.fill(text, (rank, reason_text, token) if card.card_only else
                      (t0, t1, t2, t3, rank, reason_text, token, *td))
            html_cards, text_cards = self._html_later, self._text_later
        self._html[1].fill(html, (h0, h1, h2, h3, b"", b"", b"", *hd))
        self._text[1].fill(text, (t0, t1, t2, t3, b"", b"", b"", *td))
        return text, html

    def _base64_bodies(self, subscriber: Subscriber, picks: Sequence[Pick]) -> tuple[bytes, bytes]:
        """The same bodies base64-encoded whole: the rare copy 8bit cannot carry."""
        html, text = self.factory.personalised_parts(subscriber, picks)
        return base64_lines(crlf_body(text)), base64_lines(crlf_body(html))

    def build(self, subscriber: Subscriber, picks: Sequence[Pick], message_id: str | None = None) -> OutgoingMessage:
        """The reader's own issue (``picks``, in order) as bytes ready for SMTP."""
        factory = self.factory
        self.cards.check(picks)
        if not subscriber.email.isascii():
            msg = factory.build_email_message(subscriber, message_id, picks)
            return OutgoingMessage(message_id=str(msg["Message-ID"]),
                                   sender=factory.envelope_sender(factory.token(subscriber)),
                                   recipient=subscriber.email, data=msg.as_bytes(policy=SMTPUTF8_POLICY))
        values = factory.personal(subscriber)
        message_id = message_id or make_msgid(domain=factory.domain)
        if "\r" in message_id or "\n" in message_id:
            raise RenderError("line breaks are not allowed in a Message-ID", where=repr(message_id))
        html_doc, text_doc, subject = self._values(values, picks)
        card_values = self._card_values(subscriber, picks)
        bodies = self._eight_bit_bodies(html_doc, text_doc, picks, card_values) if self._eight_bit else None
        if bodies is None:
            text_body, html_body = self._base64_bodies(subscriber, picks)
            text, html = [text_body], [html_body]
            cte = b"base64"
        else:
            text, html = bodies
            ascii_values = b"".join([*html_doc, *chain.from_iterable(card_values)]).isascii()
            cte = b"7bit" if self._static_ascii and ascii_values else b"8bit"
        text_head, html_head = self._parts[cte]
        p = factory._pieces
        token = factory.token(subscriber)
        data = b"".join([
            p[0], factory._to_line(subscriber),
            self._subject_line(subject), factory._date_line(),
            p[2], b"Message-ID: ", message_id.encode("ascii"), b"\r\n",
            p[3], b"List-Unsubscribe: <", values.unsubscribe_url.encode("ascii"), b">\r\n",
            p[4], b"X-Newsletter-Token: " + (token or "none").encode("ascii") + b"\r\n" if factory.return_path else b"",
            text_head, *text,
            html_head, *html,
            p[7],
        ])
        return OutgoingMessage(message_id=message_id, sender=factory.envelope_sender(token),
                               recipient=subscriber.email, data=data)
