"""Checking and normalising email addresses, and the key they are compared by.

email-validator does the checking (syntax, internationalised domains and local parts, special-use
domains) without DNS look-ups: an import of a million rows must not wait on a resolver, and a
domain that is down today is not a bad address. The normalised form keeps the local part's case
(some servers care) while ``email_key`` lower-cases it, so ``Ada@Example.org`` and
``ada@example.org`` are one subscriber.

A local part (before the ``@``) longer than 64 octets (RFC 5321 4.5.3.1.1) is refused: many
servers reject such an address. email-validator checks it only in its ``strict`` mode (which
costs ~10 % more per address, for this one rule) and counts characters, so the check is ours,
in octets of UTF-8. Looking up an address already on file (``lookup=True``) skips this rule, so
one stored before it still can be unsubscribed or removed.
"""

from __future__ import annotations

import re

import unicodedata

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import SubscriberError


LOCAL_PART_MAX_OCTETS = 64


# RFC 2047's encoded word: valid in a local part, but a To header's reader decodes it.
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?[^?]*\?=")


def check_address(text: str, *, lookup: bool = False) -> str:
    """The normalised address, or ``ValueError`` with email-validator's reason.

    The fast path for imports: no exception object with a location is built until a caller
    decides where the row came from. ``lookup``: for finding an address already on file, without
    the local part's length limit.
    """
    # Spaces and tabs around a spreadsheet cell are slips; other white space (line breaks,
    # Unicode spaces) is left for the validator to refuse, since it hides what the address is.
    candidate = text.strip(" \t")
    if not candidate:
        raise ValueError("no address given")
    try:
        normalized = validate_email(candidate, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    if not lookup:
        local = normalized.rpartition("@")[0]
        if len(local) > LOCAL_PART_MAX_OCTETS or not local.isascii():
            _check_local_length(local)
        if "=?" in local and _ENCODED_WORD.search(local):
            raise ValueError("the address holds an encoded word (=?charset?b?...?=), which mail programs decode "
                             "and show as another address")
    return normalized


def _check_local_length(local: str) -> None:
    """Over 64 octets: refused, in email-validator's own words for an ASCII local part."""
    if local.isascii():
        too_many, unit = len(local) - LOCAL_PART_MAX_OCTETS, "character"
        tail = ""
    else:
        too_many, unit = len(local.encode("utf-8")) - LOCAL_PART_MAX_OCTETS, "byte"
        tail = " in UTF-8"
    if too_many > 0:
        raise ValueError(f"The email address is too long before the @-sign "
                         f"({too_many} {unit}{'s' if too_many != 1 else ''} too many{tail}).")


def normalize_address(text: str, *, lookup: bool = False) -> str:
    """The normalised form of ``text``; raises ``SubscriberError`` naming the address and why.
    ``lookup`` as for ``check_address``."""
    try:
        return check_address(text, lookup=lookup)
    except ValueError as exc:
        raise SubscriberError(str(exc), where=text.strip(" \t") or repr(text)) from None


def email_key(normalized: str) -> str:
    """The comparison key of an already normalised address: lower-cased."""
    return normalized.lower()


def clean_name(text: str) -> str:
    """A display name on one line: control characters dropped, runs of white space (line
    breaks and Unicode line separators included) made one space; everything else (accents,
    scripts, emoji, the zero-width joiners some scripts need) kept as given.

    Names end up beside the address in a ``To:`` header, so a name never spans lines.
    """
    if not text.isprintable():
        text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) != "Cc")
    return " ".join(text.split())


# A reader's name is shown beside their address (To, greetings, pages); the web form and every
# command take the same limit. Attributes are a few key/values, not a place for a file.
MAX_NAME_CHARS = 100
MAX_ATTRIBUTES_CHARS = 10_000
# How much of a bad value an error message quotes (an address may be 254 characters, shown
# whole): a 10 MB field must not become 10 MB of output.
SHOWN_CHARS = 256


def bounded_name(text: str) -> str:
    """``clean_name(text)``, or ``ValueError`` when it is longer than ``MAX_NAME_CHARS``."""
    name = clean_name(text)
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"the name is longer than {MAX_NAME_CHARS} characters ({len(name):,})")
    return name


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters for a message, saying how long it really was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
