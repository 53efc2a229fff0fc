"""What a person does in a browser, end to end: headless Chromium (Playwright) against a real
uvicorn server on 127.0.0.1, the confirmation message delivered by SMTP to a real aiosmtpd server.

Subscribe through the form -> the message arrives -> its link opens a page whose button
activates -> the unsubscribe page's button unsubscribes. And: the preferences link of an issue really delivered to
the outbox opens the reader's page, where the name is changed.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from aiosmtpd.controller import Controller

from conftest import free_port
from newsletter.config import load_config
from newsletter.store import Store
from newsletter.store.subscribers import get_subscriber
from newsletter.tokens import Signer, secret_key
from newsletter.web.app import create_app
from newsletter.web.server import BackgroundServer



class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self._arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001 - aiosmtpd's hook signature
        with self._arrived:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} message(s), got {len(self.messages)}")
                self._arrived.wait(left)


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()



def test_subscribe_confirm_and_unsubscribe_in_a_browser(tmp_path: Path, db_url: str, store: Store,
                                                         inbox: tuple[Inbox, int], browser) -> None:
    handler, smtp_port = inbox
    server = BackgroundServer()  # bound now, so its URL can be the configured base_url
    config_path = tmp_path / "newsletter.toml"
    config_path.write_text(
        f'[newsletter]\nname = "Trending Papers Weekly"\nfrom = "Papers <digest@example.org>"\n'
        f'base_url = "{server.url}"\n\n[store]\nurl = "{db_url}"\n\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n',
        encoding="utf-8")
    config = load_config(config_path, env={})
    server.start(create_app(config, store))
    try:
        context = browser.new_context()
        page = context.new_page()

        page.goto(server.url + "/")
        page.fill("#email", "grace@example.org")
        page.fill("#name", "Grace Hopper")
        page.click("button[type=submit]")
        page.wait_for_selector("#notice", timeout=10_000)
        assert "Check your inbox" in page.inner_text("h2")
        with store.atomic() as conn:
            assert get_subscriber(conn, "grace@example.org").status == "pending"

        handler.wait_for(1)
        sender, recipients, data = handler.messages[0]
        assert sender == "digest@example.org" and recipients == ["grace@example.org"]
        message = email.message_from_bytes(data, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",)).get_content()
        link = re.search(r"(http://\S+/confirm/\S+)", body).group(1)
        assert link.startswith(server.url + "/confirm/")

        # Opening the link (what a mail provider's link scanner also does) only shows a button.
        page.goto(link)
        assert "grace@example.org" in page.inner_text("main")
        with store.atomic() as conn:
            assert get_subscriber(conn, "grace@example.org").status == "pending"
        page.click("#confirm")
        page.wait_for_selector("#notice", timeout=10_000)
        assert "You are subscribed" in page.inner_text("h2")
        with store.atomic() as conn:
            subscriber = get_subscriber(conn, "grace@example.org")
        assert subscriber.status == "active" and subscriber.confirmed_at is not None

        # The welcome message follows the confirmation: what, when, how to leave; CRLF on the wire.
        handler.wait_for(2)
        sender, recipients, data = handler.messages[1]
        assert recipients == ["grace@example.org"] and b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
        welcome = email.message_from_bytes(data, policy=email.policy.default)
        assert welcome["Subject"] == "Welcome to Trending Papers Weekly" and welcome["To"] == "Grace Hopper <grace@example.org>"
        text = welcome.get_body(preferencelist=("plain",)).get_content()
        assert "every Monday at 08:00 (UTC)" in text and f"{server.url}/unsubscribe/" in text
        assert welcome["List-Unsubscribe"].startswith(f"<{server.url}/unsubscribe/")
        assert "Hi Grace Hopper" in welcome.get_body(preferencelist=("html",)).get_content()

        # The unsubscribe link every issue carries: opening it changes nothing, the button does.
        token = Signer(secret_key(config, store)).unsubscribe_token("grace@example.org")
        page.goto(f"{server.url}/unsubscribe/{token}")
        assert "grace@example.org" in page.inner_text("main")
        with store.atomic() as conn:
            assert get_subscriber(conn, "grace@example.org").status == "active"
        page.click("#unsubscribe")
        page.wait_for_selector("#notice")
        assert "You are unsubscribed" in page.inner_text("h2")
        with store.atomic() as conn:
            assert get_subscriber(conn, "grace@example.org").status == "unsubscribed"

        # The only cookie ever set is the subscribe form's CSRF nonce, and no page ran a script.
        assert [cookie["name"] for cookie in context.cookies()] == ["nl_csrf"]
        context.close()
    finally:
        server.stop()


def test_the_preferences_link_of_a_delivered_issue_renames_in_a_browser(tmp_path: Path, db_url: str, store: Store,
                                                                        fixtures_dir: Path, browser) -> None:
    from newsletter import pipeline
    from newsletter.store.subscribers import add_subscriber

    server = BackgroundServer()  # bound now, so its URL can be the configured base_url
    outbox = tmp_path / "outbox"
    config_path = tmp_path / "newsletter.toml"
    config_path.write_text(
        f'[newsletter]\nname = "Trending Papers Weekly"\nfrom = "Papers <digest@example.org>"\n'
        f'base_url = "{server.url}"\n\n[store]\nurl = "{db_url}"\n\n[delivery]\noutbox = "{outbox}"\n',
        encoding="utf-8")
    config = load_config(config_path, env={})
    with store.atomic() as conn:
        add_subscriber(conn, "grace@example.org", name="Grace", status="active")
    pipeline.ingest(store, config, [str(fixtures_dir / "seed-trending-papers.txt")])
    report = pipeline.send_issue(store, config)
    assert report.sent == 1, report
    [eml] = list(outbox.glob("*.eml"))
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "grace@example.org"
    html = message.get_body(preferencelist=("html",)).get_content()
    link = re.search(r'<a [^>]*href="([^"]+)"[^>]*>Your subscription page</a>', html).group(1)
    assert link.startswith(server.url + "/preferences/")
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert f"Your subscription page: {link}" in text

    server.start(create_app(config, store))
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(link)
        assert page.inner_text("#address") == "grace@example.org"
        assert page.inner_text("#current-name") == "Grace"
        assert "Subscribed" in page.inner_text("#status")
        assert page.input_value("#name") == "Grace"

        page.fill("#name", "Grace Brewster Hopper")
        page.click("#save")
        page.wait_for_selector("#saved", timeout=10_000)
        assert page.inner_text("#current-name") == "Grace Brewster Hopper"
        with store.atomic() as conn:
            subscriber = get_subscriber(conn, "grace@example.org")
        assert subscriber.name == "Grace Brewster Hopper" and subscriber.status == "active"

        # The same page's button unsubscribes (the reader's other choice).
        page.click("#unsubscribe")
        page.wait_for_selector("#notice")
        assert "You are unsubscribed" in page.inner_text("h2")
        with store.atomic() as conn:
            assert get_subscriber(conn, "grace@example.org").status == "unsubscribed"
        assert [cookie["name"] for cookie in context.cookies()] == ["nl_csrf"]
        context.close()
    finally:
        server.stop()
