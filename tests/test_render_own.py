"""test_render's checks of the rendered issue (the email checklist, templates, sizes), run on
29 daily papers of our own making instead of the shared corpus: they run on a fresh clone.

The golden files of the shared corpus's papers stay with test_render; ours are in
tests/golden/render_own (``pytest --update-golden`` rewrites both).
"""

from __future__ import annotations

from own_corpus import fixtures_dir  # noqa: F401 -- overrides conftest's, for this module
from test_render import *  # noqa: F401,F403 -- every check and fixture of test_render
from pathlib import Path

import test_render
from test_render import hf_papers

OWN_GOLDEN = Path(__file__).resolve().parent / "golden" / "render_own"

del test_golden_html_text_and_eml, test_no_unused_golden_files  # noqa: F821 -- tied to the shared corpus


def test_the_own_papers_are_what_the_checks_expect(fixtures_dir) -> None:  # noqa: F811
    papers = hf_papers(fixtures_dir)
    assert len(papers) == 29 and len({p.id for p in papers}) == 29
    assert papers[0].id == "arxiv:2410.30001" and all(p.thumbnail_url and p.abstract for p in papers)
    assert "own-corpus" in str(fixtures_dir)


def test_golden_html_text_and_eml_of_our_own_papers(factory, update_golden, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr(test_render, "GOLDEN", OWN_GOLDEN)
    test_render.test_golden_html_text_and_eml(factory, update_golden)
    assert sorted(p.name for p in OWN_GOLDEN.iterdir()) == ["issue.eml", "issue.html", "issue.txt"]
