"""The web app over real HTTP: a uvicorn server on 127.0.0.1 (OS-assigned port), httpx as the
client, a real SQLite store, confirmation messages in a real outbox folder.

Covers double opt-in (no enumeration, no silent reactivation), RFC 8058 one-click unsubscribe as
Gmail sends it, forged / replayed / expired tokens, bad form input, CSRF, rate limits, security
headers, the archive and the feed.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import feedparser
import httpx
import pytest
import time_machine
from sqlalchemy import func, select

from newsletter.config import Config, load_config
from newsletter.models import Issue, Paper, RenderedIssue
from newsletter.render import placeholders
from newsletter.store import Store
from newsletter.store.issues import freeze_issue, save_draft
from newsletter.store.schema import events
from newsletter.store.subscribers import add_subscriber, get_subscriber, set_status
from newsletter.tokens import Signer, secret_key
from newsletter.web.app import create_app
from newsletter.web.security import StoreTokenBucket
from newsletter.web.server import BackgroundServer

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "referrer-policy", "x-frame-options")


def make_config(tmp_path: Path, db_url: str, extra: str = "") -> Config:
    path = tmp_path / "newsletter.toml"
    path.write_text(
        f'[newsletter]\nname = "Papers <Weekly>"\n\n[store]\nurl = "{db_url}"\n\n'
        f'[delivery]\noutbox = "{tmp_path / "outbox"}"\n{extra}',
        encoding="utf-8",
    )
    return load_config(path, env={})


class Site:
    """A running app and the handles a test needs around it."""

    def __init__(self, config: Config, store: Store, server: BackgroundServer, outbox: Path) -> None:
        self.config, self.store, self.server, self.outbox = config, store, server, outbox
        self.url = server.url
        self.signer = Signer(secret_key(config, store))
        self.client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=10)

    def form(self) -> tuple[httpx.Client, str]:
        """A browser-like client that loaded the form: its cookie jar and the hidden token."""
        browser = httpx.Client(base_url=self.url, follow_redirects=False, timeout=10)
        page = browser.get("/")
        assert page.status_code == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        return browser, token

    def subscribe(self, address: str, name: str = "") -> httpx.Response:
        browser, token = self.form()
        with closing(browser):
            return browser.post("/subscribe", data={"email": address, "name": name, "csrf_token": token})

    def confirm(self, link: str) -> httpx.Response:
        """What a person does with a confirmation link: open it (a page with one button, which
        changes nothing), then press the button. The answer of the last step."""
        with httpx.Client(base_url=self.url, follow_redirects=False, timeout=10) as browser:
            page = browser.get(link.removeprefix(self.url))
            found = re.search(r'<form method="post" action="([^"]+)".*?name="csrf_token" value="([^"]+)"',
                              page.text, re.S)
            if page.status_code != 200 or found is None:
                return page
            return browser.post(found.group(1), data={"csrf_token": found.group(2)})

    def status(self, address: str) -> str | None:
        with self.store.atomic() as conn:
            subscriber = get_subscriber(conn, address)
        return subscriber.status if subscriber else None

    def messages(self) -> list[email.message.EmailMessage]:
        if not self.outbox.exists():
            return []
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                for p in sorted(self.outbox.glob("*.eml"))]

    def events(self, address: str) -> list[tuple[str, str]]:
        with self.store.atomic() as conn:
            rows = conn.execute(select(events.c.kind, events.c.detail)
                                .where(func.lower(events.c.email) == address.lower()).order_by(events.c.id)).all()
        return [(row.kind, row.detail) for row in rows]


def start_site(tmp_path: Path, db_url: str, store: Store, **options) -> Iterator[Site]:
    config = make_config(tmp_path, db_url)
    server = BackgroundServer()
    server.start(create_app(config, store, **options))
    site = Site(config, store, server, tmp_path / "outbox")
    try:
        yield site
    finally:
        site.client.close()
        server.stop()


@pytest.fixture
def site(tmp_path: Path, db_url: str, store: Store) -> Iterator[Site]:
    yield from start_site(tmp_path, db_url, store)


def confirm_link(message: email.message.EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",)).get_content()
    return re.search(r"(https?://\S+/confirm/\S+)", body).group(1)


def altered(token: str) -> str:
    """The token with one character changed: the first of its signature (old, signed form) or of
    its synthetic IV (the encrypted form). Not the last one: that one may carry base64 padding
    bits, and changing only those leaves the bytes as they were."""
    at = token.rindex(".") + 1 if "." in token else 3
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1:]


def one_click_multipart(boundary: str = "----gmailboundary7MA4YWxkTrZu0gW") -> tuple[bytes, str]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
            f"One-Click\r\n--{boundary}--\r\n").encode()
    return body, f"multipart/form-data; boundary={boundary}"


# -- subscribe and confirm ------------------------------------------------------------------


def test_subscribe_mails_a_confirmation_whose_link_activates(site: Site) -> None:
    response = site.subscribe("Ada@Example.org", name="Ada Lovelace")
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    assert site.status("ada@example.org") == "pending"

    [message] = site.messages()
    assert message["To"].addresses[0].addr_spec == "Ada@example.org"
    assert message["To"].addresses[0].display_name == "Ada Lovelace"
    assert "Papers <Weekly>" in message["Subject"]
    link = confirm_link(message)
    assert link.startswith(site.url + "/confirm/")

    confirmed = site.confirm(link)
    assert confirmed.status_code == 200
    assert "You are subscribed" in confirmed.text
    assert site.status("ada@example.org") == "active"

    again = site.client.get(link.removeprefix(site.url))
    assert again.status_code == 200 and "already receives" in again.text
    assert [kind for kind, _ in site.events("Ada@Example.org")].count("unsubscribed") == 0


def test_an_internationalised_address_with_a_name_gets_its_confirmation(site: Site) -> None:
    """A non-ASCII local part cannot go into an encoded word: the confirmation is an SMTPUTF8
    message whose To holds the address as UTF-8 (the name, like every display name we write,
    as an encoded word: valid in either kind of message)."""
    response = site.subscribe("dörte@münchen.de", name="Dörte")
    assert response.status_code == 200 and "Check your inbox" in response.text
    assert site.status("dörte@münchen.de") == "pending"

    [path] = sorted(site.outbox.glob("*.eml"))
    raw = path.read_bytes()
    assert "<dörte@münchen.de>".encode() in raw and b"xn--" not in raw
    # The email package reads 8-bit header bytes as surrogates: parse the text, which is UTF-8.
    message = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    [to] = message["To"].addresses
    assert (to.addr_spec, to.display_name) == ("dörte@münchen.de", "Dörte")
    confirmed = site.confirm(confirm_link(message))
    assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
    assert site.status("dörte@münchen.de") == "active"


@pytest.mark.parametrize("name", [
    "=?utf-8?b?eA0KDQpDbGljayBodHRwOi8vZXZpbC5vcmcvbG9naW4=?=",  # x CRLF CRLF Click http://evil.org/login
    "=?utf-8?b?eA0KQmNjOiBldmlsQHgub3JnDQpYLUluajogMQ==?=",        # x CRLF Bcc: evil@x.org CRLF X-Inj: 1
])
def test_a_name_from_the_form_cannot_write_into_the_confirmation(site: Site, name: str) -> None:
    """An encoded word in the name must not become headers or body text of a message sent
    from the operator's address to an address the visitor chose."""
    assert site.subscribe("victim@example.org", name=name).status_code == 200
    [message] = site.messages()
    raw = message.as_bytes()
    assert b"evil" not in raw.split(b"\n\n", 1)[1], "text got into the body"
    assert message["Bcc"] is None and message["X-Inj"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["victim@example.org"]
    assert message["To"].addresses[0].display_name.startswith("= ?utf-8?b?")
    assert "/confirm/" in message.get_body(preferencelist=("plain",)).get_content()


def test_the_answer_is_the_same_whatever_the_address_state(site: Site) -> None:
    an_hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    with site.store.atomic() as conn:
        add_subscriber(conn, "active@example.org", status="active")
        add_subscriber(conn, "pending@example.org", status="pending")
        add_subscriber(conn, "gone@example.org", status="active")
        set_status(conn, "gone@example.org", "unsubscribed", "test", now=an_hour_ago)
        add_subscriber(conn, "bounced@example.org", status="active")
        set_status(conn, "bounced@example.org", "bounced", "550 5.1.1", now=an_hour_ago)

    pages = {}
    for address in ("new@example.org", "active@example.org", "pending@example.org",
                    "gone@example.org", "bounced@example.org"):
        response = site.subscribe(address)
        assert response.status_code == 200
        pages[address] = response.text.replace(address, "ADDRESS")
    assert len(set(pages.values())) == 1

    # Asking never reactivates a suppressed address by itself...
    assert site.status("gone@example.org") == "unsubscribed"
    assert site.status("bounced@example.org") == "bounced"
    assert site.status("active@example.org") == "active"
    # ...but the link from that fresh request does.
    links = {m["To"].addresses[0].addr_spec: confirm_link(m) for m in site.messages()}
    assert site.confirm(links["gone@example.org"]).status_code == 200
    assert site.status("gone@example.org") == "active"


def test_a_confirmation_link_from_before_an_unsubscribe_does_not_reactivate(site: Site) -> None:
    site.subscribe("rhea@example.org")
    link = confirm_link(site.messages()[0]).removeprefix(site.url)
    assert site.confirm(link).status_code == 200
    unsubscribe = f"/unsubscribe/{site.signer.unsubscribe_token('rhea@example.org')}"
    assert site.client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert site.status("rhea@example.org") == "unsubscribed"

    replayed = site.client.get(link)
    assert replayed.status_code == 410
    assert "no longer valid" in replayed.text
    assert site.status("rhea@example.org") == "unsubscribed"


def test_an_expired_confirmation_link_is_refused_kindly(site: Site) -> None:
    site.subscribe("late@example.org")
    with time_machine.travel(datetime.now(timezone.utc) - timedelta(days=8), tick=False):
        old_token = site.signer.confirm_token("late@example.org")
    response = site.client.get(f"/confirm/{old_token}")
    assert response.status_code == 410
    assert "expired" in response.text
    assert site.status("late@example.org") == "pending"


def test_a_forged_confirmation_link_changes_nothing(site: Site) -> None:
    site.subscribe("eve@example.org")
    token = site.signer.confirm_token("eve@example.org")
    forged = [altered(token),
              Signer("another key").confirm_token("eve@example.org"),
              site.signer.unsubscribe_token("eve@example.org"),  # right key, wrong purpose
              "not-a-token"]
    for bad in forged:
        response = site.client.get(f"/confirm/{bad}")
        assert response.status_code == 400, bad
        assert "not valid" in response.text
    assert site.status("eve@example.org") == "pending"


# -- unsubscribe ----------------------------------------------------------------------------


@pytest.fixture
def reader(site: Site) -> str:
    with site.store.atomic() as conn:
        add_subscriber(conn, "Reader@Example.org", name="Reader", status="active")
    return "Reader@Example.org"


def test_one_click_urlencoded_exactly_as_gmail_sends_it(site: Site, reader: str) -> None:
    token = site.signer.unsubscribe_token(reader)
    response = httpx.post(f"{site.url}/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded",
                                   "User-Agent": "Mozilla/5.0 (compatible; Google-Unsubscribe)"})
    assert response.status_code == 200
    assert "set-cookie" not in response.headers and "location" not in response.headers
    assert "You are unsubscribed" in response.text
    assert site.status(reader) == "unsubscribed"
    assert site.events(reader)[-1] == ("unsubscribed", "one-click")


def test_one_click_multipart_exactly_as_gmail_sends_it(site: Site, reader: str) -> None:
    token = site.signer.unsubscribe_token(reader)
    body, content_type = one_click_multipart()
    response = httpx.post(f"{site.url}/unsubscribe/{token}", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 200
    assert "set-cookie" not in response.headers and "location" not in response.headers
    assert site.status(reader) == "unsubscribed"
    assert site.events(reader)[-1] == ("unsubscribed", "one-click")


def test_one_click_works_cross_site_without_cookie_or_form_token(site: Site, reader: str) -> None:
    token = site.signer.unsubscribe_token(reader)
    response = httpx.post(f"{site.url}/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"},
                          headers={"Origin": "https://mail.example.com"})
    assert response.status_code == 200
    assert site.status(reader) == "unsubscribed"


def test_an_unsubscribe_body_that_is_not_utf8_changes_nothing(site: Site, reader: str) -> None:
    token = site.signer.unsubscribe_token(reader)
    boundary = "----gmailboundary7MA4YWxkTrZu0gW"
    for body, content_type in [
        (b"List-Unsubscribe=One-Click&via=\xff", "application/x-www-form-urlencoded"),
        (b"List-Unsubscribe=One-Click%ff%fe", "application/x-www-form-urlencoded"),
        (f"--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n".encode()
         + b"One-Click\xfe\r\n" + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"),
    ]:
        response = httpx.post(f"{site.url}/unsubscribe/{token}", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 400, body
        assert "not UTF-8" in response.text and "nothing was changed" in response.text
        assert all(header in response.headers for header in SECURITY_HEADERS)
    assert site.status(reader) == "active"
    assert all(kind != "unsubscribed" for kind, _ in site.events(reader))


def test_get_of_the_unsubscribe_page_changes_nothing(site: Site, reader: str) -> None:
    token = site.signer.unsubscribe_token(reader)
    for _ in range(3):
        page = site.client.get(f"/unsubscribe/{token}")
        assert page.status_code == 200
        assert "set-cookie" not in page.headers
        assert "Reader@example.org" in page.text and 'id="unsubscribe"' in page.text
    head = site.client.head(f"/unsubscribe/{token}")
    assert head.status_code == 200
    assert site.status(reader) == "active"
    assert all(kind != "unsubscribed" for kind, _ in site.events(reader))


def test_forged_unsubscribe_tokens_change_nothing(site: Site, reader: str) -> None:
    token = site.signer.unsubscribe_token(reader)
    forged = [altered(token),
              site.signer.unsubscribe_token("someone-else@example.org")[:22] + token[22:],  # another IV
              Signer("another key").unsubscribe_token(reader),
              site.signer.confirm_token(reader),  # right key, wrong purpose
              "x" * 300]
    for bad in forged:
        body, content_type = one_click_multipart()
        post = site.client.post(f"/unsubscribe/{bad}", content=body, headers={"Content-Type": content_type})
        assert post.status_code == 400, bad
        assert "not valid" in post.text and "set-cookie" not in post.headers
        assert site.client.get(f"/unsubscribe/{bad}").status_code == 400
    assert site.status(reader) == "active"


def test_a_genuine_token_for_a_removed_address_answers_404(site: Site) -> None:
    token = site.signer.unsubscribe_token("never-here@example.org")
    response = site.client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 404
    assert "no longer on our list" in response.text
    assert site.status("never-here@example.org") is None


def test_a_replayed_unsubscribe_answers_200_and_records_once(site: Site, reader: str) -> None:
    token = site.signer.unsubscribe_token(reader)
    for _ in range(3):
        response = site.client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200
    assert site.status(reader) == "unsubscribed"
    assert [kind for kind, _ in site.events(reader)].count("unsubscribed") == 1
    page = site.client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200 and 'id="unsubscribe"' not in page.text


# -- bad input, CSRF, rate limit ----------------------------------------------------------------


@pytest.mark.parametrize("fields, words", [
    ({"email": "not-an-address"}, "Please check the email address"),
    ({"email": "ada@"}, "Please check the email address"),
    ({"email": ""}, "an email address is required"),
    ({}, "an email address is required"),
    ({"email": "a" * 250 + "@example.org"}, "longer than 254"),
    ({"email": "ok@example.org", "name": "N" * 101}, "Please check the name"),
    ({"email": "ok@example.org\r\nBcc: victim@example.org"}, "Please check the email address"),
    ({"email": "<script>alert(1)</script>@example.org"}, "Please check the email address"),
])
def test_bad_form_input_gets_the_form_back_with_the_error_in_words(site: Site, fields: dict, words: str) -> None:
    browser, token = site.form()
    with closing(browser):
        response = browser.post("/subscribe", data={**fields, "csrf_token": token})
    assert response.status_code == 400
    assert words in response.text
    assert 'id="form-error"' in response.text and 'name="csrf_token"' in response.text
    assert "<script>alert" not in response.text
    assert site.messages() == []


def test_control_characters_are_not_echoed_into_the_form(site: Site) -> None:
    import html5lib

    browser, token = site.form()
    with closing(browser):
        response = browser.post("/subscribe", data={"email": "a\x00b\x1b@example.org", "name": "Ada\x07",
                                                    "csrf_token": token})
    assert response.status_code == 400 and 'id="form-error"' in response.text
    assert not any(ch in response.text for ch in "\x00\x1b\x07")
    assert 'value="ab@example.org"' in response.text
    parser = html5lib.HTMLParser()
    parser.parse(response.text)
    assert parser.errors == []


def test_a_wrong_content_type_gets_the_form_back(site: Site) -> None:
    browser, token = site.form()
    with closing(browser):
        as_json = browser.post("/subscribe", json={"email": "ok@example.org", "csrf_token": token})
        as_text = browser.post("/subscribe", content=b"email=ok@example.org", headers={"Content-Type": "text/plain"})
        as_file = browser.post("/subscribe", data={"csrf_token": token}, files={"email": ("a.txt", b"ok@example.org")})
        huge = browser.post("/subscribe", data={"email": "ok@example.org", "csrf_token": token, "name": "x" * 20000})
    assert as_json.status_code == 415 and "as a web form" in as_json.text
    assert as_text.status_code == 415
    assert as_file.status_code == 400 and "could not be read" in as_file.text
    assert huge.status_code == 413 and "too large" in huge.text
    assert site.status("ok@example.org") is None


NOT_UTF8_VALUES = [b"b\xffob@example.org", b"b%FFob@example.org", b"%ff%fe@example.org", b"ok%C3@example.org"]


@pytest.mark.parametrize("value", NOT_UTF8_VALUES, ids=["raw byte", "escaped byte", "escaped bytes", "cut sequence"])
def test_a_form_whose_text_is_not_utf8_is_refused(site: Site, value: bytes) -> None:
    """Raw bytes or percent-escapes that are not UTF-8 are never guessed at (as Latin-1, or with
    U+FFFD): the form comes back saying so, nothing is stored or mailed."""
    browser, token = site.form()
    with closing(browser):
        for body, content_type in [
            (f"csrf_token={token}&email=".encode() + value, "application/x-www-form-urlencoded"),
            (f"csrf_token={token}&email=ok@example.org&name=".encode() + value, "application/x-www-form-urlencoded"),
            (b"--b0undary\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n" + token.encode()
             + b"\r\n--b0undary\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nb\xffob@example.org"
             b"\r\n--b0undary--\r\n", "multipart/form-data; boundary=b0undary"),
        ]:
            response = browser.post("/subscribe", content=body, headers={"Content-Type": content_type})
            assert response.status_code == 400, body
            assert "not UTF-8" in response.text and 'id="form-error"' in response.text
            assert all(header in response.headers for header in SECURITY_HEADERS)
    with site.store.atomic() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 0
    assert site.messages() == []
    # UTF-8 sent raw (not percent-encoded) is read as what it is, not as Latin-1.
    browser, token = site.form()
    with closing(browser):
        raw = browser.post("/subscribe", content=f"csrf_token={token}&email=ok@example.org&name=Dörte".encode(),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert raw.status_code == 200
    with site.store.atomic() as conn:
        assert get_subscriber(conn, "ok@example.org").name == "Dörte"


@pytest.mark.parametrize("charset", ["", "; charset=latin-1", "; charset=nonsense"])
def test_a_multipart_form_is_read_as_utf8_whatever_charset_it_names(site: Site, charset: str) -> None:
    browser, token = site.form()
    body = (b"--XX\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n" + token.encode()
            + b"\r\n--XX\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nmp@example.org"
            + "\r\n--XX\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nDörte\r\n--XX--\r\n".encode())
    with closing(browser):
        response = browser.post("/subscribe", content=body,
                                headers={"Content-Type": f"multipart/form-data; boundary=XX{charset}"})
    assert response.status_code == 200, response.text
    with site.store.atomic() as conn:
        assert get_subscriber(conn, "mp@example.org").name == "Dörte"


def test_the_form_refuses_cross_site_posts(site: Site) -> None:
    no_token = site.client.post("/subscribe", data={"email": "victim@example.org"})
    assert no_token.status_code == 403 and "Subscribe again" in no_token.text

    browser, token = site.form()
    with closing(browser):
        other_origin = browser.post("/subscribe", data={"email": "victim@example.org", "csrf_token": token},
                                    headers={"Origin": "https://evil.example.com"})
    assert other_origin.status_code == 403

    # A token without its cookie (a page that copied someone's form) is refused too.
    _, stolen = site.form()
    cookieless = httpx.post(f"{site.url}/subscribe", data={"email": "victim@example.org", "csrf_token": stolen})
    assert cookieless.status_code == 403
    assert site.status("victim@example.org") is None and site.messages() == []


def test_subscribe_is_rate_limited_per_client(tmp_path: Path, db_url: str, store: Store) -> None:
    for site in start_site(tmp_path, db_url, store, subscribe_burst=2, subscribe_refill_per_s=0):
        assert site.subscribe("one@example.org").status_code == 200
        assert site.subscribe("two@example.org").status_code == 200
        refused = site.subscribe("three@example.org")
        assert refused.status_code == 429
        assert "Too many subscribe requests" in refused.text
        assert refused.headers["retry-after"] == "60"
        assert site.status("three@example.org") is None


def test_one_address_is_not_mailed_again_and_again(tmp_path: Path, db_url: str, store: Store) -> None:
    for site in start_site(tmp_path, db_url, store, address_burst=2, address_refill_per_s=0):
        answers = {site.subscribe("target@example.org").text for _ in range(4)}
        assert len(answers) == 1
        assert len(site.messages()) == 2


def test_token_bucket_refills_with_time_and_takes_back_a_token(store: Store) -> None:
    from datetime import datetime, timedelta, timezone

    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    now = [start]
    bucket = StoreTokenBucket(store, "test", 2, 1.0, clock=lambda: now[0])
    assert bucket.take("a") and bucket.take("a") and not bucket.take("a")
    assert bucket.take("b") and bucket.available("b") and not bucket.available("a")
    now[0] = start + timedelta(seconds=1)
    assert bucket.take("a") and not bucket.take("a")
    bucket.give_back("a")
    assert bucket.take("a")


# -- headers on every response ----------------------------------------------------------------


def test_every_response_carries_the_security_headers(site: Site, reader: str) -> None:
    token = site.signer.unsubscribe_token(reader)
    responses = [site.client.get("/"), site.client.get("/archive"), site.client.get("/feed.xml"),
                 site.client.get("/no/such/page"), site.client.put("/"), site.client.get(f"/unsubscribe/{token}"),
                 site.client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}),
                 site.client.post("/subscribe", data={}), site.client.get("/confirm/forged")]
    for response in responses:
        assert response.status_code < 500
        for header in SECURITY_HEADERS:
            assert header in response.headers, (response.url, header)
    assert "script-src" not in responses[0].headers["content-security-policy"]
    assert "default-src 'none'" in responses[0].headers["content-security-policy"]
    assert responses[3].status_code == 404 and "Not found" in responses[3].text
    assert responses[4].status_code == 405


@pytest.mark.parametrize("method, path, allow", [
    ("DELETE", "/", "GET, HEAD"),
    ("OPTIONS", "/feed.xml", "GET, HEAD"),
    ("POST", "/archive", "GET, HEAD"),
    ("PUT", "/archive/2026-W48", "GET, HEAD"),
    ("GET", "/subscribe", "POST"),
    ("PUT", "/confirm/TOKEN", "GET, HEAD, POST"),
    ("DELETE", "/unsubscribe/TOKEN", "GET, HEAD, POST"),
    ("PATCH", "/preferences/TOKEN", "GET, HEAD, POST"),
    ("POST", "/preview/", "GET, HEAD"),
])
def test_a_405_says_which_methods_the_address_takes(site: Site, method: str, path: str, allow: str) -> None:
    response = site.client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert "Not allowed" in response.text
    assert all(header in response.headers for header in SECURITY_HEADERS)


# -- archive and feed -------------------------------------------------------------------------


def _issue(key: str, number: int, title: str, papers: tuple[Paper, ...]) -> Issue:
    return Issue(key=key, number=number, title=title, papers=papers, created_at=datetime(2026, 11, 23, 8, tzinfo=timezone.utc))


def test_the_archive_shows_sent_issues_without_personal_data(site: Site) -> None:
    papers = (Paper(id="arxiv:2403.05525", title="Attention <b>is</b> & all", url="https://arxiv.org/abs/2403.05525"),)
    sent = _issue("2026-W48", 1, "Week 48 <script>", papers)
    html = (f"<html><body><p>Hi {placeholders.NAME},</p><p>sent to {placeholders.EMAIL}</p>"
            f'<a href="{placeholders.UNSUBSCRIBE_URL}">Unsubscribe</a></body></html>')
    with site.store.atomic() as conn:
        save_draft(conn, sent)
        freeze_issue(conn, sent, RenderedIssue(issue=sent, subject="Week 48", html=html, text="text"))
        save_draft(conn, _issue("2026-W49", 2, "Draft week 49", ()))

    listing = site.client.get("/archive")
    assert listing.status_code == 200
    assert "Week 48 &lt;script&gt;" in listing.text and "<script>" not in listing.text
    assert "2026-W49" not in listing.text

    page = site.client.get("/archive/2026-W48")
    assert page.status_code == 200
    assert not any(token in page.text for token in placeholders.TOKENS)
    assert f'href="{site.url}/"' in page.text
    assert "/unsubscribe/" not in page.text

    assert site.client.get("/archive/2026-W49").status_code == 404
    assert site.client.get("/archive/..%2f..%2fetc").status_code == 404

    home = site.client.get("/")
    assert 'href="/archive/2026-W48"' in home.text and "Attention &lt;b&gt;is&lt;/b&gt; &amp; all" in home.text

    feed_response = site.client.get("/feed.xml")
    assert feed_response.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(feed_response.content)
    assert not feed.bozo
    assert feed.feed.title == "Papers <Weekly>"
    [entry] = feed.entries
    assert entry.title == "Week 48 <script>"
    assert entry.link == f"{site.url}/archive/2026-W48"
    assert "Attention <b>is</b> & all" in entry.summary


def test_an_empty_archive_and_feed_still_answer(site: Site) -> None:
    assert "No issue has been sent yet" in site.client.get("/archive").text
    feed = feedparser.parse(site.client.get("/feed.xml").content)
    assert not feed.bozo and feed.entries == []


# -- the operator's preview ---------------------------------------------------------------------


def test_the_preview_answers_on_loopback_with_framing_allowed(site: Site) -> None:
    response = site.client.get("/preview/")
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert "frame-src 'self'" in response.headers["content-security-policy"]
    # Everywhere else framing stays forbidden.
    assert site.client.get("/").headers["x-frame-options"] == "DENY"


def remote_get(app, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """One request to the app as if from 203.0.113.9 (a documentation address, not loopback)."""
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://papers.example.org") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(get())


def test_the_preview_needs_the_token_beyond_loopback(tmp_path: Path, db_url: str, store: Store) -> None:
    app = create_app(make_config(tmp_path, db_url), store, preview_token="s3cret-preview")
    refused = remote_get(app, "/preview/")
    assert refused.status_code == 403 and "preview token" in refused.text
    assert remote_get(app, "/preview/", {"Authorization": "Bearer wrong"}).status_code == 403
    assert remote_get(app, "/preview/", {"Authorization": "Bearer s3cret-preview"}).status_code == 200
    assert remote_get(app, "/preview/?token=s3cret-preview").status_code == 200
    assert remote_get(app, "/").status_code == 200  # the public pages do not care

    no_token = create_app(make_config(tmp_path, db_url), store, preview_token="")
    assert remote_get(no_token, "/preview/", {"Authorization": "Bearer "}).status_code == 403


def test_behind_a_local_reverse_proxy_the_forwarded_client_counts(tmp_path: Path, db_url: str, store: Store) -> None:
    server = BackgroundServer(proxy_headers=True)
    server.start(create_app(make_config(tmp_path, db_url), store, preview_token=""))
    try:
        proxied = httpx.get(f"{server.url}/preview/", headers={"X-Forwarded-For": "198.51.100.7"})
        assert proxied.status_code == 403
        assert httpx.get(f"{server.url}/preview/").status_code == 200
    finally:
        server.stop()


# -- the command ------------------------------------------------------------------------------


def test_newsletter_serve_runs_the_app(tmp_path: Path, db_url: str) -> None:
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parent.parent
    config = make_config(tmp_path, db_url)
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--config", str(config.path), "serve", "--port", "0"],
            cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"Serving Papers <Weekly> on (http://127\.0\.0\.1:\d+)", log_path.read_text())):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        url = found.group(1)  # the port the OS gave, known before the server starts
        while True:
            try:
                page = httpx.get(url + "/")
                break
            except httpx.ConnectError:
                assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
        assert page.status_code == 200 and "Papers &lt;Weekly&gt;" in page.text

        # The access log shows which kind of link was opened, never its token.
        httpx.get(url + "/unsubscribe/S3CRETtoken")
        while '"GET /unsubscribe/… HTTP/1.1" 400' not in log_path.read_text(encoding="utf-8"):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        assert "S3CRETtoken" not in log_path.read_text(encoding="utf-8")

        # The same port again, while it is taken: one line saying so, exit 1, no "Serving".
        port = url.rsplit(":", 1)[1]
        taken = subprocess.run(
            [sys.executable, "-m", "newsletter", "--config", str(config.path), "serve", "--port", port],
            cwd=root, capture_output=True, text=True, timeout=60)
        assert taken.returncode == 1, taken.stdout + taken.stderr
        assert f"Error: 127.0.0.1:{port}: cannot listen there: Address already in use" in taken.stderr
        assert "Serving" not in taken.stdout
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serve_help_has_an_example() -> None:
    from click.testing import CliRunner

    from newsletter.cli import main

    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "newsletter serve --host 0.0.0.0 --port 8080" in result.output


def test_a_really_rendered_issue_is_archived_without_personal_values(site: Site, fixtures_dir: Path) -> None:
    from newsletter import pipeline

    pipeline.ingest(site.store, site.config, [str(fixtures_dir / "seed-trending-papers.txt")])
    issue = pipeline.build_issue(site.store, site.config)
    rendered = pipeline.render_issue(site.store, site.config, issue)
    assert placeholders.UNSUBSCRIBE_URL in rendered.html  # what the archive has to replace
    with site.store.atomic() as conn:
        freeze_issue(conn, issue, rendered)

    page = site.client.get(f"/archive/{issue.key}")
    assert page.status_code == 200
    assert not any(token in page.text for token in placeholders.TOKENS)
    assert "/unsubscribe/" not in page.text
    # The only address left is the newsletter's own (its From), never a reader's.
    assert set(re.findall(r"[\w.+-]+@[\w-]+\.\w+", page.text)) <= {"digest@example.org"}
    assert issue.papers[0].title.split()[0] in page.text
    assert site.client.get("/archive").text.count(f"/archive/{issue.key}") == 1


def test_without_base_url_a_foreign_host_header_never_gets_into_a_message(site: Site) -> None:
    browser, token = site.form()
    with closing(browser):
        response = browser.post("/subscribe", data={"email": "victim@example.org", "csrf_token": token},
                                headers={"Host": "evil.example.com"})
    assert response.status_code == 503 and "try again" in response.text
    assert site.messages() == []


def test_an_operator_template_overrides_a_page(tmp_path: Path, db_url: str, store: Store) -> None:
    own = tmp_path / "mytemplates" / "web"
    own.mkdir(parents=True)
    (own / "notice.html").write_text('{% extends "base.html" %}{% block main %}<p id="own">{{ heading }}</p>'
                                     "{% endblock %}", encoding="utf-8")
    config = make_config(tmp_path, db_url).with_overrides({"newsletter.templates": str(tmp_path / "mytemplates")})
    server = BackgroundServer().start(create_app(config, store))
    try:
        page = httpx.get(f"{server.url}/confirm/forged-<b>")
        assert page.status_code == 400
        assert '<p id="own">This link is not valid</p>' in page.text
        assert "Subscribe" in page.text  # the packaged base.html still frames it
    finally:
        server.stop()
