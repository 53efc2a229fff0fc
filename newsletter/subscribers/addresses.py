"""Checking and normalising email addresses, and the key they are compared by.

email-validator does the checking (syntax, internationalised domains and local parts, special-use
domains) without DNS look-ups: an import of a million rows must not wait on a resolver, and a
domain that is down today is not a bad address. The normalised form keeps the local part's case
(some servers care) while ``email_key`` lower-cases it, so ``Ada@Example.org`` and
``ada@example.org`` are one subscriber.
"""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import SubscriberError


def check_address(text: str) -> str:
    """The normalised address, or ``ValueError`` with email-validator's reason.

    The fast path for imports: no exception object with a location is built until a caller
    decides where the row came from.
    """
    # Spaces and tabs around a spreadsheet cell are slips; other white space (line breaks,
    # Unicode spaces) is left for the validator to refuse, since it hides what the address is.
    candidate = text.strip(" \t")
    if not candidate:
        raise ValueError("no address given")
    try:
        return validate_email(candidate, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


def normalize_address(text: str) -> str:
    """The normalised form of ``text``; raises ``SubscriberError`` naming the address and why."""
    try:
        return check_address(text)
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
