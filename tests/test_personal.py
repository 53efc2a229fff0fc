"""A reader's own issue: assembled from cards rendered once, identical to rendering their papers
from scratch; sent as 8bit with BODY=8BITMIME (base64 again for a server without it); premailer
once per send however many readers; picks kept in the ledger so a resumed send is the same."""

from __future__ import annotations

import email
import json
from email import policy
from pathlib import Path

import html5lib
import pytest
from aiosmtpd.smtp import SMTP as SMTPServerProtocol
from click.testing import CliRunner

from conftest import free_port, store_url
from newsletter import api
from newsletter.cli import main
from newsletter.deliver.transports import seven_bit
from newsletter.models import Pick, Subscriber
from newsletter.render import placeholders
from newsletter.render.issue import render_issue
from newsletter.render.messages import MessageFactory
from newsletter.render.personal import CardSet, render_personal
from newsletter.render.personal_messages import MAX_VALUE, PersonalMessages
from newsletter.render.templates import make_environment
from newsletter.store.deliveries import picked_paper_ids
from newsletter.tokens import Signer
from test_deliver_support import RecordingHandler, SmtpServer
from test_render import NOW, SECRET, hf_papers, make_config, make_issue

READERS = [
    Subscriber(email="ada@example.org", name="Ada Lovelace", id=1),
    Subscriber(email="bob@example.org", name="Bob <b>&amp; \"co\"", id=2),
    Subscriber(email="chloe@example.org", name="Chloé Ünal 李", id=3),
    Subscriber(email="d.o'hara+news@example.org", name="", id=4),
]


@pytest.fixture
def setup(fixtures_dir, tmp_path):
    papers = hf_papers(fixtures_dir)
    config = make_config(tmp_path)
    issue = make_issue(papers[:10])
    env = make_environment()
    cards = CardSet(issue, papers, config, env=env)
    factory = MessageFactory(render_issue(issue, config), config, Signer(SECRET), now=NOW)
    return papers, config, issue, env, cards, factory, PersonalMessages(factory, cards)


def _parts(data: bytes) -> dict[str, str]:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert not msg.defects and not any(p.defects for p in msg.walk())
    return {p.get_content_type(): p.get_content().replace("\r\n", "\n") for p in msg.walk()
            if p.get_content_maintype() == "text"}


def _tree(html: str) -> str:
    """The HTML as a parser sees it, serialised: what "the same HTML after parsing" compares."""
    return html5lib.serialize(html5lib.parse(html), quote_attr_values="always", omit_optional_tags=False)


@pytest.mark.parametrize("reader", READERS, ids=lambda r: str(r.id))
def test_assembled_copy_is_the_copy_rendered_from_scratch(setup, reader):
    papers, config, issue, env, cards, factory, own = setup
    picks = [Pick(papers[i].id, reason) for i, reason in
             ((17, "matches: speech <recognition> & more"), (3, "followed author: T. Dao"), (25, "top of the week"),
              (8, 'like: "Whisper" (you rated it)'), (0, "in cs.CL"))]
    token = factory.rate_token(reader)
    reference = render_personal(issue, picks, {p.id: p for p in papers}, config, env=env, rate_token=token,
                                found=len(papers))
    values = factory.personal(reader)
    got = _parts(own.build(reader, picks, message_id="<a@example.org>").data)
    assert got["text/plain"] == placeholders.fill(reference.text, values.for_text())
    assert _tree(got["text/html"]) == _tree(placeholders.fill(reference.html, values.for_html()))
    assert got["text/html"] == placeholders.fill(reference.html, values.for_html())  # byte for byte, in fact
    message = email.message_from_bytes(own.build(reader, picks).data, policy=policy.default)
    assert str(message["Subject"]) == reference.subject
    # The reference path (EmailMessage) says the same.
    slow = factory.build_email_message(reader, "<a@example.org>", picks)
    assert {p.get_content_type(): p.get_content().replace("\r\n", "\n") for p in slow.walk()
            if p.get_content_maintype() == "text"} == got


def test_cards_hold_rank_reason_and_signed_rating_links(setup):
    papers, config, issue, env, cards, factory, own = setup
    reader = READERS[0]
    picks = [Pick(papers[5].id, "matches: speech"), Pick(papers[2].id, "top of the week")]
    parts = _parts(own.build(reader, picks).data)
    signer = Signer(SECRET)
    for pick in picks:
        token = signer.rating_token(reader.id, pick.paper_id)
        assert f"https://papers.example.org/rate/{token}/up" in parts["text/html"]
        assert f"https://papers.example.org/rate/{token}/down" in parts["text/plain"]
        assert signer.verify_rating(token) == (reader.id, pick.paper_id)
    text = parts["text/plain"]
    assert text.index(f"1. {' '.join(papers[5].title.split())[:20]}") < text.index("2. ")
    assert "Why:        matches: speech" in text and "here are the 2 papers we picked for you" in text
    assert parts["text/html"].count("More like this") == 2


def test_bodies_are_8bit_with_short_lines_and_base64_for_a_long_value(setup):
    papers, config, issue, env, cards, factory, own = setup
    picks = [Pick(papers[i].id, "top of the week") for i in range(10)]
    data = own.build(READERS[2], picks).data
    assert b"Content-Transfer-Encoding: 8bit" in data and not data.isascii()
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    ascii_data = own.build(READERS[0], [Pick(papers[1].id, "top")]).data
    assert ascii_data.isascii() is (b"Content-Transfer-Encoding: 7bit" in ascii_data)
    # A reason longer than any line may hold: that copy goes base64, with the same content.
    long = [Pick(papers[1].id, "matches: " + "x" * (MAX_VALUE + 50))]
    fallback = own.build(READERS[0], long).data
    assert fallback.count(b"Content-Transfer-Encoding: base64") == 2
    assert max(len(line) for line in fallback.split(b"\r\n")) <= 998
    assert "x" * (MAX_VALUE + 50) in _parts(fallback)["text/plain"]


def test_seven_bit_re_encodes_8bit_parts_and_keeps_the_content(setup):
    papers, config, issue, env, cards, factory, own = setup
    data = own.build(READERS[2], [Pick(papers[i].id, "top of the week") for i in range(4)]).data
    converted = seven_bit(data)
    assert converted.isascii() and converted.count(b"Content-Transfer-Encoding: base64") == 2
    assert _parts(converted) == _parts(data)
    assert seven_bit(converted) == converted


def test_a_paper_title_cannot_cut_a_card_or_fill_a_token(setup, tmp_path):
    papers, config, issue, env, cards, factory, own = setup
    evil = papers[4].__class__(**{**papers[4].__dict__, "id": "arxiv:2401.99999",
                                  "title": "Evil <!--xnl-card--> XNLRATEX XNLREASONX <!--/xnl-card--> title"})
    fresh = CardSet(issue, [*papers[:3], evil], config, env=env)
    messages = PersonalMessages(factory, fresh)
    parts = _parts(messages.build(READERS[0], [Pick(evil.id, "top"), Pick(papers[0].id, "top")]).data)
    assert "XNLRATEX" not in parts["text/plain"].replace("X\u200bNL", "")  # defused, never filled
    assert parts["text/plain"].count("More like this") == 2


# --- sending -----------------------------------------------------------------------------


class NoEightBitHandler(RecordingHandler):
    """A real SMTP server that does not offer 8BITMIME (its EHLO answer leaves it out)."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname
        return [r for r in responses if "8BITMIME" not in r.upper()]


def _store_with_readers(tmp_path: Path, port: int) -> tuple[api.Config, api.Store]:
    config_path = tmp_path / "newsletter.toml"
    config_path.write_text(
        '[newsletter]\nfrom = "Papers <digest@example.org>"\nbase_url = "http://127.0.0.1:8000"\n'
        f'[store]\nurl = "{store_url(tmp_path / "newsletter.db")}"\n'
        f'[delivery]\nrate_per_second = 0\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n',
        encoding="utf-8")
    config = api.load_config(config_path, env={})
    store = api.open_store(config.store_url)
    runner = CliRunner()
    assert runner.invoke(main, ["--config", str(config_path), "ingest"]).exit_code == 0
    for i in range(6):
        assert runner.invoke(main, ["--config", str(config_path), "subscribers", "add",
                                    f"reader{i}@example.org", "--name", f"Reader {i}"]).exit_code == 0
    api.set_profile(store, "reader0@example.org", interests="language models; reasoning", size=3)
    api.set_profile(store, "reader1@example.org", interests="image generation; diffusion", size=4)
    first = api.papers(store)[0]
    api.rate(store, "reader2@example.org", first.id, 1)
    return config, store


def _send(store, config, monkeypatch):  # type: ignore[no-untyped-def]
    from newsletter.render import inline

    instance = inline.premailer_instance()
    calls: list[int] = []
    original = instance.transform
    monkeypatch.setattr(instance, "transform", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    report = api.send(store, config, allow_placeholders=True)
    return report, len(calls)


@pytest.mark.parametrize("handler_class", [RecordingHandler, NoEightBitHandler], ids=["8bitmime", "no-8bitmime"])
def test_send_gives_readers_their_own_issue_and_the_others_the_shared_one(tmp_path, monkeypatch, handler_class):
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    server = SmtpServer(handler_class(), free_port()).start()
    try:
        config, store = _store_with_readers(tmp_path, server.port)
        dry = api.send(store, config, dry_run=True, allow_placeholders=True)
        assert (dry.distinct_issues, dry.personal) == (4, 3)
        report, premailer_runs = _send(store, config, monkeypatch)
        assert report.sent == 6 and report.failed == 0
        assert premailer_runs == 2  # the shared issue once, every candidate's card once: never per reader
        received = {rcpt[0]: data for _, rcpt, data in server.handler.messages}
    finally:
        server.stop()
    own = {k: v for k, v in received.items() if "picked for you" in _parts(v)["text/plain"]}
    assert sorted(own) == ["reader0@example.org", "reader1@example.org", "reader2@example.org"]
    for address, data in received.items():
        text = _parts(data)["text/plain"]
        if address in own:
            assert "Why:" in text and "picked for you" in text
        else:
            assert "Why:" not in text and data.count(b"Content-Transfer-Encoding: base64") == 2
    assert _parts(received["reader0@example.org"])["text/plain"].count("More like this:") == 3
    if handler_class is NoEightBitHandler:
        assert all(data.isascii() for data in received.values())
    else:
        assert all(b"Content-Transfer-Encoding: base64" not in received[a] for a in own)
    with store.atomic() as conn:
        assert picked_paper_ids(conn, 1)  # the ledger keeps which papers each reader got


def test_picks_are_made_once_and_a_resend_changes_no_ones_issue(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    server = SmtpServer(RecordingHandler(), free_port()).start()
    try:
        config, store = _store_with_readers(tmp_path, server.port)
        api.send(store, config, allow_placeholders=True)
        first = {rcpt[0]: _parts(data)["text/plain"] for _, rcpt, data in server.handler.messages}
        # The reader changes their interests after the send: this week's issue stays as sent.
        api.set_profile(store, "reader0@example.org", interests="robotics; control")
        plan = api.reader_issue(store, config, "reader0@example.org")
        assert plan is not None and plan[2]
        with store.atomic() as conn:
            before = picked_paper_ids(conn, 1)
        again = api.send(store, config, allow_placeholders=True)
        assert again.sent == 0 and again.already_sent == 6
        with store.atomic() as conn:
            assert picked_paper_ids(conn, 1) == before
    finally:
        server.stop()
    assert "Why:" in first["reader0@example.org"]


def test_papers_for_a_reader_and_preview_of_their_issue(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    config, store = _store_with_readers(tmp_path, free_port())
    config_path = str(tmp_path / "newsletter.toml")
    runner = CliRunner()
    shown = runner.invoke(main, ["--config", config_path, "papers", "--for", "reader0@example.org", "--json"])
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.output)
    assert body["own"] is True and len(body["papers"]) == 3 and all(p["why"] for p in body["papers"])
    shared = json.loads(runner.invoke(main, ["--config", config_path, "papers", "--for", "reader5@example.org",
                                             "--json"]).output)
    assert shared["own"] is False and all(p["why"] == "" for p in shared["papers"])
    missing = runner.invoke(main, ["--config", config_path, "papers", "--for", "nobody@example.org"])
    assert missing.exit_code == 1 and "no such subscriber" in missing.output
    out = tmp_path / "preview"
    result = runner.invoke(main, ["--config", config_path, "preview", "--subscriber", "reader0@example.org",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = next(out.glob("*.html")).read_text("utf-8")
    assert html.count("More like this") == 3 and "picked for you" in html
    text = next(out.glob("*.txt")).read_text("utf-8")
    assert text.index(body["papers"][0]["id"].split(":")[1]) < text.index(body["papers"][1]["id"].split(":")[1])
