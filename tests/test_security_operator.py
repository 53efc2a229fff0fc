"""What an operator's commands print and leave on disk: never a store password, private files
for the store, outbox and previews."""

from __future__ import annotations

import os
import re
import stat
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


# --- private files -----------------------------------------------------------------------------

@pytest.fixture
def usual_umask():  # type: ignore[no-untyped-def]
    """The umask most systems give a shell (022): files 0644 unless made private on purpose."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_config(folder: Path) -> Path:
    path = folder / "newsletter.toml"
    path.write_text(f'[store]\nurl = "sqlite:///{folder / "site" / "newsletter.db"}"\n'
                    f'[delivery]\noutbox = "{folder / "site" / "outbox"}"\nrate_per_second = 0\n', encoding="utf-8")
    (folder / "site").mkdir()
    return path


@pytest.mark.sqlite_only("the SQLite store file and its -wal are made private (the outbox and preview with them)")
def test_store_outbox_and_preview_are_private(tmp_path: Path, usual_umask) -> None:  # type: ignore[no-untyped-def]
    """The store (signing key, addresses), the outbox and a preview (addresses, live unsubscribe
    links) are created for their owner only; the store's -wal file follows the store."""
    config = _write_config(tmp_path)
    runner = CliRunner()
    for command in (["ingest"], ["subscribers", "add", "ada@example.org"], ["send"],
                    ["preview", "--out", str(tmp_path / "site" / "preview" / "w48")]):
        result = runner.invoke(main, ["--config", str(config), *command], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    site = tmp_path / "site"
    assert _mode(site / "newsletter.db") == 0o600
    for extra in site.glob("newsletter.db-*"):
        assert _mode(extra) == 0o600, extra
    assert _mode(site / "outbox") == 0o700
    assert [_mode(p) for p in (site / "outbox").glob("*.eml")] == [0o600]
    assert _mode(site / "preview" / "w48") == 0o700
    previews = sorted((site / "preview" / "w48").iterdir())
    assert len(previews) == 3 and {_mode(p) for p in previews} == {0o600}


@pytest.mark.sqlite_only("the warning is about the SQLite store file's permissions")
def test_a_store_readable_by_others_is_warned_about_once(tmp_path: Path, usual_umask) -> None:  # type: ignore[no-untyped-def]
    config = _write_config(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["--config", str(config), "ingest"]).exit_code == 0
    store_file = tmp_path / "site" / "newsletter.db"
    store_file.chmod(0o644)
    result = runner.invoke(main, ["--config", str(config), "subscribers", "list"], catch_exceptions=False)
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if "readable by other users" in line]
    assert len(warnings) == 1 and str(store_file) in warnings[0] and "chmod 600" in warnings[0]
    assert "readable by other users" not in result.stdout
    store_file.chmod(0o600)
    again = runner.invoke(main, ["--config", str(config), "subscribers", "list"], catch_exceptions=False)
    assert "readable by other users" not in again.output
