"""Double opt-in and unsubscribe, as library functions the web routes call.

The rules live here, not in the routes:

* asking to subscribe answers the same way whatever the address's state (pending, active,
  unsubscribed, bounced, unknown), so the page never tells who is on the list;
* a new address is stored as ``pending``; only the signed, expiring link in the confirmation
  message makes it ``active``;
* a suppressed address (unsubscribed or bounced) is reactivated only by a confirmation link made
  *after* it was suppressed, i.e. by a fresh request: an old link replayed later does nothing;
  an address that complained (reported spam) is never reactivated from the web;
* an unsubscribe token is checked before anything is read, and a forged one changes nothing.
"""

from __future__ import annotations

import enum
import smtplib
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid

from sqlalchemy.exc import OperationalError

from newsletter.config import Config
from newsletter.deliver.transports import open_transport
from newsletter.errors import DeliveryError, NewsletterError, SubscriberError
from newsletter.models import Subscriber
from newsletter.render.headers import header_text, new_message, one_address, set_header
from newsletter import api
from newsletter.api import Store
# not through the API: the web's own ways into the store (a read-only one for pages, a quick-write
# one and its spool for one-click unsubscribes), which the API functions take as their store.
from newsletter.store.access import Transactions
from newsletter.store.spool import UnsubscribeSpool
from newsletter.subscribers.addresses import MAX_NAME_CHARS, normalize_address
from newsletter.tokens import Signer

CONFIRM_MAX_AGE_S = 7 * 24 * 3600  # the same as Signer.verify_confirm's default
# A reader who reported the newsletter as spam: only the operator, naming this status
# (``subscribers add --force complained``), may make them active again.
NEVER_BY_WEB = "complained"
MAX_ADDRESS_CHARS = 254  # RFC 5321's limit on a forward path
MAX_LINE_OCTETS = 998  # RFC 5322 2.1.1, without the CRLF


class ConfirmOutcome(enum.Enum):
    CONFIRMED = "confirmed"        # pending or (after a fresh request) suppressed -> active
    ALREADY_ACTIVE = "already"
    EXPIRED = "expired"            # genuine link, too old: ask again
    STALE = "stale"                # genuine link made before the address was suppressed
    INVALID = "invalid"            # forged, altered, or for an address no longer on file


class UnsubscribeOutcome(enum.Enum):
    UNSUBSCRIBED = "unsubscribed"
    ALREADY = "already"            # replayed token: already unsubscribed, nothing to change
    SPOOLED = "spooled"            # the store was busy: recorded in the spool, applied by the next writer
    INVALID = "invalid"            # forged or altered token
    UNKNOWN = "unknown"            # genuine token, but the address was removed from the list


def form_name(raw: str) -> str:
    """A name typed into a form, safe for a header and a page: one line, no control characters
    (refused in words, not dropped: the reader sees what was wrong), at most ``MAX_NAME_CHARS``."""
    name = " ".join(raw.split())
    if len(name) > MAX_NAME_CHARS:
        raise SubscriberError(f"the name is longer than {MAX_NAME_CHARS} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise SubscriberError("the name holds control characters")
    return header_text(name)  # an encoded word ("=?utf-8?b?...?=") is broken up, never decoded


def form_address(raw: str) -> str:
    """An address typed into a form, normalised, or a SubscriberError that says in words what is
    wrong.

    Beyond what email-validator checks, the address must survive a To header unchanged: a local
    part such as ``=?utf-8?b?YWRh?=`` is valid, but a mail client decodes it as an encoded word
    and shows (and replies to) another address, so it is refused here, before anything is stored.
    """
    text = raw.strip()
    if not text:
        raise SubscriberError("an email address is required")
    if len(text) > MAX_ADDRESS_CHARS:
        raise SubscriberError(f"the email address is longer than {MAX_ADDRESS_CHARS} characters")
    address = normalize_address(text)
    if not _survives_a_header(address):
        raise SubscriberError("this address cannot be written into a message header as it is "
                              "(it looks like an encoded word); please use another address", where=address)
    return address


def _survives_a_header(address: str) -> bool:
    """True when ``To: address`` reads back as exactly ``address``."""
    if "=?" in address or "?=" in address:
        return False
    try:
        message = new_message(utf8=not address.isascii())
        username, _, domain = address.rpartition("@")
        set_header(message, "To", Address(username=username, domain=domain))
        parsed = message["To"].addresses
    except Exception:  # noqa: BLE001 - whatever the email package objects to, the answer is no
        return False
    return len(parsed) == 1 and parsed[0].addr_spec == address


def request_subscription(store: Store, config: Config, signer: Signer, email: str, name: str,
                         *, base_url: str, now: datetime | None = None) -> str:
    """Record the request (a new address becomes ``pending``) and mail a confirmation link.

    Returns the normalised address. The database write commits before the message is sent so
    the write lock is never held across an SMTP conversation; when the send then fails, the
    pending row this request added is taken back out, so nothing is left on file for a message
    that never went (and a retry starts clean). Raises SubscriberError for a bad address and
    DeliveryError when the confirmation cannot be sent.
    """
    address = form_address(email)
    display_name = form_name(name)
    token = signer.confirm_token(address)
    link = f"{base_url.rstrip('/')}/confirm/{token}"
    data = confirmation_bytes(config, address, display_name, link)  # a message that cannot be built stores nothing
    added = api.add_pending_subscriber(store, address, display_name, detail="asked on the web form", now=now)
    if added is None:
        existing = api.find_subscriber(store, address)
        if existing is not None and existing.status == NEVER_BY_WEB:
            return address  # a spam complaint is never undone from the web; the page says the same
    try:
        send_message(config, address, data)
    except BaseException:
        if added is not None and added.id is not None:
            api.withdraw_pending_subscriber(store, added.id)  # unless something happened to it since
        raise
    return address


def build_confirmation(config: Config, address: str, name: str, link: str) -> EmailMessage:
    """The confirmation message, every header set through ``set_header`` (the one function that
    keeps a configured name or a reader's name from adding a header line).

    An internationalised address (``dörte@münchen.de``) cannot be written as RFC 2047 encoded
    words: the message gets the SMTPUTF8 policy (raw UTF-8 headers, RFC 6532), which its
    ``as_bytes()`` then uses, and the transport sends it with SMTPUTF8. Both policies write CRLF
    line ends (a server reads a message with bare LFs as one endless line).
    """
    newsletter = config["newsletter.name"]
    message = new_message(utf8=not address.isascii())
    username, _, domain = address.rpartition("@")
    set_header(message, "From", one_address(config["newsletter.from"], "newsletter.from"))
    set_header(message, "To", Address(display_name=name, username=username, domain=domain))
    set_header(message, "Subject", f"Confirm your subscription to {newsletter}")
    set_header(message, "Date", format_datetime(datetime.now(timezone.utc)))
    set_header(message, "Message-ID", make_msgid(domain=_sender_address(config).rpartition("@")[2] or None))
    set_header(message, "Auto-Submitted", "auto-generated")
    if config["newsletter.reply_to"]:
        set_header(message, "Reply-To", one_address(config["newsletter.reply_to"], "newsletter.reply_to"))
    message.set_content(
        f"Someone, hopefully you, asked to receive {newsletter} at this address.\n\n"
        f"To confirm, open this link within {CONFIRM_MAX_AGE_S // 86400} days and press the button there:\n\n"
        f"{link}\n\n"
        "If you did not ask, ignore this message: nothing will be sent to you.\n\n"
        f"-- \n{newsletter}\n{config['newsletter.postal_address']}\n"
    )
    return message


def confirmation_bytes(config: Config, address: str, name: str, link: str) -> bytes:
    """The confirmation as it goes on the wire: CRLF, no line over 998 octets (RFC 5322 2.1.1).
    Raises SubscriberError (the request's fault, said in words) when the email package cannot
    write the address or name into a message at all.

    A name that cannot be folded (one long run of characters without spaces, in a raw UTF-8
    header) could still make the To line too long next to a long address: then the message is
    built without the name, which is only a courtesy."""
    try:
        data = build_confirmation(config, address, name, link).as_bytes()
        if name and not _fits_the_wire(data):
            data = build_confirmation(config, address, "", link).as_bytes()
    except NewsletterError:
        raise
    except Exception as exc:  # noqa: BLE001 - the email package's many ways of saying no: a 400, not a 500
        raise SubscriberError(f"this address and name cannot be written into a message ({exc})",
                              where=address) from None
    if not _fits_the_wire(data):
        raise DeliveryError("the confirmation message has a line over 998 octets", where=address)
    return data


def _fits_the_wire(data: bytes) -> bool:
    lines = data.split(b"\r\n")
    return all(len(line) <= MAX_LINE_OCTETS and b"\n" not in line and b"\r" not in line for line in lines)


def send_confirmation(config: Config, address: str, name: str, link: str) -> None:
    """Send one confirmation through the configured transport (outbox, or SMTP with [smtp])."""
    send_message(config, address, confirmation_bytes(config, address, name, link))


def send_message(config: Config, address: str, data: bytes) -> None:
    """Send a message the web app built (bytes ready for the wire) to ``address``."""

    try:
        transport = open_transport(config)
        try:
            transport.send(_sender_address(config), [address], data)
        finally:
            transport.close()
    except NewsletterError:
        raise
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"cannot send the confirmation message: {exc}", where=address) from None


def send_welcome(store: Transactions, config: Config, signer: Signer, address: str, *, base_url: str) -> bool:
    """Send the welcome message (``templates/welcome.*``) to a reader who just confirmed, when
    ``newsletter.welcome`` is on; False when it is off. Raises NewsletterError when it cannot
    be built or sent (the caller logs it: the subscription stands either way)."""
    if not config["newsletter.welcome"]:
        return False
    from newsletter.render.welcome import build_welcome
    from newsletter.web.archive import latest_sent_issue

    subscriber = api.find_subscriber(store, address)
    name = subscriber.name if subscriber is not None else ""
    base = base_url.rstrip("/")
    latest = latest_sent_issue(store)
    unsubscribe = (f"{base}/unsubscribe/{signer.unsubscribe_token(address)}" if base
                   else f"mailto:{_sender_address(config)}?subject=unsubscribe")
    message = build_welcome(config, address, name, unsubscribe_url=unsubscribe,
                            preferences_url=f"{base}/preferences/{signer.preferences_token(address)}" if base else "",
                            latest_url=f"{base}/archive/{latest.key}" if base and latest else "",
                            latest_title=latest.title if latest else "")
    data = message.as_bytes()
    if not _fits_the_wire(data):
        raise DeliveryError("the welcome message has a line over 998 octets", where=address)
    send_message(config, address, data)
    return True


def _sender_address(config: Config) -> str:
    parsed = getaddresses([config["newsletter.from"]])
    return parsed[0][1] if parsed and parsed[0][1] else config["newsletter.from"]


def confirm_subscription(store: Store, signer: Signer, token: str, *,
                         max_age_s: int = CONFIRM_MAX_AGE_S, now: datetime | None = None) -> ConfirmOutcome:
    """Activate the address a confirmation link was made for, if the link still may. Only the
    confirm page's button (a POST) calls this: opening the link (a GET, which mail providers'
    link scanners do by themselves) only shows the button."""
    address, outcome = _checked_confirm_token(signer, token, max_age_s)
    if address is None:
        return outcome
    subscriber = api.find_subscriber(store, address)
    for _ in range(3):  # decided on what was read; re-decided when it changed in between
        outcome = _confirm_outcome(signer, token, subscriber)
        if outcome is not ConfirmOutcome.CONFIRMED:
            return outcome
        assert subscriber is not None
        reason = "confirmed by link after a new request" if subscriber.is_suppressed else "confirmed by link"
        change = api.change_subscriber_status(store, address, "active", reason, expected=subscriber, now=now,
                                              allow_reactivate=subscriber.is_suppressed)
        if change.changed or change.before is None:
            return ConfirmOutcome.CONFIRMED if change.changed else ConfirmOutcome.INVALID
        subscriber = change.before
    return ConfirmOutcome.INVALID


def confirm_page(store: Transactions, signer: Signer, token: str, *,
                 max_age_s: int = CONFIRM_MAX_AGE_S) -> tuple[ConfirmOutcome, str | None]:
    """What pressing the confirm button would do (``CONFIRMED``: it would activate), and the
    address, for the page the link opens. Reads only."""
    address, outcome = _checked_confirm_token(signer, token, max_age_s)
    if address is None:
        return outcome, None
    subscriber = api.find_subscriber(store, address)
    return _confirm_outcome(signer, token, subscriber), subscriber.email if subscriber else None


def _checked_confirm_token(signer: Signer, token: str, max_age_s: int) -> tuple[str | None, ConfirmOutcome]:
    """(the address, CONFIRMED) for a genuine link in time; (None, EXPIRED or INVALID) else."""
    address = signer.verify_confirm(token, max_age_s=max_age_s)
    if address is not None:
        return address, ConfirmOutcome.CONFIRMED
    # A genuine signature with any age means the link only expired: say so, kindly.
    if signer.verify_confirm(token, max_age_s=100 * 365 * 24 * 3600) is not None:
        return None, ConfirmOutcome.EXPIRED
    return None, ConfirmOutcome.INVALID


def _confirm_outcome(signer: Signer, token: str, subscriber: Subscriber | None) -> ConfirmOutcome:
    if subscriber is None:
        return ConfirmOutcome.INVALID
    if subscriber.status == "active":
        return ConfirmOutcome.ALREADY_ACTIVE
    if subscriber.status == NEVER_BY_WEB:
        return ConfirmOutcome.STALE
    if subscriber.is_suppressed:
        issued_at = signer.confirm_issued_at(token)
        changed = subscriber.status_changed_at or subscriber.updated_at
        # Strictly after: a link from before the unsubscribe (or the same second) must not
        # undo it; a fresh request a second later gets a link that does.
        if issued_at is None or changed is None or issued_at <= changed.timestamp():
            return ConfirmOutcome.STALE
    return ConfirmOutcome.CONFIRMED


def unsubscribe_by_token(store: Transactions, signer: Signer, token: str, *, how: str,
                         now: datetime | None = None, reads: Transactions | None = None) -> UnsubscribeOutcome:
    """Unsubscribe the address an unsubscribe token names; ``how`` goes into the event.

    Whatever the address's state (active, pending, bounced, complained), the reader's own
    request is recorded: the status becomes ``unsubscribed`` (what ``newsletter subscribers
    unsubscribe`` sets) with an event. When ``store`` cannot get the write lock in time and has
    an unsubscribe spool, the request is appended there (durably) and ``SPOOLED`` is returned:
    the next transaction on the store applies it. ``reads`` (default ``store``) is used to tell
    a removed address before spooling, without waiting for the lock.
    """
    address = signer.verify_unsubscribe(token)
    if address is None:
        return UnsubscribeOutcome.INVALID
    now = now or datetime.now(timezone.utc)
    try:
        change = api.change_subscriber_status(store, address, "unsubscribed", how, now=now)
        if change.before is None:
            return UnsubscribeOutcome.UNKNOWN
        return UnsubscribeOutcome.UNSUBSCRIBED if change.changed else UnsubscribeOutcome.ALREADY
    except OperationalError as exc:
        spool = getattr(store, "unsubscribe_spool", None)
        if spool is None or not _is_busy(exc):
            raise
    subscriber = api.find_subscriber(reads or store, address)
    if subscriber is None:
        return UnsubscribeOutcome.UNKNOWN
    if subscriber.status == "unsubscribed":
        return UnsubscribeOutcome.ALREADY
    spool.append(subscriber.email, how, now)
    return UnsubscribeOutcome.SPOOLED


def _is_busy(exc: OperationalError) -> bool:
    """SQLite's "database is locked" / "database is busy": the write lock was not to be had."""
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text


def address_for_unsubscribe(store: Transactions, signer: Signer, token: str, *,
                            spool: UnsubscribeSpool | None = None) -> tuple[UnsubscribeOutcome, str | None]:
    """What a GET of the unsubscribe page may show: the address and whether it is still on the
    list (an unsubscribe waiting in ``spool`` counts as done). Reads only."""
    address = signer.verify_unsubscribe(token)
    if address is None:
        return UnsubscribeOutcome.INVALID, None
    subscriber = api.find_subscriber(store, address)
    if subscriber is None:
        return UnsubscribeOutcome.UNKNOWN, address
    if subscriber.status == "unsubscribed" or (spool is not None and spool.holds(subscriber.email)):
        return UnsubscribeOutcome.ALREADY, subscriber.email
    return UnsubscribeOutcome.UNSUBSCRIBED, subscriber.email
