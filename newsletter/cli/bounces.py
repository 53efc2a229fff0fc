"""``newsletter bounces [SOURCE ...]``: a thin command over ``api.process_bounces``."""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from newsletter.cli import AppContext, console, err_console, pass_app

ROWS = (("hard", "hard bounces"), ("soft", "soft bounces"), ("complaint", "complaints"),
        ("auto_reply", "auto-replies ignored"), ("not_ours", "not ours (left alone)"),
        ("unreadable", "unreadable (left alone)"), ("already_done", "already processed"))


@click.command("bounces")
@click.argument("sources", nargs=-1, metavar="[SOURCE ...]")
@click.option("--json", "as_json", is_flag=True, help="The counts and actions as JSON.")
@pass_app
def bounces_command(app: AppContext, sources: tuple[str, ...], as_json: bool) -> None:
    """Read bounces (RFC 3464 DSNs and plain-text ones), complaints (ARF feedback reports) and
    auto-replies, and suppress the addresses they condemn.

    SOURCE is a maildir folder, an mbox file, .eml files (or a folder of them),
    imaps://USER@HOST/FOLDER or pop3s://USER@HOST (password from NEWSLETTER_BOUNCES_PASSWORD);
    without one, [bounces] mailbox. A hard bounce marks the address bounced, soft bounces do
    after [bounces] soft_limit within soft_days, a complaint marks it complained. Messages acted
    on are marked as [bounces] processed says (move:FOLDER, delete, flag), so a second run does
    nothing twice; a message not about our mail is left where it is. Exit status 1 when a
    source could not be read.

    \b
    Example:
      newsletter bounces ~/Maildir/.bounces
      newsletter bounces imaps://bounces@mail.example.org/INBOX
      newsletter bounces returned/*.eml
    """
    from newsletter import api

    run = api.process_bounces(app.store, app.config, list(sources) or None)
    if as_json:
        click.echo(json.dumps({"sources": run.sources, "counts": run.counts, "actions": run.actions,
                               "errors": run.errors}, indent=2))
    else:
        table = Table("read", "messages", box=None, pad_edge=False, header_style="bold")
        for key, label in ROWS:
            table.add_row(label, str(run.counts[key]))
        table.add_row("total", str(run.messages), style="bold")
        console.print(table)
        for action in run.actions:
            console.print(f"  {action}", markup=False, soft_wrap=True)
        console.print(f"Read {', '.join(run.sources) or 'nothing'}; {len(run.actions)} address(es) changed status.",
                      markup=False, soft_wrap=True)
    for error in run.errors:
        err_console.print(f"Error: {error}", markup=False, style="bold red", soft_wrap=True)
    if run.errors:
        sys.exit(1)


COMMANDS: list[click.Command] = [bounces_command]
