"""``newsletter subscribers ...`` through click's CliRunner, on a real store file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no newsletter.toml here: embedded defaults
    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(main, ["--db", db_url, "subscribers", *args], catch_exceptions=False)
    return invoke


def test_every_command_has_help_with_an_example(run) -> None:  # type: ignore[no-untyped-def]
    for command in ("add", "remove", "unsubscribe", "list", "import", "export", "stats"):
        result = run(command, "--help")
        assert result.exit_code == 0, command
        assert "Example:" in result.output, command
        assert f"newsletter subscribers {command}" in result.output, command


def test_import_the_example_file_then_list_and_stats(run) -> None:  # type: ignore[no-untyped-def]
    result = run("import", str(ROOT / "subscribers.example.csv"))
    assert result.exit_code == 0, result.output
    assert "5 addresses added" in result.output
    listed = json.loads(run("list", "--json").output)
    assert [s["status"] for s in listed] == ["active"] * 5
    assert {s["name"] for s in listed} >= {"Zoë Müller-Lüdenscheidt", "田中 花子", "Okafor, Ngozi"}
    stats = json.loads(run("stats", "--json").output)
    assert (stats["total"], stats["by_status"]["active"], stats["suppressed"]) == (5, 5, 0)
    assert stats["last_30_days"] == {"imported": 5}
    assert "Last 30 days: 5 imported" in run("stats").output
    table = run("list").output
    assert "田中 花子" in table and "5 subscribers" in table
    again = run("import", str(ROOT / "subscribers.example.csv"))
    assert again.exit_code == 0, again.output
    assert "0 addresses added, 0 already on file updated, 5 unchanged" in again.output
    assert json.loads(run("stats", "--json").output)["last_30_days"] == {"imported": 5}


def test_add_unsubscribe_reimport_remove(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("add", "Ada@Example.org", "--name", "Ada Lovelace")
    assert result.exit_code == 0 and "Added Ada@example.org (active)" in result.output
    result = run("add", "ada@example.org")
    assert result.exit_code == 1
    assert "Error: ada@example.org: already on the list as Ada@example.org (active)" in result.output
    result = run("unsubscribe", "ADA@example.org", "--reason", "asked by email")
    assert result.exit_code == 0 and "now unsubscribed" in result.output
    assert "already unsubscribed" in run("unsubscribe", "ada@example.org").output

    again = tmp_path / "again.csv"
    again.write_text("email,name\nada@example.org,Ada\nnew@example.org,New\n", encoding="utf-8")
    result = run("import", str(again))
    assert result.exit_code == 0
    assert "Left 1 suppressed address alone" in result.output
    assert json.loads(run("list", "--json", "--status", "unsubscribed").output)[0]["status_reason"] == "asked by email"

    result = run("remove", "ada@example.org")
    assert result.exit_code == 1 and "--forget" in result.output
    assert run("remove", "ada@example.org", "--forget").exit_code == 0
    assert run("unsubscribe", "gone@example.org", "--bounced").exit_code == 1  # not on the list
    assert run("unsubscribe", "new@example.org", "--bounced", "--reason", "550").exit_code == 0
    assert json.loads(run("stats", "--json").output)["by_status"]["bounced"] == 1


def test_invalid_rows_are_listed_with_file_and_line_and_nothing_changes(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.csv"
    bad.write_text("email,name\nok@example.org,OK\nnot-an-address,Bad\n", encoding="utf-8")
    result = run("import", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:3: not-an-address: " in result.output
    assert "nothing was imported" in result.output
    assert json.loads(run("list", "--json").output) == []
    result = run("import", str(bad), "--skip-invalid")
    assert result.exit_code == 1  # something was left out, and the output says what
    assert f"{bad}:3: not-an-address: " in result.output and "Skipped 1 invalid row" in result.output
    assert [s["email"] for s in json.loads(run("list", "--json").output)] == ["ok@example.org"]


def test_export_to_file_and_stdout_round_trips(run, tmp_path: Path, fixtures_dir: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("import", str(fixtures_dir / "subscribers" / "buttondown_subscribers_export.csv")).exit_code == 0
    out = tmp_path / "backup.csv"
    result = run("export", str(out))
    assert result.exit_code == 0 and "Exported 5 subscribers to" in result.output
    stdout = run("export", "--status", "unsubscribed").stdout
    assert stdout.splitlines()[0].startswith("email,name,status,")
    assert [line.split(",")[0] for line in stdout.splitlines()[1:]] == ["left.us@example.org"]
    assert not (tmp_path / "backup.csv.partial").exists()
    text = out.read_text(encoding="utf-8")
    assert "pending.confirm@example.net,,pending," in text


def test_unknown_format_choice_is_a_usage_error(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "x.csv"
    f.write_text("email\na@example.org\n")
    assert run("import", str(f), "--format", "excel").exit_code == 2
    result = run("import", str(f), "--format", "mailchimp")
    assert result.exit_code == 1 and "needs the column(s) email address" in result.output


def test_a_forced_format_must_have_the_column_that_carries_the_status(run, fixtures_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """Read as Buttondown, a Substack export's bounced reader would have come in as active."""
    substack = fixtures_dir / "subscribers" / "substack_email_list.csv"
    result = run("import", str(substack), "--format", "buttondown")
    assert result.exit_code == 1
    assert f"{substack}:1: a Buttondown subscriber export needs the column(s) subscriber_type" in result.output
    assert json.loads(run("list", "--json").output) == []
    buttondown = fixtures_dir / "subscribers" / "buttondown_subscribers_export.csv"
    for forced in ("ours", "listmonk"):  # both have an email column, neither knows subscriber_type
        result = run("import", str(buttondown), "--format", forced)
        assert result.exit_code == 1, forced
        assert "this header is that of a Buttondown subscriber export" in result.output
    assert json.loads(run("list", "--json").output) == []
    assert run("import", str(substack), "--format", "substack").exit_code == 0
    listmonk = fixtures_dir / "subscribers" / "listmonk_import_subs.csv"  # email,name,attributes: no statuses
    assert run("import", str(listmonk), "--format", "ours").exit_code == 0
    assert json.loads(run("list", "--json", "--status", "bounced").output)[0]["email"] == "bounced.reader@example.org"


def test_export_to_a_folder_that_does_not_exist_is_a_clear_error(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "missing" / "backup.csv"
    result = run("export", str(target))
    assert result.exit_code == 1
    assert f"Error: {target}: cannot write: No such file or directory; nothing was exported" in result.output


def test_a_long_list_prints_plain_lines(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "many.csv"
    f.write_text("email,name\n" + "".join(f"u{i}@example.org,Ü {i}\n" for i in range(250)), encoding="utf-8")
    assert run("import", str(f)).exit_code == 0
    result = run("list")
    lines = result.stdout.splitlines()
    assert len(lines) == 250 and lines[0] == "u0@example.org\tactive\tÜ 0"
    assert "250 subscribers" in result.stderr


def _import_summary(output: str) -> tuple[int, dict[str, int]]:
    """The rows read and every count the import printed (added, updated, unchanged, duplicate rows
    merged, suppressed left alone, invalid skipped), from its summary lines."""
    import re

    text = " ".join(output.split())  # rich may wrap a long line
    rows = int(re.search(r": ([\d,]+) rows?; ", text).group(1).replace(",", ""))
    patterns = {"added": r"([\d,]+) address(?:es)? added", "updated": r"([\d,]+) already on file updated",
                "unchanged": r"([\d,]+) unchanged", "duplicates": r"([\d,]+) duplicate rows? merged",
                "suppressed": r"Left ([\d,]+) suppressed address(?:es)? alone",
                "invalid": r"Skipped ([\d,]+) invalid rows?"}
    counts = {}
    for name, pattern in patterns.items():
        found = re.search(pattern, text)
        counts[name] = int(found.group(1).replace(",", "")) if found else 0
    return rows, counts


def test_reimporting_an_export_with_suppressed_addresses_accounts_for_every_row(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for email in ("ada@example.org", "grace@example.org", "alan@example.org", "edsger@example.org"):
        assert run("add", email).exit_code == 0
    assert run("add", "gone@example.org").exit_code == 0
    assert run("unsubscribe", "gone@example.org", "--reason", "asked by email").exit_code == 0
    assert run("add", "dead@example.org").exit_code == 0
    assert run("unsubscribe", "dead@example.org", "--bounced", "--reason", "550 5.1.1").exit_code == 0
    backup = tmp_path / "backup.csv"
    assert run("export", str(backup)).exit_code == 0

    result = run("import", str(backup))
    assert result.exit_code == 0, result.output
    rows, counts = _import_summary(result.output)
    assert rows == 6 and sum(counts.values()) == rows, result.output
    # the suppressed rows say what is on file: nothing changed in them
    assert "6 rows; 0 addresses added, 0 already on file updated, 6 unchanged" in result.output
    assert "suppressed" not in result.output
    by_status = json.loads(run("stats", "--json").output)["by_status"]
    assert (by_status["active"], by_status["unsubscribed"], by_status["bounced"]) == (4, 1, 1)

    # Rows trying to reactivate them, duplicates, an address suppressed then reactivated within
    # the file, and an invalid row: still every row counted once.
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("email,name,status\n"
                     "GONE@example.org,Gone,active\n"        # suppressed, left alone
                     "gone@example.org,,unsubscribed\n"      # duplicate of it
                     "dead@example.org,,unsubscribed\n"      # still suppressed: unchanged
                     "ada@example.org,Ada,active\n"          # updated (name)
                     "grace@example.org,,active\n"           # unchanged
                     "fresh@example.org,,unsubscribed\n"     # added, unsubscribed
                     "fresh@example.org,,active\n"           # suppressed in the file above: left alone
                     "fresh@example.org,Fresh,\n"            # and again: a duplicate
                     "new@example.org,,active\n"             # added
                     "not-an-address,,active\n",             # invalid, skipped
                     encoding="utf-8")
    result = run("import", str(mixed), "--skip-invalid")
    assert result.exit_code == 1, result.output
    rows, counts = _import_summary(result.output)
    assert rows == 10 and sum(counts.values()) == rows, result.output
    assert counts == {"added": 2, "updated": 1, "unchanged": 2, "duplicates": 2, "suppressed": 2, "invalid": 1}
    listed = {s["email"]: s for s in json.loads(run("list", "--json").output)}
    assert (listed["gone@example.org"]["status"], listed["gone@example.org"]["name"]) == ("unsubscribed", "")
    assert listed["dead@example.org"]["status"] == "bounced"
    assert listed["fresh@example.org"]["status"] == "unsubscribed"


def test_a_spreadsheet_with_a_status_column_is_not_imported_as_mailchimp(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "f.csv"
    f.write_text("Email Address,Name,Status\nx1@example.org,X One,unsubscribed\nx2@example.org,X Two,bounced\n",
                 encoding="utf-8")
    result = run("import", str(f), "--format", "mailchimp")  # forced: its Status would be ignored
    assert result.exit_code == 1
    assert f"{f}:1: this file has a status column, which a Mailchimp audience export does not have" in result.output
    assert json.loads(run("list", "--json").output) == []
    result = run("import", str(f))
    assert result.exit_code == 0, result.output
    assert "(newsletter format, utf-8): 2 rows; 2 addresses added" in result.output
    assert "2 now unsubscribed or bounced" in result.output
    listed = json.loads(run("list", "--json").output)
    assert [(s["email"], s["name"], s["status"]) for s in listed] == [
        ("x1@example.org", "X One", "unsubscribed"), ("x2@example.org", "X Two", "bounced")]
    stats = json.loads(run("stats", "--json").output)
    assert (stats["by_status"]["active"], stats["suppressed"]) == (0, 2)


LONG = ["tanaka.hanako.department-of-computational-linguistics@example-university.ac.jp",
        "dr.ngozi.okafor+weekly-research-digest@mail.example-hospital.org.uk",
        "a@example.org"]


def test_list_never_cuts_an_address_short_when_piped(run) -> None:  # type: ignore[no-untyped-def]
    for email in LONG:
        assert run("add", email, "--name", "Someone With A Rather Long Name Indeed").exit_code == 0
    assert run("unsubscribe", LONG[1], "--reason", "asked by email, at some length, to be removed").exit_code == 0
    result = run("list")  # CliRunner's stdout is not a terminal: plain lines, as `list | grep` reads them
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split("\t") for line in lines] == [
        [LONG[0], "active", "Someone With A Rather Long Name Indeed"],
        [LONG[1], "unsubscribed", "Someone With A Rather Long Name Indeed"],
        [LONG[2], "active", "Someone With A Rather Long Name Indeed"]]
    assert "…" not in result.stdout
    assert "3 subscribers" in result.stderr
    result = run("list", "--status", "unsubscribed")
    assert result.stdout.splitlines() == [f"{LONG[1]}\tunsubscribed\tSomeone With A Rather Long Name Indeed"]
    assert "1 subscriber with status unsubscribed" in result.stderr


def test_list_on_an_80_column_terminal_folds_other_columns_not_addresses(run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import io

    from rich.console import Console

    import newsletter.cli.subscribers as cli_subscribers

    screen = io.StringIO()
    monkeypatch.setattr(cli_subscribers, "console", Console(file=screen, force_terminal=True, width=80,
                                                            color_system=None, highlight=False))
    fits = "tanaka.hanako.lab@example-university.ac.jp"  # 42 characters
    assert run("add", fits, "--name", "Hanako Tanaka-Yamamoto, Department of Linguistics").exit_code == 0
    assert run("add", "a@example.org").exit_code == 0
    run("list")
    table = screen.getvalue()
    assert fits in table and "…" not in table
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "2 subscribers" in table

    screen.truncate(0)
    screen.seek(0)
    assert run("add", LONG[0]).exit_code == 0  # no table column of 80 holds it beside the others
    result = run("list")
    assert LONG[0] in result.stdout.splitlines()[2].split("\t")
    assert fits in result.stdout and "…" not in result.stdout


def test_a_bounce_on_an_unsubscribed_address_says_the_unsubscribe_is_kept(run) -> None:  # type: ignore[no-untyped-def]
    assert run("add", "ada@example.org").exit_code == 0
    assert run("unsubscribe", "ada@example.org", "--reason", "asked by email").exit_code == 0
    result = run("unsubscribe", "ada@example.org", "--bounced", "--reason", "550 5.1.1")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert ("ada@example.org is unsubscribed (asked by email) and stays so: an unsubscribe is kept over a bounce, "
            "so no bounce was recorded; it will not be mailed again") in text
    assert "nothing changed" not in text
    listed = json.loads(run("list", "--json").output)
    assert (listed[0]["status"], listed[0]["status_reason"]) == ("unsubscribed", "asked by email")
    assert json.loads(run("stats", "--json").output)["last_30_days"] == {"subscribed": 1, "unsubscribed": 1}
    # the other way round an unsubscribe replaces the bounce, as before
    assert run("add", "dead@example.org").exit_code == 0
    assert run("unsubscribe", "dead@example.org", "--bounced").exit_code == 0
    assert "dead@example.org is now unsubscribed" in run("unsubscribe", "dead@example.org").output
    assert "was already unsubscribed" in run("unsubscribe", "dead@example.org").output


def test_local_parts_over_64_octets_are_refused_by_add_and_import(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    long_address = "a" * 200 + "@x.com"
    result = run("add", long_address)
    assert result.exit_code == 1
    assert "The email address is too long before the @-sign (136 characters too many)." in result.output
    f = tmp_path / "long.csv"
    f.write_text(f"email\nok@example.org\n{long_address}\n{'b' * 65}@example.org\n{'b' * 64}@example.org\n")
    result = run("import", str(f))
    assert result.exit_code == 1
    assert f"{f}:3: {long_address}: The email address is too long before the @-sign (136 characters too many)." \
        in result.output
    assert f"{f}:4: {'b' * 65}@example.org: The email address is too long before the @-sign (1 character too many)." \
        in result.output
    assert "2 invalid rows of 4; nothing was imported" in result.output
    assert json.loads(run("list", "--json").output) == []
    assert run("import", str(f), "--skip-invalid").exit_code == 1
    assert [s["email"] for s in json.loads(run("list", "--json").output)] == ["ok@example.org", f"{'b' * 64}@example.org"]
