"""``newsletter store copy``: a thin command over ``api.copy_store``."""

from __future__ import annotations

import click

from newsletter.cli import console


@click.group("store")
def store_group() -> None:
    """The store as a whole.

    \b
    Example:
      newsletter store copy sqlite:///newsletter.db postgresql://newsletter@db.example.org/newsletter
    """


@store_group.command("copy")
@click.argument("source_url")
@click.argument("target_url")
@click.option("--replace", is_flag=True, help="Delete the rows the target already holds first.")
def copy_command(source_url: str, target_url: str, replace: bool) -> None:
    """Copy a whole store (papers, issues, subscribers and their events, deliveries, the secret
    key) from SOURCE_URL to TARGET_URL, SQLite or PostgreSQL either way, ids kept, in one
    transaction, then count both sides. A target that holds rows is refused without --replace.

    \b
    Example:
      newsletter store copy sqlite:///newsletter.db postgresql://newsletter@db.example.org/newsletter
      newsletter store copy postgresql://newsletter@db.example.org/newsletter sqlite:///back.db --replace
    """
    from newsletter import api  # inside the command: see send.py

    report = api.copy_store(source_url, target_url, replace=replace)
    for table, count in report.rows.items():
        if count:
            console.print(f"  {table}: {count:,}", markup=False)
    console.print(f"Copied {report.total:,} rows from {report.source} to {report.target}; both count the same.",
                  markup=False, soft_wrap=True)


COMMANDS: list[click.Command] = [store_group]
