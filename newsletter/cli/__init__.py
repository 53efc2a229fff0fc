"""The ``newsletter`` command: a click group whose commands parse, call one library function and
print with rich. Library errors (``NewsletterError``) become a one-line message and exit 1 here,
and nowhere else; click's usage errors exit 2.

The commands live in one module per area (``ingest``, ``subscribers``, ``issue``, ``send``,
``run``, ``serve``) so no module grows into a thousand lines.
"""

from __future__ import annotations

import sys
from functools import cached_property
from typing import Any

import click
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from newsletter import __version__
from newsletter.config import Config, load_config
from newsletter.errors import NewsletterError
from newsletter.store import Store, open_store

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class AppContext:
    """What every command needs, built lazily so ``--help`` never touches the store."""

    def __init__(self, config_path: str | None, db_url: str | None) -> None:
        self.config_path = config_path
        self.db_url = db_url

    @cached_property
    def config(self) -> Config:
        overrides = {"store.url": self.db_url} if self.db_url else {}
        config = load_config(self.config_path, overrides=overrides)
        for warning in config.warnings:
            err_console.print(f"Warning: {warning}", markup=False, soft_wrap=True, style="yellow")
        return config

    @cached_property
    def store(self) -> Store:
        store = open_store(self.config.store_url)
        for warning in store.warnings:
            err_console.print(f"Warning: {warning}", markup=False, soft_wrap=True, style="yellow")
        return store


pass_app = click.make_pass_decorator(AppContext)


class NewsletterGroup(click.Group):
    """Turns library errors into ``Error: where: what`` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            # markup=False: messages quote user input, which may hold [brackets].
            err_console.print(f"Error: {exc}", markup=False, soft_wrap=True, style="bold red")
            sys.exit(1)
        except SQLAlchemyError as exc:
            # The store itself is unusable (a read-only or damaged file, a table dropped by hand,
            # a database server gone): one line naming it, not a traceback.
            err_console.print(f"Error: {_store_where(ctx)}: the store cannot be used: {_first_line(exc)}",
                              markup=False, soft_wrap=True, style="bold red")
            sys.exit(1)


def _store_where(ctx: click.Context) -> str:
    from newsletter.store.db import without_password

    app = ctx.find_object(AppContext)
    try:
        return without_password(app.config.store_url) if app is not None else "the store"
    except NewsletterError:
        return "the store"


def _first_line(exc: SQLAlchemyError) -> str:
    """The database's own words (``attempt to write a readonly database``), without the SQL."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@click.group(cls=NewsletterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              envvar="NEWSLETTER_CONFIG", help="Configuration file (default ./newsletter.toml; none: embedded defaults).")
@click.option("--db", "db_url", default=None, metavar="URL",
              help="Store URL, overriding [store] url (e.g. sqlite:///newsletter.db).")
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, db_url: str | None) -> None:
    """Trending research papers, composed into a weekly email digest and delivered.

    \b
    Example:
      newsletter ingest                 # the configured sources (or the bundled sample)
      newsletter papers                 # what the next issue would hold
      newsletter preview                # render it to ./preview
      newsletter send                   # deliver it (to ./outbox without [smtp])
    """
    ctx.obj = AppContext(config_path, db_url)


def _register() -> None:
    from newsletter.cli import bounces, ingest, issue, run, send, serve, store, subscribers

    for module in (ingest, subscribers, issue, send, bounces, run, serve, store):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
