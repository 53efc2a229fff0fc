"""The "more like this" / "less like this" links on a personal issue's paper cards, as library
functions the web routes call.

``/rate/TOKEN/up`` and ``/rate/TOKEN/down``: the token is signed for one reader and one paper
(``Signer.rating_token``), so a forged, altered or recombined one is refused before anything is
read; the direction beside it is the reader's choice (whoever holds the link may rate either way).

One click from the email: a GET of either link records the rating. That breaks the web app's
rule that no GET changes anything, on purpose and only here, because a rating is low stakes,
one row per reader and paper (a replay changes nothing) and undone with one button. What a mail
provider's link scanner does is guarded against: it opens *every* link of a message within
seconds, so both links of a card; a person reads the page between two clicks. When the opposite
link of the same paper arrives within ``SCANNER_WINDOW_S`` of the rating, neither is kept and the
page asks which one was meant (its buttons are POSTs, which scanners do not send). A HEAD
changes nothing.

A reader who is not active (unsubscribed, bounced, pending, removed) is refused politely and
nothing is stored; taking a rating back is allowed to anyone still on file. The paper need not be
in the store (the page then has no title). Every change goes through ``newsletter.api``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from newsletter import api
from newsletter.api import NotSubscribedError, ProfileError, Rating
from newsletter.models import RATING_WORDS
# not through the API: the read-only store the pages read from (its type), see newsletter.store.access.
from newsletter.store.access import Transactions
from newsletter.tokens import Signer

DIRECTIONS = RATING_WORDS  # the link's last path segment
SCANNER_WINDOW_S = 60


class RatingOutcome(enum.Enum):
    SHOWN = "shown"            # read only: the rating as it stands (HEAD, GET of the undo link)
    RATED = "rated"            # recorded, or already so (a replay)
    UNDONE = "undone"
    SCANNED = "scanned"        # both links of the card within seconds: neither kept, the page asks
    INVALID = "invalid"        # forged, altered or recombined token: nothing read, nothing changed
    NOT_ON_LIST = "not-on-list"  # genuine token, but the reader is not active (or not on file)


@dataclass(frozen=True)
class RatingView:
    """What the rating page shows: the outcome, the paper and the reader's rating of it now."""

    outcome: RatingOutcome
    value: int = 0               # the reader's rating of the paper after the request (0: none)
    paper_id: str = ""
    title: str = ""              # empty when the paper is not in the store
    preferences_token: str = ""


def _current(store: Transactions, subscriber_id: int, paper_id: str) -> Rating | None:
    reader = api.reader(store, subscriber_id)  # type: ignore[arg-type]  # any store with atomic()
    return next((r for r in reader.ratings if r.paper_id == paper_id), None)


def _view(store: Transactions, signer: Signer, outcome: RatingOutcome, email: str, paper_id: str,
          value: int) -> RatingView:
    paper = api.find_papers(store, [paper_id]).get(paper_id)
    return RatingView(outcome, value, paper_id, paper.title if paper else "", signer.preferences_token(email))


def view_by_token(store: Transactions, signer: Signer, token: str) -> RatingView:
    """The reader's rating of the token's paper as it stands. Reads only."""
    found = signer.verify_rating(token)
    if found is None:
        return RatingView(RatingOutcome.INVALID)
    subscriber = api.find_subscriber(store, found[0])
    if subscriber is None:
        return RatingView(RatingOutcome.NOT_ON_LIST)
    subscriber_id, paper_id = found
    try:
        current = _current(store, subscriber_id, paper_id)
        return _view(store, signer, RatingOutcome.SHOWN, subscriber.email, paper_id, current.value if current else 0)
    except NotSubscribedError:
        return RatingView(RatingOutcome.NOT_ON_LIST)


def rate_by_token(store: Transactions, signer: Signer, token: str, direction: str, *, from_link: bool,
                  now: datetime | None = None) -> RatingView:
    """Record ``direction`` (``up``, ``down``, ``undo``) for the token's reader and paper.

    ``from_link``: the request is a GET of the link in the email, where the scanner guard
    applies (see the module's text); a POST from one of our pages is always what the reader chose.
    """
    found = signer.verify_rating(token)
    if found is None or direction not in DIRECTIONS:
        return RatingView(RatingOutcome.INVALID)
    subscriber_id, paper_id = found
    subscriber = api.find_subscriber(store, subscriber_id)
    value = DIRECTIONS[direction]
    if subscriber is None or (value and subscriber.status != "active"):
        return RatingView(RatingOutcome.NOT_ON_LIST)
    outcome = RatingOutcome.RATED if value else RatingOutcome.UNDONE
    try:
        if from_link and value and _scanned(_current(store, subscriber_id, paper_id), value, now):
            value, outcome = 0, RatingOutcome.SCANNED
        api.rate(store, subscriber_id, paper_id, value, require_known=False)  # type: ignore[arg-type]
        return _view(store, signer, outcome, subscriber.email, paper_id, value)
    except NotSubscribedError:  # removed in between
        return RatingView(RatingOutcome.NOT_ON_LIST)
    except ProfileError:  # a signed paper id that is not a paper's: refused like a forged token
        return RatingView(RatingOutcome.INVALID)


def _scanned(current: Rating | None, value: int, now: datetime | None) -> bool:
    """The opposite link of the same card, opened within seconds of the first: a scanner."""
    if current is None or current.value != -value or current.at is None:
        return False
    at = current.at if current.at.tzinfo else current.at.replace(tzinfo=timezone.utc)
    return (now or datetime.now(timezone.utc)) - at < timedelta(seconds=SCANNER_WINDOW_S)
