"""CSV with a header row. Columns are matched case-insensitively; unknown columns are ignored.

``title`` and one of ``url`` / ``id`` are required; ``authors`` holds names separated by ``;``,
``categories`` subject classes separated by ``;`` or ``,`` (or spaces: ``categories.split_categories``).
A row without a title or link is skipped and counted with its line number.
"""

from __future__ import annotations

import csv
import io

from newsletter.errors import SourceError
from newsletter.sources.base import ParsedSource, build_paper
from newsletter.sources.categories import split_categories

COLUMNS: dict[str, str] = {
    "title": "title",
    "url": "url", "link": "url",
    "id": "id", "arxiv_id": "id", "doi": "id",
    "authors": "authors",
    "abstract": "abstract", "summary": "abstract",
    "pdf_url": "pdf_url",
    "code_url": "code_url",
    "thumbnail_url": "thumbnail_url",
    "page_url": "page_url",
    "score": "score", "upvotes": "score",
    "published_at": "published_at", "published": "published_at", "date": "published_at",
    "categories": "categories", "category": "categories",
}


def parse_csv(text: str, source: str) -> ParsedSource:
    result = ParsedSource(source, format="CSV")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return result
    except csv.Error as exc:
        raise SourceError(f"not readable CSV: {exc}", where=source, line=1) from None
    columns = [COLUMNS.get(h.strip().lower().lstrip("\ufeff")) for h in header]
    if "title" not in columns or not ({"url", "id"} & set(columns)):
        found = ", ".join(h.strip() for h in header) or "nothing"
        raise SourceError(f"the CSV header needs a title column and a url or id column (found: {found})",
                          where=source, line=1)
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            fields: dict[str, str] = {}
            for name, cell in zip(columns, row):
                if name and cell.strip() and name not in fields:
                    fields[name] = cell.strip()
            result.add(build_paper(
                title=fields.get("title"),
                url=fields.get("url"),
                ids=[fields["id"]] if "id" in fields else [],
                authors=[a.strip() for a in fields.get("authors", "").split(";") if a.strip()],
                abstract=fields.get("abstract"),
                pdf_url=fields.get("pdf_url"),
                code_url=fields.get("code_url"),
                thumbnail_url=fields.get("thumbnail_url"),
                page_url=fields.get("page_url"),
                score=fields.get("score"),
                published_at=fields.get("published_at"),
                categories=split_categories(fields["categories"]) if "categories" in fields else (),
                source=source,
            ), f"line {line}")
    except csv.Error as exc:
        raise SourceError(f"not readable CSV: {exc}", where=source, line=reader.line_num) from None
    return result
