"""``newsletter serve``: the web app (subscribe, confirm, unsubscribe, archive, feed, preview)
under uvicorn, meant to sit behind the operator's https reverse proxy at ``newsletter.base_url``."""

from __future__ import annotations

import click

from newsletter.cli import AppContext, console, pass_app


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (default: [web] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on (default: [web] port, 8000; 0: any free port).")
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True, metavar="IPS",
              help="Proxies trusted to set X-Forwarded-For/-Proto (comma-separated, or '*').")
@pass_app
def serve(app: AppContext, host: str | None, port: int | None, forwarded_allow_ips: str) -> None:
    """Run the web app: subscribe form, confirmation and one-click unsubscribe links, the
    archive of sent issues, an Atom feed, and the preview (loopback or token only).

    Put it behind an https reverse proxy that answers at [newsletter] base_url; the links in
    every message point there. Stop it with Ctrl+C.

    \b
    Example:
      newsletter serve                          # http://127.0.0.1:8000
      newsletter serve --host 0.0.0.0 --port 8080
    """
    from newsletter.web.app import create_app
    from newsletter.web.server import bind_socket, serve_in_foreground

    config = app.config.with_overrides({"web.host": host, "web.port": port})
    web_app = create_app(config, app.store)
    listen_host = config["web.host"]
    sock = bind_socket(listen_host, config["web.port"])  # a port in use: an error, before "Serving"
    listen_port = sock.getsockname()[1]
    shown_host = f"[{listen_host}]" if ":" in listen_host else listen_host
    where = f"http://{shown_host}:{listen_port}"
    console.print(f"Serving {config['newsletter.name']} on {where} (store {app.store.shown_url})", markup=False)
    base_url = config["newsletter.base_url"]
    if base_url:
        console.print(f"Links in messages point to {base_url}")
    else:
        console.print("[yellow]newsletter.base_url is not set: links in confirmation messages use the "
                      "address each request arrived at.[/yellow]")
    serve_in_foreground(web_app, sock, proxy_headers=True, forwarded_allow_ips=forwarded_allow_ips,
                        server_header=False, log_level="info")


COMMANDS: list[click.Command] = [serve]
