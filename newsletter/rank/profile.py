"""One reader, as the ranking sees them: what they follow, resolved against the week's papers,
and their score of every candidate with the reason each signal would give.

The weights say how much each signal counts against the others. Similarities are cosines of
tf-idf vectors (a paper that matches an interest well scores 0.2-0.5; two papers of one field
0.05-0.3), so a followed author (0.3) lifts a paper above most text matches; a followed category
(0.08, hundreds of papers a week) lifts its papers above those nothing else points at, but not
above a good match; and the week's global standing (at most ``W_STANDING``) only orders papers the
profile finds about equal, and fills the issue of a reader whose profile matches little.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from newsletter.models import Rating, ReaderProfile
from newsletter.rank import reasons
from newsletter.rank.model import Gram, RatingModel, learns
from newsletter.rank.week import Week

W_INTEREST = 1.0
W_LIKE = 1.0
W_DOWN = 0.5      # closeness to a paper rated down pushes away, less than a like pulls
W_AUTHOR = 0.3
W_CATEGORY = 0.08
W_MODEL = 0.3     # the rating model's decision, scaled to [-1, 1] per reader
W_STANDING = 0.05

_TOPIC_SEPARATORS = re.compile(r"[;\n]")
Key = tuple[str, str]   # ("topic", text) or ("paper", id): a row of similarities to every candidate


@dataclass(frozen=True)
class ReaderInput:
    """One reader to rank: who, what they follow, and their ratings (+1 / -1 per paper)."""

    subscriber_id: int
    profile: ReaderProfile
    ratings: tuple[Rating, ...] = ()


def interest_topics(interests: str) -> tuple[str, ...]:
    """The reader's free-text interests split into topics ("speech recognition; asr"), each once."""
    seen: dict[str, str] = {}
    for topic in _TOPIC_SEPARATORS.split(interests):
        topic = " ".join(topic.split())
        if topic:
            seen.setdefault(topic.casefold(), topic)
    return tuple(seen.values())


@dataclass(frozen=True)
class Reader:
    """A reader resolved against the week: only the liked and rated papers whose text we have
    count as signals, but every rated or liked paper is left out of their issue (they have seen
    it), and every paper rated down too."""

    input: ReaderInput
    size: int
    topics: tuple[str, ...]
    liked: tuple[str, ...]          # liked in the profile, with text, not rated since
    rated_up: tuple[str, ...]       # rated +1, with text
    rated_down: tuple[str, ...]     # rated -1, with text
    seen: frozenset[str]            # liked or rated: never picked
    down: frozenset[str]            # rated -1, text or not: never picked, not even when pinned

    @property
    def cold(self) -> bool:
        """Nothing to go on: the reader gets the shared issue as it is."""
        return self.input.profile.is_empty and not self.input.ratings

    @property
    def labelled(self) -> tuple[str, ...]:
        """The papers the reader labelled, positive first: what their model learns from."""
        return self.liked + self.rated_up + self.rated_down

    @property
    def labels(self) -> list[int]:
        return [1] * (len(self.liked) + len(self.rated_up)) + [-1] * len(self.rated_down)

    @property
    def learns(self) -> bool:
        """Whether they labelled enough papers, of both signs, for a model of their own."""
        return learns(self.labels)

    @property
    def keys(self) -> list[Key]:
        """The similarity rows this reader's score needs."""
        return [("topic", t) for t in self.topics] + [("paper", i) for i in self.liked + self.rated_up + self.rated_down]


def resolve(reader: ReaderInput, week: Week, default_size: int) -> Reader:
    """``reader`` with their ratings collapsed (the newest per paper wins; a rating overrides a
    like in the profile) and the papers we have no text of set aside."""
    latest: dict[str, int] = {}
    for rating in sorted(reader.ratings, key=lambda r: (r.at is not None, r.at.timestamp() if r.at else 0.0)):
        latest[rating.paper_id] = rating.value
    profile = reader.profile
    has_text = week.papers.__contains__
    return Reader(
        input=reader, size=profile.size or default_size, topics=interest_topics(profile.interests),
        liked=tuple(i for i in dict.fromkeys(profile.likes) if i not in latest and has_text(i)),
        rated_up=tuple(i for i, v in latest.items() if v > 0 and has_text(i)),
        rated_down=tuple(i for i, v in latest.items() if v < 0 and has_text(i)),
        seen=frozenset(profile.likes) | frozenset(latest),
        down=frozenset(i for i, v in latest.items() if v < 0))


class ReaderScore:
    """The reader's score of every candidate (higher first; -inf: never picked) and the reason
    for any of them."""

    def __init__(self, reader: Reader, week: Week, rows: Mapping[Key, np.ndarray], excluded: np.ndarray,
                 gram: Gram | None) -> None:
        self.reader, self.week = reader, week
        self.topic_rows = [rows[("topic", t)] for t in reader.topics]
        positive = reader.liked + reader.rated_up
        self.positive_ids = positive
        self.positive_rows = np.stack([rows[("paper", i)] for i in positive]) if positive else None
        down_rows = [rows[("paper", i)] for i in reader.rated_down]
        profile = reader.input.profile
        self.authors = [(name, week.matcher.by_author(name)) for name in profile.authors]
        categories = [week.matcher.in_category(c) for c in profile.categories]
        self.category_mask = np.zeros(len(week.candidates), dtype=bool)
        for found in categories:
            self.category_mask[found] = True
        self.author_mask = np.zeros(len(week.candidates), dtype=bool)
        for _, found in self.authors:
            self.author_mask[found] = True
        self.model = RatingModel.fit(gram, reader.labelled, reader.labels,
                                     [rows[("paper", i)] for i in reader.labelled]) if gram else None
        self.interest = np.maximum.reduce(self.topic_rows) if self.topic_rows else None
        self.like = None
        if self.positive_rows is not None:
            self.like = 0.5 * self.positive_rows.max(axis=0) + 0.5 * self.positive_rows.mean(axis=0)
        self.down = np.maximum.reduce(down_rows) if down_rows else None
        self.excluded = excluded

    def into(self, out: np.ndarray) -> None:
        """Write the reader's score of every candidate into ``out`` (one row of the batch)."""
        np.multiply(self.week.standing, W_STANDING, out=out)
        if self.interest is not None:
            out += W_INTEREST * self.interest
        if self.like is not None:
            out += W_LIKE * self.like
        if self.down is not None:
            out -= W_DOWN * self.down
        if self.model is not None:
            out += W_MODEL * self.model.decision
        out[self.author_mask] += W_AUTHOR
        out[self.category_mask] += W_CATEGORY
        out[self.excluded] = -np.inf

    def reasons(self, positions: Sequence[int]) -> list[str]:
        """Why each candidate of ``positions`` is in this reader's issue: the signal that added
        most, if it added at least what the paper's global standing did; else its standing."""
        at = np.asarray(positions, dtype=np.intp)
        options: list[tuple[np.ndarray, Callable[[int], str]]] = []   # (value per pick, its reason)
        if self.author_mask.any():
            options.append((np.where(self.author_mask[at], W_AUTHOR, 0.0), lambda i: reasons.followed_author(
                next(n for n, found in self.authors if at[i] in found))))
        if self.topic_rows:
            sims = np.stack([row[at] for row in self.topic_rows])
            topic = sims.argmax(axis=0)
            options.append((W_INTEREST * sims.max(axis=0), lambda i: reasons.matches(self.reader.topics[topic[i]])))
        if self.like is not None and self.positive_rows is not None:
            liked = self.positive_rows[:, at].argmax(axis=0)
            options.append((W_LIKE * self.like[at], lambda i: self._like(self.positive_ids[liked[i]])))
        if self.model is not None:   # a positive decision always has a liked paper that pulled it up
            model = self.model
            options.append((W_MODEL * model.decision[at], lambda i: self._like(str(model.strongest(int(at[i]))))))
        if self.category_mask.any():
            options.append((np.where(self.category_mask[at], W_CATEGORY, 0.0),
                            lambda i: reasons.in_category(self._category(int(at[i])))))
        standing = W_STANDING * self.week.standing[at]
        values = np.stack([v for v, _ in options]) if options else np.zeros((1, len(at)))
        winner, best = values.argmax(axis=0), values.max(axis=0)
        result = []
        for i, position in enumerate(at):
            if best[i] > 0 and best[i] >= standing[i]:
                result.append(options[winner[i]][1](i))
            elif self.week.candidates[position].id in self.week.shared:
                result.append(reasons.TOP_OF_THE_WEEK)
            else:
                result.append(reasons.NEW_THIS_WEEK)
        return result

    def _like(self, paper_id: str) -> str:
        return reasons.like(self.week.papers[paper_id], rated=paper_id not in self.reader.liked)

    def _category(self, position: int) -> str:
        followed = {c.strip().casefold() for c in self.reader.input.profile.categories}
        return next(c for c in self.week.candidates[position].categories if c.casefold() in followed)
