"""The sample issue in a real browser at a phone's and a desktop's width.

The screenshots go to the test's tmp folder on every run, and with ``--update-golden`` to
docs/images/, where README.md shows them:

    python3 -m pytest -q -p no:cacheprovider tests/test_screenshots.py --update-golden
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from newsletter import api

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
HEIGHT = 700  # the top of the issue: the header and the first papers

WIDTHS = {"phone": 375, "desktop": 1000}


@pytest.fixture(scope="module")
def sample_issue(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The bundled sample papers, ingested into a new store and previewed through the public
    API: the HTML file a reader would get, and the title of the issue's first paper."""
    folder = tmp_path_factory.mktemp("sample")
    (folder / "newsletter.toml").write_text('[store]\nurl = "sqlite:///newsletter.db"\n', encoding="utf-8")
    config = api.load_config(folder / "newsletter.toml", env={})
    store = api.open_store(config.store_url)
    try:
        report = api.ingest(store, config)
        assert report.used_sample
        issue = api.next_issue(store, config)
        assert issue is not None and issue.papers
        files = api.preview(store, config, folder / "preview")
        assert files is not None
    finally:
        store.dispose()
    return files.html, issue.papers[0].title


@pytest.mark.parametrize("device", list(WIDTHS))
def test_the_sample_issue_reads_on_a_phone_and_a_desktop(device: str, sample_issue: tuple[Path, str],
                                                         browser, tmp_path: Path, update_golden: bool) -> None:
    html, first_title = sample_issue
    width = WIDTHS[device]
    page = browser.new_page(viewport={"width": width, "height": HEIGHT}, device_scale_factor=1)
    # Nothing leaves the machine: paper thumbnails are remote, and the issue reads without them.
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page.goto(html.as_uri())

    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the issue scrolls sideways by {overflow}px at {width}px"

    title = page.locator(".paper-title").first
    assert " ".join(title.inner_text().split()) == " ".join(first_title.split())
    assert title.is_visible()
    box = title.bounding_box()
    assert box is not None and box["y"] + box["height"] <= HEIGHT, f"the first title is below the first {HEIGHT}px"
    assert box["x"] >= 0 and box["x"] + box["width"] <= width

    shot = tmp_path / f"issue-{device}.png"
    page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": width, "height": HEIGHT})
    assert shot.stat().st_size > 10_000, "an almost empty screenshot"
    if update_golden:
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, IMAGES / shot.name)
    page.close()
