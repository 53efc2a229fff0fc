"""``newsletter subscribers ...``: add, remove, unsubscribe, list, show, import, export, stats
(and, from ``readers``, set and rate).

Each command parses, calls one function of ``newsletter.api``, and prints what it did. Library
errors become ``Error: ...`` and exit 1 in ``newsletter.cli``.

The API is imported inside each command, as in ``send.py``: it loads the whole pipeline, and
``newsletter --help`` does not need it. Measured: with the importer and the store imported here,
``import newsletter.cli`` loaded 538 modules, charset-normalizer alone taking ~0.1 s; now 442.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.cells import cell_len
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from newsletter.cli import AppContext, console, err_console, pass_app
from newsletter.cli.readers import (SUBSCRIBER_COMMANDS as READER_COMMANDS, print_profile, print_ratings,
                                    profile_json, ratings_json)
from newsletter.errors import ImportRowsError, SubscriberError
from newsletter.files import open_private_text
from newsletter.subscribers.addresses import MAX_NAME_CHARS, bounded_name
from newsletter.models import SUBSCRIBER_STATUSES, SUPPRESSED_STATUSES, Subscriber
from newsletter.subscribers.formats import FORMAT_NAMES, FORMATS

if TYPE_CHECKING:
    from newsletter.api import ImportReport

FORMAT_LABELS = {f.name: f.label for f in FORMATS}
TABLE_MAX_ROWS = 200
# Room the table needs beside the email column: borders, padding, and a few characters for each
# other column (name, status, since, reason) to fold into.
TABLE_OTHER_COLUMNS = 36
PROGRESS_MIN_BYTES = 2_000_000


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else ('es' if word.endswith('ss') else 's')}"


def _as_json(s: Subscriber) -> dict[str, Any]:
    def t(value: Any) -> str | None:
        return value.isoformat() if value else None
    return {"id": s.id, "email": s.email, "name": s.name, "status": s.status, "status_reason": s.status_reason,
            "created_at": t(s.created_at), "confirmed_at": t(s.confirmed_at),
            "status_changed_at": t(s.status_changed_at), "attributes": dict(s.attributes)}


@click.group("subscribers")
def subscribers() -> None:
    """Manage the mailing list: add, remove, unsubscribe, list, show, set, rate, import, export, stats.

    Unsubscribed, bounced and complained addresses stay on file as suppressed: no import or add
    makes them active again (add --force STATUS, on the owner's request, does).

    \b
    Example:
      newsletter subscribers import subscribers.example.csv
      newsletter subscribers add ada@example.org --name "Ada Lovelace"
      newsletter subscribers stats
    """


def _name_option(value: str) -> str:
    """``--name``, bounded like the web form's name field."""
    try:
        return bounded_name(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", callback=lambda ctx, param, value: _name_option(value),
              help=f"The subscriber's name (any script; kept as given; at most {MAX_NAME_CHARS} characters).")
@click.option("--pending", is_flag=True, help="Add as pending (asked, not yet confirmed) instead of active.")
@click.option("--force", "force_status", type=click.Choice(SUPPRESSED_STATUSES), default=None,
              help="Make an address on file with exactly this suppressed status active again (on its owner's request).")
@pass_app
def add_command(app: AppContext, email: str, name: str, pending: bool, force_status: str | None) -> None:
    """Add one address to the list (active unless --pending).

    An address on file as unsubscribed, bounced or complained stays suppressed; --force STATUS,
    naming the status it has, makes it active (or pending) again, recorded as an event.

    \b
    Example:
      newsletter subscribers add ada@example.org --name "Ada Lovelace"
      newsletter subscribers add ada@example.org --force complained
    """
    from newsletter import api

    change = api.add_subscriber(app.store, email, name=name, pending=pending, force=force_status,
                                how="by command line")
    s = change.after
    assert s is not None
    if change.before is not None:
        console.print(f"{escape(s.email)} was {change.before.status} and is now {s.status}", soft_wrap=True)
        return
    console.print(f"Added {escape(s.email)} ({s.status})" + (f", name {escape(s.name)}" if s.name else "")
                  + f" to {escape(app.store.shown_url)}")


@subscribers.command("remove")
@click.argument("email")
@click.option("--forget", is_flag=True,
              help="Also erase an unsubscribed or bounced address (then nothing stops a later import re-adding it).")
@pass_app
def remove_command(app: AppContext, email: str, forget: bool) -> None:
    """Delete an address from the list, with its delivery records, profile and ratings.

    An unsubscribed or bounced address is kept (so it is never mailed again) unless --forget.

    \b
    Example:
      newsletter subscribers remove typo@exmaple.org
    """
    from newsletter import api

    s = api.remove_subscriber(app.store, email, forget=forget)
    console.print(f"Removed {escape(s.email)} (was {s.status})")


@subscribers.command("unsubscribe")
@click.argument("email")
@click.option("--reason", default="", help="Why, kept on file (default: 'unsubscribed by command line').")
@click.option("--bounced", is_flag=True, help="Mark as bounced (the address does not exist) rather than unsubscribed.")
@pass_app
def unsubscribe_command(app: AppContext, email: str, reason: str, bounced: bool) -> None:
    """Suppress an address: it stays on file and is never mailed again.

    \b
    Example:
      newsletter subscribers unsubscribe ada@example.org --reason "asked by email"
      newsletter subscribers unsubscribe gone@example.org --bounced --reason "550 5.1.1 no such user"
    """
    from newsletter import api

    default = "bounced (command line)" if bounced else "unsubscribed by command line"
    change = api.unsubscribe(app.store, email, reason or default, bounced=bounced)
    s = change.after
    assert s is not None
    if bounced and s.status == "unsubscribed":
        # mark_bounced keeps an unsubscribe: the owner's own request is the stronger record.
        console.print(f"{escape(s.email)} is unsubscribed ({escape(s.status_reason)}) and stays so: an unsubscribe "
                      "is kept over a bounce, so no bounce was recorded; it will not be mailed again", soft_wrap=True)
    elif change.before is not None and change.before.status == s.status:
        console.print(f"{escape(s.email)} was already {s.status} ({escape(s.status_reason)}); nothing changed")
    else:
        console.print(f"{escape(s.email)} is now {s.status}: it will not be mailed again")


@subscribers.command("list")
@click.option("--status", type=click.Choice(SUBSCRIBER_STATUSES), default=None, help="Only this status.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of every field, for scripts.")
@pass_app
def list_command(app: AppContext, status: str | None, as_json: bool) -> None:
    """List subscribers in the order they were added.

    On a terminal, a table; piped, or beyond 200 subscribers, tab-separated lines (email, status,
    name). Addresses are never cut short.

    \b
    Example:
      newsletter subscribers list --status active
      newsletter subscribers list --json > subscribers.json
    """
    from newsletter import api

    with closing(api.subscribers(app.store, status=status)) as rows:
        if as_json:
            out = click.get_text_stream("stdout")
            out.write("[")
            for i, s in enumerate(rows):
                out.write(("," if i else "") + "\n  " + json.dumps(_as_json(s), ensure_ascii=False))
            out.write("\n]\n")
            return
        first = [s for _, s in zip(range(TABLE_MAX_ROWS + 1), rows)]
        widest = max((cell_len(s.email) for s in first), default=0)
        # A table only on a terminal wide enough for every address whole (the other columns fold);
        # piped (`list | grep`) or too narrow, plain lines, so no address is ever cut short.
        if len(first) <= TABLE_MAX_ROWS and console.is_terminal and widest + TABLE_OTHER_COLUMNS <= console.width:
            table = Table("email", "name", "status", "since", "reason")
            table.columns[0].no_wrap, table.columns[0].min_width = True, widest
            for column in table.columns[1:]:
                column.overflow = "fold"
            for s in first:
                since = s.status_changed_at.strftime("%Y-%m-%d") if s.status_changed_at else ""
                table.add_row(escape(s.email), escape(s.name), s.status, since, escape(s.status_reason))
            console.print(table)
            console.print(_plural(len(first), "subscriber") + (f" with status {status}" if status else ""))
            return
        # Plain tab-separated lines, streamed (a long list in a table would be held in memory).
        count = 0
        for s in itertools.chain(first, rows):
            click.echo(f"{s.email}\t{s.status}\t{s.name}")
            count += 1
        err_console.print(_plural(count, "subscriber") + (f" with status {status}" if status else ""))


def _print_invalid(error: SubscriberError) -> None:
    err_console.print(str(error), markup=False, soft_wrap=True, highlight=False)


def _print_import(report: ImportReport) -> None:
    parts = [f"{_plural(report.added, 'address')} added", f"{report.updated:,} already on file updated",
             f"{report.unchanged:,} unchanged"]
    if report.duplicates:
        parts.append(f"{_plural(report.duplicates, 'duplicate row')} merged")
    if report.newly_suppressed:
        parts.append(f"{report.newly_suppressed:,} now unsubscribed or bounced")
    console.print(f"Imported {escape(report.path)} ({FORMAT_LABELS[report.format]}, {report.encoding}): "
                  f"{_plural(report.rows, 'row')}; " + ", ".join(parts), soft_wrap=True)
    if report.suppressed_kept:
        console.print(f"Left {_plural(report.suppressed_kept, 'suppressed address')} alone: they unsubscribed "
                      "or bounced, and an import never makes them active again", soft_wrap=True)
    if report.profiles or report.ratings:
        console.print(f"Set {_plural(report.profiles, 'reader profile')} and {_plural(report.ratings, 'rating')} "
                      "from the profile columns", soft_wrap=True)
    if report.invalid_count:
        err_console.print(f"Skipped {_plural(report.invalid_count, 'invalid row')} (listed above)", style="yellow")


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(("auto", *FORMAT_NAMES)), default="auto", show_default=True,
              help="The file's format; auto recognises it by its header row.")
@click.option("--skip-invalid", is_flag=True, help="Import the good rows and list the bad ones (default: all or nothing).")
@click.option("--encoding", default=None, metavar="NAME",
              help="The file's text encoding when it is not UTF-8 and cannot be told (e.g. cp1252).")
@pass_app
def import_command(app: AppContext, file: Path, fmt: str, skip_invalid: bool, encoding: str | None) -> None:
    """Import a CSV of subscribers: our format, or a Mailchimp, Substack, Buttondown or
    listmonk export (recognised by its header; their statuses carry over).

    All or nothing: any invalid row and nothing changes, every bad row is listed as
    FILE:LINE: address: why. Duplicate rows merge. Exit status 1 if any row was invalid.

    \b
    Example:
      newsletter subscribers import subscribers.example.csv
      newsletter subscribers import subscribed_members_export.csv --skip-invalid
    """
    from newsletter import api

    store = app.store
    size = file.stat().st_size if file.is_file() else 0
    options: dict[str, Any] = {"format": fmt, "skip_invalid": skip_invalid, "encoding": encoding,
                               "on_invalid": _print_invalid}
    try:
        if size >= PROGRESS_MIN_BYTES:
            with Progress(TextColumn("importing"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                          console=err_console, transient=True) as bar:
                task = bar.add_task("import", total=size)
                report = api.import_subscribers(store, file, **options,
                                                progress=lambda done, total: bar.update(task, completed=done))
        else:
            report = api.import_subscribers(store, file, **options)
    except ImportRowsError as exc:
        raise click.ClickException(f"{file}: {exc}")
    _print_import(report)
    if report.invalid_count:
        sys.exit(1)


@subscribers.command("export")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--status", type=click.Choice(SUBSCRIBER_STATUSES), default=None, help="Only this status.")
@pass_app
def export_command(app: AppContext, file: Path | None, status: str | None) -> None:
    """Write the list as CSV in our format (every field and status, what each reader follows and
    their ratings) to FILE, or to standard output.

    Importing the export into an empty store gives back the same list.

    \b
    Example:
      newsletter subscribers export backup.csv
      newsletter subscribers export --status unsubscribed > suppressed.csv
    """
    from newsletter import api

    if file is None or str(file) == "-":
        count = api.export_subscribers(app.store, click.get_text_stream("stdout"), status=status)
        err_console.print(f"Exported {_plural(count, 'subscriber')} to standard output")
        return
    partial = file.with_name(file.name + ".partial")
    try:
        with open_private_text(partial) as out:  # every address on the list: for the operator only
            count = api.export_subscribers(app.store, out, status=status)
        os.replace(partial, file)  # an interrupted export never leaves half a file under the real name
    except OSError as exc:
        raise SubscriberError(f"cannot write: {exc.strerror or exc}; nothing was exported", where=str(file)) from None
    finally:
        partial.unlink(missing_ok=True)
    console.print(f"Exported {_plural(count, 'subscriber')} to {escape(str(file))}")


@subscribers.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable counts.")
@pass_app
def stats_command(app: AppContext, as_json: bool) -> None:
    """Count subscribers by status, and the last 30 days' events: sign-ups (subscribed), addresses
    added by an import (imported), confirmations, unsubscribes, bounces and removals.

    \b
    Example:
      newsletter subscribers stats
      newsletter subscribers stats --json
    """
    from newsletter import api

    stats = api.subscriber_stats(app.store)
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    table = Table("status", "subscribers")
    for status, count in stats["by_status"].items():
        table.add_row(status, f"{count:,}")
    table.add_row("total", f"{stats['total']:,}", style="bold")
    console.print(table)
    recent = ", ".join(f"{count:,} {kind}" for kind, count in stats["last_30_days"].items()) or "none"
    console.print(f"Suppressed (never mailed): {stats['suppressed']:,}. Last 30 days: {recent}")
    reports = stats["bounce_reports_last_30_days"]
    console.print(f"Bounce mailbox, last 30 days: {reports.get('hard', 0):,} hard bounces, {reports.get('soft', 0):,} soft "
                  f"bounces, {reports.get('complaint', 0):,} complaints")
    for row in stats["issues"]:
        console.print(f"  {row['key']}: {row['sent']:,} sent, hard bounces {row['hard_rate']:.2%}, "
                      f"complaints {row['complaint_rate']:.2%}", markup=False)
        for warning in row["warnings"]:
            err_console.print(f"  Warning: {warning}", markup=False, style="yellow", soft_wrap=True)


@subscribers.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True,
              help="Every field, the profile, ratings, events and bounce reports as JSON.")
@pass_app
def show_command(app: AppContext, email: str, as_json: bool) -> None:
    """Show one subscriber: status and why, what they follow (their profile), their ratings
    (newest first, with each paper's title when it is in the store), then every event (sign-up,
    unsubscribe, bounce, complaint) with its evidence, and every bounce or complaint report read
    about them.

    \b
    Example:
      newsletter subscribers show ada@example.org
      newsletter subscribers show ada@example.org --json
    """
    from newsletter import api

    record = api.subscriber_record(app.store, email)
    s, events, reports = record.subscriber, record.events, record.bounce_reports

    def t(value: Any) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value else ""
    if as_json:
        click.echo(json.dumps({**_as_json(s), "profile": profile_json(record.profile),
                               "ratings": ratings_json(record.ratings, record.titles),
                               "events": [{**e, "at": e["at"].isoformat()} for e in events],
                               "bounce_reports": [{k: (v.isoformat() if hasattr(v, "isoformat") else v)
                                                   for k, v in r.items()} for r in reports]}, indent=2))
        return
    console.print(f"{escape(s.email)}" + (f" ({escape(s.name)})" if s.name else ""), style="bold")
    console.print(f"status: {s.status} since {t(s.status_changed_at)}" +
                  (f": {escape(s.status_reason)}" if s.status_reason else ""), soft_wrap=True)
    print_profile(record.profile, record.titles)
    print_ratings(record.ratings, record.titles)
    table = Table("when (UTC)", "event", "detail")
    table.columns[2].overflow = "fold"
    for e in events:
        table.add_row(t(e["at"]), e["kind"], escape(e["detail"]))
    console.print(table)
    if reports:
        table = Table("when (UTC)", "report", "issue", "status", "reported by", "diagnostic")
        table.columns[5].overflow = "fold"
        for r in reports:
            table.add_row(t(r["at"]), r["kind"], r["issue_key"] or "", r["status_code"], escape(r["reporting_mta"]),
                          escape(r["diagnostic"]))
        console.print(table)


for _command in READER_COMMANDS:
    subscribers.add_command(_command)

COMMANDS: list[click.Command] = [subscribers]
