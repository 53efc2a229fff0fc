"""The subscriber's own page, opened from the link in every issue's footer: what we hold about
them (address, name, status), what they follow (interests, arXiv categories, authors, muted
keywords, liked papers, how many papers they want), the papers they rated with a way to take
each rating back, and the unsubscribe button.

The link carries a signed, non-expiring token of its own (``Signer.preferences_token``), so it
can neither confirm nor unsubscribe by itself; the token is checked before anything is read, and
a forged or altered one changes nothing. The rules live here; ``newsletter.web.app`` only
translates HTTP. Every change goes through ``newsletter.api``: the fields are checked there
(``ProfileError`` names the field and the entry), and a bad one changes nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping

from newsletter import api
from newsletter.api import NotSubscribedError, ReaderProfile, Store, Subscriber
# not through the API: the read-only store the page reads from (its type), see newsletter.store.access.
from newsletter.store.access import Transactions
from newsletter.tokens import Signer
from newsletter.web.subscriptions import form_name

# What each status means to the person reading the page.
STATUS_WORDS = {
    "active": "Subscribed: you receive every issue.",
    "pending": "Waiting for confirmation: open the link in the confirmation message we sent you.",
    "unsubscribed": "Unsubscribed: nothing more is sent to this address.",
    "bounced": "Paused: your mail server refused our messages, so nothing more is sent to this address.",
}
# The profile fields the form has, in the order the page shows them (the names api.set_profile takes).
PROFILE_FIELDS = ("interests", "categories", "authors", "mutes", "likes", "size")
RATINGS_SHOWN = 200  # the newest; a reader with more sees how many are left out


class PreferencesOutcome(enum.Enum):
    SHOWN = "shown"
    SAVED = "saved"
    INVALID = "invalid"      # forged or altered token: nothing read, nothing changed
    UNKNOWN = "unknown"      # genuine token, but the address is no longer on file


@dataclass(frozen=True)
class RatedPaper:
    """One of the reader's ratings as the page lists it; ``token`` is the rating link's token,
    for the "take back" button (which posts to ``/rate/TOKEN/undo``)."""

    paper_id: str
    value: int
    title: str
    url: str
    token: str


@dataclass(frozen=True)
class PreferencesView:
    """What the page shows, and the token its unsubscribe button posts with."""

    outcome: PreferencesOutcome
    subscriber: Subscriber | None = None
    unsubscribe_token: str = ""
    profile: ReaderProfile = field(default_factory=ReaderProfile)
    ratings: tuple[RatedPaper, ...] = ()
    ratings_left_out: int = 0

    @property
    def status_words(self) -> str:
        return STATUS_WORDS.get(self.subscriber.status, self.subscriber.status) if self.subscriber else ""

    @property
    def can_unsubscribe(self) -> bool:
        return self.subscriber is not None and not self.subscriber.is_suppressed

    def form_values(self) -> dict[str, str]:
        """The profile as the form's fields show it: one entry a line (a line break separates
        entries, as ``;`` and ``,`` do), liked papers as the ids a reader pastes."""
        profile = self.profile
        return {"interests": "\n".join(t for t in profile.interests.split("; ") if t),
                "categories": " ".join(profile.categories), "authors": "\n".join(profile.authors),
                "mutes": "\n".join(profile.mutes), "likes": "\n".join(_pasteable(p) for p in profile.likes),
                "size": "" if profile.size is None else str(profile.size)}


def _pasteable(paper_id: str) -> str:
    """``arxiv:2403.05525`` -> ``2403.05525``, ``doi:10.1/x`` -> ``10.1/x``: what a reader pastes."""
    return paper_id.split(":", 1)[1] if paper_id.startswith(("arxiv:", "doi:")) else paper_id


def _view(store: Transactions, signer: Signer, subscriber: Subscriber | None,
          outcome: PreferencesOutcome) -> PreferencesView:
    if subscriber is None or subscriber.id is None:
        return PreferencesView(PreferencesOutcome.UNKNOWN)
    try:
        reader = api.reader(store, subscriber.id)  # type: ignore[arg-type]  # any store with atomic()
    except NotSubscribedError:
        return PreferencesView(PreferencesOutcome.UNKNOWN)
    shown = reader.ratings[:RATINGS_SHOWN]
    papers = api.find_papers(store, [r.paper_id for r in shown])
    ratings = tuple(
        RatedPaper(paper_id=r.paper_id, value=r.value,
                   title=papers[r.paper_id].title if r.paper_id in papers else "",
                   url=_safe_url(papers[r.paper_id].url) if r.paper_id in papers else "",
                   token=signer.rating_token(subscriber.id, r.paper_id))
        for r in shown)
    return PreferencesView(outcome, reader.subscriber, signer.unsubscribe_token(reader.subscriber.email),
                           reader.profile, ratings, len(reader.ratings) - len(shown))


def _safe_url(url: str) -> str:
    """A paper's link, only when it is http(s): a feed's ``javascript:`` never becomes a link."""
    return url if url.lower().startswith(("https://", "http://")) else ""


def preferences_for_token(store: Transactions, signer: Signer, token: str) -> PreferencesView:
    """The subscriber a preferences link was made for, with what they follow. Reads only."""
    address = signer.verify_preferences(token)
    if address is None:
        return PreferencesView(PreferencesOutcome.INVALID)
    return _view(store, signer, api.find_subscriber(store, address), PreferencesOutcome.SHOWN)


def save_by_token(store: Store, signer: Signer, token: str, name: str | None,
                  fields: Mapping[str, str]) -> PreferencesView:
    """Change the name and what the reader follows (``fields``: the form's profile fields that
    were sent; one left out is kept, an empty one cleared).

    The token is checked first (a forged one never reaches the checks or the store). A bad name
    raises ``SubscriberError``, a bad profile entry ``ProfileError``, each in words, and then
    nothing is changed: the name is checked before the profile is stored, and stored after it.
    """
    address = signer.verify_preferences(token)
    if address is None:
        return PreferencesView(PreferencesOutcome.INVALID)
    checked = form_name(name) if name is not None else None
    subscriber = api.find_subscriber(store, address)
    if subscriber is None or subscriber.id is None:
        return PreferencesView(PreferencesOutcome.UNKNOWN)
    changes = {key: value for key, value in fields.items() if key in PROFILE_FIELDS}
    try:
        if changes:
            size = changes.pop("size", None)
            api.set_profile(store, subscriber.id, **changes, size=size or None,
                            clear_size=size is not None and not size.strip())
        if checked is not None:
            subscriber = api.rename_subscriber(store, subscriber.id, checked)
    except NotSubscribedError:
        return PreferencesView(PreferencesOutcome.UNKNOWN)
    return _view(store, signer, subscriber, PreferencesOutcome.SAVED)
