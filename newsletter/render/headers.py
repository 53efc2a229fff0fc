"""The one way a header value is written: every message we send (issues, confirmations) sets its
headers through ``set_header`` on a message made by ``new_message``.

Why not the email package alone: given a header value, it *decodes* any RFC 2047 encoded word
in it (``=?utf-8?b?DQpCY2M6IC4uLg==?=`` is ``\\r\\nBcc: ...``) and writes what it decoded out as
is, so a newsletter name, a paper title or a reader's name could add a ``Bcc:`` line. And when it
folds a long display name holding ``?=`` or non-ASCII text it drops the name's quotes, so a
``To:`` with one address parses back as two. Here:

- ``header_text`` makes any text one line, without control characters, and breaks every
  ``=?`` into ``= ?`` so nothing is left to decode;
- address headers (From, To, Reply-To, ...) are written by ``HeaderPolicy`` itself: the display
  name as plain words, or else wholly as our own base64 encoded words, then ``<address>``,
  folded only between those pieces. No parser can read a comma or a quote out of that.
"""

from __future__ import annotations

import base64
import re
from email import policy as email_policy
from email.headerregistry import Address, UnstructuredHeader
from email.message import EmailMessage

from newsletter.errors import RenderError

ADDRESS_HEADERS = frozenset({"from", "to", "cc", "bcc", "reply-to", "sender"})

_WHITESPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")          # RFC 5322 atext
_PRINTABLE_WORD = re.compile(r"[\x21-\x7e]+")                       # after header_text: no "=?"
_UNFOLDED_URL = re.compile(r"<[^\s<>]+>")
# Characters no address we write may hold (a line break, a second address, a comment).
UNSAFE_ADDRESS = re.compile(r"[\x00-\x20\x7f<>,;\"\\()\u2028\u2029]")
# An encoded word is at most 75 characters (RFC 2047, 2): "=?utf-8?b?" + 60 base64 + "?=" is 72.
_ENCODED_WORD_BYTES = 45
_LINE_CHARS = 78


def header_text(text: str | None, *, max_chars: int | None = None) -> str:
    """Any text (a title, a name, a configured value) made safe for a header value: one line,
    no control characters, no RFC 2047 encoded word, at most ``max_chars`` characters.

    Breaking every ``=?`` into ``= ?`` keeps the text readable and leaves nothing to decode.
    """
    folded = _WHITESPACE.sub(" ", _CONTROL.sub(" ", text or "")).strip()
    if max_chars is not None:
        folded = folded[:max_chars].rstrip()
    return folded.replace("=?", "= ?")


def _encoded_words(text: str) -> list[str]:
    """``text`` as base64 UTF-8 encoded words, each whole characters and at most 75 long."""
    words: list[str] = []
    chunk = b""
    for char in text:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > _ENCODED_WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words if w]


def text_pieces(text: str, *, plain: re.Pattern[str] = _PRINTABLE_WORD) -> list[str]:
    """Cleaned text as the pieces a header line may be folded between: each word that matches
    ``plain`` (and is short enough to fold around) as it is, every run of other words as base64
    encoded words (RFC 2047). A space between a plain word and an encoded word is kept by every
    decoder; one inside a run is inside an encoded word."""
    pieces: list[str] = []
    run: list[str] = []
    for word in header_text(text).split(" "):
        if word and plain.fullmatch(word) and len(word) <= _ENCODED_WORD_BYTES:
            if run:
                pieces.extend(_encoded_words(" ".join(run)))
                run = []
            pieces.append(word)
        elif word:
            run.append(word)
    if run:
        pieces.extend(_encoded_words(" ".join(run)))
    return pieces


def mailbox_pieces(display_name: str, addr_spec: str) -> list[str]:
    """One mailbox as pieces to fold between: the display name (only atoms stay as they are:
    a quote, comma or bracket would change how the address parses), then ``<addr_spec>``."""
    name = text_pieces(display_name, plain=_ATOM)
    return [*name, f"<{addr_spec}>"] if name else [addr_spec]


def fold_pieces(name: str, pieces: list[str], linesep: str = "\r\n") -> str:
    """``Name: piece piece`` folded before a piece that would pass 78 characters (a piece is
    never split, so a long address may make a line longer, up to RFC 5322's 998 octets)."""
    lines = [f"{name}:"]
    for piece in pieces:
        if len(lines[-1]) + 1 + len(piece) > _LINE_CHARS and lines[-1] != f"{name}:":
            lines.append("")
        lines[-1] += " " + piece
    return linesep.join(lines) + linesep


def address_line(name: str, addresses: list[tuple[str, str]], linesep: str = "\r\n") -> str:
    """The whole header line for (display name, address) pairs, separated by commas."""
    pieces: list[str] = []
    for index, (display_name, addr_spec) in enumerate(addresses):
        mailbox = mailbox_pieces(display_name, addr_spec)
        if index < len(addresses) - 1:
            mailbox[-1] += ","
        pieces.extend(mailbox)
    return fold_pieces(name, pieces, linesep)


class HeaderPolicy(email_policy.EmailPolicy):
    """``email.policy.SMTP`` (or ``SMTPUTF8``) except for the headers it writes itself:

    - address headers (From, To, Reply-To, ...): ``address_line``, so a display name can never
      come out as a second address;
    - text headers (Subject, List-Id, ...): cleaned by ``header_text`` and folded by
      ``text_pieces``; the standard folding can split an encoded word's text in two;
    - ``List-Unsubscribe: <URL>``: on one line up to 998 octets. The standard policy, finding no
      space in a long URL, turns it into encoded words, which RFC 2369 does not allow and which
      breaks one-click unsubscribe.

    Any other header, or a value of another shape, is folded as usual.
    """

    def _as_is(self, name: str, value: object) -> str | None:
        lower = name.lower()
        if lower in ADDRESS_HEADERS and getattr(value, "addresses", None):
            addresses = value.addresses  # type: ignore[attr-defined]
            line = address_line(name, [(a.display_name, a.addr_spec) for a in addresses], self.linesep)
            return line if line.isascii() or self.utf8 else None
        if lower == "list-unsubscribe":
            return self._unfolded_url(name, str(value))
        if isinstance(value, UnstructuredHeader):
            # Cleaned again here: a value set with msg[name] = ... rather than set_header is safe too.
            return fold_pieces(name, text_pieces(str(value)), self.linesep)
        return None

    def _unfolded_url(self, name: str, text: str) -> str | None:
        if not _UNFOLDED_URL.fullmatch(text) or not (text.isascii() or self.utf8):
            return None
        line = f"{name}: {text}"
        if len(line.encode("utf-8")) > 998:
            return None
        return line + self.linesep

    def fold(self, name: str, value: str) -> str:
        return self._as_is(name, value) or super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        line = self._as_is(name, value)
        if line is None:
            return super().fold_binary(name, value)
        return line.encode("utf-8" if self.utf8 else "ascii")


SMTP_POLICY = HeaderPolicy(linesep="\r\n")        # email.policy.SMTP, plus the above
SMTPUTF8_POLICY = SMTP_POLICY.clone(utf8=True)    # email.policy.SMTPUTF8, plus the above


def one_address(value: str, setting: str) -> Address:
    """The single address in ``value`` (From, Reply-To), checked by the email package's parser.

    The parser would decode an encoded word in the display name (and write out what it decoded):
    the value goes through ``header_text`` first, like every other header value."""
    if "\r" in value or "\n" in value:
        raise RenderError("line breaks are not allowed in an address", where=setting)
    try:
        header = SMTP_POLICY.header_factory(setting.split(".")[-1].replace("_", "-"), header_text(value))
        addresses = getattr(header, "addresses", ())
    except (ValueError, IndexError, AttributeError, TypeError) as exc:  # the parser's own slips
        raise RenderError(f"cannot read an address in {value[:200]!r}: {exc}", where=setting) from None
    if len(addresses) != 1 or header.defects or not addresses[0].domain:
        raise RenderError(f"expected exactly one address like 'Name <user@example.org>', got {value[:200]!r}",
                          where=setting)
    if UNSAFE_ADDRESS.search(addresses[0].addr_spec):
        raise RenderError(f"not a deliverable address for a message header: {addresses[0].addr_spec!r}",
                          where=setting)
    return addresses[0]


def new_message(*, utf8: bool = False) -> EmailMessage:
    """An empty message whose headers will be written by ``HeaderPolicy``; ``utf8`` for an
    internationalised recipient (SMTPUTF8, RFC 6532)."""
    return EmailMessage(policy=SMTPUTF8_POLICY if utf8 else SMTP_POLICY)


def safe_address(address: Address) -> Address:
    """``address`` with its display name made one clean line (``header_text``)."""
    return Address(display_name=header_text(address.display_name), username=address.username,
                   domain=address.domain)


def set_header(msg: EmailMessage, name: str, value: str | Address) -> None:
    """Set header ``name`` once, from a value that may come from configuration, a feed or a
    reader: an ``Address`` for an address header (its name cleaned), any other value through
    ``header_text``. A message not made by ``new_message`` is refused: its policy would fold
    address headers the unsafe way."""
    if not isinstance(msg.policy, HeaderPolicy):
        raise TypeError("set_header needs a message made by new_message()")
    if name.lower() in ADDRESS_HEADERS:
        if not isinstance(value, Address):
            raise TypeError(f"{name} takes an Address, parsed and checked by the caller")
        msg[name] = safe_address(value)
    else:
        msg[name] = header_text(str(value))
