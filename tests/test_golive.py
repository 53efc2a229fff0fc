"""Going live: a real SMTP send refuses to start with the shipped placeholders or without an https
unsubscribe page; ``newsletter check`` prints the same checklist and asks a real aiosmtpd server
what a send would meet, sending nothing; ``resend --uncertain`` sends a lost-reply message again
on purpose. Everything through the CLI, as an operator runs it."""

from __future__ import annotations

import json
import re
from email import message_from_bytes
from pathlib import Path

import pytest

from conftest import LIVE_NEWSLETTER, free_port
from test_deliver_support import RecordingHandler, SmtpServer
from test_send_cli import EMAILS, invoke, ledger, setup_store


@pytest.fixture
def smtp():  # type: ignore[no-untyped-def]
    server = SmtpServer(RecordingHandler(), free_port()).start()
    yield server
    server.stop()


def with_newsletter(config: Path, section: str) -> Path:
    """Replace the [newsletter] section setup_store wrote with ``section``'s keys."""
    text = config.read_text(encoding="utf-8")
    text = re.sub(r"\[newsletter\]\n(?:[^\[\n][^\n]*\n)*", "", text)
    config.write_text(f"[newsletter]\n{section}\n" + text, encoding="utf-8")
    return config


GOOD_URL = 'base_url = "https://papers.tpweekly.org"\n'


@pytest.mark.parametrize("section, key, words", [
    (LIVE_NEWSLETTER, "newsletter.base_url", "is empty"),
    ('base_url = "http://papers.tpweekly.org"\n' + LIVE_NEWSLETTER, "newsletter.base_url", "not an https URL"),
    (GOOD_URL + 'postal_address = "12 Science Road"\n', "newsletter.from", "shipped placeholder"),
    (GOOD_URL + 'from = "Papers <digest@example.com>"\npostal_address = "12 Science Road"\n',
     "newsletter.from", "example.com"),
    (GOOD_URL + 'from = "digest@news.example.net"\npostal_address = "12 Science Road"\n',
     "newsletter.from", "example.net"),
    (GOOD_URL + 'from = ""\npostal_address = "12 Science Road"\n', "newsletter.from", "empty"),
    (GOOD_URL + 'from = "Papers <digest@papers.tpweekly.org>"\n', "newsletter.postal_address", "placeholder"),
    (GOOD_URL + 'from = "Papers <digest@papers.tpweekly.org>"\npostal_address = ""\n',
     "newsletter.postal_address", "empty"),
])
def test_a_real_send_refuses_each_bad_setting_naming_its_key(tmp_path: Path, smtp, section: str, key: str,
                                                             words: str) -> None:
    config = with_newsletter(setup_store(tmp_path, smtp.port), section)
    result = invoke(config, "send")
    assert result.exit_code == 1, result.output
    assert "refusing to send for real" in result.output
    assert re.search(rf"- {re.escape(key)}: .*{re.escape(words)}", result.output), result.output
    assert smtp.handler.messages == [] and ledger(config) == {}
    [issue] = json.loads(invoke(config, "issues", "--json").output) or [{"status": "none"}]
    assert issue["status"] != "frozen"  # this week's issue is not spent on a refused run


def test_every_problem_is_named_at_once_and_a_good_configuration_sends(tmp_path: Path, smtp) -> None:
    config = with_newsletter(setup_store(tmp_path, smtp.port), "")
    result = invoke(config, "send")
    assert result.exit_code == 1
    for key in ("newsletter.base_url", "newsletter.from", "newsletter.postal_address"):
        assert f"- {key}:" in result.output
    with_newsletter(config, 'base_url = "http://127.0.0.1:8000"\n' + LIVE_NEWSLETTER)  # loopback http: local testing
    good = invoke(config, "send")
    assert good.exit_code == 0, good.output
    assert sorted(smtp.handler.recipients()) == sorted(EMAILS)


def test_allow_placeholders_passes_the_examples_but_never_a_missing_https_page(tmp_path: Path, smtp) -> None:
    config = with_newsletter(setup_store(tmp_path, smtp.port), 'base_url = "http://papers.tpweekly.org"\n')
    refused = invoke(config, "send", "--allow-placeholders")
    assert refused.exit_code == 1 and "- newsletter.base_url:" in refused.output
    assert "newsletter.from" not in refused.output and smtp.handler.messages == []
    with_newsletter(config, GOOD_URL)
    sent = invoke(config, "send", "--allow-placeholders")
    assert sent.exit_code == 0, sent.output
    assert len(smtp.handler.messages) == len(EMAILS)


def test_outbox_dry_run_and_test_copy_need_no_go_live_settings(tmp_path: Path, smtp) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    outbox = with_newsletter(setup_store(tmp_path / "a"), "")
    assert invoke(outbox, "send").exit_code == 0
    config = with_newsletter(setup_store(tmp_path / "b", smtp.port), "")
    assert invoke(config, "send", "--dry-run").exit_code == 0
    copy = invoke(config, "send", "--to", "editor@tpweekly.org")
    assert copy.exit_code == 0 and list(smtp.handler.recipients()) == ["editor@tpweekly.org"]


def test_check_against_the_server_sends_nothing_and_passes_a_good_setup(tmp_path: Path, smtp) -> None:
    config = setup_store(tmp_path, smtp.port)
    result = invoke(config, "check")
    assert result.exit_code == 0, result.output
    assert "OK   SMTP server answers: 127.0.0.1" in result.output
    assert "OK   MAIL FROM:<digest@papers.tpweekly.org> accepted" in result.output
    assert "_dmarc.papers.tpweekly.org" in result.output and "v=spf1" in result.output
    assert "Nothing was sent." in result.output
    assert smtp.handler.messages == [] and smtp.handler.sessions == 1


def test_check_names_a_refused_sender_and_each_placeholder(tmp_path: Path, smtp) -> None:
    config = with_newsletter(setup_store(tmp_path, smtp.port), 'base_url = "https://papers.tpweekly.org"\n')
    smtp.handler.mail_from_answer = "553 5.1.8 <digest@example.org>: Sender address rejected: not owned by user"
    result = invoke(config, "check")
    assert result.exit_code == 1
    assert re.search(r"FIX  MAIL FROM:<digest@example.org> accepted: 553 5\.1\.8 .*\[newsletter\.from\]",
                     result.output), result.output
    assert "FIX  From address" in result.output and "FIX  postal address" in result.output
    assert "OK   unsubscribe page over https" in result.output
    offline = invoke(config, "check", "--no-smtp")
    assert offline.exit_code == 1 and "MAIL FROM" not in offline.output
    (tmp_path / "gone").mkdir()
    gone = setup_store(tmp_path / "gone", free_port())
    unreachable = invoke(gone, "check")
    assert unreachable.exit_code == 1 and "FIX  SMTP server answers" in unreachable.output


def test_an_uncertain_delivery_is_reported_and_resent_only_on_purpose(tmp_path: Path, smtp) -> None:
    config = setup_store(tmp_path, smtp.port)
    config.write_text(config.read_text().replace("timeout_s = 5", "timeout_s = 0.5"))
    lost = EMAILS[3]
    smtp.handler.withhold_reply = {lost: 1.5}
    result = invoke(config, "send")
    assert result.exit_code == 1, result.output
    assert f"{len(EMAILS) - 1} sent, 0 failed, 1 uncertain" in result.output
    assert "newsletter resend --uncertain" in result.output
    assert ledger(config)[lost] == "uncertain"
    [issue] = json.loads(invoke(config, "issues", "--json").output)
    assert issue["deliveries"]["uncertain"] == 1
    table = invoke(config, "issues").output
    assert re.search(r"\buncertain\b", table) and "written" not in table, table
    again = invoke(config, "send")  # a plain send leaves it alone
    assert again.exit_code == 0 and smtp.handler.recipients()[lost] == 1
    resent = invoke(config, "resend", "--uncertain")
    assert resent.exit_code == 0, resent.output
    assert "1 sent, 0 failed" in resent.output
    copies = [data for _, rcpts, data in smtp.handler.messages if rcpts == (lost,)]
    assert len(copies) == 2
    ids = {message_from_bytes(data)["Message-ID"] for data in copies}
    assert len(ids) == 1  # the same Message-ID: a receiver that deduplicates drops the copy
    assert ledger(config)[lost] == "sent"
    none_left = invoke(config, "resend", "--uncertain")
    assert none_left.exit_code == 0 and "Nothing to resend" in none_left.output
    usage = invoke(config, "resend")
    assert usage.exit_code == 2 and "--failed or --uncertain" in usage.output


def test_a_refused_sender_stops_send_with_exit_1_and_a_hint(tmp_path: Path, smtp) -> None:
    config = setup_store(tmp_path, smtp.port)
    smtp.handler.mail_from_answer = "553 5.1.8 <digest@papers.tpweekly.org>: Sender address rejected: not owned"
    result = invoke(config, "send")
    assert result.exit_code == 1, result.output
    assert "0 sent, 0 failed, 30 left for later" in result.output
    assert "MAIL FROM: 553 5.1.8" in result.output and "check newsletter.from" in result.output
    assert set(ledger(config).values()) == {"pending"}


def test_check_asks_for_the_return_path_when_bounces_have_one(tmp_path: Path, smtp) -> None:
    """With VERP the envelope sender is the return path, not the From address: that is what the
    relay must accept, so that is what `check` asks for."""
    config = setup_store(tmp_path, smtp.port)
    config.write_text(config.read_text() + '[bounces]\nreturn_path = "bounces@papers.tpweekly.org"\n')
    result = invoke(config, "check")
    assert result.exit_code == 0, result.output
    assert "OK   MAIL FROM:<bounces+check@papers.tpweekly.org> accepted" in result.output
