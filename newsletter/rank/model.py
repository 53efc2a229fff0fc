"""A reader's linear model, once they have rated enough papers to learn from.

arxiv-sanity-lite fits a linear SVM per user on the tf-idf vectors of the papers they tagged;
so do we, on the papers a reader liked or rated (+1) and rated down (-1), with classes weighted
so that ten "more like this" and two "less like this" count alike. The SVM is fitted on the
precomputed linear kernel (the Gram matrix of those few vectors): the same linear model as on
the vectors themselves, but it never builds a weight vector over the whole vocabulary, and its
decision on the week's papers is a sum of similarity rows the ranking has already computed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn import config_context
from sklearn.svm import SVC

from newsletter.rank.text import TextModel

# Before this many labelled papers, with at least MIN_EACH of each sign, similarity alone is
# steadier than a model fitted on a handful of points.
MIN_LABELLED = 10
MIN_EACH = 2


class RatingModel:
    """The decision of the reader's SVM on every candidate, scaled to [-1, 1], and which of
    their liked papers weighed most for each candidate (for the reason on the card)."""

    def __init__(self, decision: np.ndarray, ids: Sequence[str], weights: np.ndarray, rows: np.ndarray) -> None:
        self.decision = decision
        self._ids = list(ids)        # the positive support vectors: papers the reader liked or rated up
        self._weights = weights      # their dual coefficients
        self._rows = rows            # their similarity rows against the candidates

    @classmethod
    def fit(cls, gram: "Gram", ids: Sequence[str], labels: Sequence[int],
            rows: Sequence[np.ndarray]) -> "RatingModel | None":
        """The model on papers ``ids`` labelled +1/-1, whose similarity rows are ``rows``; None
        when there are too few labels of either sign to learn from."""
        if not learns(labels):
            return None
        y = np.asarray(labels)
        # "balanced" weights, computed here: sklearn's own check of them costs more than the fit,
        # as does its validation of inputs built right here (skipped for the same reason).
        weights = {label: len(y) / (2 * int((y == label).sum())) for label in (-1, 1)}
        with config_context(assume_finite=True, skip_parameter_validation=True):
            svm = SVC(kernel="precomputed", C=1.0, class_weight=weights).fit(gram.of(ids), y)
        coef = svm.dual_coef_[0]                                  # > 0 for class +1 (classes_ = [-1, 1])
        support = np.stack([rows[i] for i in svm.support_]).astype(np.float64)
        decision = coef @ support                                 # the intercept shifts every paper alike
        scale = float(np.abs(decision).max()) if decision.size else 0.0
        positive = coef > 0
        return cls(decision / scale if scale > 0 else decision, [ids[i] for i in svm.support_[positive]],
                   coef[positive], support[positive])

    def strongest(self, position: int) -> str | None:
        """The liked paper that pulled candidate ``position`` up most, or None when none did."""
        if not self._ids:
            return None
        pulls = self._weights * self._rows[:, position]
        best = int(np.argmax(pulls))
        return self._ids[best] if pulls[best] > 0 else None


def learns(labels: Sequence[int]) -> bool:
    """Whether a reader with these labels (+1/-1) gets a model."""
    positive = sum(1 for v in labels if v > 0)
    return len(labels) >= MIN_LABELLED and min(positive, len(labels) - positive) >= MIN_EACH


class Gram:
    """The dot products among every paper a batch's readers labelled, in one sparse product:
    each reader's Gram matrix is then a slice of it, not a product of its own."""

    def __init__(self, text: TextModel, ids: Sequence[str]) -> None:
        self._index = {paper_id: n for n, paper_id in enumerate(ids)}
        vectors = text.rows(ids)
        self._matrix = np.asarray((vectors @ vectors.T).toarray(), dtype=np.float64)

    def of(self, ids: Sequence[str]) -> np.ndarray:
        at = [self._index[i] for i in ids]
        return self._matrix[np.ix_(at, at)]
