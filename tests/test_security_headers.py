"""Hostile text from configuration, feeds and readers can never add a header, a second value of
one, or a second address: every message goes through a real aiosmtpd server on 127.0.0.1 and
is parsed back as it arrived."""

from __future__ import annotations

import base64
import dataclasses
import email
import functools
import re
import smtplib
from email import errors, policy
from email.headerregistry import Address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import free_port
from newsletter.config import SETTINGS, Config
from newsletter.errors import RenderError
from newsletter.models import Paper, RenderedIssue, Subscriber
from newsletter.render.headers import new_message, one_address, set_header
from newsletter.render.issue import render_issue
from newsletter.render.messages import MessageFactory
from newsletter.render.placeholders import greeting_name, header_text
from newsletter.tokens import Signer
from test_deliver_support import RecordingHandler, SmtpServer
from test_render import NOW, SECRET, make_issue
from test_send_cli import invoke, setup_store


def _ew(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


ATTACK_NAME = "News =?utf-8?b?DQpCY2M6IG5hbWVAZXZpbC5leGFtcGxl?="   # "\r\nBcc: name@evil.example"

FRAGMENTS = ["\r", "\n", "\r\n", "\x00", "\t", "\u2028", "\x85", " ", "  ", ",", ";", ":", '"', "\\", "<", ">",
             "(", ")", "@", "=?", "?=", "=?utf-8?q?", "?b?", "Bcc: x@evil.example", "é", "山田", "🎉", "\u202e",
             _ew("\r\nBcc: evil@evil.example"), _ew("Evil <evil@evil.example>, other"), "=?utf-8?q?x=0D=0AX-Inj:_1?=",
             "a" * 80, "é" * 40, "x@evil.example"]
HOSTILE = st.one_of(
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=12).map("".join),
    st.tuples(st.sampled_from(FRAGMENTS), st.integers(1, 120)).map(lambda t: t[0] * t[1]),
)


@pytest.fixture(scope="module")
def smtp():  # type: ignore[no-untyped-def]
    server = SmtpServer(RecordingHandler(), free_port()).start()
    yield server
    server.stop()


@functools.cache
def rendered() -> RenderedIssue:
    """One rendered issue, its subject replaced by each example."""
    paper = Paper(id="arxiv:2401.00001", title="A title", url="https://arxiv.org/abs/2401.00001", first_seen_at=NOW)
    return render_issue(make_issue([paper]), config_with())


def config_with(**values: str) -> Config:
    """Defaults plus ``values`` (``newsletter.name`` etc.), no file: the values are taken as given."""
    resolved = {s.name: s.default for s in SETTINGS}
    resolved.update({"newsletter.base_url": "https://papers.example.org"}, **values)
    return Config(resolved, {}, None)


def through_smtp(server: SmtpServer, sender: str, recipient: str, data: bytes) -> email.message.EmailMessage:
    """Send ``data`` to the real server and parse what it received (UTF-8 headers as UTF-8)."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        options = ["SMTPUTF8"] if not data.isascii() else []
        client.sendmail(sender, [recipient], data, mail_options=options)
    received = server.handler.messages[-1][2]
    head, _, body = received.partition(b"\r\n\r\n")
    return email.message_from_string(head.decode("utf-8") + "\r\n\r\n", policy=policy.default)


def _words(value: object) -> str:
    # The email package may fold right after "Subject:" and its parser then keeps the space.
    return " ".join(str(value).split())


def _squash(text: str) -> str:
    # Python's address parser reads a space between adjacent encoded words (RFC 2047 says to
    # ignore it); what a reader sees is compared without whitespace.
    return "".join(text.split())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=HOSTILE, from_name=HOSTILE, reply_name=HOSTILE, reader=HOSTILE, title=HOSTILE,
       address=st.sampled_from(["ada@example.org", "dörte@münchen.example"]))
def test_every_header_we_write_parses_back_as_set(smtp, name, from_name, reply_name, reader, title,
                                                  address):
    """Subject, From, To, Reply-To, List-Id, List-Unsubscribe(-Post), Date, Message-ID: each
    exactly once, each with the value we set, From/To/Reply-To with exactly one address."""
    config = config_with(**{"newsletter.name": name,
                            "newsletter.from": f"{_quoted(from_name)} <digest@example.org>",
                            "newsletter.reply_to": f"{_quoted(reply_name)} <editor@example.org>"})
    issue = dataclasses.replace(rendered(), subject=title)
    if re.search(r"[\r\n]", from_name + reply_name):
        with pytest.raises(RenderError, match="line breaks"):  # refused where it is configured
            MessageFactory(issue, config, Signer(SECRET), now=NOW)
        return
    factory = MessageFactory(issue, config, Signer(SECRET), now=NOW)
    subscriber = Subscriber(email=address, name=reader)
    for data in (factory.build(subscriber).data, factory.build_email_message(subscriber).as_bytes()):
        msg = through_smtp(smtp, factory.sender, address, data)
        assert sorted(msg.keys()) == sorted(
            ["From", "To", "Subject", "Date", "Message-ID", "Reply-To", "List-Id", "List-Unsubscribe",
             "List-Unsubscribe-Post", "MIME-Version", "Content-Type"]), msg.keys()
        assert [a.addr_spec for a in msg["To"].addresses] == [address]
        assert _squash(msg["To"].addresses[0].display_name) == _squash(greeting_name(reader, fallback=""))
        assert [a.addr_spec for a in msg["From"].addresses] == ["digest@example.org"]
        assert [a.addr_spec for a in msg["Reply-To"].addresses] == ["editor@example.org"]
        assert _words(msg["Subject"]) == header_text(title)
        assert _words(msg["List-Id"]).startswith(header_text(name))
        assert str(msg["List-Unsubscribe"]) == f"<{factory.unsubscribe_url(address)}>"
        assert all(len(line) <= 998 for line in data.split(b"\r\n"))


def _quoted(text: str) -> str:
    """A display name as an operator would quote it in ``from = "..."``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reader=st.one_of(HOSTILE, st.text(min_size=40, max_size=120),
                        st.lists(st.sampled_from(["?=", "=?", '"', ",", "Jörg", "O'Brien", "a" * 30, " "]),
                                 min_size=5, max_size=40).map("".join)),
       address=st.sampled_from(["ada@example.org", "dörte@münchen.example"]))
def test_to_always_parses_back_to_exactly_one_address(smtp, reader, address):
    """A long display name holding ``?=`` (or non-ASCII under SMTPUTF8) used to be folded by
    the email package with its quotes dropped, so To parsed back as two addresses."""
    factory = MessageFactory(rendered(), config_with(), Signer(SECRET), now=NOW)
    subscriber = Subscriber(email=address, name=reader)
    for data in (factory.build(subscriber).data, factory.build_email_message(subscriber).as_bytes()):
        msg = through_smtp(smtp, factory.sender, address, data)
        assert len(msg.get_all("To")) == 1
        assert [a.addr_spec for a in msg["To"].addresses] == [address], data.split(b"\r\nSubject")[0]
        assert not [d for d in msg["To"].defects if not isinstance(d, errors.NonASCIILocalPartDefect)]


def test_a_newsletter_name_with_an_encoded_word_adds_no_bcc_to_a_sent_issue(tmp_path: Path, smtp) -> None:
    """``newsletter send`` over SMTP with the attack in ``newsletter.name``: List-Id keeps it
    as text, and no message arrives with a Bcc line or a second List-Id."""
    before = len(smtp.handler.messages)
    config = setup_store(tmp_path, smtp.port, extra=f'[newsletter]\nname = "{ATTACK_NAME}"\n')
    result = invoke(config, "send")
    assert result.exit_code == 0, result.output
    arrived = smtp.handler.messages[before:]
    assert len(arrived) == 30
    for _, _, data in arrived:
        head = data.split(b"\r\n\r\n", 1)[0]
        assert not re.search(rb"(?im)^bcc:", head), head
        msg = email.message_from_bytes(data, policy=policy.default)
        assert len(msg.get_all("List-Id")) == 1 and "= ?utf-8?b?" in _words(msg["List-Id"])


@pytest.mark.parametrize("base_url,one_click", [
    ("https://papers.example.org", True),
    ("http://papers.example.org", False),
    ("http://127.0.0.1:8000", False),
    ("", False),                                # mailto: unsubscribe
])
def test_list_unsubscribe_post_only_beside_an_https_url(smtp, base_url, one_click):
    """RFC 8058: one-click unsubscribe is a POST to an https URL; beside a mailto: or http URL
    the List-Unsubscribe-Post header would promise what the URL cannot do."""
    factory = MessageFactory(rendered(), config_with(**{"newsletter.base_url": base_url}), Signer(SECRET), now=NOW)
    for address in ("ada@example.org", "dörte@münchen.example"):
        subscriber = Subscriber(email=address, name="Ada")
        for data in (factory.build(subscriber).data, factory.build_email_message(subscriber).as_bytes()):
            msg = through_smtp(smtp, factory.sender, address, data)
            assert msg["List-Unsubscribe"] == f"<{factory.unsubscribe_url(address)}>"
            assert (msg.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]) is one_click
            if not one_click:
                assert msg["List-Unsubscribe-Post"] is None


def test_a_message_built_with_set_header_like_the_confirmation_adds_no_bcc(smtp) -> None:
    """What the web app's confirmation message must do: ``new_message`` and ``set_header`` for
    every header; the newsletter's name in its Subject then cannot add a Bcc line."""
    config = config_with(**{"newsletter.name": ATTACK_NAME,
                            "newsletter.from": f"{ATTACK_NAME} <digest@example.org>"})
    msg = new_message()
    set_header(msg, "From", one_address(config["newsletter.from"], "newsletter.from"))
    set_header(msg, "To", Address(display_name=ATTACK_NAME, addr_spec="eve@example.org"))
    set_header(msg, "Subject", f"Confirm your subscription to {config['newsletter.name']}")
    set_header(msg, "Auto-Submitted", "auto-generated")
    msg.set_content("Confirm: https://papers.example.org/confirm/TOKEN\n")
    received = through_smtp(smtp, "digest@example.org", "eve@example.org", msg.as_bytes())
    assert sorted(received.keys()) == ["Auto-Submitted", "Content-Transfer-Encoding", "Content-Type", "From",
                                       "MIME-Version", "Subject", "To"]
    assert _words(received["Subject"]) == f"Confirm your subscription to {header_text(ATTACK_NAME)}"
    assert [a.addr_spec for a in received["From"].addresses] == ["digest@example.org"]
    assert [a.addr_spec for a in received["To"].addresses] == ["eve@example.org"]


def test_set_header_refuses_a_message_with_another_policy() -> None:
    with pytest.raises(TypeError, match="new_message"):
        set_header(email.message.EmailMessage(), "Subject", "x")
    with pytest.raises(TypeError, match="Address"):
        set_header(new_message(), "To", "eve@example.org, other@example.org")
