"""What an operator's commands print and leave on disk: never a store password, private files
for the store, outbox and previews."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.store.db import without_password

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret/pw"


@pytest.mark.parametrize("url,shown", [
    ("postgresql+psycopg://postgres:s3cretpw@db.example.org/news",
     "postgresql+psycopg://postgres:***@db.example.org/news"),
    ("postgresql+psycopg://postgres:s3cret/pw@127.0.0.1:5432/news",
     "postgresql+psycopg://postgres:***@127.0.0.1:5432/news"),
    ("mysql+pymysql://news:p%40ss%3Aword@db/news?charset=utf8mb4", "mysql+pymysql://news:***@db/news?charset=utf8mb4"),
    ("postgresql://s3cretpw@db/news", "postgresql://s3cretpw@db/news"),     # a user name, no password
    ("sqlite:///newsletter.db", "sqlite:///newsletter.db"),
    ("not a url://user:s3cretpw@x", "not a url://user:***@x"),
])
def test_without_password_hides_every_password(url: str, shown: str) -> None:
    assert without_password(url) == shown


@pytest.mark.parametrize("command", [["ingest"], ["subscribers", "list"], ["subscribers", "add", "a@example.org"],
                                     ["send"], ["run", "--once"], ["serve", "--port", "0"], ["papers"],
                                     ["issues"]])
def test_no_command_prints_the_store_password(tmp_path: Path, command: list[str]) -> None:
    """A password with a ``/`` in it was printed whole by every command that named the store."""
    url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:1/news"
    result = CliRunner().invoke(main, ["--db", url, *command], catch_exceptions=False)
    assert result.exit_code != 0
    assert PASSWORD not in result.output and "s3cret" not in result.output
    assert "postgres:***@127.0.0.1:1/news" in result.output


def test_every_printed_store_url_goes_through_the_one_helper() -> None:
    """No f-string in the commands or the store shows the raw URL (``store.url`` or
    ``config.store_url``): only ``store.shown_url`` / ``without_password``."""
    raw = re.compile(r"\{[^{}\"]*(?:\bstore\.url|store_url)\b[^{}\"]*\}")
    offenders = [f"{path.relative_to(ROOT)}:{number}"
                 for folder in ("newsletter/cli", "newsletter/store", "newsletter/scheduler.py")
                 for path in sorted((ROOT / folder).rglob("*.py") if (ROOT / folder).is_dir() else [ROOT / folder])
                 for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1)
                 if raw.search(line) or re.search(r"where=(?:store\.|self\.)?url\b", line)]
    assert offenders == []
