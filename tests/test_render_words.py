"""The issue's words follow what it holds: upvote wording only with upvotes, the dates it
covers, a subject led by the top paper, a preheader that says what the subject does not."""

from __future__ import annotations

from datetime import datetime, timezone

from newsletter.models import Issue, Paper
from newsletter.render.context import template_context
from newsletter.render.issue import render_issue
from test_render import make_config

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
NAMES = ["Llama 3: Open Foundation and Fine-Tuned Chat Models for Everyone",
         "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
         "Attention Is All You Need, Again, But This Time With Feeling And A Much Longer Title",
         "QLoRA: Efficient Finetuning of Quantized LLMs"]


def papers(scores, published=None):
    return [Paper(id=f"arxiv:2311.0000{i}", title=t, url=f"https://arxiv.org/abs/2311.0000{i}",
                  authors=("A. One", "B. Two"), abstract="We study things. It works well.", score=s,
                  published_at=published, first_seen_at=NOW) for i, (t, s) in enumerate(zip(NAMES, scores))]


def issue(ps, subject=""):
    return Issue(key="2026-W49", number=3, title="Trending Papers Weekly #3", papers=tuple(ps),
                 created_at=NOW, subject=subject)


def test_with_scores_the_greeting_ranks_by_upvotes(tmp_path):
    r = render_issue(issue(papers([312, 200, 50, 9])), make_config(tmp_path))
    assert "upvoted most" in r.text and "from 23 to 30 November 2026" in " ".join(r.text.split())
    assert "23\u201330 November 2026" in r.text
    assert "\u25b2 312 upvotes" in r.html and "\u25b2 312 upvotes" in r.text


def test_without_scores_the_greeting_says_new_and_when_they_were_published(tmp_path):
    old = datetime(2023, 12, 5, tzinfo=timezone.utc)
    r = render_issue(issue(papers([None] * 4, published=old)), make_config(tmp_path))
    intro = " ".join(r.text.split("\n\n")[1].split())
    assert "upvote" in intro and "not ranked by popularity" in intro and "most upvoted" not in intro
    assert "new to us, found from 23 to 30 November 2026" in intro
    assert "published on 5 December 2023" in intro
    assert "\u25b2" not in r.html and "upvotes</span>" not in r.html
    assert "5 Dec 2023" in r.html


def test_mixed_scores_say_both(tmp_path):
    r = render_issue(issue(papers([10, None, 3, None])), make_config(tmp_path))
    assert "the 2 with upvotes first" in " ".join(r.text.split())


def test_subject_is_short_led_by_the_top_paper_never_the_name(tmp_path):
    config = make_config(tmp_path)
    r = render_issue(issue(papers([1, 2, 3, 4])), config)
    assert len(r.subject) <= 60 and r.subject.startswith("Llama 3: Open Foundation")
    assert not r.subject.startswith(config["newsletter.name"])
    context = template_context(issue(papers([1, 2, 3, 4])), config)
    assert context["preheader"].startswith("+ 3 more: Mamba, Attention Is All")
    assert "Llama" not in context["preheader"] and 40 <= len(context["preheader"]) <= 140


def test_an_editors_subject_wins_and_the_preheader_lists_every_paper(tmp_path):
    config = make_config(tmp_path)
    r = render_issue(issue(papers([1, 2, 3, 4]), subject="Four papers\nabout  models"), config)
    assert r.subject == "Four papers about models"
    context = template_context(issue(papers([1, 2, 3, 4]), subject="Four papers about models"), config)
    assert context["preheader"].startswith("4 papers: Llama 3, Mamba")


def test_one_paper_preheader_is_its_summary_not_the_subject(tmp_path):
    config = make_config(tmp_path)
    context = template_context(issue(papers([5])), config)
    assert context["preheader"] != context["default_subject"] and 40 <= len(context["preheader"]) <= 140


def test_subject_length_and_excerpt_length_are_settings(tmp_path):
    config = make_config(tmp_path)
    config = config.with_overrides({"issue.subject_chars": 30, "issue.max_authors": 1})
    r = render_issue(issue(papers([1, 2])), config)
    assert len(r.subject) <= 30 and "A. One et al." in r.text
