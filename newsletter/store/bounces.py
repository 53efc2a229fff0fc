"""Queries on ``bounce_reports``, and the ledger lookups bounce attribution needs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import distinct, func, insert, select
from sqlalchemy.engine import Connection

from newsletter.store.schema import bounce_reports, deliveries, issues


def report_seen(conn: Connection, message_key: str) -> bool:
    """True when a message with this digest was already acted on."""
    return conn.execute(select(bounce_reports.c.id).where(bounce_reports.c.message_key == message_key)
                        .limit(1)).first() is not None


def add_report(conn: Connection, **values: Any) -> None:
    conn.execute(insert(bounce_reports).values(**values))


def soft_bounces_since(conn: Connection, subscriber_id: int, since: datetime) -> int:
    """Soft bounces of one subscriber since ``since``, one per issue (a delay warning and the
    later failure of the same message are one)."""
    per_issue = func.coalesce(bounce_reports.c.issue_number, -bounce_reports.c.id)
    return conn.execute(select(func.count(distinct(per_issue))).where(
        bounce_reports.c.subscriber_id == subscriber_id, bounce_reports.c.kind == "soft",
        bounce_reports.c.at >= since)).scalar_one()


def delivery_by_message_id(conn: Connection, message_id: str) -> tuple[int, int] | None:
    """(issue number, subscriber id) of the delivery that sent ``message_id``."""
    row = conn.execute(select(deliveries.c.issue_number, deliveries.c.subscriber_id)
                       .where(deliveries.c.message_id == message_id).limit(1)).first()
    return (row.issue_number, row.subscriber_id) if row else None


def issue_key_of(conn: Connection, number: int | None) -> str:
    if number is None:
        return ""
    return conn.execute(select(issues.c.key).where(issues.c.number == number)).scalar() or ""


def reports_of(conn: Connection, subscriber_id: int) -> list[dict[str, Any]]:
    """Every report about one subscriber, oldest first, with the issue's key."""
    query = (select(bounce_reports, issues.c.key.label("issue_key"))
             .select_from(bounce_reports.outerjoin(issues, issues.c.number == bounce_reports.c.issue_number))
             .where(bounce_reports.c.subscriber_id == subscriber_id).order_by(bounce_reports.c.at, bounce_reports.c.id))
    return [dict(row._mapping) for row in conn.execute(query)]


def counts_by_issue(conn: Connection) -> dict[int, dict[str, int]]:
    """{issue number: {hard, soft, complaint: distinct subscribers}}."""
    out: dict[int, dict[str, int]] = {}
    query = (select(bounce_reports.c.issue_number, bounce_reports.c.kind, func.count(distinct(bounce_reports.c.subscriber_id)))
             .where(bounce_reports.c.issue_number.is_not(None))
             .group_by(bounce_reports.c.issue_number, bounce_reports.c.kind))
    for number, kind, count in conn.execute(query):
        out.setdefault(number, {"hard": 0, "soft": 0, "complaint": 0, "auto_reply": 0})[kind] = count
    return out


def counts_since(conn: Connection, since: datetime) -> dict[str, int]:
    """Reports by kind since ``since`` (the stats' last 30 days)."""
    query = select(bounce_reports.c.kind, func.count()).where(bounce_reports.c.at >= since).group_by(bounce_reports.c.kind)
    return {kind: count for kind, count in conn.execute(query)}
