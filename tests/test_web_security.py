"""The web app's answers to one security review, each over real HTTP (uvicorn on 127.0.0.1) and,
where mail is sent, through a real SMTP server (aiosmtpd on 127.0.0.1):

* subscribe limits per IPv6 /64, per target address, per domain and in all;
* confirmation messages CRLF on the wire, no line over 998 octets; a failed send keeps nothing;
* GET and HEAD of a confirmation link change nothing: the page's button (a POST) confirms;
* tokens do not carry the address, old tokens still work, the access log never shows a token;
* an address that would read differently in a To header is refused with a 400;
* one-click unsubscribe of a bounced address is recorded;
* an unsubscribe while the store is locked is spooled (202), never lost, never mailed after;
* slash redirects never take their host from the Host header.
"""

from __future__ import annotations

import base64
import email
import re
import email.policy
import logging
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from aiosmtpd.controller import Controller
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer

from conftest import free_port
from newsletter.store import Store
from newsletter.store.subscribers import add_subscriber, set_status
from newsletter.tokens import Signer, secret_key
from newsletter.web.app import create_app
from newsletter.web.security import client_key
from newsletter.web.server import BackgroundServer
from test_web import Site, confirm_link, make_config, one_click_multipart, site  # noqa: F401 - fixture used by name


class Inbox:
    """An aiosmtpd handler keeping every message it accepts; ``refuse`` DATA answers to give first."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.refuse: list[str] = []
        self._arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001 - aiosmtpd's hook signature
        if self.refuse:
            return self.refuse.pop(0)
        with self._arrived:
            self.messages.append(envelope.original_content)
            self._arrived.notify_all()
        return "250 Message accepted for delivery"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def serve(tmp_path: Path, db_url: str, store: Store, extra: str = "", *, proxy_headers: bool = False,
          base_url: bool = False, **options) -> Iterator[Site]:
    server = BackgroundServer(proxy_headers=proxy_headers)
    config = make_config(tmp_path, db_url, extra)
    if base_url:
        config = config.with_overrides({"newsletter.base_url": server.url})
    server.start(create_app(config, store, **options))
    site = Site(config, store, server, tmp_path / "outbox")
    try:
        yield site
    finally:
        site.client.close()
        server.stop()


@pytest.fixture
def smtp_site(tmp_path: Path, db_url: str, store: Store, inbox: tuple[Inbox, int]) -> Iterator[tuple[Site, Inbox]]:
    handler, port = inbox
    for site in serve(tmp_path, db_url, store, f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'):
        yield site, handler


def subscribe_from(site: Site, address: str, client_ip: str) -> httpx.Response:
    """A subscribe request that a local reverse proxy forwarded for ``client_ip``."""
    browser, token = site.form()
    with closing(browser):
        return browser.post("/subscribe", data={"email": address, "csrf_token": token},
                            headers={"X-Forwarded-For": client_ip})


# -- 1. limits -------------------------------------------------------------------------------


def test_one_ipv6_host_is_counted_by_its_64(tmp_path: Path, db_url: str, store: Store) -> None:
    for site in serve(tmp_path, db_url, store, proxy_headers=True, subscribe_burst=2, subscribe_refill_per_s=0):
        assert subscribe_from(site, "v1@example.org", "2001:db8:1:2::1").status_code == 200
        assert subscribe_from(site, "v2@example.org", "2001:db8:1:2:aaaa::2").status_code == 200
        refused = subscribe_from(site, "v3@example.org", "2001:db8:1:2:ffff:ffff:ffff:3")
        assert refused.status_code == 429 and "Too many subscribe requests" in refused.text
        assert site.status("v3@example.org") is None
        # Another /64 is another client; an IPv4 client is counted by its address.
        assert subscribe_from(site, "v4@example.org", "2001:db8:1:3::1").status_code == 200
        assert subscribe_from(site, "v5@example.org", "198.51.100.7").status_code == 200
        assert len(site.messages()) == 4


@pytest.mark.parametrize("host, key", [
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    ("198.51.100.7", "198.51.100.7"),
    (None, "unknown"),
    ("not an address", "not an address"),
])
def test_a_client_is_counted_by_its_address_or_its_64(host: str | None, key: str) -> None:
    assert client_key(host) == key


def test_the_client_limit_is_a_setting(tmp_path: Path, db_url: str, store: Store) -> None:
    for site in serve(tmp_path, db_url, store, "\n[web]\nsubscribe_per_client_per_hour = 2\n"):
        assert [site.subscribe(f"c{i}@example.org").status_code for i in range(3)] == [200, 200, 429]


def test_confirmations_are_limited_per_domain_and_in_all(tmp_path: Path, db_url: str, store: Store) -> None:
    extra = ("\n[web]\nsubscribe_per_client_per_hour = 100\nconfirmations_per_domain_per_hour = 2\n"
             "confirmations_per_hour = 3\n")
    for site in serve(tmp_path, db_url, store, extra):
        assert site.subscribe("a@victim.example").status_code == 200
        assert site.subscribe("b@victim.example").status_code == 200
        refused = site.subscribe("c@victim.example")
        assert refused.status_code == 429 and "too many confirmation messages" in refused.text
        assert site.status("c@victim.example") is None
        assert site.subscribe("d@other.example").status_code == 200  # the third in all
        assert site.subscribe("e@third.example").status_code == 429  # the global ceiling
        sent = sorted(m["To"].addresses[0].addr_spec for m in site.messages())
        assert sent == ["a@victim.example", "b@victim.example", "d@other.example"]


def test_the_address_limit_is_a_setting_and_stays_silent(tmp_path: Path, db_url: str, store: Store) -> None:
    for site in serve(tmp_path, db_url, store, "\n[web]\nconfirmations_per_address_per_hour = 1\n"):
        answers = [site.subscribe("target@example.org") for _ in range(3)]
        assert {a.status_code for a in answers} == {200} and len({a.text for a in answers}) == 1
        assert len(site.messages()) == 1


# -- 2. the confirmation on the wire ------------------------------------------------------------


@pytest.mark.parametrize("address", ["ada@example.org", "dörte@münchen.de"])
@pytest.mark.parametrize("name", ["漢" * 60, "😀" * 100, "A" * 100], ids=["cjk", "emoji", "ascii"])
def test_a_confirmation_is_crlf_with_short_lines_on_the_wire(smtp_site: tuple[Site, Inbox], address: str,
                                                             name: str) -> None:
    site, inbox = smtp_site
    response = site.subscribe(address, name=name)
    assert response.status_code == 200, response.text
    [raw] = inbox.messages
    lines = raw.split(b"\r\n")
    assert all(b"\n" not in line and b"\r" not in line for line in lines), "bare LF or CR on the wire"
    assert max(len(line) for line in lines) <= 998
    # The email package reads 8-bit header bytes as surrogates: parse the text, which is UTF-8.
    message = email.message_from_string(raw.decode("utf-8"), policy=email.policy.SMTPUTF8)
    [to] = message["To"].addresses
    # RFC 2047 says the folding white space between two encoded words is not part of the text,
    # but Python's parser keeps it as a space: compare without it.
    assert to.addr_spec == address and to.display_name.replace(" ", "") == name
    assert site.confirm(confirm_link(message)).status_code == 200
    assert site.status(address) == "active"


def test_a_failed_send_keeps_nothing_and_a_retry_works(smtp_site: tuple[Site, Inbox]) -> None:
    site, inbox = smtp_site
    inbox.refuse.append("451 4.3.0 Try again later")
    failed = site.subscribe("retry@example.org", name="Retry")
    assert failed.status_code == 503 and "try again" in failed.text
    assert site.status("retry@example.org") is None
    assert inbox.messages == []

    retried = site.subscribe("retry@example.org", name="Retry")
    assert retried.status_code == 200
    assert site.status("retry@example.org") == "pending"
    assert len(inbox.messages) == 1


# -- 3. links that change state open a page; its button does it -----------------------------------


def test_opening_a_confirmation_link_changes_nothing(site: Site) -> None:
    site.subscribe("scan@example.org")
    link = confirm_link(site.messages()[0]).removeprefix(site.url)
    for _ in range(3):
        page = site.client.get(link)
        assert page.status_code == 200 and 'id="confirm"' in page.text and "scan@example.org" in page.text
        assert site.client.head(link).status_code == 200
    assert site.status("scan@example.org") == "pending"
    assert [kind for kind, _ in site.events("scan@example.org")] == ["subscribed"]

    # The button's form is CSRF-protected like the others: a bare POST (or another site's) does nothing.
    bare = site.client.post(link, data={"csrf_token": "made-up"})
    assert bare.status_code == 403 and "press the button again" in bare.text
    assert site.status("scan@example.org") == "pending"

    pressed = site.confirm(link)
    assert pressed.status_code == 200 and "You are subscribed" in pressed.text
    assert site.status("scan@example.org") == "active"


def test_a_forged_confirmation_post_changes_nothing(site: Site) -> None:
    site.subscribe("eve@example.org")
    browser, token = site.form()
    with closing(browser):
        response = browser.post(f"/confirm/{Signer('other key').confirm_token('eve@example.org')}",
                                data={"csrf_token": token})
    assert response.status_code == 400 and "not valid" in response.text
    assert site.status("eve@example.org") == "pending"


# -- 4. tokens ---------------------------------------------------------------------------------


def _decodings(token: str) -> list[bytes]:
    """Every base64 reading of a token's dot-separated parts."""
    out = []
    for part in token.split("."):
        try:
            out.append(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        except ValueError:
            pass
    return out


def test_tokens_do_not_carry_the_address(site: Site) -> None:
    for token in (site.signer.unsubscribe_token("ada@example.org"), site.signer.preferences_token("ada@example.org"),
                  site.signer.confirm_token("ada@example.org")):
        assert "ada" not in token.lower()
        assert all(b"ada" not in decoded and b"example" not in decoded for decoded in _decodings(token))
    # The old form did (this is what messages already sent hold).
    old = URLSafeSerializer(secret_key(site.config, site.store), salt="unsubscribe").dumps("ada@example.org")
    assert any(b"ada@example.org" in decoded for decoded in _decodings(old))


def test_old_tokens_in_mail_already_sent_keep_working(site: Site) -> None:
    with site.store.atomic() as conn:
        add_subscriber(conn, "old@example.org", name="Old", status="active")
    key = secret_key(site.config, site.store)
    preferences = URLSafeSerializer(key, salt="preferences").dumps("old@example.org")
    page = site.client.get(f"/preferences/{preferences}")
    assert page.status_code == 200 and "old@example.org" in page.text
    unsubscribe = URLSafeSerializer(key, salt="unsubscribe").dumps("old@example.org")
    assert site.client.get(f"/unsubscribe/{unsubscribe}").status_code == 200
    body, content_type = one_click_multipart()
    done = site.client.post(f"/unsubscribe/{unsubscribe}", content=body, headers={"Content-Type": content_type})
    assert done.status_code == 200 and site.status("old@example.org") == "unsubscribed"


def test_an_old_confirmation_link_still_confirms(site: Site) -> None:
    site.subscribe("early@example.org")
    old = URLSafeTimedSerializer(secret_key(site.config, site.store), salt="confirm").dumps("early@example.org")
    assert site.client.get(f"/confirm/{old}").status_code == 200
    assert site.status("early@example.org") == "pending"
    assert site.confirm(f"/confirm/{old}").status_code == 200
    assert site.status("early@example.org") == "active"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_the_access_log_never_shows_a_token(tmp_path: Path, db_url: str, store: Store) -> None:
    config = make_config(tmp_path, db_url)
    server = BackgroundServer(log_level="info").start(create_app(config, store))
    records = _Records()
    access = logging.getLogger("uvicorn.access")
    access.addHandler(records)
    try:
        signer = Signer(secret_key(config, store))
        tokens = [signer.unsubscribe_token("ada@example.org"), signer.preferences_token("ada@example.org"),
                  signer.confirm_token("ada@example.org"), "legacy.token-with-a-dot"]
        for path in (f"/unsubscribe/{tokens[0]}", f"/preferences/{tokens[1]}?x=1", f"/confirm/{tokens[2]}",
                     f"/unsubscribe/{tokens[3]}", "/preview/?token=s3cret"):
            httpx.get(server.url + path)
        httpx.post(f"{server.url}/unsubscribe/{tokens[0]}", data={"List-Unsubscribe": "One-Click"})
        deadline = time.monotonic() + 5
        while len(records.lines) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        access.removeHandler(records)
        server.stop()
    log_text = "\n".join(records.lines)
    assert len(records.lines) == 6, log_text
    assert not any(token in log_text for token in tokens) and "s3cret" not in log_text
    assert '"GET /unsubscribe/… HTTP/1.1" 4' in log_text or '"GET /unsubscribe/… HTTP/1.1" 2' in log_text
    assert "/preferences/…?x=1" in log_text and "/confirm/…" in log_text and "token=…" in log_text


addresses = st.emails().filter(lambda a: len(a) <= 254)


@settings(max_examples=150, deadline=None)
@given(address=addresses, key=st.text(min_size=1, max_size=40))
def test_a_token_round_trips_and_names_only_its_subscriber(address: str, key: str) -> None:
    signer = Signer(key)
    assert signer.verify_unsubscribe(signer.unsubscribe_token(address)) == address.lower()
    assert signer.verify_preferences(signer.preferences_token(address)) == address.lower()
    assert signer.verify_confirm(signer.confirm_token(address)) == address.lower()
    # Each kind only for its own purpose; another key opens nothing.
    assert signer.verify_preferences(signer.unsubscribe_token(address)) is None
    assert signer.verify_confirm(signer.unsubscribe_token(address)) is None
    assert Signer(key + "x").verify_unsubscribe(signer.unsubscribe_token(address)) is None


@settings(max_examples=150, deadline=None)
@given(address=addresses, data=st.data())
def test_a_tampered_token_fails(address: str, data: st.DataObject) -> None:
    signer = Signer("the key")
    token = signer.unsubscribe_token(address)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert signer.verify_unsubscribe(tampered) is None
    assert signer.verify_unsubscribe(token[:-1]) in (None, address.lower())  # cut padding bits only
    assert signer.verify_unsubscribe(token + "A") is None


# -- 5. an address a header would change ---------------------------------------------------------


@pytest.mark.parametrize("address", ["=?utf-8?b?YWRhQGV2aWwub3Jn?=@example.com", "=?utf-8?q?ada?=@example.com"])
def test_an_address_that_reads_differently_in_a_header_is_refused(site: Site, address: str) -> None:
    for name in ("", "Ada"):
        response = site.subscribe(address, name=name)
        assert response.status_code == 400, response.text
        assert "Please check the email address" in response.text and "encoded word" in response.text
    assert site.status(address) is None
    assert site.messages() == []


# -- 6. a bounced reader's own unsubscribe -------------------------------------------------------


@pytest.mark.parametrize("status", ["bounced", "pending"])
def test_one_click_of_a_suppressed_or_pending_address_is_recorded(site: Site, status: str) -> None:
    with site.store.atomic() as conn:
        add_subscriber(conn, "b@example.org", status="active" if status != "pending" else "pending")
        if status != "pending":
            set_status(conn, "b@example.org", status, "550 5.1.1 no such user")
    token = site.signer.unsubscribe_token("b@example.org")
    for _ in range(2):
        response = site.client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200 and "You are unsubscribed" in response.text
    assert site.status("b@example.org") == "unsubscribed"
    assert site.events("b@example.org")[-1] == ("unsubscribed", "one-click")
    assert [kind for kind, _ in site.events("b@example.org")].count("unsubscribed") == 1


# -- 7. a busy store ---------------------------------------------------------------------------


class WriteLock:
    """Another process's writer: SQLite's write lock held from a separate connection."""

    def __init__(self, db_path: Path) -> None:
        self.conn = sqlite3.connect(db_path, isolation_level=None, timeout=5)

    def __enter__(self) -> "WriteLock":
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


@pytest.mark.sqlite_only("SQLite's write lock held from outside; the spool exists only beside a SQLite file")
def test_an_unsubscribe_while_the_store_is_locked_is_spooled_and_never_mailed(
        tmp_path: Path, db_url: str, store: Store, fixtures_dir: Path) -> None:
    from newsletter import pipeline

    for site in serve(tmp_path, db_url, store, "\n[web]\nunsubscribe_wait_s = 0.2\n"):
        with store.atomic() as conn:
            add_subscriber(conn, "reader@example.org", status="active")
            add_subscriber(conn, "stays@example.org", status="active")
        pipeline.ingest(store, site.config, [str(fixtures_dir / "seed-trending-papers.txt")])
        token = site.signer.unsubscribe_token("reader@example.org")

        with WriteLock(tmp_path / "newsletter.db"):
            started = time.monotonic()
            body, content_type = one_click_multipart()
            response = site.client.post(f"/unsubscribe/{token}", content=body, headers={"Content-Type": content_type})
            assert response.status_code == 202 and "You are unsubscribed" in response.text
            # Read-only pages do not queue behind the writer.
            assert site.client.get("/archive").status_code == 200
            page = site.client.get(f"/unsubscribe/{token}")
            assert page.status_code == 200 and 'id="unsubscribe"' not in page.text
            assert site.client.get("/").status_code == 200
            assert site.client.get("/feed.xml").status_code == 200
            preferences = site.client.get(f"/preferences/{site.signer.preferences_token('stays@example.org')}")
            assert preferences.status_code == 200 and "stays@example.org" in preferences.text
            assert time.monotonic() - started < 3
            spool = tmp_path / "newsletter.db.unsubscribes"
            assert b"reader@example.org" in spool.read_bytes()

        # The lock is gone: the next send applies the spool before it claims anyone.
        report = pipeline.send_issue(store, site.config)
        sent_to = {m["To"].addresses[0].addr_spec for m in site.messages()}
        assert sent_to == {"stays@example.org"}, report
        assert site.status("reader@example.org") == "unsubscribed"
        assert site.events("reader@example.org")[-1] == ("unsubscribed", "one-click")
        # Applied once, whatever writes come after.
        with store.atomic():
            pass
        assert [kind for kind, _ in site.events("reader@example.org")].count("unsubscribed") == 1


@pytest.mark.sqlite_only("the unsubscribe spool exists only beside a SQLite file")
def test_a_spooled_unsubscribe_is_applied_when_the_app_starts(tmp_path: Path, db_url: str, store: Store) -> None:
    """A spool left by a server that stopped before the store was free again."""
    from newsletter.store.spool import UnsubscribeSpool

    with store.atomic() as conn:
        add_subscriber(conn, "late@example.org", status="active")
    UnsubscribeSpool(tmp_path / "newsletter.db.unsubscribes").append("late@example.org", "one-click")
    query = "SELECT status FROM subscribers WHERE email = 'late@example.org'"
    with closing(sqlite3.connect(tmp_path / "newsletter.db")) as raw:  # outside the store: applies nothing
        assert raw.execute(query).fetchone() == ("active",)
    fresh = Store(db_url)
    try:
        create_app(make_config(tmp_path, db_url), fresh)
    finally:
        fresh.dispose()
    with closing(sqlite3.connect(tmp_path / "newsletter.db")) as raw:
        assert raw.execute(query).fetchone() == ("unsubscribed",)


@pytest.mark.sqlite_only("the unsubscribe spool exists only beside a SQLite file")
def test_a_transaction_that_rolls_back_leaves_the_spool_for_the_next(tmp_path: Path, store: Store) -> None:
    from newsletter.store.spool import UnsubscribeSpool

    with store.atomic() as conn:
        add_subscriber(conn, "r@example.org", status="active")
        add_subscriber(conn, "s@example.org", status="active")
    spool = UnsubscribeSpool(tmp_path / "newsletter.db.unsubscribes")
    spool.append("r@example.org", "one-click")
    with pytest.raises(RuntimeError):
        with store.atomic():
            raise RuntimeError("the writer's own work failed")
    with closing(sqlite3.connect(tmp_path / "newsletter.db")) as raw:
        assert raw.execute("SELECT status FROM subscribers WHERE email = 'r@example.org'").fetchone() == ("active",)
    spool.append("s@example.org", "unsubscribe page")
    with store.atomic() as conn:
        statuses = dict(conn.exec_driver_sql("SELECT email, status FROM subscribers").all())
    assert statuses == {"r@example.org": "unsubscribed", "s@example.org": "unsubscribed"}
    for _ in range(3):
        with store.atomic():
            pass
    with store.atomic() as conn:
        kinds = conn.exec_driver_sql("SELECT email, kind, detail FROM events WHERE kind = 'unsubscribed'").all()
    assert sorted(kinds) == [("r@example.org", "unsubscribed", "one-click"),
                             ("s@example.org", "unsubscribed", "unsubscribe page")]


# -- 8. redirects --------------------------------------------------------------------------------


@pytest.mark.parametrize("base_url", [True, False], ids=["base_url", "no base_url"])
def test_a_slash_redirect_never_uses_the_host_header(tmp_path: Path, db_url: str, store: Store, base_url: bool) -> None:
    for site in serve(tmp_path, db_url, store, base_url=base_url):
        response = site.client.get("/archive/?page=2", headers={"Host": "evil.example.com"})
        assert response.status_code in (301, 307, 308)
        location = response.headers["location"]
        assert "evil" not in location
        assert location == (site.url if base_url else "") + "/archive?page=2"
        assert site.client.get("/no-such-page/", headers={"Host": "evil.example.com"}).status_code == 404
        # The operator's preview (its own router, under a mount) too.
        for path, target in (("/preview", "/preview/"), ("/preview/issues/2026-W48", "/preview/issues/2026-W48/")):
            response = site.client.get(path, headers={"Host": "evil.example.com"})
            assert response.status_code == 308, path
            assert response.headers["location"] == (site.url if base_url else "") + target


def test_an_encoded_word_in_the_newsletter_name_adds_no_header_to_a_confirmation(
        tmp_path: Path, db_url: str, store: Store, inbox: tuple[Inbox, int]) -> None:
    """``newsletter.name`` holding ``=?utf-8?b?...?=`` that decodes to CRLF + ``Bcc:``: the
    confirmation's Subject keeps it as text; no Bcc line, one Subject, through the real SMTP
    server."""
    handler, port = inbox
    attack = "News =?utf-8?b?DQpCY2M6IG5hbWVAZXZpbC5leGFtcGxl?="
    server = BackgroundServer()
    config = make_config(tmp_path, db_url, f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n')
    config = config.with_overrides({"newsletter.name": attack})
    server.start(create_app(config, store))
    site = Site(config, store, server, tmp_path / "outbox")
    try:
        assert site.subscribe("ada@example.org", name="Ada =?utf-8?b?DQpCY2M6IHhAZXZpbC5leGFtcGxl?=").status_code == 200
    finally:
        site.client.close()
        server.stop()
    [raw] = handler.messages
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"(?im)^bcc:", head), head
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert len(message.get_all("Subject")) == 1 and "evil" not in str(message["To"].addresses[0].addr_spec)
    assert [a.addr_spec for a in message["To"].addresses] == ["ada@example.org"]


def test_an_address_that_complained_is_never_reactivated_from_the_web(site: Site) -> None:
    """A spam complaint suppresses for good: a new request sends nothing (and says the same as
    ever), and even a fresh, genuine confirmation link changes nothing."""
    from newsletter.store.subscribers import add_subscriber, set_status

    with site.store.atomic() as conn:
        add_subscriber(conn, "annoyed@example.org")
        set_status(conn, "annoyed@example.org", "complained", "ARF report from the mailbox provider")
    answer = site.subscribe("annoyed@example.org")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert site.messages() == []
    link = f"{site.url}/confirm/{site.signer.confirm_token('annoyed@example.org')}"
    site.confirm(link)
    assert site.status("annoyed@example.org") == "complained"
