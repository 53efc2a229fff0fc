"""Messages: headers through the email package's API, the checklist's message rules, hostile
values that must not reach a header, and the fast splice path against the plain build."""

from __future__ import annotations

import email
import json
import re
import subprocess
from datetime import timezone
from email import policy

import pytest

from conftest import require_tool
from newsletter.errors import RenderError
from newsletter.models import Paper, Subscriber
from newsletter.render.issue import render_issue
from newsletter.render.messages import MessageFactory
from newsletter.tokens import Signer
from test_render import NOW, READER, SECRET, hf_papers, make_config, make_issue

ONCE = ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "List-Id", "List-Unsubscribe",
        "List-Unsubscribe-Post")


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path, reply_to="editor@example.org")


@pytest.fixture
def factory(fixtures_dir, config):
    rendered = render_issue(make_issue(hf_papers(fixtures_dir)[:8]), config)
    return MessageFactory(rendered, config, Signer(SECRET), now=NOW)


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)


def test_structure_text_first_html_last_no_defects(factory):
    msg = parse(factory.build(READER).data)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert not msg.defects and not any(p.defects for p in parts)
    assert not any(p.get_content_disposition() == "attachment" for p in msg.walk())


def test_lines_are_crlf_and_under_998_octets(factory):
    data = factory.build(READER).data
    lines = data.split(b"\r\n")
    assert b"\n" not in b"".join(lines) and b"\r" not in b"".join(lines)
    assert max(len(line) for line in lines) <= 998


def test_each_header_exactly_once_with_the_right_values(factory):
    out = factory.build(READER)
    msg = parse(out.data)
    for name in ONCE + ("Reply-To",):
        assert len(msg.get_all(name)) == 1, name
    assert msg["From"] == "Trending Papers <digest@example.org>"
    assert msg["To"] == "Ada Lovelace <ada@example.org>"
    assert msg["Reply-To"] == "editor@example.org"
    assert msg["MIME-Version"] == "1.0"
    assert msg["Date"].datetime == NOW and msg["Date"].datetime.tzinfo == timezone.utc
    assert re.fullmatch(r"<[^<>@\s]+@example\.org>", msg["Message-ID"]) and out.message_id == msg["Message-ID"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Id"] == "Trending Papers Weekly <trending-papers-weekly.example.org>"
    assert (out.sender, out.recipient) == ("digest@example.org", "ada@example.org")


def test_message_ids_are_unique(factory):
    assert len({factory.build(READER).message_id for _ in range(50)}) == 50


def test_list_id_is_constant_across_issues(fixtures_dir, config):
    papers = hf_papers(fixtures_dir)
    ids = set()
    for number, chunk in ((1, papers[:3]), (2, papers[3:6])):
        factory = MessageFactory(render_issue(make_issue(chunk, number=number), config), config, Signer(SECRET))
        ids.add(parse(factory.build(READER).data)["List-Id"])
    assert len(ids) == 1


def test_unsubscribe_token_verifies_and_a_forged_one_does_not(factory):
    msg = parse(factory.build(READER).data)
    url = re.fullmatch(r"<(https://papers\.example\.org/unsubscribe/([^>]+))>", msg["List-Unsubscribe"])
    assert url, msg["List-Unsubscribe"]
    token = url.group(2)
    assert Signer(SECRET).verify_unsubscribe(token) == "ada@example.org"
    assert Signer("another-key").verify_unsubscribe(token) is None
    forged = Signer("attacker").unsubscribe_token("ada@example.org")
    assert Signer(SECRET).verify_unsubscribe(forged) is None
    # Alter the signature's first character: the last one may carry only padding bits.
    body, _, signature = token.rpartition(".")
    tampered = f"{body}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"
    assert Signer(SECRET).verify_unsubscribe(tampered) is None
    # The same link is in both bodies.
    assert url.group(1) in msg.get_body("plain").get_content()
    assert url.group(1) in msg.get_body("html").get_content()


def test_preferences_link_in_both_bodies_verifies_with_its_own_salt_only(factory):
    msg = parse(factory.build(READER).data)
    html, text = msg.get_body("html").get_content(), msg.get_body("plain").get_content()
    urls = set(re.findall(r"https://papers\.example\.org/preferences/[A-Za-z0-9._-]+", html + text))
    assert urls == {factory.preferences_url(READER.email)}
    assert html.count("/preferences/") == 1 and text.count("/preferences/") == 1
    token = urls.pop().rsplit("/", 1)[1]
    assert Signer(SECRET).verify_preferences(token) == "ada@example.org"
    assert Signer(SECRET).verify_unsubscribe(token) is None and Signer(SECRET).verify_confirm(token) is None
    assert Signer("another-key").verify_preferences(token) is None
    unsubscribe = Signer(SECRET).unsubscribe_token("ada@example.org")
    assert Signer(SECRET).verify_preferences(unsubscribe) is None
    # Non-expiring, like the unsubscribe token: the same link whenever it is made.
    assert Signer(SECRET).preferences_token("ADA@example.org") == token


def test_mailto_unsubscribe_without_a_base_url(fixtures_dir, tmp_path):
    config = make_config(tmp_path, base_url="")
    factory = MessageFactory(render_issue(make_issue(hf_papers(fixtures_dir)[:2]), config), config, Signer(SECRET))
    msg = parse(factory.build(READER).data)
    m = re.fullmatch(r"<mailto:digest@example\.org\?subject=unsubscribe%20([^>]+)>", msg["List-Unsubscribe"])
    assert m and Signer(SECRET).verify_unsubscribe(m.group(1)) == "ada@example.org"
    assert 'href="mailto:digest@example.org?subject=unsubscribe%20' in msg.get_body("html").get_content()
    # No web app, no preferences page: the footer shows no link to one.
    for part in (msg.get_body("html").get_content(), msg.get_body("plain").get_content()):
        assert "/preferences/" not in part and "subscription page" not in part.lower()


def test_a_rendering_frozen_with_a_base_url_sent_without_one(fixtures_dir, tmp_path):
    """The link's presence is decided when the issue is rendered; if base_url is gone by the
    time it is sent, the token still never becomes an empty or dead web link."""
    rendered = render_issue(make_issue(hf_papers(fixtures_dir)[:2]), make_config(tmp_path))
    config = make_config(tmp_path, base_url="")
    factory = MessageFactory(rendered, config, Signer(SECRET), now=NOW)
    fast = factory.build(READER, message_id="<fixed.2@example.org>").data
    slow = factory.build_email_message(READER, message_id="<fixed.2@example.org>")
    assert _comparable(fast) == _comparable(slow.as_bytes(policy=slow.policy))
    html = parse(fast).get_body("html").get_content()
    assert re.search(r'<a [^>]*href="mailto:digest@example\.org\?subject=preferences"[^>]*>Your subscription page</a>', html)
    assert "/preferences/" not in html and "XNL" not in html


HOSTILE_NAMES = [
    "Eve\r\nBcc: victim@example.net",
    "Eve\nX-Injected: yes",
    "Eve\rSubject: spoofed",
    "Mallory\u2028Bcc: a@b.c",
    "\r\n\r\n<html>body</html>",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_name_cannot_add_a_header(factory, name):
    sub = Subscriber(email="eve@example.org", name=name)
    for data in (factory.build(sub).data, factory.build_email_message(sub).as_bytes()):
        msg = parse(data)
        assert msg.get_all("Bcc") is None and msg.get_all("X-Injected") is None
        assert len(msg.get_all("Subject")) == 1 and len(msg.get_all("To")) == 1
        assert msg["To"].addresses[0].addr_spec == "eve@example.org"
        assert not msg.defects


def test_a_hostile_title_cannot_add_a_header(config):
    paper = Paper(id="arxiv:2401.00002", title="Nice title\r\nBcc: victim@example.net\r\nX-Evil: 1",
                  url="https://arxiv.org/abs/2401.00002", first_seen_at=NOW)
    factory = MessageFactory(render_issue(make_issue([paper]), config), config, Signer(SECRET))
    msg = parse(factory.build(READER).data)
    assert msg.get_all("Bcc") is None and msg.get_all("X-Evil") is None
    assert msg["Subject"].endswith("Nice title Bcc: victim@example.net X-Evil: 1")


@pytest.mark.parametrize("address", ["eve@example.org\r\nBcc: x@example.net", "a b@example.org",
                                      "<eve@example.org>", "eve@example.org,bob@example.org", ""])
def test_addresses_with_line_breaks_or_specials_are_refused(factory, address):
    sub = Subscriber(email=address, name="Eve")
    with pytest.raises(RenderError):
        factory.build(sub)
    with pytest.raises(RenderError):
        factory.build_email_message(sub)


def test_crlf_in_the_configured_from_is_refused(fixtures_dir, tmp_path):
    config = make_config(tmp_path, **{"from": "Digest <digest@example.org>\r\nBcc: x@example.net"})
    rendered = render_issue(make_issue(hf_papers(fixtures_dir)[:1]), make_config(tmp_path))
    with pytest.raises(RenderError, match="newsletter.from"):
        MessageFactory(rendered, config, Signer(SECRET))


def test_the_email_package_itself_refuses_crlf_in_header_values():
    msg = email.message.EmailMessage(policy=policy.SMTP)
    with pytest.raises(ValueError):
        msg["Subject"] = "hello\r\nBcc: x@example.net"


def test_each_message_is_dated_when_it_is_built(fixtures_dir, config):
    """A send held back by a rate limit takes hours: a Date from its start would arrive hours
    old (a spam sign). Without a fixed ``now`` every message carries the time it was built."""
    import time_machine
    from datetime import datetime, timedelta
    from email.utils import parsedate_to_datetime

    rendered = render_issue(make_issue(hf_papers(fixtures_dir)[:1]), config)
    start = datetime(2026, 11, 30, 8, 0, 0, tzinfo=timezone.utc)
    with time_machine.travel(start, tick=False) as traveller:
        factory = MessageFactory(rendered, config, Signer(SECRET))
        first = parse(factory.build(READER).data)
        traveller.shift(timedelta(hours=3, seconds=7))
        later = parse(factory.build(READER).data)
        reference = factory.build_email_message(READER)
    assert parsedate_to_datetime(first["Date"]) == start
    assert parsedate_to_datetime(later["Date"]) == start + timedelta(hours=3, seconds=7)
    assert reference["Date"] == later["Date"] and len(later.get_all("Date")) == 1
    fixed = MessageFactory(rendered, config, Signer(SECRET), now=NOW)
    assert parse(fixed.build(READER).data)["Date"] == parse(fixed.build(READER).data)["Date"]
    assert parsedate_to_datetime(parse(fixed.build(READER).data)["Date"]) == NOW


def test_non_ascii_sender_name_is_encoded(fixtures_dir, tmp_path):
    config = make_config(tmp_path, **{"from": "Revue des Prépublications <digest@example.org>"})
    factory = MessageFactory(render_issue(make_issue(hf_papers(fixtures_dir)[:1]), config), config, Signer(SECRET))
    data = factory.build(READER).data
    assert data.isascii() and b"=?utf-8?" in data.split(b"\r\n\r\n")[0]
    assert parse(data)["From"].addresses[0].display_name == "Revue des Prépublications"



INTERNATIONALISED = [
    ("dörte@münchen.de", "Dörte Müller"),
    ("δοκιμή@παράδειγμα.δοκιμή", "Greek Address"),
    ("用户@例子.广告", ""),
    ("user@bücher.example", "Ada Lovelace"),
    ("jörg.o'brien+news@straße.example.org", "Jörg O'Brien, Jr."),
]


@pytest.mark.parametrize("address,name", INTERNATIONALISED)
def test_internationalised_address_gets_a_usable_list_unsubscribe(factory, address, name):
    """An internationalised address takes the reference path (SMTPUTF8): List-Unsubscribe is
    still ``<URL>`` on one line, never RFC 2047 encoded words a mail client cannot use, and To
    stays readable UTF-8."""
    url = factory.unsubscribe_url(address)
    out = factory.build(Subscriber(email=address, name=name))
    head = out.data.split(b"\r\n\r\n", 1)[0]
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode("utf-8") in head
    assert b"List-Unsubscribe: =?" not in head and b"=?utf-8?q?=3C" not in head
    msg = parse(out.data)
    for header in ONCE:
        assert len(msg.get_all(header)) == 1, header
    assert msg["List-Unsubscribe"] == f"<{url}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # message_from_bytes keeps non-ASCII header bytes as surrogates; read To as the UTF-8 it is.
    to = email.message_from_string(head.decode("utf-8") + "\r\n\r\n", policy=policy.default)["To"]
    assert [a.addr_spec for a in to.addresses] == [address] and to.addresses[0].display_name == name
    unfolded = head.replace(b"\r\n ", b" ")
    assert address.encode("utf-8") in unfolded.split(b"\r\nTo: ", 1)[1].split(b"\r\n", 1)[0]
    assert (out.sender, out.recipient) == ("digest@example.org", address)
    assert not msg.defects and not any(part.defects for part in msg.walk())
    assert all(len(line) <= 998 for line in out.data.split(b"\r\n"))


def test_reference_path_writes_list_unsubscribe_unfolded_for_ascii_too(factory):
    """``build_email_message`` on its own (the email package's policy would fold the URL into
    encoded words) writes the same List-Unsubscribe line as the fast path."""
    url = factory.unsubscribe_url(READER.email)
    line = f"\r\nList-Unsubscribe: <{url}>\r\n".encode("ascii")
    assert line in factory.build(READER).data.split(b"\r\n\r\n", 1)[0]
    assert line in factory.build_email_message(READER).as_bytes().split(b"\r\n\r\n", 1)[0]


# --- the fast path builds the same message as the email package -------------------------

AWKWARD = [
    ("ada@example.org", "Ada Lovelace"),
    ("plain@example.org", ""),
    ("o.brien+news@example.co.uk", "Seán O'Brien, Jr."),
    ("quote@example.org", 'The "Real" Dr. Who'),
    ("back@example.org", "Back\\slash (comment) <angle>"),
    ("semi@example.org", "Semi;colon: Person @ Home"),
    ("cjk@example.org", "山田 太郎"),
    ("rtl@example.org", "\u202eevil\u202c نوید"),
    ("emoji@example.org", "Emma 🎉 Watson"),
    ("encoded@example.org", "=?utf-8?q?not_decoded?="),
    ("long@example.org", "Alexandria Ocasio-Cortez Wolfeschlegelsteinhausenbergerdorff The Third " * 3),
    ("tabs@example.org", "Tab\tand   spaces\u00a0nbsp"),
    ("amp@example.org", "Tom & Jerry <script>alert(1)</script>"),
    ("token@example.org", "XNLUNSUBSCRIBEURLX XNLEMAILX"),
    ("Mixed.Case@Example.ORG", "Mixed Case"),
    ("dots.and-dashes_under@sub.domain.example", "Ünïcödé Ñame"),
    ("x@example.org", "X"),
    ("crlf@example.org", "Line\r\nBreak"),
    ("user@xn--bcher-kva.example", "Punycode Domain"),
    ("δοκιμή@παράδειγμα.δοκιμή", "Greek Address"),
]


def _comparable(data: bytes) -> tuple:
    """What a reader's client sees: header values, parts and decoded bodies.

    The To display name is compared without whitespace: when the email package folds a long
    non-ASCII name it splits one encoded word into two, and its own parser then reads a space
    between them (RFC 2047 says to ignore it); the fast path writes one encoded word and keeps
    the name intact. The address itself is compared exactly.
    """
    msg = parse(data)
    headers = [(k, "".join(str(v).split()) if k == "To" else str(v)) for k, v in msg.items() if k != "Content-Type"]
    headers.append(("To-address", msg["To"].addresses[0].addr_spec))
    parts = [(p.get_content_type(), p.get_content_charset(), p["Content-Transfer-Encoding"], p.get_content())
             for p in msg.iter_parts()]
    defects = [d for p in msg.walk() for d in p.defects]
    return headers, msg.get_content_type(), parts, defects


@pytest.mark.parametrize("address,name", AWKWARD)
def test_fast_path_parses_to_the_same_message(factory, address, name):
    sub = Subscriber(email=address, name=name)
    fast = factory.build(sub, message_id="<fixed.1@example.org>")
    slow = factory.build_email_message(sub, message_id="<fixed.1@example.org>")
    slow_bytes = slow.as_bytes(policy=slow.policy)
    assert _comparable(fast.data) == _comparable(slow_bytes)
    assert _comparable(fast.data)[3] == []
    # Every per-subscriber value landed in both parts of the fast path, no token left behind.
    preferences = factory.preferences_url(address)
    for _, _, _, body in _comparable(fast.data)[2]:
        assert preferences in body and factory.unsubscribe_url(address) in body
        assert not any(token in body for token in placeholders.TOKENS)
    assert max(len(line) for line in fast.data.split(b"\r\n")) <= 998


def test_fast_path_many_generated_subscribers(fixtures_dir, config):
    """Names and addresses from the shared address fixtures, hundreds of them (a one-paper
    issue keeps this quick; the bodies' size does not change how they are spliced)."""
    factory = MessageFactory(render_issue(make_issue(hf_papers(fixtures_dir)[:1]), config), config, Signer(SECRET),
                             now=NOW)  # one Date for both paths: the comparison is of everything else
    cases = [json.loads(line) for line in
             (fixtures_dir / "emails" / "python_email_validator_cases.jsonl").read_text("utf-8").splitlines() if line]
    addresses = [a for case in cases if case["expect"].startswith("valid")
                 for a in {case.get("normalized") or case["address"], case.get("ascii_email") or case["address"]}
                 if re.fullmatch(r"[^\s<>,;\"\\()@]+@[^\s<>,;\"\\()@]+", a)]
    names = [name for _, name in AWKWARD] + [case["address"][:40] for case in cases]
    checked = 0
    for i, address in enumerate(addresses):
        for j, name in enumerate(names[i % 29::29]):
            sub = Subscriber(email=address, name=name)
            fast = factory.build(sub, message_id=f"<n{i}.{j}@example.org>")
            slow = factory.build_email_message(sub, message_id=f"<n{i}.{j}@example.org>")
            assert _comparable(fast.data) == _comparable(slow.as_bytes(policy=slow.policy)), (address, name)
            checked += 1
    assert len(set(addresses)) >= 25 and checked >= 120


# --- SpamAssassin -------------------------------------------------------------------------

@pytest.fixture
def sample_factory(store, config):
    """The issue a newcomer gets: the bundled sample papers, ingested and composed as usual."""
    from newsletter import pipeline

    report = pipeline.ingest(store, config, now=NOW)
    assert report.used_sample
    issue = pipeline.build_issue(store, config, now=NOW)
    return MessageFactory(pipeline.render_issue(store, config, issue), config, Signer(SECRET), now=NOW)


@pytest.mark.parametrize("which", ["sample_factory", "factory"])
def test_spamassassin_scores_the_sample_issue_below_two(which, request, tmp_path):
    spamassassin = require_tool("spamassassin")
    data = request.getfixturevalue(which).build(READER).data
    result = subprocess.run([spamassassin, "-L", "-t"], input=data, capture_output=True, timeout=120,
                            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    report = result.stdout.decode("utf-8", "replace")
    m = re.search(r"X-Spam-Status: \w+, score=(-?[\d.]+)", report)
    assert m, report[-2000:] + result.stderr.decode("utf-8", "replace")
    assert float(m.group(1)) < 2.0, report[report.find("Content analysis details"):]


# --- the base64 splice on its own ---------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from newsletter.render import placeholders  # noqa: E402
from newsletter.render.messages import Base64Splice  # noqa: E402

_piece = st.one_of(st.sampled_from(placeholders.TOKENS), st.text(max_size=130).map(lambda t: t.replace("XNL", "xnl")))


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(_piece, max_size=12),
       values=st.tuples(*[st.text(max_size=40) for _ in placeholders.TOKENS]))
def test_base64_splice_decodes_to_the_filled_body(pieces, values):
    import base64

    body = "".join(pieces).encode("utf-8")
    mapping = dict(zip(placeholders.TOKENS, (v.encode("utf-8") for v in values)))
    encoded = Base64Splice(body, placeholders.TOKENS).render(mapping)
    expected = body
    for token, value in mapping.items():
        expected = expected.replace(token.encode(), value)
    lines = encoded.split(b"\r\n")
    assert lines[-1] == b""
    assert all(0 < len(line) <= 76 and len(line) % 4 == 0 for line in lines[:-1])
    assert all(b"=" not in line for line in lines[:-2])  # padding only at the very end
    assert base64.b64decode(b"".join(lines), validate=True) == expected


# --- RFC 2047 encoded words in untrusted text ----------------------------------------------

def _ew(text: str) -> str:
    import base64

    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


ENCODED_ATTACKS = [
    _ew("x\r\nReply-To: a@evil.org\r\n\r\nPHISH"),
    _ew("x\r\nBcc: evil@x.org\r\nX-Inj: 1"),
    _ew("Evil <evil@x.org>, other"),
    _ew("Bcc: x@evil.org"),
    "=?utf-8?q?x=0D=0ABcc:_evil@x.org?=",
]


@pytest.mark.parametrize("attack", ENCODED_ATTACKS)
def test_an_encoded_word_in_a_title_or_a_name_cannot_add_a_header_or_an_address(config, attack):
    """The email package decodes encoded words in header values it is given and writes the
    result out as is; a title (Subject) or a name (To) must never get that far."""
    paper = Paper(id="arxiv:2401.00020", title=attack, url="https://arxiv.org/abs/2401.00020", first_seen_at=NOW)
    factory = MessageFactory(render_issue(make_issue([paper]), config), config, Signer(SECRET), now=NOW)
    subscriber = Subscriber(email="victim@example.org", name=attack)
    for data in (factory.build(subscriber).data,
                 factory.build_email_message(subscriber).as_bytes(policy=policy.SMTP)):
        head = data.split(b"\r\n\r\n", 1)[0]
        assert not re.search(rb"(?im)^(bcc|x-inj):", head), head
        assert len(re.findall(rb"(?im)^reply-to:", head)) == 1, head  # the configured one only
        msg = parse(data)
        assert msg.is_multipart() and msg.get_body("plain") is not None and msg.get_body("html") is not None
        assert [a.addr_spec for a in msg["To"].addresses] == ["victim@example.org"]
        assert msg["List-Unsubscribe"] and msg["Reply-To"] == "editor@example.org"
        assert "\n" not in str(msg["Subject"]) and "= ?utf-8?" in str(msg["Subject"])
        assert not msg.defects and not any(part.defects for part in msg.walk())


def test_a_paper_link_cannot_carry_a_readers_address_or_links_out(config):
    """Every per-subscriber token in a paper's id or links is left out, not filled in: an image
    URL would send each reader's address to the feed's author as soon as the mail is opened."""
    tokens = "u=XNLUNSUBSCRIBEURLX&e=XNLEMAILX&p=XNLPREFERENCESURLX&n=XNLNAMEX"
    paper = Paper(id=f"url:https://evil.example.org/paper?{tokens}", title="T",
                  url=f"https://evil.example.org/paper?{tokens}", pdf_url=f"https://evil.example.org/p.pdf?{tokens}",
                  code_url=f"https://evil.example.org/c?{tokens}", page_url=f"https://evil.example.org/d?{tokens}",
                  thumbnail_url=f"https://evil.example.org/t.png?{tokens}", first_seen_at=NOW)
    factory = MessageFactory(render_issue(make_issue([paper]), config), config, Signer(SECRET), now=NOW)
    msg = parse(factory.build(READER).data)
    html, text = msg.get_body("html").get_content(), msg.get_body("plain").get_content()
    for body in (html, text):
        for url in re.findall(r"https://evil\.example\.org[^\s\"'<>]*", body):
            assert READER.email not in url and "/unsubscribe/" not in url and "/preferences/" not in url, url
            assert "Ada" not in url, url
    assert "evil.example.org/t.png" not in html  # the image is not shown at all
