"""RenderedIssue -> one message per subscriber, in microseconds.

Two ways to build the same message:

``build_email_message``
    the reference: a fresh ``EmailMessage`` (``policy.SMTP``), every header set through its API,
    text part then HTML part. Clear, and ~2 ms per message, mostly re-encoding the same HTML.

``build``
    the fast path used for sending: a skeleton message is built *once* through the same API with
    sentinel values, serialised, and cut into pieces; each subscriber's message is those bytes
    with their own To, Date, Message-ID and List-Unsubscribe lines and their own base64 bodies
    spliced in. Bodies are base64 (a token can never be split by a soft line break or have its ``=``
    escaped, and no line can pass 998 octets), encoded once per issue except for the few bytes
    around each token (``Base64Splice``). A test builds many subscribers with awkward names
    and addresses both ways and checks the bytes parse to the same message.

No value from configuration, a feed or a reader reaches a header as raw text: every header is
set with ``newsletter.render.headers.set_header`` and written by its ``HeaderPolicy`` (one line,
no control characters, no encoded word to decode, display names that always parse back to one
address); the fast path's To line is that policy's own ``address_line``. Addresses with CR, LF
or other unsafe characters are refused. ``List-Unsubscribe: <URL>`` is written on one line
(up to 998 octets, RFC 5322), never as RFC 2047 encoded words no mail client could use for
one-click unsubscribe; ``List-Unsubscribe-Post`` is added only beside an https URL (RFC 8058).
An internationalised address (SMTPUTF8: raw UTF-8 in To) takes the reference path.
"""

from __future__ import annotations

import binascii
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Callable, Sequence
from urllib.parse import quote

from newsletter.config import Config
from newsletter.errors import RenderError
from newsletter.models import Pick, RenderedIssue, Subscriber
from newsletter.render import placeholders
from newsletter.render.personal import CardSet
from newsletter.render.headers import (SMTP_POLICY, SMTPUTF8_POLICY, UNSAFE_ADDRESS, address_line,
                                        header_text, new_message, one_address, set_header)
from newsletter.tokens import Signer

LIST_UNSUBSCRIBE_POST = "List-Unsubscribe=One-Click"



_TO_SENTINEL = "xnl-to@placeholder.invalid"
_MSGID_SENTINEL = "<xnl-message-id@placeholder.invalid>"
_UNSUB_SENTINEL = "<https://placeholder.invalid/xnl-unsubscribe>"
_TEXT_SENTINEL = "XNLTEXTBODYX"
_HTML_SENTINEL = "XNLHTMLBODYX"
_TOKEN_SENTINEL = "xnltokenplaceholderxxxxxxx"  # as long as a real token



@dataclass(frozen=True)
class OutgoingMessage:
    """One message ready for a transport: envelope sender and recipient, and its bytes."""

    message_id: str
    sender: str
    recipient: str
    data: bytes


def list_label(name: str) -> str:
    """``Trending Papers Weekly`` -> ``trending-papers-weekly`` for List-Id."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "newsletter"


_BASE64_LINE = re.compile(rb".{1,76}", re.S)


def base64_lines(data: bytes) -> bytes:
    """base64 in 76-character CRLF lines, as the email package writes it: one C call to encode
    and a regex to cut (``base64.encodebytes`` loops in Python over 57-byte chunks, 2x slower)."""
    if len(data) <= 57:  # one line: most of the short runs around a token
        return binascii.b2a_base64(data, newline=False) + b"\r\n"
    encoded = binascii.b2a_base64(data, newline=False)
    return b"\r\n".join(_BASE64_LINE.findall(encoded)) + b"\r\n"


class Base64Splice:
    """A body with tokens, base64-encoded once; each copy encodes only the few bytes around
    each token.

    base64 works on 3-byte groups and decoders ignore line breaks, so a body can be sent as
    several independently encoded runs as long as every run but the last is a multiple of 3
    bytes (no ``=`` padding mid-stream) and every line stays within 76 characters. The static
    text after each token is pre-encoded three times, once for each of the three ways the
    variable bytes before it can leave it aligned; a copy is then a join of pre-encoded runs
    and a few short encodings of ``carry + value + 0-2 bytes``.
    """

    def __init__(self, body: bytes, tokens: tuple[str, ...]) -> None:
        pattern = re.compile(b"(" + b"|".join(re.escape(t.encode("ascii")) for t in tokens) + b")")
        parts = pattern.split(body)
        statics, self.keys = parts[0::2], [k.decode("ascii") for k in parts[1::2]]
        first = statics[0]
        aligned = len(first) // 3 * 3
        self.first = base64_lines(first[:aligned]) if aligned else b""
        self.first_tail = first[aligned:]
        self.rest: list[tuple[bytes, list[tuple[bytes, bytes]]]] = []
        for static in statics[1:]:
            variants = []
            for shift in range(3):
                body_part = static[shift:]
                n = len(body_part) // 3 * 3 if len(static) >= shift else 0
                variants.append((base64_lines(body_part[:n]) if n else b"", body_part[n:]))
            self.rest.append((static, variants))

    def render(self, values: dict[str, bytes]) -> bytes:
        out = [self.first]
        carry = self.first_tail
        for key, (static, variants) in zip(self.keys, self.rest):
            pending = carry + values[key]
            shift = -len(pending) % 3
            if len(static) < shift:  # too short to realign: carry it all to the next token
                carry = pending + static
                continue
            pending += static[:shift]
            if pending:
                out.append(base64_lines(pending))
            encoded, carry = variants[shift]
            out.append(encoded)
        if carry:
            out.append(base64_lines(carry))
        return b"".join(out)


def crlf_body(text: str) -> bytes:
    """The body bytes the email package encodes for ``set_content(text)``: CRLF line ends."""
    return b"\r\n".join(text.encode("utf-8").splitlines()) + b"\r\n"


class MessageFactory:
    """Builds every subscriber's copy of one rendered issue.

    Create one per issue per send run; ``build`` is safe to call from several threads.
    """

    def __init__(self, rendered: RenderedIssue, config: Config, signer: Signer,
                 *, now: datetime | None = None) -> None:
        self.rendered = rendered
        self.signer = signer
        self.from_address = one_address(config["newsletter.from"], "newsletter.from")
        self.reply_to = (one_address(config["newsletter.reply_to"], "newsletter.reply_to")
                         if config["newsletter.reply_to"] else None)
        self.sender = self.from_address.addr_spec
        self.domain = self.from_address.domain
        # [bounces] return_path: each message's envelope sender is return_path with a signed
        # token naming the issue and reader (VERP), repeated in X-Newsletter-Token for feedback
        # reports that quote only the headers; Feedback-ID is Gmail's feedback-loop key.
        self.return_path = config["bounces.return_path"]
        if self.return_path:
            from newsletter.bounces.verp import make_token, return_path_problem

            problem = return_path_problem(self.return_path)
            if problem:
                raise RenderError(problem, where="bounces.return_path")
            self._make_token = make_token
            local, _, domain = self.return_path.rpartition("@")
            self._verp_head, self._verp_tail = f"{local}+", f"@{domain}"
        self.feedback_id = (f"{header_text(rendered.issue.key)}:{list_label(config['newsletter.name'])}:"
                            f"{self.domain}") if self.return_path else ""
        self.base_url = config["newsletter.base_url"].rstrip("/")
        if self.base_url and not re.match(r"^https?://[^\s<>\"']+$", self.base_url):
            raise RenderError(f"expected an absolute URL such as https://papers.example.org, got {self.base_url!r}",
                              where="newsletter.base_url")
        # RFC 8058: one-click unsubscribe is a POST to an https URL; a mailto: or plain http
        # List-Unsubscribe (a loopback base_url while testing) is sent without the -Post header.
        self.one_click = self.base_url.startswith("https://")
        name = header_text(config["newsletter.name"])
        self.list_id = f"{name} <{list_label(name)}.{self.domain}>"
        # Each message is dated when it is built: a send held back by a rate limit can take hours,
        # and a Date hours before the message reaches the server is a spam sign. ``now`` fixes
        # the date (previews, tests); the formatted line is cached for the second it names.
        self._fixed_date = format_datetime(now.astimezone(timezone.utc), usegmt=True) if now else None
        self._date_cache: tuple[int, bytes] = (-1, b"")
        self.subject = header_text(rendered.subject)
        self._html_body = Base64Splice(crlf_body(rendered.html), placeholders.TOKENS)
        self._text_body = Base64Splice(crlf_body(rendered.text), placeholders.TOKENS)
        self._build_skeleton()
        self.cards: CardSet  # set by PersonalMessages, for readers with their own issue

    # -- per-message values ----------------------------------------------------------------

    def date(self) -> str:
        """The Date of a message built now (RFC 5322: when it was ready to go), or the fixed one."""
        return self._fixed_date or self._date_line()[6:-2].decode("ascii")

    def _date_line(self) -> bytes:
        if self._fixed_date is not None:
            return f"Date: {self._fixed_date}\r\n".encode("ascii")
        second = int(time.time())
        cached = self._date_cache
        if cached[0] != second:  # a tuple swapped whole: safe with several sending threads
            when = datetime.fromtimestamp(second, timezone.utc)
            cached = self._date_cache = (second, f"Date: {format_datetime(when, usegmt=True)}\r\n".encode("ascii"))
        return cached[1]

    # -- per-subscriber values -------------------------------------------------------------

    def unsubscribe_url(self, email: str) -> str:
        """``https://BASE/unsubscribe/TOKEN``, or a ``mailto:`` to the sender without a base URL."""
        token = self.signer.unsubscribe_token(email)
        if self.base_url:
            return f"{self.base_url}/unsubscribe/{token}"
        return f"mailto:{self.sender}?subject={quote('unsubscribe ' + token)}"

    def preferences_url(self, email: str) -> str:
        """``https://BASE/preferences/TOKEN``: the web app's page where the reader sees their
        subscription and changes their name. Without a base URL there is no page; the default
        templates then show no link, and a rendering made with one (frozen before the setting
        was removed) points at a reply to the sender instead."""
        if self.base_url:
            return f"{self.base_url}/preferences/{self.signer.preferences_token(email)}"
        return f"mailto:{self.sender}?subject={quote('preferences')}"

    def personal(self, subscriber: Subscriber) -> placeholders.Personal:
        self._check_address(subscriber.email)
        return placeholders.Personal(name=placeholders.greeting_name(subscriber.name),
                                     email=subscriber.email,
                                     unsubscribe_url=self.unsubscribe_url(subscriber.email),
                                     preferences_url=self.preferences_url(subscriber.email))

    def personalised_parts(self, subscriber: Subscriber, picks: Sequence[Pick] | None = None) -> tuple[str, str]:
        """(html, text) of this subscriber's copy, as the reader will see it: the shared issue,
        or with ``picks`` their own (after ``PersonalMessages`` gave this factory its cards)."""
        values = self.personal(subscriber)
        if picks is None:
            html, text = self.rendered.html, self.rendered.text
        else:
            copy = self.cards.assemble(picks, self.rate_token(subscriber))
            html, text = copy.html, copy.text
        return placeholders.fill(html, values.for_html()), placeholders.fill(text, values.for_text())

    def token(self, subscriber: Subscriber) -> str:
        """The return-path token of this reader's copy; "" without VERP (no return_path, or a
        test copy to someone not on file)."""
        if not self.return_path or subscriber.id is None:
            return ""
        return self._make_token(self.signer, self.rendered.issue.number, subscriber.id)

    def envelope_sender(self, token: str) -> str:
        if not self.return_path:
            return self.sender
        if not token:
            return self.return_path
        return self._verp_head + token + self._verp_tail  # verp_address(), without re-splitting

    def rate_token(self, subscriber: Subscriber) -> Callable[[str], str]:
        """paper id -> the token of this reader's rating links on that paper's card."""
        reader_id = subscriber.id or 0
        rating_token = self.signer.rating_token
        return lambda paper_id: rating_token(reader_id, paper_id)

    @staticmethod
    def _check_address(email: str) -> None:
        if not email or UNSAFE_ADDRESS.search(email) or email.count("@") != 1:
            raise RenderError("not a deliverable address for a message header", where=repr(email))

    # -- the reference path ----------------------------------------------------------------

    def _headers(self, msg: EmailMessage, *, to: Address, message_id: str, unsubscribe: str,
                 token: str = _TOKEN_SENTINEL, subject: str | None = None) -> None:
        set_header(msg, "From", self.from_address)
        set_header(msg, "To", to)
        set_header(msg, "Subject", self.subject if subject is None else subject)
        set_header(msg, "Date", self.date())
        set_header(msg, "Message-ID", message_id)
        if self.reply_to is not None:
            set_header(msg, "Reply-To", self.reply_to)
        set_header(msg, "List-Id", self.list_id)
        set_header(msg, "List-Unsubscribe", unsubscribe)
        if self.one_click:
            set_header(msg, "List-Unsubscribe-Post", LIST_UNSUBSCRIBE_POST)
        if self.return_path:
            set_header(msg, "Feedback-ID", self.feedback_id)
            set_header(msg, "X-Newsletter-Token", token or "none")

    def _to(self, subscriber: Subscriber) -> Address:
        self._check_address(subscriber.email)
        name = placeholders.greeting_name(subscriber.name, fallback="")
        username, _, domain = subscriber.email.rpartition("@")
        try:
            if not subscriber.email.isascii():
                # Address(addr_spec=...) refuses a non-ASCII local part; SMTPUTF8 carries it.
                return Address(display_name=name, username=username, domain=domain)
            return Address(display_name=name, addr_spec=subscriber.email)
        except (ValueError, IndexError) as exc:
            raise RenderError(f"cannot address a message to it: {exc}", where=repr(subscriber.email)) from None

    def build_email_message(self, subscriber: Subscriber, message_id: str | None = None,
                            picks: Sequence[Pick] | None = None) -> EmailMessage:
        """The subscriber's message built the plain way: a fresh ``EmailMessage``."""
        html, text = self.personalised_parts(subscriber, picks)
        is_ascii = subscriber.email.isascii()
        msg = new_message(utf8=not is_ascii)
        subject = self.subject if picks is None else self.cards.head_values(picks)[0]
        self._headers(msg, to=self._to(subscriber), message_id=message_id or make_msgid(domain=self.domain),
                      unsubscribe=f"<{self.unsubscribe_url(subscriber.email)}>", token=self.token(subscriber),
                      subject=subject)
        msg.set_content(text, subtype="plain", charset="utf-8", cte="base64")
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="base64")
        return msg

    # -- the fast path ---------------------------------------------------------------------

    def _build_skeleton(self) -> None:
        msg = new_message()
        self._headers(msg, to=Address(addr_spec=_TO_SENTINEL), message_id=_MSGID_SENTINEL, unsubscribe=_UNSUB_SENTINEL)
        msg.set_content(_TEXT_SENTINEL, subtype="plain", charset="utf-8", cte="7bit")
        msg.add_alternative(_HTML_SENTINEL, subtype="html", charset="utf-8", cte="7bit")
        for part in msg.iter_parts():
            part.replace_header("Content-Transfer-Encoding", "base64")
        data = msg.as_bytes(policy=SMTP_POLICY)
        pieces: list[bytes] = []
        rest = data
        # Without VERP the token piece is empty: the sentinel is then looked for as "" (found at once).
        token_line = f"X-Newsletter-Token: {_TOKEN_SENTINEL}\r\n" if self.return_path else ""
        for sentinel in (f"To: {_TO_SENTINEL}\r\n", str(msg["Date"]).join(("Date: ", "\r\n")),
                         f"Message-ID: {_MSGID_SENTINEL}\r\n",
                         f"List-Unsubscribe: {_UNSUB_SENTINEL}\r\n", token_line, f"{_TEXT_SENTINEL}\r\n",
                         f"{_HTML_SENTINEL}\r\n"):
            if not sentinel:
                pieces.append(b"")
                continue
            head, found, rest = rest.partition(sentinel.encode("ascii"))
            if not found:
                raise RenderError(f"the message skeleton lacks {sentinel.strip()!r}", where="messages")
            pieces.append(head)
        pieces.append(rest)
        self._pieces = tuple(pieces)

    def _to_line(self, subscriber: Subscriber) -> bytes:
        """The To line the reference path writes (``address_line``), without building an
        ``EmailMessage``; only ASCII addresses come here (``_check_address`` ran in ``personal``)."""
        name = placeholders.greeting_name(subscriber.name, fallback="")
        return address_line("To", [(name, subscriber.email)]).encode("ascii")

    def build(self, subscriber: Subscriber, message_id: str | None = None) -> OutgoingMessage:
        """This subscriber's message as bytes ready for SMTP (CRLF line ends)."""
        if not subscriber.email.isascii():
            # Internationalised addresses need SMTPUTF8 headers: take the reference path.
            msg = self.build_email_message(subscriber, message_id)
            return OutgoingMessage(message_id=str(msg["Message-ID"]), sender=self.envelope_sender(self.token(subscriber)),
                                   recipient=subscriber.email, data=msg.as_bytes(policy=SMTPUTF8_POLICY))
        values = self.personal(subscriber)
        message_id = message_id or make_msgid(domain=self.domain)
        if "\r" in message_id or "\n" in message_id:
            raise RenderError("line breaks are not allowed in a Message-ID", where=repr(message_id))
        text = self._text_body.render({k: v.encode("utf-8") for k, v in values.for_text().items()})
        html = self._html_body.render({k: v.encode("utf-8") for k, v in values.for_html().items()})
        p = self._pieces
        token = self.token(subscriber)
        data = b"".join((
            p[0], self._to_line(subscriber),
            p[1], self._date_line(),
            p[2], b"Message-ID: ", message_id.encode("ascii"), b"\r\n",
            p[3], b"List-Unsubscribe: <", values.unsubscribe_url.encode("ascii"), b">\r\n",
            p[4], b"X-Newsletter-Token: " + (token or "none").encode("ascii") + b"\r\n" if self.return_path else b"",
            p[5], text,
            p[6], html,
            p[7],
        ))
        return OutgoingMessage(message_id=message_id, sender=self.envelope_sender(token), recipient=subscriber.email,
                               data=data)
