"""What every reader's ranking shares: the week's candidates, their global standing, the text
model and the name lookups. Built once per run; read-only after."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from newsletter.compose import rank_papers
from newsletter.models import Paper
from newsletter.rank.match import Matcher
from newsletter.rank.text import TextModel, unique


def standing(candidates: Sequence[Paper], shared: Sequence[str]) -> np.ndarray:
    """Each candidate's place in the week's global ranking, as a number in (0, 1].

    The shared issue's papers come first, from 1.0 down to 0.55 in their order; the rest follow
    from 0.5 down, in the shared ranking's own order (score, then recency, then id). The values
    all differ, so they also break ties between papers a reader's profile scores alike.
    """
    position = {p.id: i for i, p in enumerate(candidates)}
    top = [position[i] for i in dict.fromkeys(shared) if i in position]
    chosen = set(top)
    rest = [position[p.id] for p in rank_papers([p for p in candidates if position[p.id] not in chosen],
                                                max_papers=len(candidates), min_score=-(2**63))]
    values = np.zeros(len(candidates), dtype=np.float64)
    if top:
        values[top] = 1.0 - 0.45 * np.arange(len(top)) / len(top)
    if rest:
        values[rest] = 0.5 - 0.5 * np.arange(len(rest)) / len(rest)
    return values


class Week:
    """The candidates (unique ids, in the given order), their standing and the papers by id."""

    def __init__(self, candidates: Sequence[Paper], shared: Sequence[str], known: Mapping[str, Paper],
                 history: Sequence[Paper]) -> None:
        self.candidates = unique(candidates)
        self.position = {p.id: i for i, p in enumerate(self.candidates)}
        self.shared = set(shared)
        self.standing = standing(self.candidates, shared)
        self.papers: dict[str, Paper] = {**{p.id: p for p in history}, **dict(known),
                                         **{p.id: p for p in self.candidates}}
        self.text = TextModel(self.candidates, history, known.values())
        self.matcher = Matcher(self.candidates)

    def positions(self, ids: Iterable[str]) -> np.ndarray:
        """The candidate positions of those of ``ids`` that are candidates."""
        return np.array([self.position[i] for i in ids if i in self.position], dtype=np.intp)
