"""Readers' own issues: who gets one, which papers (the ranking), and the cards to build them.

A reader with a profile or a rating gets their own issue; everyone else gets the shared one, as
before. A send gives each such reader their picks once, in their delivery row, before their
message is built (``prepare``): a resumed run, a second sender and a later look at the ledger
all see the same papers in the same order with the same reasons. The candidates are every
paper of the week's window that no earlier issue sent (not only the shared issue's top), with
the editor's drops left out and pins always in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Sequence

from sqlalchemy.engine import Connection

from newsletter.compose.issue import window_start
from newsletter.config import Config
from newsletter.models import Issue, IssueEdits, Paper, Pick, ReaderProfile
from newsletter.rank import Ranker, ReaderInput
from newsletter.render.personal import CardSet
from newsletter.render.templates import make_environment, operator_templates_dir
from newsletter.store import Store
from newsletter.store.db import utcnow
from newsletter.store.deliveries import issue_number_for_key, picked_paper_ids, readers_without_picks, set_picks
from newsletter.store.issues import get_edits, sent_paper_keys
from newsletter.store.papers import list_papers, papers_named
from newsletter.store.profiles import (active_subscriber_ids, iter_profiles, personal_subscriber_ids,
                                       ratings_by_reader)

# Past papers the text model learns its vocabulary from, beside the week's candidates.
HISTORY_PAPERS = 5_000


@dataclass
class Personal:
    """What a send needs for readers' own issues: the cards (None when nobody has one)."""

    cards: CardSet | None
    readers: int = 0                 # readers with their own issue in this run
    planned: dict[int, list[Pick]] = field(default_factory=dict)  # picks made now (dry runs keep them here)


def candidates(conn: Connection, config: Config, issue: Issue, edits: IssueEdits) -> list[Paper]:
    """Every paper a reader's issue may hold: first seen in the issue's window, not sent in an
    earlier issue, not dropped by the editor; the editor's pins always."""
    sent = {pid for pid, key in sent_paper_keys(conn).items() if key != issue.key}
    dropped = set(edits.dropped)
    since = window_start(issue.created_at, config["issue.days"])
    found = [p for p in list_papers(conn, first_seen_since=since) if p.id not in sent and p.id not in dropped]
    known = {p.id for p in found}
    missing = [i for i in list(edits.pinned) + [p.id for p in issue.papers] if i not in known and i not in sent]
    found += [p for p in papers_named(conn, missing).values() if p.id not in dropped]
    return found


def _readers(conn: Connection, ids: set[int]) -> list[ReaderInput]:
    wanted = sorted(ids)
    profiles = dict(iter_profiles(conn, wanted))
    ratings = ratings_by_reader(conn, wanted)
    return [ReaderInput(subscriber_id=sid, profile=profiles.get(sid, ReaderProfile()),
                        ratings=tuple(ratings.get(sid, ()))) for sid in wanted]


def rank_readers(conn: Connection, config: Config, issue: Issue, edits: IssueEdits, pool: Sequence[Paper],
                 readers: Sequence[ReaderInput]) -> dict[int, list[Pick]]:
    """Each reader's picks over ``pool`` (``Ranker``), the shared issue as everyone's prior."""
    if not readers or not pool:
        return {}
    wanted: set[str] = set()
    for reader in readers:
        wanted.update(reader.profile.likes)
        wanted.update(r.paper_id for r in reader.ratings)
    known = papers_named(conn, sorted(wanted))
    pool_ids = {p.id for p in pool}
    history = [p for p in list_papers(conn, limit=HISTORY_PAPERS) if p.id not in pool_ids]
    ranker = Ranker(pool, shared=[p.id for p in issue.papers], known=known, history=history,
                    pinned=list(edits.pinned), default_size=config["issue.max_papers"])
    return {sid: picks for sid, picks in ranker.rank_all(readers) if picks}


def _cards(conn: Connection, config: Config, issue: Issue, pool: list[Paper], picked: set[str], *,
           every_candidate: bool) -> CardSet:
    """The cards to build copies from: every candidate's and every picked paper's for a send (one
    premailer run however many readers), only the picked ones for a look at a few readers."""
    have = {p.id for p in pool}
    extra = list(papers_named(conn, sorted(picked - have)).values())
    papers = [*pool, *extra] if every_candidate else [p for p in [*pool, *extra] if p.id in picked]
    env = make_environment(operator_templates_dir(config))
    return CardSet(issue, papers, config, env=env, found=len(pool))


def prepare(store: Store, config: Config, issue: Issue, *, write: bool = True, rank: bool = True,
            only: Iterable[int] | None = None, now: datetime | None = None) -> Personal:
    """Rank every active reader with a profile or ratings who has no picks for ``issue`` yet,
    record their picks in their delivery rows (``write``; a dry run keeps them in memory), and
    render the cards. ``only`` limits it to some readers (a preview of one); ``rank=False``
    only renders the cards of picks already made (a resend changes no one's issue)."""
    with store.atomic() as conn:
        ids = personal_subscriber_ids(conn) & active_subscriber_ids(conn) if rank else set()
        if only is not None:
            ids &= set(only)
        number = issue_number_for_key(conn, issue.key)
        picked: set[str] = set()
        if number is not None and write:
            ids = readers_without_picks(conn, number, ids)
            picked = picked_paper_ids(conn, number)
        if not ids and not picked:
            return Personal(cards=None)
        edits = get_edits(conn, issue.key)
        pool = candidates(conn, config, issue, edits)
        planned = rank_readers(conn, config, issue, edits, pool, _readers(conn, ids))
        if not planned and not picked:
            return Personal(cards=None)
        if write and number is not None:
            set_picks(conn, number, planned, now or utcnow())
        for picks in planned.values():
            picked.update(p.paper_id for p in picks)
        cards = _cards(conn, config, issue, pool, picked, every_candidate=only is None)
    return Personal(cards=cards, readers=len(planned), planned=planned)
