"""Bounces and complaints: the VERP return path and headers of each issue message, the
classification of hand-written samples of other MTAs' bounces and ARF reports
(tests/data/bounces/README.md), attribution, the suppression rules and `newsletter bounces`."""

from __future__ import annotations

import email
import json
import mailbox
import shutil
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from conftest import store_url
from newsletter import api
from newsletter.bounces.classify import classify
from newsletter.bounces.verp import make_token, read_token
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.models import Subscriber
from newsletter.render.messages import MessageFactory
from newsletter.store import open_store
from newsletter.store.schema import deliveries
from newsletter.store.subscribers import add_subscriber, get_subscriber, set_status
from newsletter.tokens import Signer, secret_key

DATA = Path(__file__).parent / "data" / "bounces"
RETURN_PATH = "bounces@papers.example.org"
READERS = ("gone@example.net", "nobody@example.com", "retired@example.edu", "left.company@gmail.com",
           "full@example.org", "later@example.org", "slow@example.net", "annoyed@example-isp.com",
           "reader.two@example-mail.com", "holiday@example.org", "ada@example.org", "stays@example.org")


def sample(name: str, **fill: str) -> bytes:
    data = (DATA / name).read_bytes()
    for key, value in fill.items():
        data = data.replace(f"@@{key.upper()}@@".encode(), value.encode())
    return data


# --- VERP and headers -----------------------------------------------------------------------


def test_a_token_names_issue_and_reader_and_a_forged_one_names_no_one() -> None:
    signer = Signer("k" * 32)
    token = make_token(signer, 48, 12345)
    assert len(token) == 26 and token == token.lower()
    assert read_token(signer, token) == (48, 12345)
    assert read_token(signer, token.upper()) == (48, 12345)  # an MTA that folds case
    assert read_token(Signer("other" * 8), token) is None
    flipped = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert read_token(signer, flipped) is None
    assert read_token(signer, make_token(signer, 48, 12346)[:13] + token[13:]) is None
    assert read_token(signer, "") is None and read_token(signer, "x" * 26) is None


def _rendered(store, config):  # type: ignore[no-untyped-def]
    issue = api.next_issue(store, config)
    return api.render(store, config, issue)


@pytest.fixture
def site(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A config with [bounces], the sample papers, and the READERS as active subscribers."""
    path = tmp_path / "newsletter.toml"
    path.write_text(f'[newsletter]\nfrom = "Trending Papers <digest@papers.example.org>"\nname = "Trending Papers Weekly"\n'
                    f'[store]\nurl = "{store_url(tmp_path / "newsletter.db")}"\n[delivery]\noutbox = "{tmp_path / "outbox"}"\n'
                    f'rate_per_second = 0\n[bounces]\nreturn_path = "{RETURN_PATH}"\nprocessed = "move:Processed"\n',
                    encoding="utf-8")
    config = load_config(path, env={})
    store = open_store(config.store_url)
    assert not api.ingest(store, config).failed
    with store.atomic() as conn:
        for address in READERS:
            add_subscriber(conn, address)
    yield path, config, store
    store.dispose()


def test_each_message_has_a_verp_sender_and_the_feedback_headers_on_both_paths(site) -> None:  # type: ignore[no-untyped-def]
    _, config, store = site
    rendered = _rendered(store, config)
    signer = Signer(secret_key(config, store))
    factory = MessageFactory(rendered, config, signer)
    with store.atomic() as conn:
        reader = get_subscriber(conn, "ada@example.org")
    out = factory.build(reader, message_id="<fixed.1@papers.example.org>")
    local, _, domain = out.sender.partition("@")
    assert domain == "papers.example.org" and local.startswith("bounces+")
    token = local.split("+", 1)[1]
    assert read_token(signer, token) == (rendered.issue.number, reader.id)
    fast = email.message_from_bytes(out.data, policy=policy.default)
    slow = factory.build_email_message(reader, message_id="<fixed.1@papers.example.org>")
    for msg in (fast, slow):
        assert msg["X-Newsletter-Token"] == token
        assert msg["Feedback-ID"] == f"{rendered.issue.key}:trending-papers-weekly:papers.example.org"
    assert [k for k in fast.keys() if k != "Date"] == [k for k in slow.keys() if k != "Date"]
    assert fast.get_body(("plain",)).get_content() == slow.get_body(("plain",)).get_content()
    # Two readers, two tokens; the rest of the header block is shared.
    other = factory.build(Subscriber(email="stays@example.org", id=reader.id + 1), message_id="<fixed.2@x.org>")
    assert other.sender != out.sender


def test_without_return_path_the_sender_is_the_from_address_and_no_token(tmp_path: Path, site) -> None:  # type: ignore[no-untyped-def]
    _, config, store = site
    plain = config.with_overrides({"bounces.return_path": ""})
    factory = MessageFactory(_rendered(store, plain), plain, Signer("k" * 32))
    out = factory.build(Subscriber(email="ada@example.org", id=1))
    assert out.sender == "digest@papers.example.org"
    assert b"X-Newsletter-Token" not in out.data and b"Feedback-ID" not in out.data


# --- classification of other MTAs' mail -----------------------------------------------------

EXPECTED = {
    "exim_hard.eml": ("hard", "gone@example.net", "5.1.1"),
    "exim_delayed.eml": ("soft", "slow@example.net", "4.2.2"),
    "qmail_hard.eml": ("hard", "nobody@example.com", "5.1.1"),
    "sendmail_hard.eml": ("hard", "retired@example.edu", "5.1.1"),
    "gmail_dsn_hard.eml": ("hard", "left.company@gmail.com", "5.1.1"),
    "dsn_mailbox_full.eml": ("soft", "full@example.org", "5.2.2"),
    "dsn_delayed.eml": ("soft", "later@example.org", "4.4.1"),
    "arf_complaint.eml": ("complaint", "annoyed@example-isp.com", ""),
    "arf_redacted.eml": ("complaint", "reader.two@example-mail.com", ""),
    "out_of_office.eml": ("auto_reply", None, ""),
    "vacation_precedence.eml": ("auto_reply", None, ""),
    "human_reply.eml": ("not_bounce", None, ""),
}


def test_every_sample_is_listed_in_the_readme_and_expected_here() -> None:
    files = sorted(p.name for p in DATA.glob("*.eml"))
    assert files == sorted(EXPECTED)
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert all(name in readme for name in files)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_samples_are_classified(name: str) -> None:
    kind, address, status = EXPECTED[name]
    report = classify(sample(name, token="a" * 26, message_id="x@papers.example.org"))
    assert report.kind == kind
    if address is not None:
        assert report.recipients[0].address == address
        assert report.recipients[0].status == status
    else:
        assert not report.recipients


def test_evidence_names_status_mta_and_diagnostic() -> None:
    report = classify(sample("gmail_dsn_hard.eml", token="a" * 26))
    assert report.reporting_mta == "googlemail.com"
    assert "5.1.1" in report.evidence and "googlemail.com" in report.evidence
    assert "does not exist" in report.evidence
    assert report.envelope_tokens == ("a" * 26,) and report.quoted_tokens == ("a" * 26,)


def test_garbage_is_unreadable() -> None:
    assert classify(b"").kind == "unreadable"
    assert classify(b"\x00\x01\x02 not a message").kind in ("unreadable", "not_bounce")


# --- attribution and the rules --------------------------------------------------------------


def _send(store, config):  # type: ignore[no-untyped-def]
    report = api.send(store, config)
    assert report.sent == len(READERS), report
    with store.atomic() as conn:
        return {r.email: (r.issue_number, r.subscriber_id, r.message_id)
                for r in conn.execute(select(deliveries.c.email, deliveries.c.issue_number,
                                             deliveries.c.subscriber_id, deliveries.c.message_id))}


def _status(store, address: str) -> str:  # type: ignore[no-untyped-def]
    with store.atomic() as conn:
        return get_subscriber(conn, address).status


def _token(store, config, sent, address: str) -> str:  # type: ignore[no-untyped-def]
    issue_number, subscriber_id, _ = sent[address]
    return make_token(Signer(secret_key(config, store)), issue_number, subscriber_id)


def test_each_clue_attributes_and_a_forged_token_does_not(tmp_path: Path, site) -> None:  # type: ignore[no-untyped-def]
    _, config, store = site
    sent = _send(store, config)
    box = tmp_path / "in"
    box.mkdir()
    # VERP token only: the DSN names an address that is not the reader's.
    (box / "1.eml").write_bytes(sample("exim_hard.eml", token=_token(store, config, sent, "ada@example.org")))
    # Message-ID of the original only (qmail quotes the whole message).
    (box / "2.eml").write_bytes(sample("qmail_hard.eml", message_id=sent["nobody@example.com"][2].strip("<>")))
    # A forged token: the bounce's address (gone@) is the only clue left... and is on file.
    forged = "b" * 26
    (box / "3.eml").write_bytes(sample("gmail_dsn_hard.eml", token=forged).replace(
        b"left.company@gmail.com", b"someone.else@gmail.com"))
    run = api.process_bounces(store, config, [str(box)])
    assert run.counts["hard"] == 2 and run.counts["not_ours"] == 1, run
    assert _status(store, "ada@example.org") == "bounced"          # by the token, not by address
    assert _status(store, "gone@example.net") == "active"          # named in the DSN, but the token said ada
    assert _status(store, "nobody@example.com") == "bounced"       # by Message-ID
    assert _status(store, "left.company@gmail.com") == "active"    # the forged token attributed nothing
    assert (box / "3.eml").exists() and not (box / "1.eml").exists()
    assert (box / "Processed" / "1.eml").exists()


def test_rules_hard_soft_complaint_and_the_cli_table(tmp_path: Path, site) -> None:  # type: ignore[no-untyped-def]
    path, config, store = site
    sent = _send(store, config)
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    maildir.add(sample("gmail_dsn_hard.eml", token=_token(store, config, sent, "left.company@gmail.com")))
    maildir.add(sample("sendmail_hard.eml"))                              # by address
    maildir.add(sample("arf_complaint.eml", token=_token(store, config, sent, "annoyed@example-isp.com")))
    maildir.add(sample("arf_redacted.eml"))                               # by Original-Rcpt-To
    maildir.add(sample("dsn_mailbox_full.eml"))                           # soft, 1 of 3
    maildir.add(sample("out_of_office.eml", token=_token(store, config, sent, "holiday@example.org")))
    maildir.add(sample("human_reply.eml"))
    maildir.add(b"\x00")                                                  # unreadable
    store.dispose()
    result = CliRunner().invoke(main, ["--config", str(path), "bounces", str(tmp_path / "Maildir"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["counts"] == {"hard": 2, "soft": 1, "complaint": 2, "auto_reply": 1, "not_ours": 1,
                             "unreadable": 1, "already_done": 0}
    assert _status(store, "left.company@gmail.com") == "bounced"
    assert _status(store, "retired@example.edu") == "bounced"
    assert _status(store, "annoyed@example-isp.com") == "complained"
    assert _status(store, "reader.two@example-mail.com") == "complained"
    assert _status(store, "full@example.org") == "active"
    assert _status(store, "holiday@example.org") == "active"
    # Acted-on messages moved to .Processed; the rest left where they were.
    assert len(list((tmp_path / "Maildir" / ".Processed" / "cur").iterdir())) == 6
    assert len(list((tmp_path / "Maildir" / "new").iterdir())) == 2
    # A second run does nothing twice.
    again = CliRunner().invoke(main, ["--config", str(path), "bounces", str(tmp_path / "Maildir")])
    assert again.exit_code == 0, again.output
    assert "not ours (left alone)" in again.output and "0 address(es) changed status" in again.output
    # The human table.
    shown = CliRunner().invoke(main, ["--config", str(path), "subscribers", "show", "left.company@gmail.com"])
    assert shown.exit_code == 0, shown.output
    assert "bounced" in shown.output and "5.1.1" in shown.output and "googlemail.com" in shown.output
    stats = CliRunner().invoke(main, ["--config", str(path), "subscribers", "stats", "--json"])
    data = json.loads(stats.output)
    assert data["by_status"]["complained"] == 2 and data["by_status"]["bounced"] == 2
    assert data["bounce_reports_last_30_days"]["complaint"] == 2


def test_soft_bounces_suppress_at_the_limit_within_the_window(tmp_path: Path, site) -> None:  # type: ignore[no-untyped-def]
    _, config, store = site
    sent = _send(store, config)
    signer = Signer(secret_key(config, store))
    number, subscriber_id, _ = sent["full@example.org"]
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)

    def soft(issue: int, day: int) -> None:
        box = tmp_path / f"soft-{issue}-{day}"
        box.mkdir()
        data = sample("dsn_mailbox_full.eml").replace(
            b"To: bounces@papers.example.org", f"To: bounces+{make_token(signer, issue, subscriber_id)}@papers.example.org".encode())
        (box / "m.eml").write_bytes(data + f"\n{issue}-{day}".encode())
        api.process_bounces(store, config, [str(box)], now=start + timedelta(days=day))

    soft(number, 0)
    soft(number, 1)                   # the same issue again: still one
    soft(number + 1, 40)              # 40 days later: the first is out of the window
    soft(number + 2, 45)
    assert _status(store, "full@example.org") == "active"
    soft(number + 3, 50)              # three issues within 30 days
    assert _status(store, "full@example.org") == "bounced"
    with store.atomic() as conn:
        assert "3 soft bounces in 30 days" in get_subscriber(conn, "full@example.org").status_reason


def test_complained_is_suppressed_like_bounced(tmp_path: Path, site) -> None:  # type: ignore[no-untyped-def]
    path, config, store = site
    with store.atomic() as conn:
        set_status(conn, "ada@example.org", "complained", "feedback report")
    csv = tmp_path / "subs.csv"
    csv.write_text("email,name,status\nada@example.org,Ada,active\n", encoding="utf-8")
    report = api.import_subscribers(store, csv)
    assert report.suppressed_kept == 1
    assert _status(store, "ada@example.org") == "complained"
    store.dispose()
    runner = CliRunner()
    refused = runner.invoke(main, ["--config", str(path), "subscribers", "add", "ada@example.org"])
    assert refused.exit_code == 1 and "complained" in refused.output
    wrong = runner.invoke(main, ["--config", str(path), "subscribers", "add", "ada@example.org", "--force", "bounced"])
    assert wrong.exit_code == 1
    assert _status(store, "ada@example.org") == "complained"
    forced = runner.invoke(main, ["--config", str(path), "subscribers", "add", "ada@example.org", "--force", "complained"])
    assert forced.exit_code == 0, forced.output
    assert _status(store, "ada@example.org") == "active"


def test_issues_show_rates_and_warn(tmp_path: Path, site) -> None:  # type: ignore[no-untyped-def]
    path, config, store = site
    sent = _send(store, config)
    box = tmp_path / "box"
    box.mkdir()
    (box / "c.eml").write_bytes(sample("arf_complaint.eml", token=_token(store, config, sent, "annoyed@example-isp.com")))
    api.process_bounces(store, config, [str(box)])
    [row] = api.issues(store)
    assert row["bounces"]["complaint"] == 1
    assert row["rates"]["complaint"] == pytest.approx(1 / len(READERS))
    assert any("complaint rate" in w for w in row["warnings"])
    store.dispose()
    result = CliRunner().invoke(main, ["--config", str(path), "issues"])
    assert result.exit_code == 0, result.output
    assert "complaint rate" in result.output


def test_mbox_and_eml_sources_and_delete(tmp_path: Path, site) -> None:  # type: ignore[no-untyped-def]
    _, config, store = site
    _send(store, config)
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    box.add(sample("sendmail_hard.eml"))
    box.add(sample("human_reply.eml"))
    box.flush()
    box.close()
    run = api.process_bounces(store, config, [str(tmp_path / "bounces.mbox")])
    assert run.counts["hard"] == 1 and run.counts["not_ours"] == 1
    assert len(mailbox.mbox(tmp_path / "bounces.mbox")) == 1
    assert len(mailbox.mbox(tmp_path / "bounces.mbox.Processed")) == 1
    eml = tmp_path / "one.eml"
    eml.write_bytes(sample("qmail_hard.eml", message_id="unknown@x"))
    deleting = config.with_overrides({"bounces.processed": "delete"})
    run = api.process_bounces(store, deleting, [str(eml)])
    assert run.counts["hard"] == 1 and not eml.exists()
    assert _status(store, "nobody@example.com") == "bounced"
    bad = api.process_bounces(store, config, [str(tmp_path / "missing")])
    assert bad.errors and "no such file" in bad.errors[0]


def test_the_scheduler_reads_the_mailbox_only_when_one_is_set(tmp_path: Path, site) -> None:  # type: ignore[no-untyped-def]
    import threading

    from newsletter.scheduler import Scheduler, StoreState, load_plan, pipeline_jobs

    _, config, store = site
    assert load_plan(config).jobs["bounces"].kind == "off"
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    maildir.add(sample("sendmail_hard.eml"))
    with_box = config.with_overrides({"bounces.mailbox": str(tmp_path / "Maildir")})
    plan = load_plan(with_box)
    assert plan.jobs["bounces"].describe() == "every 1 hour"
    scheduler = Scheduler(plan, pipeline_jobs(store, with_box, threading.Event()), StoreState(store))
    outcomes = {o.job: o for o in scheduler.catch_up()}
    assert outcomes["bounces"].ok and "1 hard" in outcomes["bounces"].detail
    assert _status(store, "retired@example.edu") == "bounced"
    # Run again at once: an hourly job is not due yet.
    assert "bounces" not in {o.job for o in scheduler.catch_up()}


def test_an_auto_reply_from_no_one_we_know_is_left_alone(tmp_path: Path, site) -> None:  # type: ignore[no-untyped-def]
    _, config, store = site
    box = tmp_path / "box"
    box.mkdir()
    (box / "ooo.eml").write_bytes(sample("vacation_precedence.eml"))
    run = api.process_bounces(store, config, [str(box)])
    assert run.counts["auto_reply"] == 1
    assert (box / "ooo.eml").exists() and not (box / "Processed").exists()


def test_the_secrets_environment_variables_are_known(monkeypatch) -> None:
    for name in ("NEWSLETTER_BOUNCES_PASSWORD", "NEWSLETTER_HOOK_SECRET", "NEWSLETTER_POSTMARK_HOOK_AUTH"):
        monkeypatch.setenv(name, "x")
    assert load_config(None).warnings == ()


def test_maildir_flag_mode_marks_read_and_starred_and_acts_once(tmp_path: Path, site) -> None:  # type: ignore[no-untyped-def]
    _, config, store = site
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    maildir.add(sample("sendmail_hard.eml"))
    flagging = config.with_overrides({"bounces.processed": "flag"})
    first = api.process_bounces(store, flagging, [str(tmp_path / "Maildir")])
    assert first.counts["hard"] == 1 and first.actions == ["retired@example.edu: bounced"]
    [name] = [p.name for p in (tmp_path / "Maildir" / "cur").iterdir()]
    assert name.endswith(":2,FS")
    second = api.process_bounces(store, flagging, [str(tmp_path / "Maildir")])
    assert second.counts["already_done"] == 1 and not second.actions


def test_bounces_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """The same rules and reports on a PostgreSQL store (pgserver): the queries are portable."""
    path = tmp_path / "newsletter.toml"
    path.write_text(f'[store]\nurl = "{postgres_url}"\n[delivery]\noutbox = "{tmp_path / "outbox"}"\n'
                    f'rate_per_second = 0\n[bounces]\nreturn_path = "{RETURN_PATH}"\n', encoding="utf-8")
    config = load_config(path, env={})
    store = open_store(config.store_url)
    assert not api.ingest(store, config).failed
    with store.atomic() as conn:
        for address in READERS:
            add_subscriber(conn, address)
    sent = _send(store, config)
    box = tmp_path / "box"
    box.mkdir()
    (box / "1.eml").write_bytes(sample("gmail_dsn_hard.eml", token=_token(store, config, sent, "left.company@gmail.com")))
    (box / "2.eml").write_bytes(sample("arf_complaint.eml", token=_token(store, config, sent, "annoyed@example-isp.com")))
    (box / "3.eml").write_bytes(sample("dsn_mailbox_full.eml"))
    run = api.process_bounces(store, config, [str(box)])
    assert (run.counts["hard"], run.counts["complaint"], run.counts["soft"]) == (1, 1, 1)
    assert _status(store, "left.company@gmail.com") == "bounced"
    assert _status(store, "annoyed@example-isp.com") == "complained"
    [row] = api.issues(store)
    assert row["bounces"] == {"hard": 1, "soft": 0, "complaint": 1}
    store.dispose()
    for args in (["subscribers", "show", "left.company@gmail.com"], ["subscribers", "stats"], ["issues"]):
        result = CliRunner().invoke(main, ["--config", str(path), *args])
        assert result.exit_code == 0, (args, result.output)
