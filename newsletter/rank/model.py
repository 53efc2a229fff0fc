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
    def fit(cls, text: TextModel, ids: Sequence[str], labels: Sequence[int],
            rows: Sequence[np.ndarray]) -> "RatingModel | None":
        """The model on papers ``ids`` labelled +1/-1, whose similarity rows are ``rows``; None
        when there are too few labels of either sign to learn from."""
        y = np.asarray(labels)
        if len(y) < MIN_LABELLED or min(int((y > 0).sum()), int((y < 0).sum())) < MIN_EACH:
            return None
        vectors = text.rows(ids)
        gram = np.asarray((vectors @ vectors.T).toarray(), dtype=np.float64)
        svm = SVC(kernel="precomputed", C=1.0, class_weight="balanced").fit(gram, y)
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
