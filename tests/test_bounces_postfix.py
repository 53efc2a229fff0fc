"""Real bounces written by Debian's Postfix: it accepts mail for an unknown mailbox and for a
domain whose delivery fails, then writes RFC 3464 DSNs to the envelope sender, which it delivers
into the ``bounces`` maildir. `newsletter bounces` on that maildir must mark exactly the dead
addresses bounced, both for plain mail (attributed by address) and for an issue sent with VERP
(attributed by the token alone)."""

from __future__ import annotations

import json
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from conftest import LIVE_SETTINGS, store_url
from newsletter import api
from newsletter.bounces.classify import classify
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.store import open_store
from newsletter.store.schema import bounce_reports, subscribers
from newsletter.store.subscribers import add_subscriber
from postfix_support import DOMAIN, Postfix, start_postfix

LIVE = ("ann", "bob", "bounces")
DEAD_DOMAIN = "gone.tpweekly.org"
SLOW_DOMAIN = "slow.tpweekly.org"
BOUNCES = f"bounces@{DOMAIN}"


@pytest.fixture(scope="module")
def postfix():  # type: ignore[no-untyped-def]
    instance = start_postfix(LIVE, accept_unknown=True, dead_domains=(DEAD_DOMAIN,), recipient_delimiter="+")
    yield instance
    instance.stop()


def bounces_in(postfix: Postfix) -> list[Path]:
    found = []
    for sub in ("new", "cur"):
        box = postfix.maildir(BOUNCES) / sub
        if box.is_dir():
            found += [p for p in box.iterdir() if p.is_file()]
    return found


def wait_for_bounces(postfix: Postfix, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(bounces_in(postfix)) >= count:
            return
        time.sleep(0.1)
    log = (postfix.folder / "maillog").read_text(errors="replace")[-3000:]
    raise AssertionError(f"Postfix wrote {len(bounces_in(postfix))} of {count} bounces in {timeout_s} s:\n{log}")


def clear_bounces(postfix: Postfix) -> None:
    for path in bounces_in(postfix):
        path.unlink()


def site(tmp_path: Path, postfix: Postfix, readers: list[str]) -> Path:
    path = tmp_path / "newsletter.toml"
    path.write_text(f'{LIVE_SETTINGS}[store]\nurl = "{store_url(tmp_path / "newsletter.db")}"\n'
                    f'[delivery]\nrate_per_second = 0\nconcurrency = 2\n'
                    f'[smtp]\nhost = "127.0.0.1"\nport = {postfix.port}\nsecurity = "none"\ntimeout_s = 10\n'
                    f'[bounces]\nreturn_path = "{BOUNCES}"\nmailbox = "{postfix.maildir(BOUNCES)}"\n', encoding="utf-8")
    config = load_config(path, env={})
    store = open_store(config.store_url)
    assert not api.ingest(store, config).failed
    with store.atomic() as conn:
        for address in readers:
            add_subscriber(conn, address)
    store.dispose()
    return path


def statuses(path: Path) -> dict[str, str]:
    store = open_store(load_config(path, env={}).store_url)
    with store.atomic() as conn:
        found = {r.email: r.status for r in conn.execute(select(subscribers.c.email, subscribers.c.status))}
    store.dispose()
    return found


def test_postfix_dsns_for_mail_it_accepted_mark_exactly_the_dead_addresses(tmp_path: Path, postfix: Postfix) -> None:
    clear_bounces(postfix)
    live = [f"ann@{DOMAIN}", f"bob@{DOMAIN}"]
    dead = [f"nobody@{DOMAIN}", f"reader@{DEAD_DOMAIN}"]
    path = site(tmp_path, postfix, live + dead)
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=10) as smtp:
        for address in live + dead:
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "digest@papers.tpweekly.org", address, "Papers"
            msg["Message-ID"] = f"<plain.{address}>"
            msg.set_content("This week's papers.")
            # Plain envelope sender: the DSN can only be tied to the reader by the address it names.
            refused = smtp.send_message(msg, from_addr=BOUNCES, to_addrs=[address])
            assert not refused  # accepted: the failure comes later, as a DSN
    wait_for_bounces(postfix, 2)
    postfix.wait_for(live)
    reports = [classify(p.read_bytes()) for p in bounces_in(postfix)]
    assert sorted(r.recipients[0].address for r in reports) == sorted(dead)
    assert {r.kind for r in reports} == {"hard"}
    assert all(r.reporting_mta == "mx.tpweekly.test" and r.recipients[0].status.startswith("5.1.") for r in reports)
    result = CliRunner().invoke(main, ["--config", str(path), "bounces", str(postfix.maildir(BOUNCES)), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["counts"]["hard"] == 2
    people = statuses(path)
    assert {a: people[a] for a in dead} == {a: "bounced" for a in dead}
    assert {a: people[a] for a in live} == {a: "active" for a in live}
    assert not bounces_in(postfix)  # moved to .Processed
    assert len(list((postfix.maildir(BOUNCES) / ".Processed" / "cur").iterdir())) == 2


def test_an_issue_sent_with_verp_through_postfix_bounces_only_the_dead_readers(tmp_path: Path, postfix: Postfix) -> None:
    clear_bounces(postfix)
    live = [f"ann@{DOMAIN}", f"bob@{DOMAIN}"]
    dead = [f"left-last-year@{DOMAIN}", f"someone@{DEAD_DOMAIN}"]
    path = site(tmp_path, postfix, live + dead)
    sent = CliRunner().invoke(main, ["--config", str(path), "send"])
    assert sent.exit_code == 0, sent.output
    wait_for_bounces(postfix, 2)
    # Every DSN went to a VERP address: bounces+TOKEN@DOMAIN, delivered into the bounces maildir.
    for file in bounces_in(postfix):
        assert b"Delivered-To: bounces+" in file.read_bytes()
    result = CliRunner().invoke(main, ["--config", str(path), "bounces"])  # [bounces] mailbox
    assert result.exit_code == 0, result.output
    assert "2 address(es) changed status" in result.output
    people = statuses(path)
    assert {a: people[a] for a in dead} == {a: "bounced" for a in dead}
    assert {a: people[a] for a in live} == {a: "active" for a in live}
    store = open_store(load_config(path, env={}).store_url)
    with store.atomic() as conn:
        rows = conn.execute(select(bounce_reports.c.email, bounce_reports.c.attributed_by,
                                   bounce_reports.c.issue_number, bounce_reports.c.reporting_mta)).all()
    store.dispose()
    assert sorted(r.email for r in rows) == sorted(dead)
    assert {r.attributed_by for r in rows} == {"envelope-token"}
    assert {r.issue_number for r in rows} == {1} and {r.reporting_mta for r in rows} == {"mx.tpweekly.test"}
    again = CliRunner().invoke(main, ["--config", str(path), "bounces"])
    assert again.exit_code == 0 and "0 address(es) changed status" in again.output


def test_postfix_delay_notices_are_soft_bounces_that_suppress_only_at_the_limit(tmp_path: Path) -> None:
    slow = start_postfix(("bounces",), accept_unknown=True, slow_domains=(SLOW_DOMAIN,), recipient_delimiter="+")
    try:
        reader = f"reader@{SLOW_DOMAIN}"
        path = site(tmp_path, slow, [reader])
        with smtplib.SMTP("127.0.0.1", slow.port, timeout=10) as smtp:
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "digest@papers.tpweekly.org", reader, "Papers"
            msg.set_content("This week's papers.")
            assert not smtp.send_message(msg, from_addr=BOUNCES, to_addrs=[reader])
        wait_for_bounces(slow, 1, timeout_s=60)
        [report] = [classify(p.read_bytes()) for p in bounces_in(slow)]
        assert report.kind == "soft" and report.recipients[0].action == "delayed"
        assert report.recipients[0].status == "4.2.2" and report.recipients[0].address == reader
        result = CliRunner().invoke(main, ["--config", str(path), "bounces", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["counts"]["soft"] == 1
        assert statuses(path)[reader] == "active"  # one soft bounce of soft_limit 3
    finally:
        slow.stop()
