"""``newsletter ingest`` and ``newsletter papers``: thin commands over ``api.ingest`` and
``api.papers`` (imported inside the commands, to keep ``newsletter --help`` fast: see send.py)."""

from __future__ import annotations

import json
import sys

import click
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from newsletter.cli import AppContext, console, err_console, pass_app

SKIPS_SHOWN = 5  # per source: enough to see why, without burying the summary


def _absolute_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from urllib.parse import urlsplit

    from newsletter.sources.fetch import is_url

    if value is not None and not (is_url(value) and urlsplit(value).hostname):
        raise click.BadParameter(f"{value!r} is not an http(s) URL with a host", ctx=ctx, param=param)
    return value


@click.command("ingest")
@click.argument("sources", nargs=-1, metavar="[SOURCE ...]")
@click.option("--base-url", metavar="URL", callback=_absolute_url,
              help="Where feed files were saved from: their relative links resolve against it.")
@pass_app
def ingest_command(app: AppContext, sources: tuple[str, ...], base_url: str | None) -> None:
    """Read papers from files or http(s) URLs into the store.

    A SOURCE is a feed (RSS, Atom, JSON Feed), a JSON list (ours or the Hugging Face daily
    papers API), a CSV file or a plain-text page. Without SOURCE the configured [sources] urls
    are read, and without those the bundled sample papers. Each source is stored in its own
    transaction: a broken one is reported and the others are still ingested (exit status 1).

    \b
    Example:
      newsletter ingest
      newsletter ingest papers.json https://rss.arxiv.org/rss/cs.LG
      newsletter ingest --base-url https://www.qemu.org/ saved-feed.atom
    """
    from newsletter import api

    config = app.config
    store = app.store
    count = len(sources) or max(1, len(config["sources.urls"]))
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task("ingesting", total=count)

        started: list[str] = []

        def on_source(name: str) -> None:
            progress.update(task, description=f"reading {name}", completed=len(started))
            started.append(name)

        report = api.ingest(store, config, list(sources) or None, on_source=on_source, base_url=base_url)
        progress.update(task, completed=count)

    if report.used_sample:
        console.print("No sources configured ([sources] urls): ingested the bundled sample papers.", markup=False)
    table = Table(title=None, show_edge=False)
    table.add_column("source", overflow="fold")
    for name in ("new", "updated", "unchanged", "skipped"):
        table.add_column(name, justify="right")
    table.add_column("errors", overflow="fold")
    for s in report.sources:
        if s.not_modified:
            table.add_row(s.source, "0", "0", "304: all", "0", "")
        else:
            table.add_row(s.source, str(s.new), str(s.updated), str(s.unchanged), str(s.skipped),
                          "1" if s.error else "")
    console.print(table, markup=False)
    for s in report.sources:
        for warning in s.warnings:
            err_console.print(f"Warning: {s.source}: {warning}", markup=False, style="yellow", soft_wrap=True)
        for reason in s.skip_reasons[:SKIPS_SHOWN]:
            err_console.print(f"Skipped: {s.source}: {reason}", markup=False, soft_wrap=True)
        if len(s.skip_reasons) > SKIPS_SHOWN:
            err_console.print(f"Skipped: {s.source}: ... and {len(s.skip_reasons) - SKIPS_SHOWN} more",
                              markup=False, soft_wrap=True)
        for error in ([s.error] if s.error else []):
            err_console.print(f"Error: {error}", markup=False, style="bold red", soft_wrap=True)
    console.print(f"{report.total('new')} new, {report.total('updated')} updated, "
                  f"{report.total('unchanged')} unchanged, {report.total('skipped')} skipped, "
                  f"{len(report.errors)} failed source(s); store: {store.shown_url}", markup=False, soft_wrap=True)
    if report.failed:
        sys.exit(1)


@click.command("papers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many papers.")
@pass_app
def papers_command(app: AppContext, as_json: bool, limit: int | None) -> None:
    """List the papers in the store, newest first and highest score first.

    \b
    Example:
      newsletter papers
      newsletter papers --json --limit 5
    """
    from newsletter import api

    found = api.papers(app.store, limit=limit)
    if as_json:
        click.echo(json.dumps([paper_to_json(p) for p in found], indent=2, ensure_ascii=False))
        return
    if not found:
        console.print("No papers yet: run `newsletter ingest` first.", markup=False)
        return
    table = Table(show_edge=False)
    table.add_column("published")
    table.add_column("score", justify="right")
    table.add_column("title", overflow="fold")
    table.add_column("id", overflow="fold")
    for p in found:
        table.add_row(p.published_at.date().isoformat() if p.published_at else "",
                      "" if p.score is None else str(p.score), p.title, p.id)
    console.print(table, markup=False)
    console.print(f"{len(found)} paper(s) in {app.store.shown_url}", markup=False)


def paper_to_json(paper) -> dict:  # type: ignore[no-untyped-def]
    """A paper as JSON (times in ISO 8601 UTC); also the shape of our own JSON source format."""
    def iso(value):  # type: ignore[no-untyped-def]
        return value.isoformat().replace("+00:00", "Z") if value else None

    return {
        "id": paper.id, "title": paper.title, "authors": list(paper.authors), "abstract": paper.abstract,
        "url": paper.url, "pdf_url": paper.pdf_url, "code_url": paper.code_url,
        "thumbnail_url": paper.thumbnail_url, "page_url": paper.page_url, "score": paper.score,
        "published_at": iso(paper.published_at), "first_seen_at": iso(paper.first_seen_at),
        "last_seen_at": iso(paper.last_seen_at), "sources": list(paper.sources),
    }


COMMANDS: list[click.Command] = [ingest_command, papers_command]
