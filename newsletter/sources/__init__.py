"""Sources: anything that lists papers (a file or an http(s) URL) turned into ``Paper`` values.

``read_source`` says *what* to read and hands the bytes to the reader for their format;
``fetch.py`` says *how* bytes are got (timeouts, size cap, conditional GET). The format is told
by the content itself, not the file name: ``<`` starts a feed, ``{`` or ``[`` JSON, a header line
with a ``title`` column CSV, anything else a plain-text page.
"""

from __future__ import annotations

import codecs
import gc
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from newsletter.errors import SourceError
from newsletter.sources.base import ParsedSource
from newsletter.sources.fetch import USER_AGENT, Fetched, fetch_url, is_url, read_file

__all__ = ["LoadedSource", "ParsedSource", "collector_paused", "detect_format", "load_source", "parse_bytes"]

_FEED_SUFFIXES = (".xml", ".rss", ".atom", ".rdf")
_WESTERN_FIRST = ("cp1252", "latin_1", "iso8859_15")
_OTHER_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)


@dataclass(frozen=True)
class LoadedSource:
    """A source read and parsed; ``parsed`` is None when the server said 304 Not Modified."""

    name: str
    parsed: ParsedSource | None
    fetched: Fetched | None = None

    @property
    def not_modified(self) -> bool:
        return self.fetched is not None and self.fetched.not_modified


def decode_text(data: bytes, source: str) -> tuple[str, str | None]:
    """Text from bytes, and the encoding when it was guessed (None when sure): a BOM wins, then
    UTF-8, then the best guess of charset-normalizer, which the caller reports as a warning."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(encoding), None
            except UnicodeDecodeError as exc:
                raise SourceError(f"not valid {encoding}: {exc.reason} at byte {exc.start}", where=source) from None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    results = from_bytes(data[:1_000_000])
    best = results.best()
    if best is None or best.encoding is None:
        raise SourceError("binary data, not text, JSON, CSV or a feed", where=source)
    # Short Western text fits several single-byte code pages equally well ("naïve" is "naďve" in
    # cp1250); among equal guesses, the one most such files are written in wins.
    tied = {m.encoding for m in results if (m.chaos, m.coherence) == (best.chaos, best.coherence)}
    encoding = next((e for e in _WESTERN_FIRST if e in tied), best.encoding)
    return data.decode(encoding, errors="replace"), encoding


def detect_format(data: bytes, name: str, content_type: str = "") -> str:
    """``feed``, ``json``, ``csv`` or ``text``, from the first bytes (and the name as a tie-break)."""
    head = data[:4096]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        head = head.decode("utf-16", errors="ignore").encode("utf-8")
    head = head.removeprefix(codecs.BOM_UTF8).lstrip()
    if b"\x00" in head:
        return "binary"
    if head.startswith(b"<"):
        return "feed"
    if head.startswith((b"{", b"[")):
        return "json"
    lower = name.lower().split("?", 1)[0]
    if lower.endswith(".json") or "json" in content_type:
        return "json"
    if lower.endswith(_FEED_SUFFIXES) or "xml" in content_type:
        return "feed"
    first_line = head.split(b"\n", 1)[0].lower()
    if lower.endswith(".csv") or "text/csv" in content_type or (b"title" in first_line and b"," in first_line):
        return "csv"
    return "text"


def parse_bytes(data: bytes, name: str, *, content_type: str = "", location: str | None = None) -> ParsedSource:
    """The papers in ``data``; raises ``SourceError`` (``NAME: what is wrong``) when unreadable."""
    # The readers import this package (normalize, decode_text): imported here, not at the top.
    from newsletter.sources.csvfiles import parse_csv
    from newsletter.sources.feeds import parse_feed
    from newsletter.sources.jsonfiles import parse_json
    from newsletter.sources.text import parse_text

    kind = detect_format(data, name, content_type)
    if kind == "binary":
        raise SourceError("binary data, not text, JSON, CSV or a feed", where=name)
    with collector_paused():
        if kind == "feed":
            return parse_feed(data, name, location)
        text, guessed = decode_text(data, name)
        if kind == "json":
            parsed = parse_json(text, name)
        elif kind == "csv":
            parsed = parse_csv(text, name)
        else:
            parsed = parse_text(text, name)
    if guessed:
        parsed.warnings.append(f"not UTF-8: read as {guessed}, a guess; if titles look garbled, "
                               "save the file as UTF-8")
    return parsed


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while one source is read.

    Reading a source builds its whole tree of objects at once (the parsed document, then a
    ``Paper`` per entry), none of it garbage, and every few hundred new objects the collector
    walks them again; once the tree is large, a full pass walks all of it. Measured on 10,000
    papers of JSON: 10-15 % of the read. The pause lasts one source (at most ``sources.max_bytes``
    of input); the collector is switched back on after, unless it was off before.

    Switched back on, its first pass would walk every object the pause let through: ~50,000 for
    10,000 papers, 10-35 ms. The papers are kept (the store is next), so they are handed to the
    oldest generation instead, as a pass would end up doing, without the walk: ``gc.freeze()``
    then ``gc.unfreeze()`` moves every tracked object there in one step. Skipped when something
    else has frozen objects (a server that forks does, to share memory): those stay frozen.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.enable()


def load_source(name: str, *, timeout_s: float, max_bytes: int, etag: str | None = None,
                last_modified: str | None = None, path: str | Path | None = None,
                agent: str = USER_AGENT, base_url: str | None = None) -> LoadedSource:
    """Read and parse one source (a path or an http(s) URL); ``path``, when given, is read
    instead of ``name``, which then only names the source (the bundled sample). ``agent`` is
    the User-Agent sent with a URL (``fetch.user_agent(base_url)``). ``base_url`` is where a
    feed *file* was saved from: its relative links resolve against it, as they do against the
    URL a feed is fetched from."""
    if path is None and _OTHER_SCHEME_RE.match(name) and not is_url(name):
        raise SourceError("only http:// and https:// URLs (or file paths) can be read", where=name)
    if is_url(name):
        fetched = fetch_url(name, timeout_s=timeout_s, max_bytes=max_bytes, etag=etag, last_modified=last_modified,
                            agent=agent)
        if fetched.not_modified:
            return LoadedSource(name, None, fetched)
        parsed = parse_bytes(fetched.body, name, content_type=fetched.content_type, location=fetched.url)
        return LoadedSource(name, parsed, fetched)
    data = read_file(Path(path or name).expanduser(), max_bytes=max_bytes, where=name)
    return LoadedSource(name, parse_bytes(data, name, location=base_url))
