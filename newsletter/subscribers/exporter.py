"""Writing the list out in our own format, so that importing an export gives back the same list.

Every field is written: status, why and when it last changed, timestamps in ISO 8601 UTC, the
attributes as one JSON object, then what the reader follows and their ratings
(``profile_columns``), each value escaped against spreadsheet formulas (``escape_cell``). Rows
are streamed from the store in id order, a batch at a time with their profiles and ratings.
"""

from __future__ import annotations

import csv
import itertools
import json
from datetime import datetime
from typing import IO

from newsletter.models import ReaderProfile
from newsletter.store import Store
from newsletter.store.profiles import iter_profiles, ratings_by_reader
from newsletter.store.subscribers import iter_subscribers
from newsletter.subscribers.formats import OUR_COLUMNS, escape_cell
from newsletter.subscribers.profile_columns import PROFILE_COLUMNS, profile_cells

EXPORT_COLUMNS: tuple[str, ...] = OUR_COLUMNS + PROFILE_COLUMNS
BATCH_ROWS = 2000
_NO_PROFILE = ReaderProfile()


def _time(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def export_subscribers(store: Store, out: IO[str], *, status: str | None = None) -> int:
    """Write the subscribers (all, or those with ``status``) as CSV to ``out``, a text stream
    opened with ``newline=""``; returns how many were written."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    with store.atomic() as conn:
        rows = iter_subscribers(conn, status)
        while batch := list(itertools.islice(rows, BATCH_ROWS)):
            ids = [s.id for s in batch if s.id is not None]
            profiles = dict(iter_profiles(conn, ids))
            ratings = ratings_by_reader(conn, ids)
            for s in batch:
                assert s.id is not None
                writer.writerow([escape_cell(cell) for cell in (
                    s.email, s.name, s.status, s.status_reason, _time(s.created_at), _time(s.confirmed_at),
                    _time(s.status_changed_at),
                    json.dumps(dict(s.attributes), ensure_ascii=False, sort_keys=True) if s.attributes else "",
                    *profile_cells(profiles.get(s.id, _NO_PROFILE), ratings.get(s.id, ())),
                )])
            count += len(batch)
    return count
