"""``newsletter init`` and ``newsletter preview``: set a folder up, and see the next issue."""

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
    console.print(f"{written} file(s) written, {len(entries) - written} kept. Edit "
                  f"{directory / 'newsletter.toml'} and the templates, then run: newsletter ingest && newsletter preview",
                  markup=False, soft_wrap=True)


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


COMMANDS: list[click.Command] = [init, preview]
