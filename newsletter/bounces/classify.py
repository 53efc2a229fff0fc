"""One message from the bounce mailbox -> what it says (``classify``): a hard or soft bounce, a
complaint, an auto-reply to ignore, or something else; with the evidence and every clue that can
tie it to an issue and a reader.

Read in this order, because each kind of mail also looks like the next one:

1. ``multipart/report; report-type=feedback-report`` (ARF, RFC 5965): a complaint.
2. ``multipart/report; report-type=delivery-status`` (DSN, RFC 3464): one verdict per recipient
   from ``Action`` and ``Status`` (``5.x.x`` hard; ``4.x.x`` and ``Action: delayed`` soft;
   ``delivered``/``relayed``/``expanded`` are not failures). ``5.2.2`` (mailbox full) counts as
   soft: the address exists, and providers clear full mailboxes.
3. A bounce in plain text, as qmail, Exim and old Sendmail write them: sent by the mailer daemon
   (or with a bounce's subject) and saying which address failed and why (an SMTP reply code or
   an enhanced status code, or words such as "User unknown", "mailbox unavailable").
4. An auto-reply (RFC 3834 ``Auto-Submitted`` other than ``no``, ``X-Autoreply``,
   ``X-Autorespond``, ``Precedence: auto_reply``, an out-of-office subject): ignored. Bounces
   carry ``Auto-Submitted: auto-replied`` too, which is why this comes after 1-3.

Clues for attribution (``act.py`` uses them in this order): VERP tokens in the envelope recipient
headers of the bounce (``Delivered-To``, ``X-Original-To``, ``To``); ``X-Newsletter-Token`` and
``Message-ID`` lines in the returned original; the failed recipients' addresses.

The parser is the standard library's with ``compat32`` (its fastest policy); nothing here is
decoded that the verdict does not need.

``flufl.bounce`` (GNU Mailman's detectors) was tried on the samples in tests/data/bounces/: it
finds the same failed addresses in every bounce there, but says nothing of complaints or
auto-replies, gives no status code, diagnostic or reporting MTA (the evidence every event
keeps), and counts ``5.2.2`` (mailbox full) as permanent; so it is not a dependency.
"""

from __future__ import annotations

import re
from functools import lru_cache
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.parser import HeaderParser

from newsletter.bounces.verp import tokens_in_address

HARD, SOFT, COMPLAINT, AUTO_REPLY, IGNORED, NOT_BOUNCE, UNREADABLE = (
    "hard", "soft", "complaint", "auto_reply", "ignored", "not_bounce", "unreadable")

_MAX_DIAGNOSTIC = 500
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"(?<![\d.])([245]\d\d)[ -](?!\d)")
_ADDRESS = re.compile(r"<?([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+)>?")
_TOKEN_LINE = re.compile(r"^X-Newsletter-Token:[ \t]*([a-z2-7]{26})\s*$", re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID_LINE = re.compile(r"^Message-I[dD]:[ \t]*(?:\r?\n[ \t]+)?(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery (?:subsystem|system)|mail ?administrator", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (?:status notification|failure|has failed)|failure notice|"
    r"mail delivery failed|returned mail|delivery failure|could not be delivered|non-?delivery|"
    r"warning: message .* delayed|delayed mail", re.IGNORECASE)
_AUTO_SUBJECT = re.compile(r"^\s*(?:out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?(?:reply|response)|"
                           r"auto:|abwesenheit|absence|vacation)", re.IGNORECASE)
_HARD_WORDS = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient)|mailbox (?:unavailable|not found|does not exist)|"
    r"does not exist|address rejected|recipient rejected|no mailbox here|invalid recipient|"
    r"account (?:has been )?disabled|unrouteable|permanent(?:ly)? (?:error|fail)|"
    r"permanent fatal errors|not our customer|host not found|domain (?:not found|does not exist)", re.IGNORECASE)
_SOFT_WORDS = re.compile(
    r"mailbox (?:is )?full|over quota|quota exceeded|temporar(?:y|ily)|try again later|has not yet been delivered|"
    r"delayed|deferred|will (?:keep|continue) trying|insufficient storage", re.IGNORECASE)
# Where a plain-text bounce starts quoting the original: what is after it is not the verdict.
_QUOTE_START = re.compile(
    r"^(?:-+ ?This is a copy of the message|--- Below this line is a copy of the message|"
    r"-+ ?Original message follows|-+ ?Returned message|-+ The original message|"
    r"-+ ?Transcript of session follows|Content-Type: message/rfc822|-+ ?Original Message)",
    re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Recipient:
    """One failed (or delayed) recipient named by a report."""

    address: str
    kind: str                # hard | soft | ignored
    status: str = ""         # enhanced status code, 5.1.1
    action: str = ""         # failed | delayed | ... (DSN)
    diagnostic: str = ""     # the remote server's words


@dataclass(frozen=True)
class Report:
    kind: str
    recipients: tuple[Recipient, ...] = ()
    reporting_mta: str = ""
    feedback_type: str = ""                     # ARF: abuse, fraud, ...
    envelope_tokens: tuple[str, ...] = ()       # VERP tokens the bounce was addressed to
    quoted_tokens: tuple[str, ...] = ()         # X-Newsletter-Token lines in the returned original
    quoted_message_ids: tuple[str, ...] = ()    # Message-ID lines in the returned original
    message_id: str = ""                        # the report's own
    subject: str = ""
    complained_addresses: tuple[str, ...] = field(default=())  # ARF Original-Rcpt-To

    @property
    def evidence(self) -> str:
        """One line for the event: status, diagnostic, reporting MTA."""
        first = self.recipients[0] if self.recipients else None
        parts = []
        if self.kind == COMPLAINT:
            parts.append(f"feedback report ({self.feedback_type or 'abuse'})")
        if first is not None:
            if first.status:
                parts.append(first.status)
            if first.action:
                parts.append(f"action {first.action}")
        if self.reporting_mta:
            parts.append(f"reported by {self.reporting_mta}")
        if first is not None and first.diagnostic:
            parts.append(first.diagnostic)
        return _one_line("; ".join(parts))[:_MAX_DIAGNOSTIC]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    return _one_line(value) if value is not None else ""


def _typed_value(value: str) -> str:
    """``rfc822; ada@example.org`` -> ``ada@example.org``; ``dns; mx.example.org`` -> ``mx.example.org``."""
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def _clean_address(text: str) -> str:
    match = _ADDRESS.search(text or "")
    return match.group(1).lower() if match else ""


_ENVELOPE_HEADERS = ("delivered-to", "x-original-to", "to", "envelope-to", "x-envelope-to")


class _Top:
    """The top-level headers, read once: ``Message.get`` scans every header on each call."""

    def __init__(self, msg: Message) -> None:
        self.all: dict[str, list[str]] = {}
        for name, value in msg.raw_items():
            self.all.setdefault(name.lower(), []).append(value if isinstance(value, str) else str(value))

    def __call__(self, name: str) -> str:
        values = self.all.get(name.lower())
        return _one_line(values[0]) if values else ""

    def has(self, name: str) -> bool:
        return name.lower() in self.all


def classify(data: bytes) -> Report:
    """What one message from the bounce mailbox says."""
    try:
        msg = message_from_bytes(data)
    except Exception:  # the parser is lenient; anything it still trips over is unreadable
        return Report(UNREADABLE)
    if not data.strip() or not msg.keys():
        return Report(UNREADABLE)
    top = _Top(msg)
    envelope = tuple(dict.fromkeys(
        token.lower() for name in _ENVELOPE_HEADERS for value in top.all.get(name, ())
        for token in tokens_in_address(value)))
    common = {"envelope_tokens": envelope, "message_id": top("Message-ID"), "subject": top("Subject")[:200]}
    try:
        return _classify(msg, top, common)
    except (TypeError, ValueError, AttributeError, LookupError):
        return Report(UNREADABLE, **common)


def _classify(msg: Message, top: _Top, common: dict) -> Report:  # type: ignore[type-arg]
    content_type = top("Content-Type").lower()
    if content_type.startswith("multipart/report"):
        report_type = (msg.get_param("report-type") or "").lower()
        if report_type == "feedback-report":
            return _feedback_report(msg, common)
        if report_type == "delivery-status":
            report = _delivery_status(msg, common)
            if report is not None:
                return report
    report = _plain_bounce(msg, top, common)
    if report is not None:
        return report
    if _is_auto_reply(top):
        return Report(AUTO_REPLY, **common)
    return Report(NOT_BOUNCE, **common)


def _quoted(msg: Message) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(X-Newsletter-Token values, Message-IDs) in everything below the report's own headers."""
    texts: list[str] = []
    for part in msg.walk():
        if part is msg:
            if not part.is_multipart():
                texts.append(_text_of(part))
            continue
        if part.get_content_type() in ("message/rfc822", "message/global") and part.is_multipart():
            inner = part.get_payload(0)
            texts.append("".join(f"{k}: {v}\n" for k, v in inner.items()))
        elif not part.is_multipart() and part.get_content_maintype() in ("text", "message"):
            texts.append(_text_of(part))
    quoted = "\n".join(texts)
    tokens = tuple(dict.fromkeys(t.lower() for t in _TOKEN_LINE.findall(quoted)))
    ids = tuple(dict.fromkeys(_MESSAGE_ID_LINE.findall(quoted)))
    return tokens, ids


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(_codec(part.get_param("charset") or "utf-8"), "replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


@lru_cache(maxsize=64)
def _codec(charset: object) -> str:
    """A codec Python knows for a part's charset (an unknown or malformed one reads as UTF-8)."""
    import codecs

    try:
        return codecs.lookup(str(charset).strip('"').lower()).name
    except (LookupError, ValueError):
        return "utf-8"


def _header_blocks(part: Message) -> list[Message]:
    """The field blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    if part.get("Content-Transfer-Encoding", "").lower() in ("base64", "quoted-printable"):
        text = _text_of(part)
    return [HeaderParser().parsestr(block.strip() + "\n") for block in re.split(r"\r?\n\s*\r?\n", text) if block.strip()]


def _feedback_report(msg: Message, common: dict) -> Report:  # type: ignore[type-arg]
    fields: list[Message] = []
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            fields = _header_blocks(part)
            break
    first = fields[0] if fields else Message()
    tokens, ids = _quoted(msg)
    rcpts = tuple(dict.fromkeys(a for a in (_clean_address(str(v)) for v in (first.get_all("Original-Rcpt-To") or ()))
                                if a))
    # The original's To is the reader when Original-Rcpt-To is left out (Yahoo's reports).
    if not rcpts:
        for part in msg.walk():
            if part.get_content_type() in ("message/rfc822", "text/rfc822-headers") and part is not msg:
                inner = part.get_payload(0) if part.is_multipart() else HeaderParser().parsestr(_text_of(part))
                address = _clean_address(str(inner.get("To", "")))
                if address:
                    rcpts = (address,)
                break
    recipients = tuple(Recipient(address=a, kind=COMPLAINT) for a in rcpts)
    return Report(COMPLAINT, recipients=recipients, feedback_type=_header(first, "Feedback-Type").lower(),
                  reporting_mta=_typed_value(_header(first, "Reporting-MTA")) or _header(first, "User-Agent"),
                  quoted_tokens=tokens, quoted_message_ids=ids, complained_addresses=rcpts, **common)


def _delivery_status(msg: Message, common: dict) -> Report | None:  # type: ignore[type-arg]
    blocks: list[Message] = []
    for part in msg.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            blocks = _header_blocks(part)
            break
    if not blocks:
        return None
    per_message, per_recipient = blocks[0], blocks[1:]
    if per_message.get("Final-Recipient") or per_message.get("Original-Recipient"):
        per_recipient = blocks  # no per-message block written
    reporting = _typed_value(_header(per_message, "Reporting-MTA"))
    recipients = []
    for block in per_recipient:
        address = _clean_address(_typed_value(_header(block, "Final-Recipient"))) or \
            _clean_address(_typed_value(_header(block, "Original-Recipient")))
        action = _header(block, "Action").lower()
        status_match = _STATUS.search(_header(block, "Status"))
        status = status_match.group(0) if status_match else ""
        diagnostic = _typed_value(_header(block, "Diagnostic-Code"))
        if not address:
            continue
        recipients.append(Recipient(address=address, kind=_verdict(action, status, diagnostic),
                                    status=status, action=action, diagnostic=diagnostic[:_MAX_DIAGNOSTIC]))
        reporting = reporting or _typed_value(_header(block, "Remote-MTA"))
    if not recipients:
        return None
    tokens, ids = _quoted(msg)
    kinds = {r.kind for r in recipients}
    kind = HARD if HARD in kinds else SOFT if SOFT in kinds else IGNORED
    return Report(kind, recipients=tuple(recipients), reporting_mta=reporting, quoted_tokens=tokens,
                  quoted_message_ids=ids, **common)


def _verdict(action: str, status: str, diagnostic: str) -> str:
    if action in ("delivered", "relayed", "expanded"):
        return IGNORED
    if action == "delayed":
        return SOFT
    if status.startswith("5."):
        return SOFT if status.startswith("5.2.2") else HARD
    if status.startswith("4."):
        return SOFT
    if action == "failed":
        code = _SMTP_CODE.search(diagnostic)
        if code is not None:
            return HARD if code.group(1).startswith("5") else SOFT
        return SOFT if _SOFT_WORDS.search(diagnostic) else HARD
    return IGNORED


def _is_from_daemon(top: _Top) -> bool:
    sender = top("From") + " " + top("Sender")
    return bool(_DAEMON.search(sender)) or top("Return-Path") in ("<>", "<MAILER-DAEMON>")


def _plain_bounce(msg: Message, top: _Top, common: dict) -> Report | None:  # type: ignore[type-arg]
    subject = top("Subject")
    if not (_is_from_daemon(top) or _BOUNCE_SUBJECT.search(subject)):
        return None
    body = ""
    for part in msg.walk():
        if not part.is_multipart() and part.get_content_type() == "text/plain":
            body = _text_of(part)
            break
    if not body:
        return None
    quote = _QUOTE_START.search(body)
    verdict_text = body[:quote.start()] if quote else body
    status_match = _STATUS.search(verdict_text)
    code_match = _SMTP_CODE.search(verdict_text)
    hard_words = _HARD_WORDS.search(verdict_text)
    soft_words = _SOFT_WORDS.search(verdict_text)
    if status_match:
        status = status_match.group(0)
        kind = SOFT if status.startswith(("4.", "5.2.2")) else HARD
    elif code_match:
        status = ""
        kind = HARD if code_match.group(1).startswith("5") else SOFT
    elif hard_words or soft_words:
        status = ""
        kind = HARD if hard_words and not (soft_words and soft_words.start() < hard_words.start()) else SOFT
    else:
        return None
    if kind == HARD and soft_words and not hard_words and not (code_match and code_match.group(1).startswith("5")) \
            and not (status_match and status_match.group(0).startswith("5.")):
        kind = SOFT
    own = {_clean_address(top(n)) for n in ("From", "To", "Delivered-To", "X-Original-To", "Return-Path")}
    addresses = [a.lower() for a in _ADDRESS.findall(verdict_text)]
    addresses = [a for a in dict.fromkeys(addresses) if a not in own and not _DAEMON.search(a)]
    if not addresses:
        return None
    diagnostic = _diagnostic_line(verdict_text, status_match, code_match, hard_words or soft_words)
    mta = ""
    mta_match = re.search(r"(?:qmail-send program at|Reporting-MTA:\s*dns;|mail delivery software at|"
                          r"from host|at host)\s+\[?([A-Za-z0-9.-]+\.[A-Za-z]{2,})", verdict_text)
    if mta_match:
        mta = mta_match.group(1)
    elif _is_from_daemon(top):
        mta = _clean_address(top("From")).rpartition("@")[2]
    recipients = tuple(Recipient(address=a, kind=kind, status=status, action="failed" if kind == HARD else "delayed",
                                 diagnostic=diagnostic) for a in addresses[:1])
    tokens, ids = _quoted(msg)
    return Report(kind, recipients=recipients, reporting_mta=mta, quoted_tokens=tokens, quoted_message_ids=ids, **common)


def _diagnostic_line(text: str, *matches: re.Match[str] | None) -> str:
    for match in matches:
        if match is not None:
            start = text.rfind("\n", 0, match.start()) + 1
            end = text.find("\n", match.end())
            return _one_line(text[start:end if end >= 0 else None])[:_MAX_DIAGNOSTIC]
    return ""


def _is_auto_reply(top: _Top) -> bool:
    auto_submitted = top("Auto-Submitted").lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return True
    if top.has("X-Autoreply") or top.has("X-Autorespond") or top.has("X-Autoresponder"):
        return True
    if top("Precedence").lower() in ("auto_reply", "auto-reply"):
        return True
    return bool(_AUTO_SUBJECT.search(top("Subject")))
