"""Each reader's own issue: the week's candidates ranked by what the reader follows and rated.

A pure library (no store, no rendering): the caller reads profiles and ratings, asks a
``Ranker`` for each reader's ``Pick`` list, and assembles messages from it. How it ranks:
docs/ranking.md.
"""

from newsletter.rank.profile import ReaderInput
from newsletter.rank.ranker import Ranker

__all__ = ["Ranker", "ReaderInput"]
