"""Double opt-in and unsubscribe, as library functions the web routes call.

The rules live here, not in the routes:

* asking to subscribe answers the same way whatever the address's state (pending, active,
  unsubscribed, bounced, unknown), so the page never tells who is on the list;
* a new address is stored as ``pending``; only the signed, expiring link in the confirmation
  message makes it ``active``;
* a suppressed address (unsubscribed or bounced) is reactivated only by a confirmation link made
  *after* it was suppressed, i.e. by a fresh request: an old link replayed later does nothing;
* an unsubscribe token is checked before anything is read, and a forged one changes nothing.
"""

from __future__ import annotations

import enum
import smtplib
from email import policy as email_policy
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid

from itsdangerous.encoding import base64_decode, bytes_to_int

from newsletter.config import Config
from newsletter.errors import DeliveryError, NewsletterError, SubscriberError
from newsletter.render.placeholders import header_text
from newsletter.store import Store
from newsletter.store.subscribers import AlreadySubscribedError, add_subscriber, get_subscriber, set_status
from newsletter.subscribers.addresses import normalize_address
from newsletter.tokens import Signer

CONFIRM_MAX_AGE_S = 7 * 24 * 3600  # the same as Signer.verify_confirm's default
MAX_NAME_CHARS = 100
MAX_ADDRESS_CHARS = 254  # RFC 5321's limit on a forward path


class ConfirmOutcome(enum.Enum):
    CONFIRMED = "confirmed"        # pending or (after a fresh request) suppressed -> active
    ALREADY_ACTIVE = "already"
    EXPIRED = "expired"            # genuine link, too old: ask again
    STALE = "stale"                # genuine link made before the address was suppressed
    INVALID = "invalid"            # forged, altered, or for an address no longer on file


class UnsubscribeOutcome(enum.Enum):
    UNSUBSCRIBED = "unsubscribed"
    ALREADY = "already"            # replayed token, or a bounced address: nothing to change
    INVALID = "invalid"            # forged or altered token
    UNKNOWN = "unknown"            # genuine token, but the address was removed from the list


def clean_name(raw: str) -> str:
    """A display name safe for a header and a page: one line, no control characters, bounded."""
    name = " ".join(raw.split())
    if len(name) > MAX_NAME_CHARS:
        raise SubscriberError(f"the name is longer than {MAX_NAME_CHARS} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise SubscriberError("the name holds control characters")
    return header_text(name)  # an encoded word ("=?utf-8?b?...?=") is broken up, never decoded


def check_address(raw: str) -> str:
    """The normalised address, or a SubscriberError that says in words what is wrong."""
    text = raw.strip()
    if not text:
        raise SubscriberError("an email address is required")
    if len(text) > MAX_ADDRESS_CHARS:
        raise SubscriberError(f"the email address is longer than {MAX_ADDRESS_CHARS} characters")
    return normalize_address(text)


def request_subscription(store: Store, config: Config, signer: Signer, email: str, name: str,
                         *, base_url: str, now: datetime | None = None) -> str:
    """Record the request (a new address becomes ``pending``) and mail a confirmation link.

    Returns the normalised address. The database write commits before the message is sent so
    the write lock is never held across an SMTP conversation; a failed send leaves a harmless
    pending row that the next request reuses. Raises SubscriberError for a bad address and
    DeliveryError when the confirmation cannot be sent.
    """
    address = check_address(email)
    display_name = clean_name(name)
    try:
        with store.atomic() as conn:
            if get_subscriber(conn, address) is None:
                add_subscriber(conn, address, name=display_name, status="pending", now=now,
                               detail="asked on the web form")
    except AlreadySubscribedError:
        pass  # a concurrent request for the same address added it first: same outcome
    token = signer.confirm_token(address)
    link = f"{base_url.rstrip('/')}/confirm/{token}"
    send_confirmation(config, address, display_name, link)
    return address


def build_confirmation(config: Config, address: str, name: str, link: str) -> EmailMessage:
    """The confirmation message, headers set only through the EmailMessage API.

    An internationalised address (``dörte@münchen.de``) cannot be written as RFC 2047 encoded
    words: the message gets the SMTPUTF8 policy (raw UTF-8 headers, RFC 6532), which its
    ``as_bytes()`` then uses, and the transport sends it with SMTPUTF8.
    """
    newsletter = config["newsletter.name"]
    international = not address.isascii()
    message = EmailMessage(policy=email_policy.SMTPUTF8) if international else EmailMessage()
    message["From"] = config["newsletter.from"]
    message["To"] = _to(address, header_text(name))
    message["Subject"] = f"Confirm your subscription to {newsletter}"
    message["Date"] = format_datetime(datetime.now(timezone.utc))
    message["Message-ID"] = make_msgid(domain=_sender_address(config).rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    if config["newsletter.reply_to"]:
        message["Reply-To"] = config["newsletter.reply_to"]
    message.set_content(
        f"Someone, hopefully you, asked to receive {newsletter} at this address.\n\n"
        f"To confirm, open this link within {CONFIRM_MAX_AGE_S // 86400} days:\n\n"
        f"{link}\n\n"
        "If you did not ask, ignore this message: nothing will be sent to you.\n\n"
        f"-- \n{newsletter}\n{config['newsletter.postal_address']}\n"
    )
    return message


def _to(address: str, name: str) -> Address | str:
    """The To header's value. ``Address(addr_spec=...)`` refuses a non-ASCII local part, so an
    internationalised address is given as its two halves (as ``newsletter.render.messages`` does)."""
    if not name:
        return address
    if address.isascii():
        return Address(display_name=name, addr_spec=address)
    username, _, domain = address.rpartition("@")
    return Address(display_name=name, username=username, domain=domain)


def send_confirmation(config: Config, address: str, name: str, link: str) -> None:
    """Send one confirmation through the configured transport (outbox, or SMTP with [smtp])."""
    from newsletter.deliver.transports import open_transport

    data = build_confirmation(config, address, name, link).as_bytes()
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


def _sender_address(config: Config) -> str:
    parsed = getaddresses([config["newsletter.from"]])
    return parsed[0][1] if parsed and parsed[0][1] else config["newsletter.from"]


def token_issued_at(token: str) -> float | None:
    """When a (verified) timed token was made: itsdangerous puts the time before the signature."""
    try:
        return float(bytes_to_int(base64_decode(token.rsplit(".", 2)[-2])))
    except (IndexError, ValueError, TypeError):
        return None


def confirm_subscription(store: Store, signer: Signer, token: str, *,
                         max_age_s: int = CONFIRM_MAX_AGE_S, now: datetime | None = None) -> ConfirmOutcome:
    """Activate the address a confirmation link was made for, if the link still may."""
    address = signer.verify_confirm(token, max_age_s=max_age_s)
    if address is None:
        # A genuine signature with any age means the link only expired: say so, kindly.
        if signer.verify_confirm(token, max_age_s=100 * 365 * 24 * 3600) is not None:
            return ConfirmOutcome.EXPIRED
        return ConfirmOutcome.INVALID
    with store.atomic() as conn:
        subscriber = get_subscriber(conn, address)
        if subscriber is None:
            return ConfirmOutcome.INVALID
        if subscriber.status == "active":
            return ConfirmOutcome.ALREADY_ACTIVE
        if subscriber.is_suppressed:
            issued_at = token_issued_at(token)
            changed = subscriber.status_changed_at or subscriber.updated_at
            # Strictly after: a link from before the unsubscribe (or the same second) must not
            # undo it; a fresh request a second later gets a link that does.
            if issued_at is None or changed is None or issued_at <= changed.timestamp():
                return ConfirmOutcome.STALE
            set_status(conn, address, "active", "confirmed by link after a new request",
                       now=now, allow_reactivate=True)
            return ConfirmOutcome.CONFIRMED
        set_status(conn, address, "active", "confirmed by link", now=now)
        return ConfirmOutcome.CONFIRMED


def unsubscribe_by_token(store: Store, signer: Signer, token: str, *, how: str,
                         now: datetime | None = None) -> UnsubscribeOutcome:
    """Unsubscribe the address an unsubscribe token names; ``how`` goes into the event."""
    address = signer.verify_unsubscribe(token)
    if address is None:
        return UnsubscribeOutcome.INVALID
    with store.atomic() as conn:
        subscriber = get_subscriber(conn, address)
        if subscriber is None:
            return UnsubscribeOutcome.UNKNOWN
        if subscriber.is_suppressed:
            return UnsubscribeOutcome.ALREADY
        set_status(conn, address, "unsubscribed", how, now=now)
        return UnsubscribeOutcome.UNSUBSCRIBED


def address_for_unsubscribe(store: Store, signer: Signer, token: str) -> tuple[UnsubscribeOutcome, str | None]:
    """What a GET of the unsubscribe page may show: the address and whether it is still on the
    list. Reads only."""
    address = signer.verify_unsubscribe(token)
    if address is None:
        return UnsubscribeOutcome.INVALID, None
    with store.atomic() as conn:
        subscriber = get_subscriber(conn, address)
    if subscriber is None:
        return UnsubscribeOutcome.UNKNOWN, address
    if subscriber.is_suppressed:
        return UnsubscribeOutcome.ALREADY, subscriber.email
    return UnsubscribeOutcome.UNSUBSCRIBED, subscriber.email
