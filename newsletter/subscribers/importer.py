"""Importing a subscriber file into the store: streaming, checked, all or nothing.

The file is read once, record by record (``csv`` over a text stream): each row is mapped by its
format, its address checked and normalised, and good rows are written in batches to a staging
table inside the one transaction of the import. Memory stays flat however long the file is; the
only list that grows is the list of bad rows, which the user wants to see in full.

By default any bad row means nothing changes (the transaction rolls back) and every bad row is
reported as ``FILE:LINE: address: why``; with ``skip_invalid`` the good rows are imported and
the bad ones still listed.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Callable

import charset_normalizer

from newsletter.errors import ImportRowsError, SubscriberError
from newsletter.models import SUPPRESSED_STATUSES
from newsletter.store import Store
from newsletter.store.db import utcnow
from newsletter.store.profiles import ImportedProfile, import_profiles, suppressed_keys
from newsletter.files import not_regular_file
from newsletter.store.schema import sqlite_time
from newsletter.store.subscribers import import_session, json_refuses_nul, merge_staged, stage_rows
from newsletter.subscribers.addresses import MAX_ATTRIBUTES_CHARS, bounded_name, check_address, shorten
from newsletter.subscribers.formats import detect_format, format_named, row_mapper

BATCH_ROWS = 5000
SAMPLE_BYTES = 1 << 20
DELIMITERS = (",", ";", "\t")
# How sure a guessed encoding must be (charset-normalizer's measures, 0..1): beyond these the
# reading is refused and the user names the encoding.
MAX_CHAOS = 0.1
MIN_COHERENCE = 0.05

# JSON's escape of a NUL character (not an escaped backslash before "u0000"), which PostgreSQL's
# JSON functions refuse.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

# csv's default limit (128 KiB) is below what a quoted notes column can hold.
csv.field_size_limit(16 * 1024 * 1024)


@dataclass
class ImportReport:
    """What an import did; counts are of addresses, ``rows`` of non-blank data records."""

    path: str
    format: str = ""
    encoding: str = ""
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0  # on file, and the file changed nothing in them
    suppressed_kept: int = 0
    duplicates: int = 0
    newly_suppressed: int = 0
    invalid: list[SubscriberError] = field(default_factory=list)  # unless passed to on_invalid
    invalid_count: int = 0
    imported: bool = False
    profiles: int = 0  # readers whose profile the file changed (our format's profile columns)
    ratings: int = 0


def _describe(text: str) -> str:
    text = shorten(text.strip(" \t"))
    if not text:
        return "(no address)"
    return text if text.isprintable() else ascii(text)


def detect_encoding(path: Path, sample: bytes) -> str:
    """UTF-8 (with or without BOM) or a BOM-marked UTF-16/32; otherwise what charset-normalizer
    finds, but only when every candidate it considers reads the sample the same way and that
    reading looks like text (little "chaos", some language coherence).

    On short files the guessers routinely disagree (a Latin-1 name reads as Latvian, Shift-JIS
    as Korean), and a lone candidate can be plainly wrong (a KOI8-R list of Russian names came
    back as Shift-JIS, chaos 0.17, coherence 0): importing names garbled is worse than asking,
    so then we refuse.
    """
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                      (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if sample.startswith(bom):
            return name
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=len(sample) < SAMPLE_BYTES)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    matches = list(charset_normalizer.from_bytes(sample))
    readings = {str(m) for m in matches}
    if len(readings) == 1 and matches[0].chaos <= MAX_CHAOS and matches[0].coherence >= MIN_COHERENCE:
        return matches[0].encoding
    guesses = ", ".join(dict.fromkeys(m.encoding for m in matches[:4])) or "none fits"
    raise SubscriberError(
        f"not UTF-8, and the encoding cannot be told for sure (candidates: {guesses}); "
        "save the file as UTF-8 or name its encoding with --encoding", where=str(path))


class _CountingReader(io.RawIOBase):
    """A binary file that counts the bytes read, for the progress bar (text files cannot
    ``tell()`` while being iterated)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        self.bytes_read += n or 0
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def _pick_delimiter(first_line: str) -> str:
    """The delimiter that splits the header into the most columns (comma on ties)."""
    best, best_count = ",", 0
    for delimiter in DELIMITERS:
        count = len(next(csv.reader([first_line], delimiter=delimiter), []))
        if count > best_count:
            best, best_count = delimiter, count
    return best


def import_subscribers(store: Store, path: str | os.PathLike[str], *, format: str = "auto",
                       skip_invalid: bool = False, encoding: str | None = None, now: datetime | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       on_invalid: Callable[[SubscriberError], None] | None = None) -> ImportReport:
    """Import a subscriber file; returns the report, or raises ``ImportRowsError`` listing every
    bad row (the store unchanged) unless ``skip_invalid``.

    ``progress(bytes_read, total_bytes)`` is called after each batch. ``on_invalid`` receives
    each bad row as it is found instead of it being kept in ``report.invalid``: a file of a
    million bad rows then costs no memory either.
    """
    path = Path(path)
    shown = str(path)
    report = ImportReport(path=shown)
    problem = not_regular_file(path)
    if problem:
        raise SubscriberError(f"{problem}; nothing was imported", where=shown)
    encoding = _text_encoding(encoding, where=shown) if encoding is not None else None
    try:
        raw = open(path, "rb")
    except OSError as exc:
        raise SubscriberError(f"cannot read: {exc.strerror}", where=shown) from None
    total = os.fstat(raw.fileno()).st_size
    with raw:
        sample = raw.read(SAMPLE_BYTES)
        raw.seek(0)
        if encoding is None:
            encoding = detect_encoding(path, sample)
        report.encoding = encoding
        counter = _CountingReader(raw)
        # UTF-8 is read as utf-8-sig, so a byte-order mark is never taken for part of the header.
        text = io.TextIOWrapper(io.BufferedReader(counter, 1 << 16),
                                encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline="")
        try:
            _import_stream(store, text, report, format=format, skip_invalid=skip_invalid, now=now,
                           on_invalid=on_invalid or report.invalid.append,
                           progress=(lambda: progress(counter.bytes_read, total)) if progress else None)
        except UnicodeDecodeError as exc:
            # The decoder saw a block of the file, not a row: read it again, marking what does not
            # decode, to tell the user the line of the record that holds it.
            raw.seek(0)
            line = _undecodable_line(raw, encoding)
            undecoded = exc.object[exc.start:exc.end][:4] if isinstance(exc.object, bytes) else b""
            bad = " ".join(f"0x{b:02x}" for b in undecoded)
            raise SubscriberError(
                f"not valid {_encoding_label(encoding)} ({exc.reason}{f' {bad}' if bad else ''}); "
                "nothing was imported; save the file as UTF-8 or name its encoding with --encoding "
                "(cp1252, for example)", where=shown, line=line) from None
        except UnicodeError as exc:  # a stream-level refusal: UTF-16 or UTF-32 without a byte-order mark
            raise SubscriberError(f"not valid {_encoding_label(encoding)} ({exc}); nothing was imported; "
                                  "without a byte-order mark name the byte order (--encoding utf-16-le or "
                                  "utf-16-be), or save the file as UTF-8", where=shown) from None
        except csv.Error as exc:
            raise SubscriberError(f"not a readable CSV file ({exc}); nothing was imported", where=shown) from None
    return report


def _text_encoding(name: str, *, where: str) -> str:
    """The codec name for ``--encoding NAME``, refused unless it decodes bytes to text:
    ``rot13``, ``hex`` and ``base64`` are codecs too, of another kind (the flag checked is the
    one ``io.TextIOWrapper`` itself refuses them by)."""
    try:
        codec = codecs.lookup(name)
    except LookupError:
        raise SubscriberError(f"unknown encoding {shorten(name)!r}; name a text encoding such as utf-8 or cp1252",
                              where=where) from None
    if not getattr(codec, "_is_text_encoding", True):
        raise SubscriberError(f"{shorten(name)!r} is not a text encoding; name one such as utf-8 or cp1252",
                              where=where)
    return codec.name


# Put where a byte sequence does not decode: a lone surrogate, which no correctly decoded text holds.
_UNDECODABLE = "\udcff"
codecs.register_error("newsletter-mark-undecodable", lambda exc: (_UNDECODABLE, exc.end))


def _encoding_label(encoding: str) -> str:
    """``UTF-8`` for utf-8 and utf-8-sig (UTF-16, UTF-32 alike); other codec names as given."""
    return encoding.upper().removesuffix("-SIG") if encoding.startswith("utf") else encoding


def _undecodable_line(raw: IO[bytes], encoding: str) -> int | None:
    """The line where the first record holding bytes that do not decode in ``encoding`` starts
    (1 for the header), read as the import reads; None if it cannot be told (the file changed,
    or is not readable CSV before that record)."""
    text = io.TextIOWrapper(raw, encoding="utf-8-sig" if encoding == "utf-8" else encoding,
                            errors="newsletter-mark-undecodable", newline="")
    try:
        first_line = text.readline()
        if _UNDECODABLE in first_line:
            return 1
        reader = csv.reader(itertools.chain([first_line], text), delimiter=_pick_delimiter(first_line), strict=True)
        next(reader, None)
        start = reader.line_num + 1
        for fields in reader:
            line, start = start, reader.line_num + 1
            if any(_UNDECODABLE in f for f in fields):
                return line
    except (csv.Error, UnicodeError):
        return None
    finally:
        text.detach()
    return None


# Long: the read-check-stage loop of the import's hot path; per-row helpers cost a call
# per row at a million rows (measured in bench/bench_import.py).
def _import_stream(store: Store, text: IO[str], report: ImportReport, *, format: str, skip_invalid: bool,
                   now: datetime | None, on_invalid: Callable[[SubscriberError], None],
                   progress: Callable[[], None] | None) -> None:
    shown = report.path
    first_line = text.readline()
    if not first_line.strip():
        raise SubscriberError("empty file: no header row", where=shown, line=1)
    delimiter = _pick_delimiter(first_line)
    reader = csv.reader(itertools.chain([first_line], text), delimiter=delimiter, strict=True)
    header = next(reader)
    fmt = detect_format(header, where=shown) if format == "auto" else format_named(format, header, where=shown)
    report.format = fmt.name
    mapper = row_mapper(fmt, header)
    width = len(header)
    now = now or utcnow()
    reason_default = f"import {Path(shown).name}"
    nul_refused = json_refuses_nul(store)

    # Staged outside a transaction of the store (see begin_import); the merge is the transaction.
    with import_session(store) as conn:
        batch: list[tuple] = []
        profiles: list[ImportedProfile] = []  # written after the merge, in its transaction
        rows = invalid = 0
        start = reader.line_num + 1
        try:
            # The hot loop of a million-row import: kept flat, no per-row helpers beyond the mapper.
            for fields in reader:
                line, start = start, reader.line_num + 1
                if not fields or not any(fields) or not any(f.strip() for f in fields):
                    continue  # a blank line, or a row of empty cells
                rows += 1
                address = fields[0]
                try:
                    if len(fields) > width and any(f.strip() for f in fields[width:]):
                        raise ValueError(f"{len(fields)} fields but the header has {width}")
                    parsed = mapper(fields)
                    address = parsed.email
                    normalized = check_address(address)
                    name = bounded_name(parsed.name)
                    attributes = json.dumps(parsed.attributes, ensure_ascii=False) if parsed.attributes else "{}"
                    if len(attributes) > MAX_ATTRIBUTES_CHARS:
                        raise ValueError(f"attributes: longer than {MAX_ATTRIBUTES_CHARS:,} characters as JSON "
                                         f"({len(attributes):,})")
                    if nul_refused and "\\u0000" in attributes and _ESCAPED_NUL.search(attributes):
                        raise ValueError("attributes: a NUL character (\\u0000), which a PostgreSQL store cannot hold")
                except ValueError as exc:
                    invalid += 1
                    on_invalid(SubscriberError(f"{_describe(address)}: {shorten(str(exc), 200)}", where=shown,
                                               line=line))
                    continue
                if invalid and not skip_invalid:
                    continue  # still checking, to list every bad row, but nothing will be written
                status = parsed.status
                batch.append((
                    line, normalized, normalized.lower(), name, status,
                    parsed.status_reason or (reason_default if status in SUPPRESSED_STATUSES else ""),
                    attributes,
                    sqlite_time(parsed.created_at) if parsed.created_at else None,
                    sqlite_time(parsed.confirmed_at) if parsed.confirmed_at else None,
                    sqlite_time(parsed.status_changed_at) if parsed.status_changed_at else None,
                ))
                if parsed.profile is not None:
                    profiles.append((normalized.lower(), parsed.profile.fields, parsed.profile.ratings))
                if len(batch) >= BATCH_ROWS:
                    stage_rows(conn, batch)
                    batch.clear()
                    if progress:
                        progress()
        except csv.Error as exc:
            # strict: a quote opened and never closed is an error, not the rest of the file
            # swallowed into one name.
            raise SubscriberError(f"not a readable CSV record ({exc}); nothing was imported",
                                  where=shown, line=start) from None
        report.rows, report.invalid_count = rows, invalid
        if invalid and not skip_invalid:
            n = invalid
            raise ImportRowsError(
                f"{n} invalid row{'s' if n != 1 else ''} of {report.rows}; nothing was imported "
                "(fix them, or pass --skip-invalid to import the rest)", report.invalid)
        stage_rows(conn, batch)
        with conn.begin():  # the store's write lock (SQLite), or subscribers' (PostgreSQL), for the merge alone
            held = suppressed_keys(conn, (key for key, _, _ in profiles)) if profiles else set()
            counts = merge_staged(conn, source=Path(shown).name, now=now)
            if profiles:
                report.profiles, report.ratings = import_profiles(conn, profiles, skip=held, now=now)
        if progress:
            progress()
    report.added, report.updated, report.unchanged = counts.added, counts.updated, counts.unchanged
    report.suppressed_kept, report.duplicates = counts.suppressed_kept, counts.duplicates
    report.newly_suppressed = counts.newly_suppressed
    report.imported = True
