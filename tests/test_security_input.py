"""Bad operator input is a one-line error naming the file or value, exit status 1 (2 for a bad
flag), and the store as it was: never a traceback, never a command that hangs or eats memory.
And relative paths in newsletter.toml follow the file, not the folder the command runs in."""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 60


def newsletter(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command in its own process (a FIFO or /dev/zero must fail it, not hang the tests)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NEWSLETTER_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "newsletter", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)


def one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder with a store holding one subscriber, and a small subscriber file."""
    (tmp_path / "people.csv").write_text("email,name\nada@example.org,Ada\n", encoding="utf-8")
    assert newsletter(tmp_path, "subscribers", "add", "first@example.org").returncode == 0
    return tmp_path


def listed(site: Path) -> list[str]:
    result = newsletter(site, "subscribers", "list", "--json")
    return sorted(row["email"] for row in json.loads(result.stdout))


@pytest.mark.parametrize("encoding,why", [
    ("utf-16", "not valid UTF-16"),
    ("rot13", "'rot13' is not a text encoding"),
    ("hex", "'hex' is not a text encoding"),
    ("base64", "'base64' is not a text encoding"),
    ("no-such-codec", "unknown encoding 'no-such-codec'"),
])
def test_an_encoding_that_cannot_read_the_file_is_a_clear_error(site: Path, encoding: str, why: str) -> None:
    result = newsletter(site, "subscribers", "import", "people.csv", "--encoding", encoding)
    one_line_error(result, "people.csv", why)
    assert result.returncode == 1
    assert listed(site) == ["first@example.org"]


def test_an_import_of_a_device_or_a_fifo_is_refused_before_reading(site: Path) -> None:
    (site / "zero.csv").symlink_to("/dev/zero")
    os.mkfifo(site / "pipe.csv")
    one_line_error(newsletter(site, "subscribers", "import", "zero.csv"), "zero.csv", "a device, not a regular file")
    one_line_error(newsletter(site, "subscribers", "import", "pipe.csv"), "pipe.csv", "FIFO")
    assert listed(site) == ["first@example.org"]


def test_a_fifo_or_device_as_source_or_config_is_refused(site: Path) -> None:
    os.mkfifo(site / "feed.json")
    result = newsletter(site, "ingest", "feed.json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "feed.json: is a named pipe (FIFO), not a regular file" in result.stderr
    one_line_error(newsletter(site, "--config", "/dev/zero", "subscribers", "list"),
                   "/dev/zero", "not a regular file")
    os.mkfifo(site / "pipe.toml")
    one_line_error(newsletter(site, "--config", "pipe.toml", "subscribers", "list"), "pipe.toml", "FIFO")


@pytest.mark.parametrize("command", [["preview"], ["send", "--dry-run"], ["papers"]])
def test_issue_days_is_bounded(site: Path, command: list[str]) -> None:
    (site / "newsletter.toml").write_text("[issue]\ndays = 1000000\n", encoding="utf-8")
    one_line_error(newsletter(site, *command), "newsletter.toml:2", "issue.days", "at most 3650")


def test_names_and_attributes_are_bounded_and_errors_quote_little(site: Path) -> None:
    huge = "N" * 5_000_000
    rows = [f"ok{i}@example.org,Reader {i}," for i in range(3)]
    rows.append(f"long@example.org,{huge},")
    rows.append('attrs@example.org,A,"' + json.dumps({"k": "v" * 20_000}).replace('"', '""') + '"')
    rows.append(f"{huge}@example.org,B,")
    (site / "big.csv").write_text("email,name,attributes\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = newsletter(site, "subscribers", "import", "big.csv")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stdout) + len(result.stderr) < 5_000
    assert "big.csv:5: long@example.org: the name is longer than 100 characters (5,000,000)" in result.stderr
    assert "big.csv:6: attrs@example.org: attributes: longer than 10,000 characters" in result.stderr
    assert "big.csv:7: NNNN" in result.stderr and "(5,000,012 characters)" in result.stderr
    assert listed(site) == ["first@example.org"]
    too_long = newsletter(site, "subscribers", "add", "eve@example.org", "--name", "E" * 101)
    assert too_long.returncode == 2 and "longer than 100 characters" in too_long.stderr
    assert newsletter(site, "subscribers", "add", "eve@example.org", "--name", "E" * 100).returncode == 0


@pytest.mark.sqlite_only("where a relative SQLite file path in the configuration puts the file")
def test_relative_paths_in_the_config_follow_the_file(tmp_path: Path) -> None:
    """``--config ../site/newsletter.toml`` used the current folder for the store, the outbox
    and the templates: a new empty store appeared there and the real one was never used."""
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    (site / "data").mkdir(parents=True)
    elsewhere.mkdir()
    (site / "newsletter.toml").write_text(
        '[store]\nurl = "sqlite:///data/news.db"\n[delivery]\noutbox = "mail"\nrate_per_second = 0\n'
        '[newsletter]\ntemplates = "mine"\n', encoding="utf-8")
    (site / "mine").mkdir()
    (site / "mine" / "issue.txt.j2").write_text("Own template {{ issue.title }}\n{{ subscriber.unsubscribe_url }}\n",
                                                encoding="utf-8")
    config = "../site/newsletter.toml"
    for command in (["ingest"], ["subscribers", "add", "ada@example.org"], ["send"]):
        result = newsletter(elsewhere, "--config", config, *command)
        assert result.returncode == 0, result.stderr
    assert (site / "data" / "news.db").is_file()
    sent = list((site / "mail").glob("*.eml"))
    assert len(sent) == 1
    message = email.message_from_bytes(sent[0].read_bytes(), policy=policy.default)
    assert message.get_body(("plain",)).get_content().startswith("Own template")
    assert sorted(p.name for p in elsewhere.iterdir()) == []
    # A value from the environment or a flag is the user's own: relative to where they are.
    result = newsletter(elsewhere, "--config", config, "--db", "sqlite:///here.db", "subscribers", "list")
    assert result.returncode == 0, result.stderr
    assert (elsewhere / "here.db").is_file()
