"""Fetching over real HTTP (test_ingest_http's server and routes) serving feeds of our own making
instead of the shared corpus: conditional GET, redirects with relative links, failures, a cut
short or trickling download. They run on a fresh clone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from newsletter import __version__, pipeline
from newsletter.config import load_config
from newsletter.store.papers import count_papers, get_source_state, list_papers
from own_corpus import fixtures_dir  # noqa: F401 -- overrides conftest's, for this module
from test_ingest_http import ETAG, LAST_MODIFIED, T0, FeedServer, config  # noqa: F401

API_PAPERS = 3  # tests/data/formats/arxiv_api_query.xml, served as /feed
BLOG_PAPERS = 2  # tests/data/formats/blog_atom_relative_links.atom, served at /moved/qemu.atom


@pytest.fixture
def server(fixtures_dir: Path):  # noqa: F811
    with FeedServer(fixtures_dir) as s:
        yield s


def test_conditional_get_with_etag(store, config, server: FeedServer) -> None:  # noqa: F811
    url = server.url + "/feed"
    first = pipeline.ingest(store, config, [url], now=T0)
    assert first.sources[0].new == API_PAPERS and not first.failed
    with store.atomic() as conn:
        state = get_source_state(conn, url)
        assert count_papers(conn) == API_PAPERS
    assert (state.etag, state.last_modified, state.last_status) == (ETAG, LAST_MODIFIED, "200")
    second = pipeline.ingest(store, config, [url], now=T0)
    assert second.sources[0].not_modified and not second.failed
    assert (second.sources[0].new, second.sources[0].updated) == (0, 0)
    _, headers = server.requests[-1]
    assert headers["If-None-Match"] == ETAG and headers["If-Modified-Since"] == LAST_MODIFIED
    assert headers["User-Agent"] == f"newsletter/{__version__}"


def test_user_agent_names_the_operators_site_only_when_configured(store, server: FeedServer, tmp_path: Path) -> None:
    (tmp_path / "newsletter.toml").write_text('[newsletter]\nbase_url = "https://papers.example.net"\n')
    configured = load_config(tmp_path / "newsletter.toml", env={})
    assert not pipeline.ingest(store, configured, [server.url + "/gzip"], now=T0).failed  # gzip-encoded body
    assert server.requests[-1][1]["User-Agent"] == f"newsletter/{__version__} (+https://papers.example.net)"


def test_conditional_get_with_last_modified_only(store, config, server: FeedServer) -> None:  # noqa: F811
    url = server.url + "/lm-only"
    assert pipeline.ingest(store, config, [url], now=T0).sources[0].new == API_PAPERS
    assert pipeline.ingest(store, config, [url], now=T0).sources[0].not_modified
    assert server.requests[-1][1]["If-Modified-Since"] == LAST_MODIFIED


def test_redirect_is_followed_and_relative_links_resolved_against_the_final_url(
        store, config, server: FeedServer) -> None:  # noqa: F811
    report = pipeline.ingest(store, config, [server.url + "/redirect"], now=T0)
    assert not report.failed and report.sources[0].new == BLOG_PAPERS
    with store.atomic() as conn:
        urls = sorted(p.url for p in list_papers(conn))
    # saved to a file, the same feed's links are skipped (test_formats_own); fetched, they resolve
    assert urls == [f"{server.url}/2026/01/15/v2-0/", f"{server.url}/2026/03/01/v2-1/"]


@pytest.mark.parametrize("path, message", [
    ("/slow", "timed out after 0.5 s"),
    ("/error", "HTTP 500"),
    ("/big", "too large: 50,011 bytes announced"),
    ("/big-unannounced", "too large: more than 40,000 bytes"),
    ("/gzip-bomb", "too large once un-gzipped"),
    ("/nothing-here", "HTTP 404"),
])
def test_failures_are_reported_and_others_ingested(store, config, server: FeedServer, path: str,  # noqa: F811
                                                    message: str) -> None:
    report = pipeline.ingest(store, config, [server.url + path, server.url + "/gzip"], now=T0)
    assert report.failed
    assert report.errors[0].startswith(f"{server.url}{path}: ") and message in report.errors[0], report.errors
    assert report.sources[1].new == API_PAPERS and not report.sources[1].error
    with store.atomic() as conn:
        assert get_source_state(conn, server.url + path).etag is None


def test_a_download_cut_short_is_an_error_and_its_etag_is_not_kept(store, config, server: FeedServer) -> None:  # noqa: F811
    url = server.url + "/cut-short"
    report = pipeline.ingest(store, config, [url], now=T0)
    assert report.failed and "the download was cut short" in report.sources[0].error
    with store.atomic() as conn:
        assert count_papers(conn) == 0
        assert get_source_state(conn, url).etag is None
    pipeline.ingest(store, config, [url], now=T0)
    assert "If-None-Match" not in dict(server.requests[-1][1])


def test_the_timeout_covers_a_download_that_trickles_in(store, config, server: FeedServer) -> None:  # noqa: F811
    assert (Path(__file__).parent / "data" / "formats" / "arxiv_api_query.xml").stat().st_size > 1000  # > 2 s of drip
    started = time.monotonic()
    report = pipeline.ingest(store, config.with_overrides({"sources.timeout_s": 1.0}), [server.url + "/drip"], now=T0)
    elapsed = time.monotonic() - started
    assert report.failed and "timed out" in report.sources[0].error
    assert elapsed < 5, f"took {elapsed:.1f} s with a 1 s timeout"
