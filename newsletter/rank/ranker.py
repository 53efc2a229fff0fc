"""Every reader's own issue from the week's candidates, in batches.

A batch of readers shares one sparse product for the similarity rows it needs (interest topics
and liked or rated papers, each computed once and kept while memory allows: many readers rate
the same papers of last week's issue), fills one dense (readers x candidates) score matrix and
takes each reader's top papers with one ``argpartition``: memory stays bounded by the batch, and
no per-paper Python runs for 100,000 readers.
"""

from __future__ import annotations

from itertools import islice
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from newsletter.models import Paper, Pick
from newsletter.rank import reasons
from newsletter.rank.model import Gram
from newsletter.rank.profile import Key, Reader, ReaderInput, ReaderScore, resolve
from newsletter.rank.week import Week

BATCH = 256                    # readers per batch: a 256 x 2,000 float64 score matrix is 4 MB
ROW_CACHE_BYTES = 192 << 20    # similarity rows kept across batches


class Ranker:
    """The ranking of one week, fitted once, asked for any number of readers.

    ``candidates``: every paper the week may hold for anyone (the editor's dropped papers and
    papers sent before already left out). ``shared``: the shared issue's ids in order, which a
    reader with no profile and no ratings gets exactly (cut to ``default_size``). ``known``:
    papers that likes and ratings name, for their text; ``history``: past papers, fitted into
    the vocabulary with the candidates. ``pinned``: the editor's picks, first in every issue
    (unless the reader muted them or rated them down).

    One ranker serves one thread: it keeps the similarity rows it computed for the next batch.
    """

    def __init__(self, candidates: Sequence[Paper], *, shared: Sequence[str], known: Mapping[str, Paper] | None = None,
                 history: Sequence[Paper] = (), pinned: Sequence[str] = (), default_size: int = 10) -> None:
        self.week = Week(candidates, shared, known or {}, history)
        self.shared = list(dict.fromkeys(shared))
        self.pinned = list(dict.fromkeys(pinned))
        self.default_size = default_size
        self._rows: dict[Key, np.ndarray] = {}
        self._row_cap = max(1, ROW_CACHE_BYTES // max(1, 4 * len(self.week.candidates)))

    def picks(self, reader: ReaderInput) -> list[Pick]:
        """One reader's issue: their papers, best first, each with its reason."""
        return next(self.rank_all([reader]))[1]

    def rank_all(self, readers: Iterable[ReaderInput]) -> Iterator[tuple[int, list[Pick]]]:
        """(subscriber id, picks) for every reader, in the order given, computed in batches."""
        iterator = iter(readers)
        while batch := list(islice(iterator, BATCH)):
            yield from self._rank_batch(batch)

    def _rank_batch(self, batch: list[ReaderInput]) -> Iterator[tuple[int, list[Pick]]]:
        resolved = [resolve(r, self.week, self.default_size) for r in batch]
        warm = [r for r in resolved if not r.cold]
        ranked = dict(zip(map(id, warm), self._rank_warm(warm))) if warm else {}
        for reader in resolved:
            picks = self._shared_issue(reader.size) if reader.cold else ranked[id(reader)]
            yield reader.input.subscriber_id, picks

    def _shared_issue(self, size: int) -> list[Pick]:
        """What a reader with nothing to go on gets: the shared issue, as it is, cut to size."""
        pinned = set(self.pinned)
        return [Pick(i, reasons.EDITORS_PICK if i in pinned else reasons.TOP_OF_THE_WEEK) for i in self.shared[:size]]

    def _rank_warm(self, readers: list[Reader]) -> list[list[Pick]]:
        rows = self._similarity_rows({key for reader in readers for key in reader.keys})
        labelled = list(dict.fromkeys(i for reader in readers if reader.learns for i in reader.labelled))
        gram = Gram(self.week.text, labelled) if labelled else None
        count = len(self.week.candidates)
        scores = np.empty((len(readers), count), dtype=np.float64)
        explained: list[ReaderScore] = []
        pins: list[list[str]] = []
        for row, reader in enumerate(readers):
            excluded, kept_pins = self._excluded(reader)
            score = ReaderScore(reader, self.week, rows, excluded, gram if reader.learns else None)
            score.into(scores[row])
            explained.append(score)
            pins.append(kept_pins)
        wanted = [max(0, r.size - len(p)) for r, p in zip(readers, pins)]
        best = _top(scores, min(count, max(wanted, default=0)))
        result = []
        for row, (score, kept_pins) in enumerate(zip(explained, pins)):
            chosen = [int(c) for c in best[row][:wanted[row]] if np.isfinite(scores[row, c])]
            result.append([Pick(i, reasons.EDITORS_PICK) for i in kept_pins]
                          + [Pick(self.week.candidates[c].id, why) for c, why in zip(chosen, score.reasons(chosen))])
        return result

    def _excluded(self, reader: Reader) -> tuple[np.ndarray, list[str]]:
        """Candidates never in this reader's issue, and the editor's pins they keep.

        Muted and rated-down papers never appear, pinned or not: the reader said so about
        themselves. Papers they liked or rated are out too (they know them); pins come first
        by themselves, so they are out of the ranking.
        """
        matcher = self.week.matcher
        muted = [matcher.muted(m) for m in reader.input.profile.mutes]
        muted_ids = {self.week.candidates[p].id for found in muted for p in found}
        kept_pins = [i for i in self.pinned if i not in muted_ids and i not in reader.down]
        excluded = np.concatenate(muted + [self.week.positions(reader.seen), self.week.positions(self.pinned),
                                           np.zeros(0, dtype=np.intp)])
        return excluded.astype(np.intp), kept_pins

    def _similarity_rows(self, keys: set[Key]) -> dict[Key, np.ndarray]:
        """The similarity row of every key, computing the missing ones in two sparse products."""
        missing = sorted(keys - self._rows.keys())
        if len(self._rows) + len(missing) > self._row_cap:
            self._rows = {k: v for k, v in self._rows.items() if k in keys}
        text = self.week.text
        topics = [k for k in missing if k[0] == "topic"]
        papers = [k for k in missing if k[0] == "paper"]
        for group, vectors in ((topics, text.queries([t for _, t in topics])),
                               (papers, text.rows([i for _, i in papers]))):
            for key, row in zip(group, text.similarity(vectors)):
                self._rows[key] = row
        return self._rows


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` highest columns, best first. Equal scores do not come from equal profiles:
    every score holds the week's standing, which differs for every candidate."""
    if k <= 0:
        return np.zeros((scores.shape[0], 0), dtype=np.intp)
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)
