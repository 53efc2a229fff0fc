"""The welcome message: built from templates/welcome.*, headers through set_header, CRLF, the
latest issue's link, off with newsletter.welcome = false, and an operator's own text."""

from __future__ import annotations

import email
from email.policy import default as default_policy

import pytest

from conftest import store_url
from newsletter.config import load_config
from newsletter.render.welcome import build_welcome, cadence_words
from newsletter.store import open_store
from newsletter.store.subscribers import add_subscriber
from newsletter.tokens import Signer
from newsletter.web.subscriptions import send_welcome


def _config(tmp_path, extra=""):
    path = tmp_path / "newsletter.toml"
    path.write_text('[newsletter]\nname = "Paper Picks"\nbase_url = "https://papers.example.org"\n' + extra +
                    f'[store]\nurl = "{store_url(tmp_path / "newsletter.db")}"\n[delivery]\noutbox = "{tmp_path / "outbox"}"\n'
                    '[schedule]\nsend = "friday at 07:30"\ntimezone = "Europe/Berlin"\n', encoding="utf-8")
    return load_config(path, env={})


def test_welcome_says_what_when_latest_and_how_to_leave(tmp_path):
    config = _config(tmp_path)
    msg = build_welcome(config, "ada@example.org", "Ada\r\nBcc: evil@example.org",
                        unsubscribe_url="https://papers.example.org/unsubscribe/T",
                        latest_url="https://papers.example.org/archive/2026-W48", latest_title="Paper Picks #4")
    data = msg.as_bytes()
    assert b"\nBcc" not in data and all(line.endswith(b"\r") or not line for line in data.split(b"\n")[:-1])
    parsed = email.message_from_bytes(data, policy=default_policy)
    assert parsed["Subject"] == "Welcome to Paper Picks" and len(parsed.get_all("To")) == 1
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    assert "every Friday at 07:30 (Europe/Berlin)" in text
    assert "https://papers.example.org/archive/2026-W48" in text and "/unsubscribe/T" in text
    html = parsed.get_body(preferencelist=("html",)).get_content()
    assert 'href="https://papers.example.org/archive/2026-W48"' in html and "<script" not in html


def test_cadence_words(tmp_path):
    assert cadence_words(_config(tmp_path)) == "every Friday at 07:30 (Europe/Berlin)"


@pytest.mark.parametrize("on", [True, False])
def test_send_welcome_goes_to_the_outbox_unless_turned_off(tmp_path, on):
    config = _config(tmp_path, "" if on else "welcome = false\n")
    store = open_store(config.store_url)
    with store.atomic() as conn:
        add_subscriber(conn, "ada@example.org", name="Ada")
    assert send_welcome(store, config, Signer("k" * 32), "ada@example.org", base_url="https://papers.example.org") is on
    files = list((tmp_path / "outbox").rglob("*.eml")) if (tmp_path / "outbox").exists() else []
    assert len(files) == (1 if on else 0)
    store.dispose()


def test_an_operators_own_welcome_text(tmp_path):
    own = tmp_path / "tpl"
    own.mkdir()
    (own / "welcome.txt.j2").write_text("Glad you are here, {{ subscriber.name }}.\n")
    config = _config(tmp_path, f'templates = "{own}"\n')
    msg = build_welcome(config, "ada@example.org", "Ada", unsubscribe_url="https://papers.example.org/u/T")
    assert "Glad you are here, Ada." in msg.get_body(preferencelist=("plain",)).get_content()


def test_the_welcome_html_parses_cleanly(tmp_path):
    import html5lib

    config = _config(tmp_path)
    msg = build_welcome(config, "ada@example.org", "Ada", unsubscribe_url="https://papers.example.org/unsubscribe/T",
                        latest_url="https://papers.example.org/archive/2026-W48", latest_title="#4")
    parser = html5lib.HTMLParser(strict=False)
    parser.parse(msg.get_body(preferencelist=("html",)).get_content())
    assert parser.errors == []


@pytest.mark.parametrize("accent, ok", [("#1a56db", True), ("#7a2e8c", True), ("#ffcc00", False), ("blue", False)])
def test_the_accent_must_be_a_dark_enough_hex_colour(tmp_path, accent, ok):
    from newsletter.errors import NewsletterError

    path = tmp_path / "newsletter.toml"
    path.write_text(f'[newsletter]\naccent = "{accent}"\n', encoding="utf-8")
    if ok:
        assert load_config(path, env={})["newsletter.accent"] == accent
    else:
        with pytest.raises(NewsletterError, match="accent"):
            load_config(path, env={})
