"""The text model: tf-idf over title, abstract and authors, fitted once per ranking run.

As arxiv-sanity-lite does: unigrams and bigrams, sublinear tf, English stop words, a minimum
document frequency, L2-normalised rows, so the dot product of two rows is their cosine
similarity. The vocabulary and idf come from the week's candidates and past papers together:
the week alone is too few papers for idf to tell a common word from a telling one.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

from newsletter.models import Paper

# Words start with a letter: numbers ("2024", "10") say nothing of a field, as in arxiv-sanity-lite.
_WORD = re.compile(r"[a-z_][a-z0-9_]+")
# A corpus this large drops the words seen in one paper only (typos, one-off names); a small one
# keeps them, or a week of 40 papers would lose most of what a reader could ask for.
MIN_DF_FROM = 100


def fold_plural(word: str) -> str:
    """Harman's "S" stemmer, a little extended: ``galaxies`` -> ``galaxy``, ``networks`` ->
    ``network``, ``processes`` -> ``process``, ``analysis`` kept.

    Why: a reader writes "neural network" and a paper says "networks"; the plural is the most
    common mismatch, and a full stemmer would make the words a reader sees in a reason unreadable.
    """
    if len(word) < 4:
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):   # glasses, boxes, patches: not Harman's
        return word[:-2]
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss", "is")):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """Lower-case, accents stripped, stop words out, plurals folded: what the vectorizer counts."""
    text = text.lower()
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return [fold_plural(w) for w in _WORD.findall(text) if w not in ENGLISH_STOP_WORDS]


def paper_text(paper: Paper) -> str:
    """What the model reads of a paper. Authors are in it: a group's papers share names."""
    return "\n".join((paper.title, paper.abstract, ", ".join(paper.authors)))


class TextModel:
    """The fitted vectorizer and the vectors of every paper it may be asked about, by id.

    ``candidates`` come first, so row ``i`` of ``vectors`` is candidate ``i``; then the past
    papers and the papers only named by likes and ratings. ``fitted`` is False when the papers
    hold no word at all (an empty week): every similarity is then zero.
    """

    def __init__(self, candidates: Sequence[Paper], history: Sequence[Paper], known: Iterable[Paper]) -> None:
        fit_on = unique(list(candidates) + list(history))
        fitted_ids = {p.id for p in fit_on}
        extra = [p for p in unique(known) if p.id not in fitted_ids]
        self.row_of: dict[str, int] = {p.id: i for i, p in enumerate(fit_on + extra)}
        self.candidate_count = len(candidates)
        self.vectorizer = TfidfVectorizer(
            tokenizer=tokens, token_pattern=None, lowercase=False, ngram_range=(1, 2), sublinear_tf=True,
            min_df=2 if len(fit_on) >= MIN_DF_FROM else 1, norm="l2", dtype=np.float32)
        try:
            fitted = self.vectorizer.fit_transform([paper_text(p) for p in fit_on])
        except ValueError:  # no word in any paper: "empty vocabulary"
            self.fitted = False
            self.vectors = sparse.csr_matrix((len(self.row_of), 0), dtype=np.float32)
        else:
            self.fitted = True
            rest = self.queries([paper_text(p) for p in extra])
            self.vectors = sparse.vstack([fitted, rest], format="csr", dtype=np.float32)
        self._candidates_t = self.vectors[:self.candidate_count].T.tocsr()  # CSR: no conversion per product

    def queries(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """The vectors of free texts (a reader's interest topics, papers), L2-normalised."""
        if not self.fitted or not texts:
            width = len(self.vectorizer.vocabulary_) if self.fitted else 0
            return sparse.csr_matrix((len(texts), width), dtype=np.float32)
        return self.vectorizer.transform(texts)

    def rows(self, ids: Sequence[str]) -> sparse.csr_matrix:
        """The vectors of papers by id (each id must be in ``row_of``)."""
        return self.vectors[[self.row_of[i] for i in ids]]

    def similarity(self, vectors: sparse.spmatrix) -> np.ndarray:
        """Cosine similarity of each row of ``vectors`` with every candidate: dense, float32."""
        if vectors.shape[0] == 0 or not self.fitted:
            return np.zeros((vectors.shape[0], self.candidate_count), dtype=np.float32)
        return np.asarray((vectors @ self._candidates_t).toarray(), dtype=np.float32)


def unique(papers: Iterable[Paper]) -> list[Paper]:
    """First paper of each id, in order."""
    seen: dict[str, Paper] = {}
    for paper in papers:
        seen.setdefault(paper.id, paper)
    return list(seen.values())
