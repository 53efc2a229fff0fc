"""``newsletter init``, ``newsletter preview`` and ``newsletter issue ...``: set a folder up,
see the next issue, and change it before it is sent."""

from __future__ import annotations

import threading
import webbrowser
from pathlib import Path

import click

from newsletter.cli import AppContext, console, err_console, pass_app
from newsletter.net import is_loopback


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."), required=False)
def init(directory: Path) -> None:
    """Write a commented newsletter.toml, a copy of the templates to edit, and a
    subscribers.csv in our format into DIRECTORY (default: here). Existing files are never
    overwritten.

    \b
    Example:
      newsletter init mydigest
      cd mydigest && newsletter ingest && newsletter preview
    """
    from newsletter.render.scaffold import scaffold

    entries = scaffold(directory)
    for entry in entries:
        if entry.written:
            console.print(f"wrote  {entry.path}", markup=False, soft_wrap=True)
        else:
            console.print(f"kept   {entry.path} (exists, left as it was)", markup=False, soft_wrap=True)
    written = sum(e.written for e in entries)
    console.print(f"{written} file(s) written, {len(entries) - written} kept.", markup=False, soft_wrap=True)
    console.print("", markup=False)
    console.print("Next, in order:", markup=False)
    for number, (command, why) in enumerate(next_steps(directory), start=1):
        console.print(f"  {number}. {command}", markup=False, soft_wrap=True)
        console.print(f"     {why}", markup=False, soft_wrap=True)


def next_steps(directory: Path) -> list[tuple[str, str]]:
    """What to do after ``init``, in order: the walkthrough the README's quick start follows."""
    steps = [] if directory == Path(".") else [(f"cd {directory}", "the folder init wrote")]
    return steps + [
        ("edit newsletter.toml", "name, from and postal_address; base_url, logo_url and accent when you have them"),
        ("newsletter ingest", "the bundled sample papers until [sources] urls lists your feeds"),
        ("newsletter subscribers import subscribers.csv", "your readers (put your own addresses in that file first)"),
        ("newsletter papers", "exactly what the next issue holds; `newsletter issue pin|drop|move` changes it"),
        ("newsletter preview", "the issue as a reader gets it, in preview/ (--serve: in a browser)"),
        ("newsletter send", "to outbox/ until [smtp] is set; run `newsletter check` before the first real send"),
    ]


@click.command("preview")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("preview"),
              show_default=True, help="Folder for the HTML, text and .eml files.")
@click.option("--serve", is_flag=True, help="Serve the preview in a browser instead (re-rendered on each reload).")
@click.option("--open", "open_browser", is_flag=True, help="Open the result in the default browser.")
@click.option("--subscriber", "subscriber_email", metavar="EMAIL", default=None,
              help="Render it as this subscriber gets it (default: a sample reader).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the preview server listens on; anything but loopback shows it to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8001, show_default=True,
              help="Port of the preview server (0: any free port).")
@pass_app
def preview(app: AppContext, out_dir: Path, serve: bool, open_browser: bool, subscriber_email: str | None,
            host: str, port: int) -> None:
    """Render the next issue as a subscriber would get it: HTML, plain text and the whole
    message (.eml), and print where they are. With --serve, show it in a browser instead:
    the next issue and past ones, the text part, phone and desktop widths side by side.

    \b
    Example:
      newsletter preview                          # writes ./preview/2026-W48.{html,txt,eml}
      newsletter preview --subscriber ada@example.org --out /tmp/p
      newsletter preview --serve --open           # http://127.0.0.1:8001
    """
    from newsletter import api

    if serve:
        _serve(app, host, port, open_browser)
        return
    files = api.preview(app.store, app.config, out_dir, subscriber_email=subscriber_email)
    if files is None:
        console.print("No papers for the next issue: nothing to preview. Run `newsletter ingest` first.",
                      markup=False, soft_wrap=True)
        return
    console.print(f"Issue {files.issue_key}: {files.subject}", markup=False, soft_wrap=True)
    edits = api.next_issue_plan(app.store, app.config).edits
    if not edits.is_empty:
        said = [f"{len(ids)} {what}" for ids, what in ((edits.pinned, "pinned"), (edits.dropped, "dropped"),
                                                        (edits.moves, "moved")) if ids]
        said += [what for value, what in ((edits.subject, "subject"), (edits.note, "note")) if value is not None]
        console.print(f"  editor's changes: {', '.join(said)} (`newsletter papers` lists them)",
                      markup=False, soft_wrap=True)
    console.print(f"  as received by {files.recipient}", markup=False, soft_wrap=True)
    console.print(f"  HTML  {files.html}  ({files.html_bytes / 1000:.1f} KB)", markup=False, soft_wrap=True)
    console.print(f"  text  {files.text}", markup=False, soft_wrap=True)
    console.print(f"  .eml  {files.eml}", markup=False, soft_wrap=True)
    if files.warning:
        err_console.print(f"Warning: {files.warning}", markup=False, style="yellow")
    if open_browser:
        webbrowser.open(files.html.resolve().as_uri())


def _serve(app: AppContext, host: str, port: int, open_browser: bool) -> None:
    from newsletter.web.preview import create_preview_app
    from newsletter.web.server import bind_socket, serve_in_foreground

    sock = bind_socket(host, port)  # a port in use: an error, before the address is printed
    port = sock.getsockname()[1]
    if not is_loopback(host):
        err_console.print(f"Warning: listening on {host}: anyone who can reach this address sees the preview.",
                          markup=False, style="yellow")
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    console.print(f"Preview of the next issue at {url} (Ctrl+C to stop; reload after editing a template)",
                  markup=False, soft_wrap=True)
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    serve_in_foreground(create_preview_app(app.config, app.store), sock, log_level="warning", server_header=False)


@click.group("issue")
def issue_group() -> None:
    """The editor's hand on the next issue: pin, drop or move a paper, set its subject or
    note, or reset it all. The changes are kept in the store, shown by `newsletter papers`
    and `newsletter preview`, and refused once the issue has been sent.

    \b
    Example:
      newsletter issue pin arxiv:2401.04088
      newsletter issue move arxiv:2401.04088 1
      newsletter issue subject "Mixtral, and nine more"
    """


def _edited(app: AppContext, action: str, paper_id: str | None = None, **kwargs) -> None:  # type: ignore[no-untyped-def]
    from newsletter import api

    plan = api.edit_issue(app.store, app.config, action, paper_id, **kwargs)
    issue = plan.issue
    if issue is None:
        console.print("Saved. The next issue holds no papers yet (run `newsletter ingest`).", markup=False)
        return
    console.print(f"Saved. Issue {issue.key} (#{issue.number}) now holds {len(issue.papers)} paper(s):",
                  markup=False, soft_wrap=True)
    for i, paper in enumerate(issue.papers, start=1):
        mark = " (pinned)" if paper.id in plan.edits.pinned else ""
        console.print(f"  {i:>2}. {' '.join(paper.title.split())[:70]}  [{paper.id}]{mark}", markup=False, soft_wrap=True)
    if plan.edits.subject:
        console.print(f"Subject: {plan.edits.subject}", markup=False, soft_wrap=True)


@issue_group.command("pin")
@click.argument("paper_id", metavar="ID")
@pass_app
def issue_pin(app: AppContext, paper_id: str) -> None:
    """Always put paper ID in the next issue (ahead of the ranked papers, even outside the
    window or below min_score; never a paper already sent).

    \b
    Example:
      newsletter issue pin arxiv:2401.04088
    """
    _edited(app, "pin", paper_id)


@issue_group.command("drop")
@click.argument("paper_id", metavar="ID")
@pass_app
def issue_drop(app: AppContext, paper_id: str) -> None:
    """Leave paper ID out of the next issue; the next-best paper takes its place.

    \b
    Example:
      newsletter issue drop arxiv:2312.00752
    """
    _edited(app, "drop", paper_id)


@issue_group.command("move")
@click.argument("paper_id", metavar="ID")
@click.argument("position", metavar="N", type=click.IntRange(min=1))
@pass_app
def issue_move(app: AppContext, paper_id: str, position: int) -> None:
    """Put paper ID at position N (1: the top, which leads the subject line).

    \b
    Example:
      newsletter issue move arxiv:2401.04088 1
    """
    _edited(app, "move", paper_id, position=position)


@issue_group.command("subject")
@click.argument("text")
@pass_app
def issue_subject(app: AppContext, text: str) -> None:
    """Use TEXT as the next issue's subject line ("" goes back to the top paper's title).

    \b
    Example:
      newsletter issue subject "Mixtral, Mamba and the week in sparse models"
    """
    _edited(app, "subject", text=text)
    limit = app.config["issue.subject_chars"]
    if len(" ".join(text.split())) > limit:
        err_console.print(f"Warning: the subject is {len(text)} characters; inboxes on phones show about {limit}.",
                          markup=False, style="yellow")


@issue_group.command("note")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@pass_app
def issue_note(app: AppContext, file) -> None:  # type: ignore[no-untyped-def]
    """Use the Markdown in FILE (- for standard input) as the next issue's editor's note,
    instead of newsletter.editor_note. An empty file removes the note from this issue.

    \b
    Example:
      newsletter issue note notes/this-week.md
    """
    _edited(app, "note", text=file.read())


@issue_group.command("reset")
@pass_app
def issue_reset(app: AppContext) -> None:
    """Forget every pin, drop, move, subject and note of the next issue.

    \b
    Example:
      newsletter issue reset
    """
    _edited(app, "reset")


COMMANDS: list[click.Command] = [init, preview, issue_group]
