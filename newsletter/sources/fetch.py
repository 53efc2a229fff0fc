"""Reading a source's bytes: files from disk, URLs over HTTP(S) with our own rules.

The fetcher, not feedparser, talks to the network: a total deadline (not just a per-read
timeout, so a server dribbling one byte a second cannot hold us), our User-Agent, redirects
(urllib follows up to 10), a size cap applied while reading and while un-gzipping (a small gzip
bomb cannot expand past it), and conditional GET: the ETag / Last-Modified of the last good
fetch are sent back, and a 304 means "unchanged".
"""

from __future__ import annotations

import http.client
import socket
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from newsletter import __version__
from newsletter.errors import SourceError
from newsletter.files import not_regular_file

USER_AGENT = f"newsletter/{__version__}"
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Fetched:
    """What a fetch produced. ``not_modified`` (a 304) carries no body."""

    body: bytes
    url: str                      # the final URL after redirects (base for relative links)
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    status: int = 200
    not_modified: bool = False


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def user_agent(base_url: str = "") -> str:
    """``newsletter/<version>``, plus ``(+URL)`` when the operator configured their site
    (``newsletter.base_url``), so a feed's owner can see who is polling and reach them.

    The project itself has no public address to name, and a made-up one would mislead.
    """
    base_url = base_url.strip()
    if is_url(base_url) and base_url.isprintable() and " " not in base_url:
        return f"{USER_AGENT} (+{base_url})"
    return USER_AGENT


def read_file(path: str | Path, *, max_bytes: int, where: str | None = None) -> bytes:
    """A file's bytes, refused before reading when larger than ``max_bytes``."""
    where = where or str(path)
    p = Path(path)
    problem = not_regular_file(p)
    if problem:
        raise SourceError(problem, where=where)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise SourceError(f"too large: {size:,} bytes (limit {max_bytes:,}, see sources.max_bytes)", where=where)
        with p.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise SourceError("no such file", where=where) from None
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}", where=where) from None
    if len(data) > max_bytes:
        raise SourceError(f"too large: more than {max_bytes:,} bytes (see sources.max_bytes)", where=where)
    return data


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handler, limited to http(s) targets (no file:// or ftp:// hops)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if not is_url(newurl):
            raise urllib.error.HTTPError(newurl, code, f"redirect to a non-HTTP URL {newurl!r}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects())


def _read_capped(response, *, max_bytes: int, deadline: float, where: str) -> bytes:  # type: ignore[no-untyped-def]
    """The body, within the size cap and the deadline, and whole.

    ``read1`` returns whatever the socket has, so a server that sends a few bytes at a time
    meets the deadline too (``read(n)`` would wait for all n bytes between checks). A body
    shorter than its Content-Length is an error: stored, its ETag would turn the missing part
    into "304, unchanged" for good.
    """
    chunks: list[bytes] = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise SourceError("timed out while downloading (see sources.timeout_s)", where=where)
        try:
            chunk = response.read1(_CHUNK)
        except http.client.IncompleteRead as exc:
            total += len(exc.partial)
            chunk = b""
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise SourceError(f"too large: more than {max_bytes:,} bytes (see sources.max_bytes)", where=where)
        chunks.append(chunk)
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and total < int(length):
        raise SourceError(f"the download was cut short: {total:,} of {int(length):,} bytes; nothing from it "
                          "was stored", where=where)
    return b"".join(chunks)


def _gunzip(data: bytes, *, max_bytes: int, where: str) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise SourceError(f"broken gzip body: {exc}", where=where) from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise SourceError(f"too large once un-gzipped: more than {max_bytes:,} bytes", where=where)
    return out


def fetch_url(url: str, *, timeout_s: float, max_bytes: int, etag: str | None = None,
              last_modified: str | None = None, agent: str = USER_AGENT) -> Fetched:
    """GET ``url``; a 304 answer to our conditional headers returns ``not_modified=True``.

    ``agent`` is the User-Agent header (see ``user_agent``). Every failure (DNS, refused,
    timeout, HTTP 4xx/5xx, too large) is a ``SourceError`` naming the URL, never a traceback.
    """
    headers = {"User-Agent": agent, "Accept-Encoding": "gzip",
               "Accept": "application/atom+xml, application/rss+xml, application/xml;q=0.9, "
                         "application/json;q=0.9, text/*;q=0.8, */*;q=0.5"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    request = urllib.request.Request(url, headers=headers)
    deadline = time.monotonic() + timeout_s
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise SourceError(f"too large: {int(length):,} bytes announced (limit {max_bytes:,}, "
                                  "see sources.max_bytes)", where=url)
            body = _read_capped(response, max_bytes=max_bytes, deadline=deadline, where=url)
            if response.headers.get("Content-Encoding", "").lower() == "gzip":
                body = _gunzip(body, max_bytes=max_bytes, where=url)
            return Fetched(body=body, url=response.geturl(), content_type=response.headers.get("Content-Type", ""),
                           etag=response.headers.get("ETag"), last_modified=response.headers.get("Last-Modified"),
                           status=response.status)
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return Fetched(body=b"", url=url, etag=etag, last_modified=last_modified, status=304, not_modified=True)
        raise SourceError(f"HTTP {exc.code} {exc.reason}", where=url) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise SourceError(f"timed out after {timeout_s:g} s (see sources.timeout_s)", where=url) from None
        raise SourceError(f"cannot connect: {reason}", where=url) from None
    except (socket.timeout, TimeoutError):
        raise SourceError(f"timed out after {timeout_s:g} s (see sources.timeout_s)", where=url) from None
    except (OSError, ValueError) as exc:
        raise SourceError(f"download failed: {exc}", where=url) from None
