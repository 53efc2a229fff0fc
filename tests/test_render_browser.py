"""The designed issue in Debian's Chromium at a phone's and a desktop's width, light and dark,
with images shown and blocked: tap targets of 44x44 CSS px, no sideways scroll, and the rank,
score, date and thumbnail exactly where the data has them."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from newsletter.models import Paper
from newsletter.render.issue import render_issue
from newsletter.render.messages import MessageFactory
from newsletter.tokens import Signer
from test_render import NOW, READER, SECRET, hf_papers, make_config, make_issue

PNG = (Path(__file__).resolve().parent.parent / "docs" / "images" / "issue-phone.png").read_bytes()
BARE = Paper(id="arxiv:2312.00752", title="Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
             url="https://arxiv.org/abs/2312.00752", authors=("Albert Gu", "Tri Dao"),
             abstract="Foundation models are built on the Transformer. We introduce Mamba. It is fast.",
             code_url="https://github.com/state-spaces/mamba", published_at=datetime(2023, 12, 1, tzinfo=timezone.utc),
             first_seen_at=NOW)


@pytest.fixture(scope="module")
def issue_file(fixtures_dir, tmp_path_factory) -> tuple[Path, list[Paper]]:
    folder = tmp_path_factory.mktemp("issue")
    config = make_config(folder, logo_url="https://papers.example.org/logo.png")
    papers = [*hf_papers(fixtures_dir)[:3], BARE]
    rendered = render_issue(make_issue(papers, note="A note with [a link](https://example.org/n)."), config)
    html = MessageFactory(rendered, config, Signer(SECRET), now=NOW).personalised_parts(READER)[0]
    path = folder / "issue.html"
    path.write_text(html, encoding="utf-8")
    return path, papers


def _open(browser, path: Path, width: int, scheme: str, images: bool):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme, device_scale_factor=1)

    def route(r):  # type: ignore[no-untyped-def]
        if r.request.url.startswith("file:"):
            return r.continue_()
        if images and r.request.resource_type == "image":  # nothing leaves the machine
            return r.fulfill(status=200, content_type="image/png", body=PNG)
        return r.abort()

    page.route("**/*", route)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page


@pytest.mark.parametrize("width", [375, 800])
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("images", [True, False], ids=["images", "blocked"])
def test_issue_in_chromium(browser, issue_file, tmp_path, width, scheme, images):
    path, papers = issue_file
    page = _open(browser, path, width, scheme, images)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"scrolls sideways by {overflow}px"

    # Every link a finger taps is at least 44x44 (links inside the editor's prose excepted).
    small = page.evaluate("""() => [...document.querySelectorAll('a')]
        .filter(a => !a.closest('.note-box'))
        .map(a => [a.textContent.trim().slice(0, 30), a.getBoundingClientRect()])
        .filter(([t, r]) => r.width < 44 || r.height < 44)
        .map(([t, r]) => `${t}: ${Math.round(r.width)}x${Math.round(r.height)}`)""")
    assert small == []
    buttons = page.locator("a.button")
    assert buttons.count() == sum(bool(p.url) + bool(p.pdf_url) + bool(p.code_url) + bool(p.page_url) for p in papers)

    cards = page.locator("td.card-cell")
    assert cards.count() == len(papers)
    for i, paper in enumerate(papers):
        card = cards.nth(i)
        assert card.locator(".rank").inner_text() == f"#{i + 1}"
        assert card.locator(".score").count() == (paper.score is not None)
        if paper.score is not None:
            assert card.locator(".score").inner_text() == f"\u25b2 {paper.score:,} upvote{'s' * (paper.score != 1)}"
        assert card.locator(".date").count() == (paper.published_at is not None)
        thumbs = card.locator("img.thumb")
        assert thumbs.count() == bool(paper.thumbnail_url)
        if paper.thumbnail_url:
            box = thumbs.bounding_box()
            assert box and box["width"] > 100 and box["height"] > 50, "the thumbnail keeps its box"
            assert thumbs.get_attribute("alt").startswith("Figure from")
        assert card.locator("h2.paper-title").is_visible()
    assert page.locator("text=\u25b2").count() == sum(p.score is not None for p in papers)

    background = page.locator("table.container").evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == ("rgb(27, 31, 36)" if scheme == "dark" else "rgb(255, 255, 255)")
    if width == 375:
        assert page.locator("table.container").evaluate("e => e.getBoundingClientRect().width") == width
    page.screenshot(path=str(tmp_path / f"issue-{width}-{scheme}-{'images' if images else 'blocked'}.png"),
                    full_page=True)
    page.close()
