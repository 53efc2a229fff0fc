"""test_rank's checks on 40 papers of our own making (tests/data/ranking_papers.json: four
arXiv categories, ten short papers each, written for these tests), so a fresh clone without the
shared corpus still tests every feature of the ranking; and the checks of the ranking's parts
that need no corpus at all.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from newsletter.models import Paper, Pick, Rating, ReaderProfile
from newsletter.rank import Ranker, ReaderInput
from newsletter.rank.match import Matcher, name_key, same_person
from newsletter.rank.model import MIN_LABELLED, dual_coefficients, learns
from newsletter.rank.profile import interest_topics
from newsletter.rank.reasons import MAX_REASON, like, matches, shorten
from newsletter.rank.text import TextModel, fold_plural, tokens
from test_rank import *  # noqa: F401,F403 -- every check of test_rank, on our own papers
from test_rank import load_corpus

OWN = Path(__file__).resolve().parent / "data" / "ranking_papers.json"


@pytest.fixture(scope="session")
def fixtures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Overrides conftest's: the shared corpus's layout, holding our own papers and their labels."""
    folder = tmp_path_factory.mktemp("own-ranking") / "arxiv_ranking"
    folder.mkdir()
    shutil.copyfile(OWN, folder / "papers.json")
    papers = json.loads(OWN.read_text(encoding="utf-8"))["papers"]
    labels = {f"arxiv:{p['id']}": p["categories"][0] for p in papers}
    (folder / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    return folder.parent


def test_the_own_papers_are_what_the_checks_expect(fixtures_dir: Path) -> None:
    corpus = load_corpus(fixtures_dir)
    assert len(corpus.papers) == 40 and "own-ranking" in str(fixtures_dir)
    assert corpus.categories == ["astro-ph.GA", "cs.CL", "math.NT", "q-bio.PE"]
    assert all(len(corpus.of(c)) == 10 for c in corpus.categories)


def paper(pid: str, title: str, abstract: str = "", authors: tuple[str, ...] = (), categories: tuple[str, ...] = (),
          score: int | None = None) -> Paper:
    return Paper(id=f"arxiv:{pid}", title=title, url=f"https://arxiv.org/abs/{pid}", abstract=abstract,
                 authors=authors, categories=categories, score=score)


def test_muted_phrases_are_whole_words_any_case_and_any_joining() -> None:
    papers = [paper("1", "Low-Resource Translation"), paper("2", "Galaxy Zoo", "Galaxies of the LOW resource era"),
              paper("3", "Lowest resources"), paper("4", "Schrödinger bridges"), paper("5", "crypto", "Blockchain-based")]
    matcher = Matcher(papers)
    assert matcher.muted("low resource").tolist() == [0, 1]
    assert matcher.muted("LOW-RESOURCE").tolist() == [0, 1]
    assert matcher.muted("galax").tolist() == []
    assert matcher.muted("galaxy").tolist() == [1]
    assert matcher.muted("schrodinger").tolist() == [3]
    assert matcher.muted("blockchain").tolist() == [4]
    assert matcher.muted("  ").tolist() == []


def test_author_names_match_with_initials_but_not_other_people() -> None:
    papers = [paper("1", "a", authors=("Tri Dao",)), paper("2", "b", authors=("Dao, Tri",)),
              paper("3", "c", authors=("Tom Dao",)), paper("4", "d", authors=("T. Dao",)),
              paper("5", "e", authors=("Trí Đào",)), paper("6", "f", authors=("Tri Daohm",))]
    matcher = Matcher(papers)
    assert matcher.by_author("T. Dao").tolist() == [0, 1, 2, 3]
    assert matcher.by_author("Tri Dao").tolist() == [0, 1, 3]
    assert matcher.by_author("dao").tolist() == [0, 1, 2, 3]
    assert matcher.by_author("Tri Dao").tolist() == matcher.by_author("tri DAO").tolist()
    assert name_key("Jean-Pierre Serre") == ("serre", ("jean", "pierre"))
    assert same_person(("j", "p"), ("jean", "pierre")) and not same_person(("j", "x"), ("jean", "pierre"))
    assert matcher.by_author("").tolist() == []


def test_categories_compare_case_insensitively_and_papers_without_them_do_not_match() -> None:
    papers = [paper("1", "a", categories=("cs.CL", "eess.AS")), paper("2", "b"), paper("3", "c", categories=("eess.as",))]
    matcher = Matcher(papers)
    assert matcher.in_category("EESS.AS").tolist() == [0, 2]
    assert matcher.in_category("cs.cl").tolist() == [0]


def test_interests_split_into_topics_once_each() -> None:
    assert interest_topics("speech recognition;  low-resource languages;\nSpeech Recognition; ;") == (
        "speech recognition", "low-resource languages")
    assert interest_topics("") == ()


def test_the_text_model_folds_plurals_and_drops_numbers_and_stop_words() -> None:
    words = ("galaxies", "networks", "glasses", "processes", "images", "corpus", "analysis", "dogs", "gas")
    assert [fold_plural(w) for w in words] == [
        "galaxy", "network", "glass", "process", "image", "corpus", "analysis", "dog", "gas"]
    assert tokens("The 2 Galaxies of Schrödinger, 2024") == ["galaxy", "schrodinger"]


def test_reasons_stay_short() -> None:
    long_title = paper("1", "An Extraordinarily Long Title About Many Things That Goes On and On Forever")
    assert len(like(long_title, rated=True)) <= MAX_REASON and like(long_title, rated=True).endswith("(you rated it)")
    assert like(paper("2", "Whisper: Robust Speech Recognition via Large-Scale Weak Supervision"), rated=False) \
        == "like: Whisper (you liked it)"
    assert len(matches("x" * 200)) == MAX_REASON and shorten("a b c", 10) == "a b c"


def test_a_model_needs_enough_labels_of_both_signs() -> None:
    assert not learns([1] * 20)
    assert not learns([1] * (MIN_LABELLED - 3) + [-1] * 2)
    assert learns([1] * (MIN_LABELLED - 2) + [-1] * 2)


def test_an_empty_week_and_papers_without_words_rank_without_error() -> None:
    empty = Ranker([], shared=[])
    assert empty.picks(ReaderInput(1, ReaderProfile(interests="galaxies"))) == []
    assert empty.picks(ReaderInput(2, ReaderProfile())) == []
    wordless = [paper("1", "42"), paper("2", "7", score=3)]
    ranker = Ranker(wordless, shared=["arxiv:2", "arxiv:1"], pinned=["arxiv:9"])
    picks = ranker.picks(ReaderInput(1, ReaderProfile(interests="galaxies", likes=("arxiv:404",)),
                                     (Rating(1, "arxiv:405", 1),)))
    assert [(p.paper_id, p.reason) for p in picks] == [
        ("arxiv:9", "editor's pick"), ("arxiv:2", "top of the week"), ("arxiv:1", "top of the week")]


def test_the_newest_rating_of_a_paper_wins_and_overrides_a_like(fixtures_dir: Path) -> None:
    corpus = load_corpus(fixtures_dir)
    target = corpus.of("cs.CL")[0]
    ranker = Ranker(corpus.papers, shared=corpus.shared, pinned=[target.id])
    old, new = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 2, 1, tzinfo=timezone.utc)
    liked_then_down = ReaderInput(1, ReaderProfile(likes=(target.id,)), (Rating(1, target.id, -1, new),))
    assert target.id not in {p.paper_id for p in ranker.picks(liked_then_down)}
    up_again = ReaderInput(1, ReaderProfile(), (Rating(1, target.id, 1, new), Rating(1, target.id, -1, old)))
    assert ranker.picks(up_again)[0] == Pick(target.id, "editor's pick")


def test_standing_orders_the_rest_of_the_week_by_score(fixtures_dir: Path) -> None:
    papers = [paper("1", "a"), paper("2", "b", score=5), paper("3", "c", score=50), paper("4", "d")]
    ranker = Ranker(papers, shared=["arxiv:4"], default_size=4)
    picks = ranker.picks(ReaderInput(1, ReaderProfile(interests="nothing here")))
    assert [p.paper_id for p in picks] == ["arxiv:4", "arxiv:3", "arxiv:2", "arxiv:1"]
    assert [p.reason for p in picks] == ["top of the week"] + ["new this week"] * 3
    assert np.all(np.diff(ranker.week.standing[[3, 2, 1, 0]]) < 0)


def test_the_rating_model_is_scikit_learns_balanced_logistic_regression(fixtures_dir: Path) -> None:
    """Our Newton fit in kernel form decides as ``LogisticRegression(class_weight="balanced")``
    fitted on the same tf-idf vectors (up to its intercept, which moves every paper alike)."""
    corpus = load_corpus(fixtures_dir)
    text = TextModel(corpus.papers, [], [])
    everything = text.vectors[:len(corpus.papers)]
    rng = np.random.default_rng(7)
    for liked in corpus.categories:
        ids = [corpus.papers[i].id for i in rng.choice(len(corpus.papers), 14, replace=False)]
        ids = [p.id for p in corpus.of(liked)[:3]] + [i for i in ids if corpus.labels[i] != liked]
        y = np.array([1.0 if corpus.labels[i] == liked else -1.0 for i in ids])
        vectors = text.rows(ids)
        ours = dual_coefficients((vectors @ vectors.T).toarray().astype(np.float64), y) @ (vectors @ everything.T).toarray()
        reference = LogisticRegression(class_weight="balanced", tol=1e-10, max_iter=100_000).fit(vectors, y)
        theirs = reference.decision_function(everything) - reference.intercept_[0]
        assert np.abs(ours - theirs).max() <= 1e-3 * np.abs(theirs).max(), liked
