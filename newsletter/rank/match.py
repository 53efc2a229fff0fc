"""Exact matches a reader asks for by name: muted keywords, followed authors, categories.

Each is looked up once per distinct string over the week's candidates and kept as an array of
candidate positions, so 100,000 readers muting the same few words cost a few dictionary lookups,
not 100,000 scans of 2,000 abstracts.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from typing import Sequence

import numpy as np

from newsletter.models import Paper

_WORD = re.compile(r"\w+")


def _fold(text: str) -> str:
    """Lower case without accents: "Schrödinger" matches "schrodinger"."""
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in text if not unicodedata.combining(c))


def name_key(name: str) -> tuple[str, tuple[str, ...]] | None:
    """(family name, given names) of a person's name, folded: "Dao, Tri" and "Tri Dao" agree."""
    family, comma, given = name.partition(",")
    if not comma:
        given, _, family = name.strip().rpartition(" ")
    family_words = _WORD.findall(_fold(family))
    if not family_words:
        return None
    return family_words[-1], tuple(_WORD.findall(_fold(given)))


def same_person(wanted: tuple[str, ...], given: tuple[str, ...]) -> bool:
    """Whether given names agree, tolerating initials: "T" matches "Tri", "Tri" not "Tom".

    Only the names both spell are compared; a followed name with no given name at all ("Dao")
    matches every Dao, which is what a reader writing only a family name asks for.
    """
    for a, b in zip(wanted, given):
        if len(a) > 1 and len(b) > 1:
            if a != b:
                return False
        elif a[0] != b[0]:
            return False
    return True


class Matcher:
    """The candidates matching a muted phrase, a followed author or a category, cached by string."""

    def __init__(self, candidates: Sequence[Paper]) -> None:
        self._papers = candidates
        self._texts: list[str] | None = None
        self._words: dict[str, set[int]] | None = None
        self._people: dict[str, list[tuple[int, tuple[str, ...]]]] = defaultdict(list)
        self._categories: dict[str, set[int]] = defaultdict(set)
        for position, paper in enumerate(candidates):
            for author in paper.authors:
                key = name_key(author)
                if key is not None:
                    self._people[key[0]].append((position, key[1]))
            for category in paper.categories:
                self._categories[category.strip().casefold()].add(position)
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def muted(self, phrase: str) -> np.ndarray:
        """Candidates whose title or abstract holds ``phrase`` as whole words, any case.

        A phrase's words may be joined by any non-word characters: muting "low resource" also
        mutes "low-resource". Candidates are narrowed by a word index before the pattern runs.
        """
        key = ("mute", phrase)
        if key not in self._cache:
            self._cache[key] = self._find_phrase(_WORD.findall(_fold(phrase)))
        return self._cache[key]

    def _find_phrase(self, words: list[str]) -> np.ndarray:
        if not words:
            return np.zeros(0, dtype=np.intp)
        if self._words is None:
            self._texts = [_fold(f"{p.title}\n{p.abstract}") for p in self._papers]
            self._words = defaultdict(set)
            for position, text in enumerate(self._texts):
                for word in set(_WORD.findall(text)):
                    self._words[word].add(position)
        assert self._texts is not None
        found = set.intersection(*(self._words.get(w, set()) for w in words))
        pattern = re.compile(r"(?<!\w)" + r"\W+".join(map(re.escape, words)) + r"(?!\w)")
        return np.array(sorted(p for p in found if pattern.search(self._texts[p])), dtype=np.intp)

    def by_author(self, name: str) -> np.ndarray:
        """Candidates with an author who is ``name``, initials tolerated ("T. Dao" is "Tri Dao")."""
        key = ("author", name)
        if key not in self._cache:
            wanted = name_key(name)
            found: set[int] = set()
            if wanted is not None:
                found = {p for p, given in self._people.get(wanted[0], ()) if same_person(wanted[1], given)}
            self._cache[key] = np.array(sorted(found), dtype=np.intp)
        return self._cache[key]

    def in_category(self, category: str) -> np.ndarray:
        """Candidates listed in ``category``, compared case-insensitively."""
        key = ("category", category)
        if key not in self._cache:
            found = self._categories.get(category.strip().casefold(), set())
            self._cache[key] = np.array(sorted(found), dtype=np.intp)
        return self._cache[key]
