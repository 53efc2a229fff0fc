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
@click.option("--all", "show_all", is_flag=True, help="List every paper in the store instead, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="With --all: at most this many papers. Else: at most this many left-out papers per reason.")
@click.option("--for", "reader", metavar="EMAIL", default=None,
              help="The next issue as this subscriber gets it: their own papers and why each is there.")
@pass_app
def papers_command(app: AppContext, show_all: bool, as_json: bool, limit: int | None, reader: str | None) -> None:
    """Show exactly what the next issue holds, in order, with the editor's changes; then,
    separately, the papers left out and why (dropped, below min_score, over max_papers,
    outside the window, already sent). --all lists every paper in the store.

    \b
    Example:
      newsletter papers
      newsletter papers --json
      newsletter papers --all --limit 20
      newsletter papers --for ada@example.org
    """
    from newsletter import api

    if reader is not None:
        _print_reader_issue(api.reader_issue(app.store, app.config, reader), reader, as_json)
        return
    if show_all:
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
        return
    plan = api.next_issue_plan(app.store, app.config)
    if as_json:
        click.echo(json.dumps(plan_to_json(plan), indent=2, ensure_ascii=False))
        return
    _print_plan(plan, limit if limit is not None else 10)


def _print_reader_issue(found, reader: str, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """One reader's next issue: their papers in order, and why each is there."""
    if found is None:
        if as_json:
            click.echo(json.dumps({"issue": None, "reader": reader, "own": False, "papers": []}, indent=2))
        else:
            console.print("No papers for the next issue: run `newsletter ingest` first.", markup=False)
        return
    issue, papers, own = found
    if as_json:
        click.echo(json.dumps({"issue": {"key": issue.key, "number": issue.number}, "reader": reader, "own": own,
                               "papers": [{**paper_to_json(p), "why": why} for p, why in papers]},
                              indent=2, ensure_ascii=False))
        return
    kind = "their own issue" if own else "the shared issue (no interests or ratings yet)"
    console.print(f"Next issue {issue.key} (#{issue.number}) for {reader}: {kind}, {len(papers)} paper(s)",
                  markup=False, soft_wrap=True)
    table = Table(show_edge=False)
    for name, justify in (("#", "right"), ("title", "left"), ("why", "left"), ("id", "left")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for i, (p, why) in enumerate(papers, start=1):
        table.add_row(str(i), " ".join(p.title.split()), why, p.id)
    console.print(table, markup=False)


def plan_to_json(plan) -> dict:  # type: ignore[no-untyped-def]
    issue = plan.issue
    return {
        "issue": None if issue is None else {
            "key": issue.key, "number": issue.number, "frozen": plan.frozen,
            "subject": plan.edits.subject, "papers": [paper_to_json(p) for p in issue.papers]},
        "edits": {"pinned": list(plan.edits.pinned), "dropped": list(plan.edits.dropped),
                  "moves": [list(m) for m in plan.edits.moves], "subject": plan.edits.subject,
                  "note": plan.edits.note},
        "left_out": [{"reason": lo.reason, "detail": lo.detail, "paper": paper_to_json(lo.paper)}
                     for lo in plan.left_out],
    }


def _print_plan(plan, per_reason: int) -> None:  # type: ignore[no-untyped-def]
    issue, edits = plan.issue, plan.edits
    if issue is None:
        console.print("No papers for the next issue: run `newsletter ingest` first.", markup=False)
    else:
        state = "sent, frozen: it no longer changes" if plan.frozen else "not sent yet"
        console.print(f"Next issue {issue.key} (#{issue.number}), {state}: {len(issue.papers)} paper(s)",
                      markup=False, soft_wrap=True)
        if edits.subject:
            console.print(f"  subject (editor's): {edits.subject}", markup=False, soft_wrap=True)
        if edits.note is not None:
            console.print(f"  note (editor's): {len(edits.note)} characters, see `newsletter preview`",
                          markup=False, soft_wrap=True)
        table = Table(show_edge=False)
        for name, justify in (("#", "right"), ("score", "right"), ("", "left"), ("title", "left"), ("id", "left")):
            table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
        moved = {m[0] for m in edits.moves}
        for i, p in enumerate(issue.papers, start=1):
            marks = " ".join(m for m, on in (("pinned", p.id in edits.pinned), ("moved", p.id in moved)) if on)
            table.add_row(str(i), "" if p.score is None else str(p.score), marks, " ".join(p.title.split()), p.id)
        console.print(table, markup=False)
    if not plan.left_out:
        return
    console.print("", markup=False)
    console.print(f"Left out: {len(plan.left_out)} paper(s)", markup=False)
    table = Table(show_edge=False)
    table.add_column("why")
    table.add_column("detail", overflow="fold")
    table.add_column("title", overflow="fold")
    table.add_column("id", overflow="fold")
    shown: dict[str, int] = {}
    for lo in plan.left_out:
        shown[lo.reason] = shown.get(lo.reason, 0) + 1
        if shown[lo.reason] <= per_reason:
            table.add_row(lo.reason, lo.detail, " ".join(lo.paper.title.split()), lo.paper.id)
    console.print(table, markup=False)
    hidden = {r: n - per_reason for r, n in shown.items() if n > per_reason}
    if hidden:
        console.print("  and " + ", ".join(f"{n} more {r}" for r, n in hidden.items())
                      + " (--limit N shows more, --json all)", markup=False, soft_wrap=True)


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
        "categories": list(paper.categories),
    }


COMMANDS: list[click.Command] = [ingest_command, papers_command]
