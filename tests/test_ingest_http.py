"""Fetching over real HTTP: a ``http.server`` on 127.0.0.1 with an OS-assigned port serving the
shared fixtures, with ETag / Last-Modified (304), redirects, a slow answer, a 500 and an
oversized body."""

from __future__ import annotations

import gzip
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from newsletter import pipeline
from newsletter.config import load_config
from newsletter import __version__
from newsletter.store.papers import count_papers, get_source_state

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)
ETAG = '"v1"'
LAST_MODIFIED = "Mon, 02 Mar 2026 05:00:00 GMT"


class FeedServer:
    """Routes: /feed (ETag + Last-Modified, 304 when matched), /lm-only (Last-Modified only),
    /redirect -> /feed, /slow (sleeps), /error (500), /big (oversized), /gzip-bomb, /qemu.atom."""

    def __init__(self, fixtures: Path) -> None:
        self.fixtures = fixtures
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def send_body(self, body: bytes, content_type: str = "application/xml", headers=()) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append((self.path, dict(self.headers)))
                feed = (server.fixtures / "arxiv_api" / "api_query_testing_start0_max10.xml").read_bytes()
                if self.path == "/feed":
                    if self.headers.get("If-None-Match") == ETAG:
                        self.send_response(304)
                        self.end_headers()
                        return
                    self.send_body(feed, headers=[("ETag", ETAG), ("Last-Modified", LAST_MODIFIED)])
                elif self.path == "/lm-only":
                    if self.headers.get("If-Modified-Since") == LAST_MODIFIED:
                        self.send_response(304)
                        self.end_headers()
                        return
                    self.send_body(feed, headers=[("Last-Modified", LAST_MODIFIED)])
                elif self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/moved/qemu.atom")
                    self.end_headers()
                elif self.path == "/moved/qemu.atom":
                    body = (server.fixtures / "feeds_other" / "blog_atom1_jekyll_feed_relative_urls_qemu.atom").read_bytes()
                    self.send_body(body, "application/atom+xml")
                elif self.path == "/slow":
                    time.sleep(1.5)
                    self.send_body(feed)
                elif self.path == "/error":
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/big":
                    self.send_body(b"<rss>" + b" " * 50_000 + b"</rss>")
                elif self.path == "/big-unannounced":
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"<rss>" + b" " * 50_000 + b"</rss>")
                    self.close_connection = True
                elif self.path == "/gzip-bomb":
                    body = gzip.compress(b" " * 5_000_000)
                    self.send_body(body, headers=[("Content-Encoding", "gzip")])
                elif self.path == "/gzip":
                    self.send_body(gzip.compress(feed), headers=[("Content-Encoding", "gzip")])
                elif self.path == "/cut-short":
                    # The whole feed announced, half of it sent, then the connection closed.
                    self.send_response(200)
                    self.send_header("Content-Type", "application/atom+xml")
                    self.send_header("Content-Length", str(len(feed)))
                    self.send_header("ETag", ETAG)
                    self.end_headers()
                    self.wfile.write(feed[: len(feed) // 2])
                    self.close_connection = True
                elif self.path == "/drip":
                    # Fifty bytes every 0.1 s: no single read waits long, the whole takes minutes.
                    self.send_response(200)
                    self.send_header("Content-Type", "application/atom+xml")
                    self.send_header("Content-Length", str(len(feed)))
                    self.end_headers()
                    try:
                        for start in range(0, len(feed), 50):
                            self.wfile.write(feed[start:start + 50])
                            self.wfile.flush()
                            time.sleep(0.1)
                    except OSError:
                        pass  # the client gave up, as it should
                    self.close_connection = True
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FeedServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(fixtures_dir: Path):
    with FeedServer(fixtures_dir) as s:
        yield s


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    return load_config(env={}).with_overrides({"sources.timeout_s": 0.5, "sources.max_bytes": 40_000})


def test_conditional_get_with_etag(store, config, server: FeedServer) -> None:
    url = server.url + "/feed"
    first = pipeline.ingest(store, config, [url], now=T0)
    assert first.sources[0].new == 10 and not first.failed
    with store.atomic() as conn:
        state = get_source_state(conn, url)
    assert (state.etag, state.last_modified, state.last_status) == (ETAG, LAST_MODIFIED, "200")
    second = pipeline.ingest(store, config, [url], now=T0)
    assert second.sources[0].not_modified and not second.failed
    assert (second.sources[0].new, second.sources[0].updated) == (0, 0)
    path, headers = server.requests[-1]
    assert headers["If-None-Match"] == ETAG and headers["If-Modified-Since"] == LAST_MODIFIED
    assert headers["User-Agent"] == f"newsletter/{__version__}"  # no base_url configured: no URL at all


def test_user_agent_names_the_operators_site_only_when_configured(store, server: FeedServer, tmp_path: Path) -> None:
    (tmp_path / "newsletter.toml").write_text('[newsletter]\nbase_url = "https://papers.example.net"\n')
    config = load_config(tmp_path / "newsletter.toml", env={})
    assert not pipeline.ingest(store, config, [server.url + "/gzip"], now=T0).failed
    assert server.requests[-1][1]["User-Agent"] == f"newsletter/{__version__} (+https://papers.example.net)"
    # A value that is not an http(s) URL is left out rather than sent as a header.
    odd = load_config(tmp_path / "newsletter.toml", env={"NEWSLETTER_NEWSLETTER_BASE_URL": "papers example"})
    pipeline.ingest(store, odd, [server.url + "/gzip"], now=T0)
    assert server.requests[-1][1]["User-Agent"] == f"newsletter/{__version__}"


def test_conditional_get_with_last_modified_only(store, config, server: FeedServer) -> None:
    url = server.url + "/lm-only"
    pipeline.ingest(store, config, [url], now=T0)
    assert pipeline.ingest(store, config, [url], now=T0).sources[0].not_modified


def test_redirect_is_followed_and_relative_links_resolved(store, config, server: FeedServer) -> None:
    report = pipeline.ingest(store, config.with_overrides({"sources.max_bytes": 100_000}),
                             [server.url + "/redirect"], now=T0)
    assert not report.failed and report.sources[0].new == 10
    from newsletter.store.papers import list_papers

    with store.atomic() as conn:
        urls = [p.url for p in list_papers(conn)]
    assert f"{server.url}/2025/08/26/qemu-10-1-0/" in urls


@pytest.mark.parametrize("path, message", [
    ("/slow", "timed out after 0.5 s"),
    ("/error", "HTTP 500"),
    ("/big", "too large: 50,011 bytes announced"),
    ("/big-unannounced", "too large: more than 40,000 bytes"),
    ("/gzip-bomb", "too large once un-gzipped"),
    ("/nothing-here", "HTTP 404"),
])
def test_failures_are_reported_and_others_ingested(store, config, server: FeedServer, path: str, message: str) -> None:
    report = pipeline.ingest(store, config, [server.url + path, server.url + "/gzip"], now=T0)
    assert report.failed
    assert report.errors[0].startswith(f"{server.url}{path}: ") and message in report.errors[0], report.errors
    assert report.sources[1].new == 10 and not report.sources[1].error
    with store.atomic() as conn:
        assert get_source_state(conn, server.url + path).etag is None


def test_refused_connection(store, config) -> None:
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/feed"
    report = pipeline.ingest(store, config, [url], now=T0)
    assert report.errors[0].startswith(f"{url}: cannot connect")


def test_a_download_cut_short_is_an_error_and_its_etag_is_not_kept(store, config, server: FeedServer) -> None:
    url = server.url + "/cut-short"
    report = pipeline.ingest(store, config, [url], now=T0)
    assert report.failed and "the download was cut short" in report.sources[0].error
    with store.atomic() as conn:
        assert count_papers(conn) == 0
        assert get_source_state(conn, url).etag is None  # so the next ingest asks for all of it again
    assert "If-None-Match" not in dict(server.requests[-1][1])
    pipeline.ingest(store, config, [url], now=T0)
    assert "If-None-Match" not in dict(server.requests[-1][1])


def test_the_timeout_covers_a_download_that_trickles_in(store, config, server: FeedServer) -> None:
    started = time.monotonic()
    report = pipeline.ingest(store, config.with_overrides({"sources.timeout_s": 1.0}), [server.url + "/drip"], now=T0)
    elapsed = time.monotonic() - started
    assert report.failed and "timed out" in report.sources[0].error
    assert elapsed < 5, f"took {elapsed:.1f} s with a 1 s timeout"
