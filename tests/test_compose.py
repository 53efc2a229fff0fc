"""Composing an issue from the store: window, ranking, papers never sent twice, the key and
running number, the editor's note, and frozen issues reused verbatim."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from newsletter import pipeline
from newsletter.compose import issue_key, load_editor_note, rank_papers
from newsletter.config import load_config
from newsletter.errors import ConfigError
from newsletter.models import Paper
from newsletter.render.issue import render_issue
from newsletter.store.issues import freeze_issue, get_issue, list_issues
from newsletter.store.papers import upsert_papers

MONDAY = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)  # 2026-W48


def paper(n: int, score: int | None = None, **kw) -> Paper:
    return Paper(id=f"arxiv:2611.{n:05d}", title=f"Paper number {n}", url=f"https://arxiv.org/abs/2611.{n:05d}",
                 authors=("A. Author",), abstract=f"Abstract of paper {n}. It says things.", score=score, **kw)


def ingest(store, papers, when):
    with store.atomic() as conn:
        upsert_papers(conn, papers, now=when)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "newsletter.toml"
    path.write_text('[newsletter]\nbase_url = "https://papers.example.org"\n[issue]\nmax_papers = 3\n')
    return load_config(path, env={})


def test_issue_key_is_the_iso_week():
    assert issue_key(MONDAY) == "2026-W48"
    assert issue_key(datetime(2026, 11, 29, 23, 59, tzinfo=timezone.utc)) == "2026-W48"
    assert issue_key(datetime(2027, 1, 1, 12, tzinfo=timezone.utc)) == "2026-W53"
    assert issue_key(datetime(2025, 12, 29, tzinfo=timezone.utc)) == "2026-W01"
    # A time given in another zone counts in UTC.
    tz = timezone(timedelta(hours=5))
    assert issue_key(datetime(2026, 11, 30, 2, 0, tzinfo=tz)) == "2026-W48"


def test_ranking_score_then_recency_then_id():
    t = MONDAY
    papers = [paper(1, 5, first_seen_at=t), paper(2, 50, first_seen_at=t - timedelta(days=1)),
              paper(3, None, first_seen_at=t), paper(4, 5, first_seen_at=t + timedelta(hours=1)),
              paper(5, 0, first_seen_at=t), paper(6, 5, first_seen_at=t)]
    ranked = rank_papers(papers, max_papers=10)
    assert [p.id[-1] for p in ranked] == ["2", "4", "1", "6", "5", "3"]
    assert [p.id[-1] for p in rank_papers(papers, max_papers=2)] == ["2", "4"]
    assert [p.id[-1] for p in rank_papers(papers, max_papers=10, min_score=5)] == ["2", "4", "1", "6", "3"]
    assert [p.id[-1] for p in rank_papers(papers, max_papers=10, exclude_ids={"arxiv:2611.00002"})][:1] == ["4"]


def test_build_issue_draws_from_the_window_best_first(store, config):
    ingest(store, [paper(1, 1)], MONDAY - timedelta(days=8))       # too old for a 7-day window
    ingest(store, [paper(2, 10), paper(3, 30), paper(4, 20), paper(5, 5)], MONDAY - timedelta(days=2))
    issue = pipeline.build_issue(store, config, now=MONDAY)
    assert issue is not None and issue.key == "2026-W48" and issue.number == 1
    assert [p.id for p in issue.papers] == ["arxiv:2611.00003", "arxiv:2611.00004", "arxiv:2611.00002"]
    assert issue.status == "draft" and issue.title == "Trending Papers Weekly #1"
    with store.atomic() as conn:
        assert get_issue(conn, "2026-W48").papers == issue.papers


def test_no_papers_no_issue(store, config):
    assert pipeline.build_issue(store, config, now=MONDAY) is None
    ingest(store, [paper(1, 1)], MONDAY - timedelta(days=30))
    assert pipeline.build_issue(store, config, now=MONDAY) is None
    with store.atomic() as conn:
        assert list_issues(conn) == []


def test_a_paper_sent_in_a_frozen_issue_never_goes_out_again(store, config):
    tuesday = MONDAY + timedelta(days=1)
    ingest(store, [paper(i, i) for i in range(1, 6)], tuesday)
    first = pipeline.build_issue(store, config, now=tuesday)
    with store.atomic() as conn:
        freeze_issue(conn, first, render_issue(first, config), now=tuesday)
    next_week = MONDAY + timedelta(days=7)
    ingest(store, [paper(9, 1)], next_week - timedelta(days=1))
    # Papers 1-5 are all still inside the 7-day window; only the unsent ones come back.
    second = pipeline.build_issue(store, config, now=next_week + timedelta(hours=1))
    assert second.key == "2026-W49" and second.number == 2
    sent = {p.id for p in first.papers}
    assert not sent & {p.id for p in second.papers}
    # Paper 9 ties paper 1 on score and was seen more recently.
    assert [p.id for p in second.papers] == ["arxiv:2611.00002", "arxiv:2611.00009", "arxiv:2611.00001"]


def test_a_draft_is_not_frozen_so_its_papers_stay_available(store, config):
    ingest(store, [paper(1, 3), paper(2, 2)], MONDAY - timedelta(days=1))
    pipeline.build_issue(store, config, now=MONDAY)  # a draft of W48, never sent
    later = MONDAY + timedelta(days=3)
    again = pipeline.build_issue(store, config, now=later)
    assert again.key == "2026-W48" and again.number == 1 and len(again.papers) == 2


def test_unsent_drafts_leave_no_gap_in_the_numbering(store, config):
    ingest(store, [paper(1, 3)], MONDAY - timedelta(days=1))
    pipeline.build_issue(store, config, now=MONDAY)                 # W48 draft, never sent
    ingest(store, [paper(2, 3)], MONDAY + timedelta(days=6))
    w49 = pipeline.build_issue(store, config, now=MONDAY + timedelta(days=7))
    assert (w49.key, w49.number) == ("2026-W49", 1)
    with store.atomic() as conn:
        assert [i.key for i in list_issues(conn)] == ["2026-W49"]


def test_a_frozen_issue_is_reused_verbatim(store, config, tmp_path):
    ingest(store, [paper(1, 3), paper(2, 2)], MONDAY - timedelta(days=1))
    issue = pipeline.build_issue(store, config, now=MONDAY)
    rendered = pipeline.render_issue(store, config, issue)
    with store.atomic() as conn:
        frozen = freeze_issue(conn, issue, rendered, now=MONDAY)
        again = freeze_issue(conn, issue, render_issue(issue, config), now=MONDAY + timedelta(hours=1))
    assert frozen.status == "frozen" and again == frozen
    # Later: the paper's record changes, more papers arrive, the templates change.
    ingest(store, [Paper(id="arxiv:2611.00001", title="Paper number 1", url="https://arxiv.org/abs/2611.00001",
                         abstract="A much longer abstract that would change the rendering if used. " * 3,
                         score=99)], MONDAY + timedelta(days=1))
    ingest(store, [paper(7, 100)], MONDAY + timedelta(days=1))
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "subject.txt.j2").write_text("Changed subject\n")
    changed = load_config(env={"NEWSLETTER_NEWSLETTER_TEMPLATES": str(folder)})
    later = pipeline.build_issue(store, changed, now=MONDAY + timedelta(days=2))
    assert later == frozen and [p.id for p in later.papers] == ["arxiv:2611.00001", "arxiv:2611.00002"]
    assert later.papers[0].score == 3
    parts = pipeline.render_issue(store, changed, later)
    assert (parts.subject, parts.html, parts.text) == (rendered.subject, rendered.html, rendered.text)


def test_editor_note_from_config_text(config, tmp_path):
    cfg = load_config(env={"NEWSLETTER_NEWSLETTER_EDITOR_NOTE": "Hello **readers**"})
    assert load_editor_note(cfg) == "Hello **readers**"
    assert load_editor_note(load_config(env={})) == ""


def test_editor_note_from_a_file_relative_to_the_config(tmp_path, store):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "w48.md").write_text("# This week\n\nA *note*.\n", encoding="utf-8")
    path = tmp_path / "newsletter.toml"
    path.write_text('[newsletter]\neditor_note = "notes/w48.md"\n')
    cfg = load_config(path, env={})
    assert load_editor_note(cfg) == "# This week\n\nA *note*."
    ingest(store, [paper(1, 1)], MONDAY)
    issue = pipeline.build_issue(store, cfg, now=MONDAY)
    assert issue.editor_note == "# This week\n\nA *note*."
    assert "<em>note</em>" in render_issue(issue, cfg).html


def test_editor_note_naming_a_missing_file_is_an_error(tmp_path):
    path = tmp_path / "newsletter.toml"
    path.write_text('[newsletter]\neditor_note = "notes/missing.md"\n')
    with pytest.raises(ConfigError) as err:
        load_editor_note(load_config(path, env={}))
    assert "missing.md" in str(err.value) and "no such file" in str(err.value)


def test_an_issue_marked_sent_counts_as_frozen(store, config):
    from newsletter.store.schema import issues

    ingest(store, [paper(1, 3), paper(2, 2)], MONDAY)
    issue = pipeline.build_issue(store, config, now=MONDAY)
    with store.atomic() as conn:
        freeze_issue(conn, issue, render_issue(issue, config), now=MONDAY)
        conn.execute(issues.update().where(issues.c.key == issue.key).values(status="sent"))
    ingest(store, [paper(3, 50)], MONDAY + timedelta(hours=2))
    again = pipeline.build_issue(store, config, now=MONDAY + timedelta(hours=3))
    assert again.status == "sent" and [p.id for p in again.papers] == [p.id for p in issue.papers]
    nxt = pipeline.build_issue(store, config, now=MONDAY + timedelta(days=7))
    assert [p.id for p in nxt.papers] == ["arxiv:2611.00003"] and nxt.number == 2
