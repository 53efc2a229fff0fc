"""What a reader does in a browser (headless Chromium through Playwright, a real uvicorn server on
127.0.0.1, a real SQLite store): opens a "more like this" link as from their email, sees it
confirmed, undoes it and rates the other way with the page's buttons, goes on to their
preferences page; and edits what they follow there, which is still there after a reload, while a
bad entry is shown back with the field marked and nothing saved. And the "more like this" link
of a card the render stage wrote is one click away from the confirmation."""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from newsletter import api
from newsletter.config import Config, load_config
from newsletter.models import Issue, Paper, Pick, ReaderProfile
from newsletter.render.personal import render_personal
from newsletter.render.templates import make_environment
from newsletter.store import Store
from newsletter.store.papers import upsert_papers
from newsletter.store.subscribers import add_subscriber
from newsletter.tokens import Signer, secret_key
from newsletter.web.app import create_app
from newsletter.web.server import BackgroundServer

PHONE = {"width": 375, "height": 740}


class Running:
    def __init__(self, server: BackgroundServer, config: Config, store: Store, signer: Signer, reader_id: int) -> None:
        self.url, self.config, self.store, self.signer, self.reader_id = server.url, config, store, signer, reader_id


@pytest.fixture
def running(tmp_path: Path, db_url: str, store: Store) -> Iterator[Running]:
    server = BackgroundServer()
    config_path = tmp_path / "newsletter.toml"
    config_path.write_text(
        f'[newsletter]\nname = "Trending Papers Weekly"\nbase_url = "{server.url}"\n\n[store]\nurl = "{db_url}"\n',
        encoding="utf-8")
    config = load_config(config_path, env={})
    with store.atomic() as conn:
        reader_id = add_subscriber(conn, "grace@example.org", name="Grace", status="active").id
        upsert_papers(conn, [Paper(id="arxiv:2403.05525", title="Robust Speech Recognition at Scale",
                                   url="https://arxiv.org/abs/2403.05525")])
    server.start(create_app(config, store))
    try:
        yield Running(server, config, store, Signer(secret_key(config, store)), reader_id)
    finally:
        server.stop()


def ratings(running: Running) -> dict[str, int]:
    return {r.paper_id: r.value for r in api.reader(running.store, running.reader_id).ratings}


def no_sideways_scroll(page) -> bool:  # noqa: ANN001 - a Playwright page
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_a_rating_link_confirms_undoes_and_rates_again_in_a_browser(running: Running, browser) -> None:
    token = running.signer.rating_token(running.reader_id, "arxiv:2403.05525")
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    errors: list[str] = []  # console errors (a CSP violation is one) and failed loads, but the favicon
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and "404" not in message.text else None)
    page.on("response", lambda response: errors.append(response.url)
            if response.status >= 400 and not response.url.endswith("/favicon.ico") else None)
    try:
        page.goto(f"{running.url}/rate/{token}/up")  # one click from the email
        assert page.inner_text("h2") == "Thank you"
        assert page.inner_text("#notice") == "You’ll see more papers like “Robust Speech Recognition at Scale”."
        assert ratings(running) == {"arxiv:2403.05525": 1}
        undo = page.locator("#undo")
        assert undo.bounding_box()["height"] >= 44 and no_sideways_scroll(page)

        undo.click()
        page.wait_for_selector("text=Your rating was taken back", timeout=10_000)
        assert ratings(running) == {}
        page.click("#rate-down")
        page.wait_for_selector("#undo", timeout=10_000)
        assert page.inner_text("#notice") == "You’ll see fewer papers like “Robust Speech Recognition at Scale”."
        assert ratings(running) == {"arxiv:2403.05525": -1}

        page.click("#preferences")
        page.wait_for_selector("#ratings", timeout=10_000)
        assert "Less like this: Robust Speech Recognition at Scale" in page.inner_text("#ratings")
        assert page.inner_text("#address") == "grace@example.org"
        assert errors == [] and [c["name"] for c in context.cookies()] == ["nl_csrf"]
    finally:
        context.close()


def test_editing_what_a_reader_follows_persists_across_a_reload_in_a_browser(running: Running, browser) -> None:
    link = f"{running.url}/preferences/{running.signer.preferences_token('grace@example.org')}"
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:
        page.goto(link)
        page.fill("#interests", "speech recognition\nlow-resource languages")
        page.fill("#categories", "cs.CL eess.AS")
        page.fill("#authors", "Tri Dao")
        page.fill("#mutes", "blockchain")
        page.fill("#likes", "https://arxiv.org/abs/2403.05525")
        page.fill("#size", "8")
        page.click("#save")
        page.wait_for_selector("#saved", timeout=10_000)
        assert no_sideways_scroll(page)

        page.reload()
        assert page.input_value("#interests") == "speech recognition\nlow-resource languages"
        assert page.input_value("#categories") == "cs.CL eess.AS"
        assert page.input_value("#authors") == "Tri Dao" and page.input_value("#mutes") == "blockchain"
        assert page.input_value("#likes") == "2403.05525" and page.input_value("#size") == "8"
        saved = ReaderProfile(interests="speech recognition; low-resource languages", categories=("cs.CL", "eess.AS"),
                              authors=("Tri Dao",), mutes=("blockchain",), likes=("arxiv:2403.05525",), size=8)
        assert api.reader(running.store, running.reader_id).profile == saved

        # A bad category: the form comes back with the reader's text and the field marked.
        page.fill("#categories", "cs.CL, 12.34")
        page.fill("#authors", "Tri Dao\nAlbert Gu")
        page.click("#save")
        page.wait_for_selector("#form-error", timeout=10_000)
        assert "categories: '12.34' is not an arXiv category" in page.inner_text("#form-error")
        assert page.get_attribute("#categories", "aria-invalid") == "true"
        assert page.input_value("#categories") == "cs.CL, 12.34"
        assert page.input_value("#authors") == "Tri Dao\nAlbert Gu"
        assert api.reader(running.store, running.reader_id).profile == saved
    finally:
        context.close()


def test_more_like_this_in_a_readers_own_issue_is_one_click_in_a_browser(running: Running, browser) -> None:
    """The card's link as the render stage writes it into a reader's issue, clicked in the
    message's HTML: the rating is recorded and confirmed with no other step."""
    papers = {"arxiv:2403.05525": Paper(id="arxiv:2403.05525", title="Robust Speech Recognition at Scale",
                                        url="https://arxiv.org/abs/2403.05525", score=10)}
    issue = Issue(key="2026-W49", number=1, title="Trending Papers Weekly", papers=tuple(papers.values()),
                  created_at=datetime(2026, 12, 4, tzinfo=timezone.utc))
    rendered = render_personal(issue, [Pick("arxiv:2403.05525", "matches: speech recognition")], papers, running.config,
                               env=make_environment(), found=1,
                               rate_token=functools.partial(running.signer.rating_token, running.reader_id))
    context = browser.new_context()
    page = context.new_page()
    try:
        page.set_content(rendered.html)
        page.click("text=More like this")
        page.wait_for_selector("#undo", timeout=10_000)
        assert page.url.startswith(f"{running.url}/rate/") and page.url.endswith("/up")
        assert "You’ll see more papers like “Robust Speech Recognition at Scale”." == page.inner_text("#notice")
        assert ratings(running) == {"arxiv:2403.05525": 1}
    finally:
        context.close()
