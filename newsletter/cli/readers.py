"""``newsletter subscribers set`` and ``rate``: what a reader follows and how they rated papers,
set by the operator; and how ``subscribers show`` prints a profile.

The same checks as the preferences page and an import (``newsletter.subscribers.profiles``)
apply: a bad entry is one line naming it, and nothing changes. The API is imported inside each
command (see ``subscribers.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import click
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from newsletter.cli import AppContext, console, err_console, pass_app
from newsletter.models import PROFILE_SIZE_RANGE, RATING_WORDS, Rating, ReaderProfile
from newsletter.subscribers.profiles import split_likes

if TYPE_CHECKING:
    from newsletter.api import LikesFile

RATING_LABELS = {1: "more like this", -1: "less like this"}
ENTRY_SEPARATOR = "; "  # authors may hold commas ("Dao, Tri"): entries are shown apart by ";"


def profile_json(profile: ReaderProfile) -> dict[str, Any]:
    return {"interests": profile.interests, "categories": list(profile.categories), "authors": list(profile.authors),
            "mutes": list(profile.mutes), "likes": list(profile.likes), "size": profile.size}


def ratings_json(ratings: Sequence[Rating], titles: dict[str, str]) -> list[dict[str, Any]]:
    return [{"paper": r.paper_id, "value": r.value, "at": r.at.isoformat() if r.at else None,
             "title": titles.get(r.paper_id)} for r in ratings]


def print_profile(profile: ReaderProfile, titles: dict[str, str] | None = None) -> None:
    """Each field of the profile on its own line; liked papers one a line, with their title
    when the paper is in the store."""
    if profile.is_empty:
        console.print("profile: none (gets the shared issue)")
        return
    table = Table("field", "value", box=None, show_header=False, padding=(0, 2, 0, 0))
    table.columns[1].overflow = "fold"
    table.add_row("interests", escape(profile.interests))
    for name in ("categories", "authors", "mutes"):
        table.add_row(name, escape(ENTRY_SEPARATOR.join(getattr(profile, name))))
    likes = [escape(paper) + (f"  {escape(titles[paper])}" if titles and paper in titles else "")
             for paper in profile.likes]
    table.add_row("likes", "\n".join(likes))
    table.add_row("size", f"{profile.size} papers" if profile.size else "the issue's own count")
    console.print("profile:")
    console.print(Padding(table, (0, 0, 0, 2)))


def print_ratings(ratings: Sequence[Rating], titles: dict[str, str]) -> None:
    """The reader's ratings, newest first, with each paper's title when it is in the store."""
    if not ratings:
        console.print("ratings: none")
        return
    table = Table("when (UTC)", "rating", "paper", "title", title="ratings, newest first", title_justify="left")
    table.columns[3].overflow = "fold"
    for r in ratings:
        table.add_row(r.at.strftime("%Y-%m-%d %H:%M") if r.at else "", RATING_LABELS.get(r.value, str(r.value)),
                      escape(r.paper_id), escape(titles.get(r.paper_id, "")))
    console.print(table)


def _likes_value(likes: str | None, likes_file: LikesFile | None) -> list[str] | str | None:
    """``--likes`` and the ids ``--likes-from`` found, together (either alone as given)."""
    if likes_file is None:
        return likes
    return [*(split_likes(likes) if likes else []), *likes_file.ids]


def _report_likes_file(found: LikesFile) -> None:
    console.print(f"Read {found.entries:,} {found.format} entr{'y' if found.entries == 1 else 'ies'} from "
                  f"{escape(found.path)}: {len(found.ids):,} liked paper{'' if len(found.ids) == 1 else 's'}",
                  soft_wrap=True)
    if found.unusable:
        err_console.print(f"Left out {len(found.unusable):,} entr{'y' if len(found.unusable) == 1 else 'ies'} "
                          "naming no paper:", style="yellow")
        for line in found.unusable:
            err_console.print(f"  {found.path}: {line}", markup=False, soft_wrap=True, style="yellow")


@click.command("set")
@click.argument("email")
@click.option("--interests", default=None, metavar="TEXT",
              help='Free-text topics, separated by ";" ("speech recognition; low-resource languages").')
@click.option("--categories", default=None, metavar="LIST", help="arXiv categories, comma-separated: cs.CL,eess.AS.")
@click.option("--authors", default=None, metavar="LIST", help='Authors to follow, separated by "," or ";".')
@click.option("--mute", "mutes", default=None, metavar="LIST",
              help='Keywords whose papers never appear, separated by "," or ";".')
@click.option("--likes", default=None, metavar="LIST", help="Papers they liked: arXiv ids or DOIs, comma-separated.")
@click.option("--likes-from", "likes_from", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Read liked papers from a BibTeX file or a Zotero CSV export (with --likes: both).")
@click.option("--size", default=None, metavar="N",
              help=f"Papers per issue, {PROFILE_SIZE_RANGE[0]}-{PROFILE_SIZE_RANGE[1]}.")
@pass_app
def set_command(app: AppContext, email: str, interests: str | None, categories: str | None, authors: str | None,
                mutes: str | None, likes: str | None, likes_from: Path | None, size: str | None) -> None:
    """Set what a reader follows: the options given replace those fields ("" clears one), the
    others stay. Prints the whole profile as stored.

    \b
    Example:
      newsletter subscribers set ada@example.org --interests "speech recognition; low-resource languages" \\
        --categories cs.CL,eess.AS --authors "Tri Dao" --mute crypto --likes 2403.05525 --size 8
      newsletter subscribers set ada@example.org --likes-from library.bib
      newsletter subscribers set ada@example.org --size ""
    """
    if all(v is None for v in (interests, categories, authors, mutes, likes, likes_from, size)):
        raise click.UsageError("nothing to set: give at least one of --interests, --categories, --authors, "
                               "--mute, --likes, --likes-from, --size")
    from newsletter import api

    found = api.read_likes(likes_from) if likes_from is not None else None
    profile = api.set_profile(app.store, email, interests=interests, categories=categories, authors=authors,
                              mutes=mutes, likes=_likes_value(likes, found), size=size)
    if found is not None:
        _report_likes_file(found)
    console.print(f"Stored for {escape(email.strip())}:", soft_wrap=True)
    print_profile(profile)


@click.command("rate")
@click.argument("email")
@click.argument("paper")
@click.argument("rating", type=click.Choice(tuple(RATING_WORDS)))
@pass_app
def rate_command(app: AppContext, email: str, paper: str, rating: str) -> None:
    """Rate a paper for a reader, as the "more like this" (up) and "less like this" (down) links
    in their issue do; undo takes the rating back. PAPER is an arXiv id, DOI or URL of a paper in
    the store. Rating twice is one rating.

    \b
    Example:
      newsletter subscribers rate ada@example.org 2403.05525 up
      newsletter subscribers rate ada@example.org 2403.05525 undo
    """
    from newsletter import api

    value = RATING_WORDS[rating]
    changed = api.rate(app.store, email, paper, value)
    who, what = escape(email.strip()), escape(paper.strip())
    if value == 0:
        console.print(f"Took back {who}'s rating of {what}" if changed
                      else f"{who} had not rated {what}; nothing changed", soft_wrap=True)
    else:
        console.print(f"{who}: {RATING_LABELS[value]}: {what}" if changed
                      else f"{who} had already rated {what} {RATING_LABELS[value]}; nothing changed", soft_wrap=True)


# Commands of the ``subscribers`` group (added to it in ``subscribers.py``).
SUBSCRIBER_COMMANDS: list[click.Command] = [set_command, rate_command]
