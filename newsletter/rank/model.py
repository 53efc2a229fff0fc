"""A reader's linear model, once they have rated enough papers to learn from.

arxiv-sanity-lite fits a linear model per user on the tf-idf vectors of the papers they tagged;
so do we, on the papers a reader liked or rated up (+1) and rated down (-1): an L2-regularised
logistic regression with "balanced" class weights (ten "more like this" and two "less like this"
count alike), the model scikit-learn's ``LogisticRegression(class_weight="balanced")`` fits, and
a test checks that its decisions agree with scikit-learn's on the same vectors.

Why not call scikit-learn per reader: its input checks cost about 1 ms a call, three times the
fit itself, and a run fits a model for thousands of readers. Fitted here in kernel form, on the
dot products of the reader's few papers (their Gram matrix, a slice of one product per batch),
the model never builds a weight vector over the vocabulary, and its decision on the week's
papers is a weighted sum of similarity rows the ranking has already computed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.special import expit

from newsletter.rank.text import TextModel

# Before this many labelled papers, with at least MIN_EACH of each sign, similarity alone is
# steadier than a model fitted on a handful of points.
MIN_LABELLED = 10
MIN_EACH = 2
C = 1.0            # scikit-learn's default: the loss weighs as much as the L2 penalty at 1.0
_NEWTON_STEPS = 50


class RatingModel:
    """The decision of the reader's model on every candidate, scaled to [-1, 1], and which of
    their liked papers weighed most for each candidate (for the reason on the card)."""

    def __init__(self, decision: np.ndarray, ids: Sequence[str], weights: np.ndarray, rows: np.ndarray) -> None:
        self.decision = decision
        self._ids = list(ids)        # the papers the reader liked or rated up
        self._weights = weights      # their coefficients (> 0) in the model's weight vector
        self._rows = rows            # their similarity rows against the candidates

    @classmethod
    def fit(cls, gram: "Gram", ids: Sequence[str], labels: Sequence[int],
            rows: Sequence[np.ndarray]) -> "RatingModel | None":
        """The model on papers ``ids`` labelled +1/-1, whose similarity rows are ``rows``; None
        when there are too few labels of either sign to learn from."""
        if not learns(labels):
            return None
        coef = dual_coefficients(gram.of(ids), np.asarray(labels, dtype=np.float64))
        similarity = np.stack(rows).astype(np.float64)
        decision = coef @ similarity                     # w . x for every candidate; the intercept shifts all alike
        scale = float(np.abs(decision).max()) if decision.size else 0.0
        positive = (np.asarray(labels) > 0) & (coef > 0)
        return cls(decision / scale if scale > 0 else decision, [i for i, p in zip(ids, positive) if p],
                   coef[positive], similarity[positive])

    def strongest(self, position: int) -> str | None:
        """The liked paper that pulled candidate ``position`` up most, or None when none did."""
        if not self._ids:
            return None
        pulls = self._weights * self._rows[:, position]
        best = int(np.argmax(pulls))
        return self._ids[best] if pulls[best] > 0 else None


def dual_coefficients(gram: np.ndarray, y: np.ndarray) -> np.ndarray:
    """beta such that w = sum(beta_i x_i) minimises 0.5 |w|^2 + C sum(s_i log(1 + exp(-y_i (w.x_i + b))))
    (s: balanced class weights; b free, not penalised, as scikit-learn's lbfgs solver has it).

    Newton's method on the features z_i with z_i . z_j = gram_ij (from the eigendecomposition;
    directions of no variance dropped): a problem of at most as many unknowns as papers, solved
    to precision in a few steps, with step halving whenever a step would not lower the loss.
    """
    count = len(y)
    sample = np.where(y > 0, count / (2 * np.sum(y > 0)), count / (2 * np.sum(y < 0)))
    values, vectors = np.linalg.eigh(gram)
    keep = values > 1e-10 * max(float(values.max()), 1e-300)
    roots = np.sqrt(values[keep])
    features = np.hstack([vectors[:, keep] * roots, np.ones((count, 1))])
    penalty = np.ones(features.shape[1])
    penalty[-1] = 0.0

    def loss(theta: np.ndarray) -> float:
        return 0.5 * float(penalty @ theta**2) + C * float(sample @ np.logaddexp(0.0, -y * (features @ theta)))

    theta = np.zeros(features.shape[1])
    current = loss(theta)
    for _ in range(_NEWTON_STEPS):
        wrong = expit(-y * (features @ theta))                       # 1 - sigmoid(margin)
        gradient = penalty * theta - C * features.T @ (sample * y * wrong)
        if float(np.abs(gradient).max()) < 1e-10:
            break
        curvature = C * sample * wrong * (1.0 - wrong)
        hessian = np.diag(penalty + 1e-12) + (features.T * curvature) @ features
        step, size = np.linalg.solve(hessian, gradient), 1.0
        while (trial := loss(theta - size * step)) > current and size > 1e-8:
            size /= 2
        theta, current = theta - size * step, min(trial, current)
    return vectors[:, keep] @ (theta[:-1] / roots)


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
