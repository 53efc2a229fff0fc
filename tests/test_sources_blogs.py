"""Blog feeds (RSS 2.0 and Atom 1.0): what a blog entry becomes as a paper, and relative links
in a feed read from a file.

The shared fixtures are real blog captures; ``tests/data/blog_rss2_paper_notes.xml`` is our
own small blog feed with what those lack: HTML in titles, offsets in dates, tracking
parameters, and an entry about an arXiv paper that must merge with the arXiv record.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from newsletter import pipeline
from newsletter.config import load_config
from newsletter.sources import load_source, normalize
from newsletter.store.papers import count_papers, get_paper

DATA = Path(__file__).resolve().parent / "data"
OWN_BLOG = DATA / "blog_rss2_paper_notes.xml"
QEMU = "feeds_other/blog_atom1_jekyll_feed_relative_urls_qemu.atom"
ARXIV_RSS2 = "arxiv_rss/rss2_2024format_math.OC_ASSEMBLED_from_spec.xml"
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)


def _load(path: Path, name: str | None = None):
    return load_source(name or str(path), path=path, timeout_s=5, max_bytes=10_000_000).parsed


def _assert_clean(paper) -> None:  # type: ignore[no-untyped-def]
    assert paper.published_at is not None and paper.published_at.utcoffset().total_seconds() == 0
    assert "<" not in paper.title and "&amp;" not in paper.title and paper.title == " ".join(paper.title.split())
    assert "<p>" not in paper.abstract and "&lt;" not in paper.abstract


def test_medium_rss2_blog(fixtures_dir: Path) -> None:
    parsed = _load(fixtures_dir / "feeds_other" / "blog_rss2_medium_emarley.rss")
    assert parsed.format == "feed (rss20)" and (parsed.skipped, parsed.warnings) == ([], [])
    assert len(parsed.papers) == 10
    first, second = parsed.papers[:2]
    assert first.title == "UI Automation & screenshots"  # CDATA title, the ampersand kept as text
    assert second.title == "They didn’t."
    # The link carries Medium's per-feed tracking parameter: the id does not, the link does.
    assert first.id == "url:https://medium.com/@emarley/ui-automation-screenshots-c44a41af38d1"
    assert first.url == "https://medium.com/@emarley/ui-automation-screenshots-c44a41af38d1?source=rss-b4981c59ffa5------2"
    assert first.published_at == datetime(2016, 5, 7, 23, 53, 30, tzinfo=timezone.utc)
    assert first.abstract.startswith("Here’s a partial collection of links from my talk today")
    for paper in parsed.papers:
        assert paper.authors == ("Liz Marley",)  # dc:creator
        assert "?" not in paper.id and paper.id.startswith("url:https://medium.com/@emarley/")
        _assert_clean(paper)


def test_jekyll_atom_blog_entries_inherit_the_feed_author(fixtures_dir: Path) -> None:
    parsed = _load(fixtures_dir / "feeds_other" / "blog_atom1_neverworkintheory.atom")
    assert parsed.format == "feed (atom10)" and (parsed.skipped, parsed.warnings) == ([], [])
    assert len(parsed.papers) == 20
    retro = parsed.papers[0]
    assert retro.title == "Retrospective"
    assert retro.id == "url:https://neverworkintheory.org/2024/03/21/retrospective.html"
    assert retro.url == "https://neverworkintheory.org/2024/03/21/retrospective.html"
    assert retro.published_at == datetime(2024, 3, 21, tzinfo=timezone.utc)
    # HTML-escaped <content type="html">: tags gone, inline ones without a stray space.
    assert retro.abstract.startswith("IEEE Software is publishing a short retrospective")
    assert parsed.papers[1].title == "Shurui Zhou on Sustainability of Open Source Scientific Software"
    for paper in parsed.papers:
        # no <author> in any entry: the feed's author applies to each (RFC 4287 4.2.1)
        assert paper.authors == ("Greg Wilson",)
        assert paper.id == f"url:{paper.url}"
        _assert_clean(paper)


def test_relative_links_in_a_file_without_any_absolute_base_are_skipped_saying_why(fixtures_dir: Path) -> None:
    parsed = _load(fixtures_dir / QEMU, QEMU)
    assert parsed.papers == [] and len(parsed.skipped) == 10
    assert parsed.skipped[0] == (
        "entry 1: relative link '/2025/08/26/qemu-10-1-0/' and no absolute base to resolve it against "
        "(no xml:base or http(s) self/alternate link in the feed); read the feed from its URL, "
        "or give the address it was saved from (newsletter ingest --base-url URL)")


@pytest.mark.parametrize("edit", [
    # xml:base on the root: feedparser applies it to every href below
    (b'<feed xmlns="http://www.w3.org/2005/Atom" >', b'<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://www.qemu.org/">'),
    # the feed's self link made absolute: where the feed lives
    (b'<link href="/feed.xml" rel="self"', b'<link href="https://www.qemu.org/feed.xml" rel="self"'),
    # only the alternate (the site's home page) absolute
    (b'<link href="/" rel="alternate"', b'<link href="https://www.qemu.org/" rel="alternate"'),
], ids=["xml-base", "self-link", "alternate-link"])
def test_relative_links_in_a_file_resolve_against_the_feeds_own_base(fixtures_dir: Path, tmp_path: Path,
                                                                       edit: tuple[bytes, bytes]) -> None:
    data = (fixtures_dir / QEMU).read_bytes()
    assert data.count(edit[0]) == 1
    path = tmp_path / "qemu.atom"  # the fixture, changed in one place, only for this test
    path.write_bytes(data.replace(*edit))
    parsed = _load(path)
    assert parsed.skipped == [] and len(parsed.papers) == 10
    first = parsed.papers[0]
    assert first.url == "https://www.qemu.org/2025/08/26/qemu-10-1-0/"
    assert first.id == "url:https://www.qemu.org/2025/08/26/qemu-10-1-0/"
    assert first.title == "QEMU version 10.1.0 released"  # <title type="html">
    assert first.published_at == datetime(2025, 8, 26, 23, 25, tzinfo=timezone.utc)
    assert first.authors == ()  # <author><name></name></author>: no name is no author
    assert all(p.url.startswith("https://www.qemu.org/20") for p in parsed.papers)
    for paper in parsed.papers:
        _assert_clean(paper)


def test_a_feed_file_with_relative_links_resolves_against_the_base_url_given(
        fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``newsletter ingest --base-url URL FILE``: the address a feed file was saved from."""
    from click.testing import CliRunner

    from newsletter.cli import main

    monkeypatch.chdir(tmp_path)  # no newsletter.toml here: embedded defaults
    db = f"sqlite:///{tmp_path / 'papers.db'}"
    runner = CliRunner()
    result = runner.invoke(main, ["--db", db, "ingest", "--base-url", "https://www.qemu.org/",
                                  str(fixtures_dir / QEMU)])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(main, ["--db", db, "papers", "--all", "--json"])
    urls = sorted(p["url"] for p in json.loads(listed.output))
    assert len(urls) == 10 and "https://www.qemu.org/2025/08/26/qemu-10-1-0/" in urls
    assert all(u.startswith("https://www.qemu.org/20") for u in urls)

    refused = runner.invoke(main, ["--db", db, "ingest", "--base-url", "www.qemu.org", str(fixtures_dir / QEMU)])
    assert refused.exit_code == 2 and "not an http(s) URL" in refused.output


def test_our_blog_feed_titles_ids_authors_times() -> None:
    parsed = _load(OWN_BLOG)
    assert parsed.skipped == ["entry 4: no title"]
    about_arxiv, reading, relative = parsed.papers
    assert about_arxiv.title == "Notes on mass concentration & rescaled functionals"  # HTML and spaces gone
    assert about_arxiv.id == "arxiv:2203.01250"  # a blog link to arxiv.org/abs/...v2 is the arXiv paper
    assert (about_arxiv.url, about_arxiv.pdf_url) == ("https://arxiv.org/abs/2203.01250", "https://arxiv.org/pdf/2203.01250")
    assert about_arxiv.authors == ("Ada Example",)
    assert about_arxiv.published_at == datetime(2024, 3, 5, 14, 30, tzinfo=timezone.utc)  # -0500
    assert about_arxiv.abstract == "Why the first order case is different."
    assert reading.title == "A reading list for the winter"
    assert reading.id == "url:https://blog.example.org/posts/reading-list.html?page=2"  # no utm_*, no fragment
    assert reading.authors == ("Grace Example", "Alan Example")
    assert reading.published_at == datetime(2024, 3, 6, 22, 15, tzinfo=timezone.utc)  # +0100
    assert relative.url == "https://blog.example.org/posts/relative-link.html"  # against the self link
    for paper in parsed.papers:
        _assert_clean(paper)


def test_a_blog_entry_about_an_arxiv_paper_merges_with_the_arxiv_record(store, fixtures_dir: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(env={})
    arxiv, blog = str(fixtures_dir / ARXIV_RSS2), str(OWN_BLOG)
    report = pipeline.ingest(store, config, [arxiv, blog], now=T0)
    assert not report.failed
    assert [(s.new, s.updated) for s in report.sources] == [(1, 0), (2, 1)]
    with store.atomic() as conn:
        paper = get_paper(conn, "arxiv:2203.01250")
        total = count_papers(conn)
    assert total == 3
    assert paper.sources == (arxiv, blog)
    assert paper.title == "Mass concentration in rescaled first order integral functionals"  # the first title stays
    assert paper.authors == ("Antonin Monteil", "Paul Pegon")  # the longer list
    assert paper.url == "https://arxiv.org/abs/2203.01250"


def test_canonical_url_drops_tracking_parameters_only() -> None:
    medium = "https://medium.com/@emarley/finding-value-20a90bf5ebf?source=rss-b4981c59ffa5------2"
    other_feed = "https://medium.com/@emarley/finding-value-20a90bf5ebf?source=rss----138adf9c44c---4"
    assert normalize.canonical_id(medium) == normalize.canonical_id(other_feed) == (
        "url:https://medium.com/@emarley/finding-value-20a90bf5ebf")
    assert normalize.canonical_url("HTTPS://Example.ORG/a?utm_source=x&id=7&fbclid=abc#frag") == "https://example.org/a?id=7"
    assert normalize.canonical_url("https://example.org/search?source=archive&q=a+b") == (
        "https://example.org/search?source=archive&q=a+b")  # not tracking: left exactly as written
