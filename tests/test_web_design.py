"""The web pages in Chromium at 375 and 800 px, light and dark: one inline stylesheet, no
scripts or external fonts, no sideways scroll, 44px tap targets, and an archive that lists
each issue's date and top titles; an archived issue is the issue as mailed."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.render.issue import render_issue
from newsletter.store.issues import freeze_issue
from newsletter.web.app import create_app
from newsletter.web.server import BackgroundServer
from test_render import hf_papers, make_issue


@pytest.fixture
def site(tmp_path: Path, db_url: str, store, fixtures_dir):  # type: ignore[no-untyped-def]
    server = BackgroundServer()
    path = tmp_path / "newsletter.toml"
    path.write_text(f'[newsletter]\nbase_url = "{server.url}"\naccent = "#7a2e8c"\n[store]\nurl = "{db_url}"\n',
                    encoding="utf-8")
    config = load_config(path, env={})
    issue = make_issue(hf_papers(fixtures_dir)[:5], number=1)
    with store.atomic() as conn:
        freeze_issue(conn, issue, render_issue(issue, config))
    server.start(create_app(config, store))
    try:
        yield server.url, issue
    finally:
        server.stop()


@pytest.mark.parametrize("width", [375, 800])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_read_on_a_phone_and_a_desktop_light_and_dark(site, browser, tmp_path, width, scheme):
    url, issue = site
    page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    for path in ("/", "/archive"):
        page.goto(url + path)
        assert page.locator("script, link[rel=stylesheet]").count() == 0
        assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
        small = page.evaluate("""() => [...document.querySelectorAll('a, button, input:not([type=hidden])')]
            .filter(e => !e.closest('footer'))
            .map(e => [e.textContent.trim().slice(0, 30) || e.id, e.getBoundingClientRect()])
            .filter(([t, r]) => r.width < 44 || r.height < 44).map(([t, r]) => `${t}: ${r.width}x${r.height}`)""")
        assert small == [], path
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == ("rgb(17, 20, 24)" if scheme == "dark" else "rgb(244, 245, 247)")
        page.screenshot(path=str(tmp_path / f"web{path.replace('/', '-') or '-index'}-{width}-{scheme}.png"),
                        full_page=True)
    assert all(r.startswith(url) for r in requests), "nothing is fetched from elsewhere"

    page.goto(url + "/archive")
    entry = page.locator("ol.issues > li").first
    text = " ".join(entry.inner_text().split())
    assert "Sent " in text and "5 papers" in text
    for paper in issue.papers[:3]:
        assert " ".join(paper.title.split())[:40] in text
    assert "and 2 more" in text
    if scheme == "light":  # the operator's accent colours the header's bar
        assert page.evaluate("getComputedStyle(document.querySelector('header.site')).borderTopColor") == "rgb(122, 46, 140)"
    entry.locator("a.issue-link").click()
    page.wait_for_load_state()
    assert page.locator("h2.paper-title").count() == 5 and page.locator("td.card-cell").count() == 5
    assert page.locator(".rank").first.inner_text() == "#1"
    page.close()
