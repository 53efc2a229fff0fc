"""``newsletter send``, ``resend --failed`` and ``issues`` end to end: the bundled sample papers,
a real SQLite store, the outbox folder or a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import email
import json
from email.policy import default as default_policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from conftest import LIVE_SETTINGS, free_port, store_url
from newsletter import pipeline
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.store import open_store
from newsletter.store.schema import deliveries
from newsletter.store.subscribers import add_subscriber, get_subscriber, set_status
from test_deliver_support import RecordingHandler, SmtpServer

EMAILS = [f"reader{i:03d}@example.com" for i in range(30)]


def setup_store(tmp_path: Path, smtp_port: int | None = None, extra: str = "", concurrency: int = 3) -> Path:
    """A config file, a store with the bundled sample papers ingested and 30 subscribers."""
    text = f'[store]\nurl = "{store_url(tmp_path / "newsletter.db")}"\n[delivery]\noutbox = "{tmp_path / "outbox"}"\n' \
           f'rate_per_second = 0\nconcurrency = {concurrency}\n{extra}'
    if smtp_port is not None:
        # A real SMTP send needs go-live settings; an [newsletter] section in ``extra`` gets them too.
        text = text.replace("[newsletter]\n", LIVE_SETTINGS) if "[newsletter]\n" in text else LIVE_SETTINGS + text
        text += f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\ntimeout_s = 5\n'
    path = tmp_path / "newsletter.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path, env={})
    store = open_store(config.store_url)
    assert not pipeline.ingest(store, config).failed
    with store.atomic() as conn:
        for i, address in enumerate(EMAILS):
            add_subscriber(conn, address, name=f"Reader {i}")
    store.dispose()
    return path


def invoke(config: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def ledger(config: Path) -> dict[str, str]:
    store = open_store(load_config(config, env={}).store_url)
    with store.atomic() as conn:
        found = {r.email: r.status for r in conn.execute(select(deliveries.c.email, deliveries.c.status))}
    store.dispose()
    return found


@pytest.fixture
def smtp():  # type: ignore[no-untyped-def]
    server = SmtpServer(RecordingHandler(), free_port()).start()
    yield server
    server.stop()


def test_send_without_smtp_writes_the_outbox_and_says_where(tmp_path: Path) -> None:
    config = setup_store(tmp_path)
    result = invoke(config, "send")
    assert result.exit_code == 0, result.output
    assert "30 written, 0 failed, 0 left for later" in result.output
    assert f"Destination: {tmp_path / 'outbox'}" in result.output
    assert "[smtp]" in result.output and "NEWSLETTER_SMTP_PASSWORD" in result.output
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 30
    parsed = [email.message_from_bytes(f.read_bytes(), policy=default_policy) for f in files]
    assert sorted(m["To"].addresses[0].addr_spec for m in parsed) == EMAILS
    assert all(m["List-Unsubscribe"] and m["Subject"] == parsed[0]["Subject"] for m in parsed)
    assert not parsed[0]["Subject"].startswith("Trending Papers")  # the From line names the newsletter
    again = invoke(config, "send")
    assert "0 written" in again.output and "30 done before" in again.output
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 30
    dry = invoke(config, "send", "--dry-run")
    assert "0 message(s) built and would be written, 30 already written" in dry.output


def test_send_by_smtp_with_limit_then_resume_and_issues_json(tmp_path: Path, smtp) -> None:
    config = setup_store(tmp_path, smtp.port)
    first = invoke(config, "send", "--limit", "10", "--concurrency", "2")
    assert first.exit_code == 0, first.output
    assert "10 sent, 0 failed, 20 left for later" in first.output
    assert "Run `newsletter send` again later" in first.output
    second = invoke(config, "send")
    assert "20 sent, 0 failed, 0 left for later" in second.output and "10 done before" in second.output
    got = smtp.handler.recipients()
    assert sorted(got) == EMAILS and set(got.values()) == {1}
    issues = json.loads(invoke(config, "issues", "--json").output)
    assert len(issues) == 1 and issues[0]["deliveries"]["sent"] == 30 and issues[0]["status"] == "frozen"
    table = invoke(config, "issues").output
    assert issues[0]["key"] in table and "30" in table


def test_dry_run_and_test_copy_leave_the_ledger_alone(tmp_path: Path, smtp) -> None:
    config = setup_store(tmp_path, smtp.port)
    dry = invoke(config, "send", "--dry-run")
    assert dry.exit_code == 0 and "30 message(s) built and would be sent" in dry.output
    assert "Nothing was delivered" in dry.output
    assert smtp.handler.messages == [] and ledger(config) == {}
    test_copy = invoke(config, "send", "--to", "Editor@Example.org")
    assert test_copy.exit_code == 0, test_copy.output
    assert "not recorded in the ledger" in test_copy.output
    assert list(smtp.handler.recipients()) == ["Editor@example.org"] and ledger(config) == {}
    bad = invoke(config, "send", "--to", "not an address")
    assert bad.exit_code == 1 and "not an address" in bad.output
    both = invoke(config, "send", "--dry-run", "--to", "editor@example.org")
    assert both.exit_code == 2 and "use one of them" in both.output  # bad usage
    assert len(smtp.handler.messages) == 1 and ledger(config) == {}
    # After a run that stopped at --limit, a dry run counts exactly what is left.
    assert invoke(config, "send", "--limit", "12").exit_code == 0
    dry = invoke(config, "send", "--dry-run")
    assert "18 message(s) built and would be sent, 12 already sent" in dry.output


def test_failures_are_reported_and_resend_failed_retries_only_them(tmp_path: Path, smtp) -> None:
    config = setup_store(tmp_path, smtp.port)
    smtp.handler.refuse = {EMAILS[4]: "550 5.1.1 No such user here", EMAILS[9]: "554 5.7.1 Try again tomorrow"}
    result = invoke(config, "send")
    assert result.exit_code == 1
    assert "28 sent, 2 failed" in result.output
    assert f"{EMAILS[4]}: RCPT TO {EMAILS[4]}: 550 5.1.1 No such user here (marked bounced)" in result.output
    assert "newsletter resend --failed" in result.output
    smtp.handler.refuse = {}
    again = invoke(config, "resend", "--failed")
    # The bounced address stays suppressed; the other failure goes through now.
    assert "1 sent, 0 failed" in again.output and "1 skipped as suppressed" in again.output
    got = smtp.handler.recipients()
    assert set(got) == set(EMAILS) - {EMAILS[4]} and set(got.values()) == {1}
    rows = ledger(config)
    assert rows[EMAILS[4]] == "skipped" and rows[EMAILS[9]] == "sent"
    store = open_store(load_config(config, env={}).store_url)
    with store.atomic() as conn:  # the bounce's answer is kept beside the reason it was skipped
        error = conn.execute(select(deliveries.c.last_error).where(deliveries.c.email == EMAILS[4])).scalar_one()
    store.dispose()
    assert error.startswith("subscriber no longer active; before: ") and "550 5.1.1 No such user here" in error
    nothing = invoke(config, "resend", "--failed")
    assert nothing.exit_code == 0 and "Nothing to resend" in nothing.output
    typo = invoke(config, "resend", "--failed", "2099-W99")
    assert typo.exit_code == 1 and "2099-W99: no such issue" in typo.output
    store = open_store(load_config(config, env={}).store_url)
    with store.atomic() as conn:
        assert get_subscriber(conn, EMAILS[4]).status == "bounced"


def test_unreachable_server_exits_1_and_leaves_everything_for_later(tmp_path: Path) -> None:
    config = setup_store(tmp_path, free_port(), extra="max_attempts = 2\n")
    result = invoke(config, "send")
    assert result.exit_code == 1
    assert "0 sent, 0 failed, 30 left for later" in result.output and "server unreachable" in result.output
    assert set(ledger(config).values()) == {"pending"}


def test_clear_text_to_a_remote_host_is_refused_before_anything_happens(tmp_path: Path) -> None:
    config = setup_store(tmp_path)
    config.write_text(config.read_text() + '[smtp]\nhost = "smtp.example.org"\nsecurity = "none"\n')
    result = invoke(config, "send")
    assert result.exit_code == 1 and "only for a loopback host" in result.output
    assert ledger(config) == {}
    dry = invoke(config, "send", "--dry-run")  # a dry run does not pass what the real one refuses
    assert dry.exit_code == 1 and "only for a loopback host" in dry.output


def test_without_active_subscribers_no_issue_is_spent(tmp_path: Path) -> None:
    config = setup_store(tmp_path)
    store = open_store(load_config(config, env={}).store_url)
    with store.atomic() as conn:
        for email in EMAILS:
            set_status(conn, email, "unsubscribed", reason="test")
    result = invoke(config, "send")
    assert result.exit_code == 0 and "Nothing to send: no active subscribers" in result.output
    [issue] = json.loads(invoke(config, "issues", "--json").output)
    assert issue["status"] == "draft" and not any(issue["deliveries"].values()), issue  # not frozen: kept for later
    store.dispose()


def test_every_command_has_help_with_an_example() -> None:
    for name in ("send", "resend", "issues"):
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output


def test_the_readme_main_job_delivers_the_sample_issue_to_the_example_subscribers(tmp_path: Path, monkeypatch) -> None:
    """README's two-command run, on embedded defaults in an empty folder: ingest the bundled
    papers, import subscribers.example.csv, preview, send to the outbox."""
    import csv

    from conftest import ROOT

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_SMTP_HOST", raising=False)
    example = ROOT / "subscribers.example.csv"
    for args in (["ingest"], ["subscribers", "import", str(example)], ["preview"]):
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
    sent = CliRunner().invoke(main, ["send"], catch_exceptions=False)
    assert sent.exit_code == 0, sent.output
    with example.open(encoding="utf-8", newline="") as fh:
        active = sorted(row["email"].lower() for row in csv.DictReader(fh) if row.get("status", "active") == "active")
    files = list((tmp_path / "outbox").glob("*.eml"))
    got = sorted(email.message_from_bytes(f.read_bytes(), policy=default_policy)["To"].addresses[0].addr_spec.lower()
                 for f in files)
    assert got == active and len(files) == len(active)
    # It ends saying where the messages are and how to send them for real.
    assert f"{len(active)} written, 0 failed" in sent.output
    assert f"Destination: {tmp_path / 'outbox'}" in sent.output
    assert "[smtp]" in sent.output and "NEWSLETTER_SMTP_PASSWORD" in sent.output


def test_messages_are_dated_when_sent_and_a_test_copy_has_its_own_message_id(tmp_path: Path) -> None:
    """A send caught up for a slot two days ago is still dated now; the test copy of a
    subscriber's message is not mistaken for it (same Message-ID: dropped as a duplicate)."""
    from datetime import datetime, timedelta, timezone
    from email.utils import parsedate_to_datetime

    path = setup_store(tmp_path)
    config = load_config(path, env={})
    store = open_store(config.store_url)
    slot = datetime.now(timezone.utc) - timedelta(days=2)
    test_copy = pipeline.send_issue(store, config, to=EMAILS[5], now=slot)
    report = pipeline.send_issue(store, config, now=slot)
    store.dispose()
    assert test_copy.sent == 1 and report.sent == len(EMAILS)
    messages = [email.message_from_bytes(p.read_bytes(), policy=default_policy)
                for p in sorted((tmp_path / "outbox").rglob("*.eml"))]
    for message in messages:
        age = datetime.now(timezone.utc) - parsedate_to_datetime(message["Date"])
        assert timedelta(0) <= age < timedelta(minutes=5), message["Date"]
    ids = [m["Message-ID"] for m in messages if m["To"].addresses[0].addr_spec == EMAILS[5]]
    assert len(ids) == 2 and ids[0] != ids[1]


def test_the_summary_counts_every_failure_not_only_those_it_shows(tmp_path: Path, smtp) -> None:
    config = setup_store(tmp_path, smtp.port)
    store = open_store(load_config(config, env={}).store_url)
    extra = [f"more{i:03d}@example.com" for i in range(40)]
    with store.atomic() as conn:
        for address in extra:
            add_subscriber(conn, address)
    store.dispose()
    smtp.handler.refuse = {address: "550 5.7.1 Not today" for address in EMAILS + extra}
    result = invoke(config, "send")
    assert result.exit_code == 1 and "0 sent, 70 failed" in result.output
    assert "... and 50 more (see `newsletter issues`)" in result.output, result.output


def test_an_outbox_run_after_an_smtp_run_counts_what_was_sent_as_done(tmp_path: Path, smtp) -> None:
    config = setup_store(tmp_path, smtp.port)
    assert "30 sent, 0 failed" in invoke(config, "send").output
    config.write_text(config.read_text().split("[smtp]")[0], encoding="utf-8")  # back to the outbox
    again = invoke(config, "send")
    assert again.exit_code == 0 and "0 written" in again.output and "30 done before" in again.output, again.output
    assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").rglob("*.eml"))
