"""The subscriber's own page, opened from the link in every issue's footer: what we hold about
them (address, name, status), a form to change the name, and the unsubscribe button.

The link carries a signed, non-expiring token of its own (``Signer.preferences_token``), so it
can neither confirm nor unsubscribe by itself; the token is checked before anything is read, and
a forged or altered one changes nothing. The rules live here; ``newsletter.web.app`` only
translates HTTP.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from newsletter.models import Subscriber
from newsletter.store import Store
from newsletter.store.subscribers import get_subscriber, rename_subscriber
from newsletter.tokens import Signer
from newsletter.store.access import Transactions
from newsletter.web.subscriptions import form_name

# What each status means to the person reading the page.
STATUS_WORDS = {
    "active": "Subscribed: you receive every issue.",
    "pending": "Waiting for confirmation: open the link in the confirmation message we sent you.",
    "unsubscribed": "Unsubscribed: nothing more is sent to this address.",
    "bounced": "Paused: your mail server refused our messages, so nothing more is sent to this address.",
}


class PreferencesOutcome(enum.Enum):
    SHOWN = "shown"
    RENAMED = "renamed"
    INVALID = "invalid"      # forged or altered token: nothing read, nothing changed
    UNKNOWN = "unknown"      # genuine token, but the address is no longer on file


@dataclass(frozen=True)
class PreferencesView:
    """What the page shows, and the token its unsubscribe button posts with."""

    outcome: PreferencesOutcome
    subscriber: Subscriber | None = None
    unsubscribe_token: str = ""

    @property
    def status_words(self) -> str:
        return STATUS_WORDS.get(self.subscriber.status, self.subscriber.status) if self.subscriber else ""

    @property
    def can_unsubscribe(self) -> bool:
        return self.subscriber is not None and not self.subscriber.is_suppressed


def _view(signer: Signer, subscriber: Subscriber | None, outcome: PreferencesOutcome) -> PreferencesView:
    if subscriber is None:
        return PreferencesView(PreferencesOutcome.UNKNOWN)
    return PreferencesView(outcome, subscriber, signer.unsubscribe_token(subscriber.email))


def preferences_for_token(store: Transactions, signer: Signer, token: str) -> PreferencesView:
    """The subscriber a preferences link was made for. Reads only."""
    address = signer.verify_preferences(token)
    if address is None:
        return PreferencesView(PreferencesOutcome.INVALID)
    with store.atomic() as conn:
        subscriber = get_subscriber(conn, address)
    return _view(signer, subscriber, PreferencesOutcome.SHOWN)


def rename_by_token(store: Store, signer: Signer, token: str, name: str) -> PreferencesView:
    """Change the name of the subscriber the link was made for.

    The token is checked first (a forged one never reaches the name check or the store); a name
    that is too long or holds control characters raises ``SubscriberError`` in words.
    """
    address = signer.verify_preferences(token)
    if address is None:
        return PreferencesView(PreferencesOutcome.INVALID)
    checked = form_name(name)
    with store.atomic() as conn:
        if get_subscriber(conn, address) is None:
            return PreferencesView(PreferencesOutcome.UNKNOWN)
        subscriber = rename_subscriber(conn, address, checked)
    return _view(signer, subscriber, PreferencesOutcome.RENAMED)

