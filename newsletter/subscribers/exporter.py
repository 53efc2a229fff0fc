"""Writing the list out in our own format, so that importing an export gives back the same list.

Every field is written: status, why and when it last changed, timestamps in ISO 8601 UTC, and
the attributes as one JSON object, each value escaped against spreadsheet formulas
(``escape_cell``). Rows are streamed from the store in id order.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from typing import IO

from newsletter.store import Store
from newsletter.store.subscribers import iter_subscribers
from newsletter.subscribers.formats import OUR_COLUMNS, escape_cell


def _time(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def export_subscribers(store: Store, out: IO[str], *, status: str | None = None) -> int:
    """Write the subscribers (all, or those with ``status``) as CSV to ``out``, a text stream
    opened with ``newline=""``; returns how many were written."""
    writer = csv.writer(out)
    writer.writerow(OUR_COLUMNS)
    count = 0
    with store.atomic() as conn:
        for s in iter_subscribers(conn, status):
            writer.writerow([escape_cell(cell) for cell in (
                s.email, s.name, s.status, s.status_reason, _time(s.created_at), _time(s.confirmed_at),
                _time(s.status_changed_at),
                json.dumps(dict(s.attributes), ensure_ascii=False, sort_keys=True) if s.attributes else "",
            )])
            count += 1
    return count
