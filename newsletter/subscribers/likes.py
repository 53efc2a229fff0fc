"""Papers a reader liked, read from the files researchers already have: a BibTeX file (any
reference manager, Google Scholar, arXiv's own export) or a Zotero CSV export.

Only ids are kept (an arXiv id, else a DOI; arXiv's own DOIs become the arXiv id), in file
order. An entry that names neither is not an error: it is reported by its key or title and
line, so the operator can see what was left out. A file that is not readable BibTeX is an error
naming the line, and then nothing is read.

BibTeX is parsed with bibtexparser (v2), which handles nested braces, quoted values, ``@string``
macros and comments, and says which block it could not read and where. Fields looked at, most
trusted first: ``eprint`` (when ``archivePrefix``/``eprinttype`` is arXiv or absent), ``arxivId``
(Mendeley), an ``arXiv:ID`` in ``journal``, ``note`` or ``howpublished`` (Google Scholar), then
``doi``, then ``url``.

A Zotero CSV export (File > Export Library, format CSV) is read by its header: ``Extra`` lines
such as ``arXiv:2403.05525 [cs]``, then ``DOI``, then ``Url``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import bibtexparser
from bibtexparser.model import DuplicateBlockKeyBlock, DuplicateFieldKeyBlock, Entry, ParsingFailedBlock

from newsletter.files import not_regular_file
from newsletter.subscribers.addresses import shorten
from newsletter.subscribers.profiles import ProfileError, liked_id

# A reference library, not a corpus: a Zotero export of 20,000 items with abstracts is ~30 MB.
MAX_BYTES = 64 * 1024 * 1024
_ARXIV_MENTION_RE = re.compile(r"arxiv:\s*([\w./-]+)", re.IGNORECASE)
_BIBTEX_ENTRY_RE = re.compile(r"^\s*@\s*[A-Za-z]+\s*[{(]", re.MULTILINE)
ZOTERO_COLUMNS = ("DOI", "Url", "Extra")
# bibtexparser logs each block it cannot read as a warning; we report it ourselves, with its line.
_BIBTEX_LOG = logging.getLogger("bibtexparser")


@dataclass(frozen=True)
class LikesFile:
    """What a likes file gave: the ids found (canonical, file order, no repeats), how many
    entries it had, and each entry that named no paper as ``where: why``."""

    path: str
    format: str                 # "BibTeX" or "Zotero CSV"
    ids: tuple[str, ...]
    entries: int
    unusable: tuple[str, ...]


def read_likes(path: str | os.PathLike[str]) -> LikesFile:
    """The liked papers in a BibTeX file or a Zotero CSV export (told apart by content).

    Raises ``ProfileError`` naming the file (and line) when it cannot be read, is neither
    format, is not valid BibTeX, or names no paper at all."""
    shown = str(path)
    problem = not_regular_file(Path(path))
    if problem:
        raise ProfileError(f"{problem}; nothing was read", where=shown)
    try:
        with open(path, "rb") as raw:
            data = raw.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ProfileError(f"cannot read: {exc.strerror or exc}", where=shown) from None
    if len(data) > MAX_BYTES:
        raise ProfileError(f"larger than {MAX_BYTES // (1024 * 1024)} MB: not a reference library", where=shown)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ProfileError("not UTF-8 text (save it as UTF-8; BibTeX and Zotero exports are)",
                           where=shown, line=line) from None
    header = next(csv.reader([text.partition("\n")[0]]), [])
    if not text.lstrip().startswith("@") and any(column in header for column in ZOTERO_COLUMNS):
        found = list(_zotero(text, header, shown))
        fmt = "Zotero CSV"
    elif _BIBTEX_ENTRY_RE.search(text):
        found = list(_bibtex(text, shown))
        fmt = "BibTeX"
    else:
        raise ProfileError("neither BibTeX (no @article{...} entry) nor a Zotero CSV export (no DOI, Url or "
                           "Extra column)", where=shown)
    return _collect(shown, fmt, found)


def _collect(shown: str, fmt: str, found: list[tuple[str, str | None]]) -> LikesFile:
    """(entry name, id or None) of every entry -> the ``LikesFile``."""
    ids = tuple(dict.fromkeys(paper for _, paper in found if paper))
    if not ids:
        raise ProfileError(f"no arXiv id or DOI in any of its {len(found):,} {fmt} entries; nothing was read",
                           where=shown)
    unusable = tuple(f"{name}: no arXiv id or DOI" for name, paper in found if not paper)
    return LikesFile(shown, fmt, ids, len(found), unusable)


def _first_id(candidates: Iterable[str]) -> str | None:
    for candidate in candidates:
        found = liked_id(candidate) if candidate else None
        if found:
            return found
    return None


def _mentions(text: str) -> Iterator[str]:
    """``2403.05525`` of every ``arXiv:2403.05525`` in ``text`` (Zotero's Extra, Scholar's journal)."""
    for match in _ARXIV_MENTION_RE.finditer(text):
        yield match.group(1).rstrip(".")


# --- BibTeX ---------------------------------------------------------------------------------

def _bib_value(text: str) -> str:
    """A field's value without the braces and LaTeX escapes that ids never hold."""
    return text.replace("\\_", "_").replace("\\%", "%").replace("{", "").replace("}", "").strip()


def _bibtex(text: str, shown: str) -> Iterator[tuple[str, str | None]]:
    level = _BIBTEX_LOG.level
    _BIBTEX_LOG.setLevel(logging.ERROR)
    try:
        library = bibtexparser.parse_string(text)
    finally:
        _BIBTEX_LOG.setLevel(level)
    # A key or a field given twice is still one reference: read it as bibtexparser kept it.
    duplicated = (DuplicateBlockKeyBlock, DuplicateFieldKeyBlock)
    for block in library.failed_blocks:
        if isinstance(block, ParsingFailedBlock) and not isinstance(block, duplicated):
            why = " ".join(str(getattr(block.error, "abort_reason", block.error) or "cannot be read").split())
            raise ProfileError(f"not valid BibTeX: {shorten(why, 200)}; nothing was read",
                               where=shown, line=(block.start_line or 0) + 1)  # bibtexparser counts from 0
    entries: list[Entry] = list(library.entries)
    entries += [b.ignore_error_block for b in library.failed_blocks
                if isinstance(b, duplicated) and isinstance(b.ignore_error_block, Entry)]
    for entry in sorted(entries, key=lambda e: e.start_line or 0):
        fields = {f.key.lower(): _bib_value(str(f.value)) for f in entry.fields}
        prefix = (fields.get("archiveprefix") or fields.get("eprinttype") or "arxiv").lower()
        candidates = [fields.get("eprint", "") if prefix == "arxiv" else "", fields.get("arxivid", "")]
        for name in ("journal", "note", "howpublished"):
            candidates += _mentions(fields.get(name, ""))
        candidates += [fields.get("doi", ""), fields.get("url", "")]
        yield f"{entry.key} (line {(entry.start_line or 0) + 1})", _first_id(candidates)


# --- Zotero CSV -----------------------------------------------------------------------------

def _zotero(text: str, header: list[str], shown: str) -> Iterator[tuple[str, str | None]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    position = {name: i for i, name in reversed(list(enumerate(header)))}

    def cell(fields: list[str], name: str) -> str:
        i = position.get(name)
        return fields[i].strip() if i is not None and i < len(fields) else ""
    start = reader.line_num + 1
    try:
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not any(f.strip() for f in fields):
                continue
            candidates = [*_mentions(cell(fields, "Extra")), cell(fields, "DOI"), cell(fields, "Url")]
            title = cell(fields, "Title") or cell(fields, "Key") or "(untitled)"
            yield f"{shorten(title, 60)!r} (line {line})", _first_id(candidates)
    except csv.Error as exc:
        raise ProfileError(f"not a readable CSV record ({exc}); nothing was read", where=shown, line=start) from None
