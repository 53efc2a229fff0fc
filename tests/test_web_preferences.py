"""The reader's preferences page over real HTTP (uvicorn on 127.0.0.1, httpx, a real SQLite
store): it shows what we hold, renames through a CSRF-protected form, refuses forged links
without changing anything, escapes a hostile name, and the archive never carries a reader's
preferences link."""

from __future__ import annotations

import re
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from markupsafe import escape

from newsletter.render import placeholders
from newsletter.store.issues import freeze_issue
from newsletter.store.subscribers import add_subscriber, get_subscriber, remove_subscriber, set_status
from test_web import SECURITY_HEADERS, Site, altered, site  # noqa: F401 - the fixture is used by name

HOSTILE = 'Eve <script>alert(1)</script> & "Co" <img src=x onerror=y>'


@pytest.fixture
def reader(site: Site) -> str:
    with site.store.atomic() as conn:
        add_subscriber(conn, "ada@example.org", name="Ada Lovelace", status="active")
    return "ada@example.org"


def name_of(site: Site, address: str) -> str | None:
    with site.store.atomic() as conn:
        subscriber = get_subscriber(conn, address)
    return subscriber.name if subscriber else None


def open_page(site: Site, token: str) -> tuple[httpx.Client, httpx.Response, str]:
    """A browser-like client that loaded the page: its cookie jar, the page and the form token."""
    browser = httpx.Client(base_url=site.url, follow_redirects=False, timeout=10)
    page = browser.get(f"/preferences/{token}")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    return browser, page, found.group(1) if found else ""


def test_the_page_shows_address_name_status_and_the_unsubscribe_button(site: Site, reader: str) -> None:
    token = site.signer.preferences_token(reader)
    browser, page, form_token = open_page(site, token)
    with closing(browser):
        assert page.status_code == 200
        assert all(header in page.headers for header in SECURITY_HEADERS)
        assert page.headers["cache-control"] == "no-store"
        assert browser.cookies.get("nl_csrf") and form_token
    assert '<dd id="address">ada@example.org</dd>' in page.text
    assert '<dd id="current-name">Ada Lovelace</dd>' in page.text
    assert "Subscribed: you receive every issue." in page.text
    assert f'action="/preferences/{token}"' in page.text and 'value="Ada Lovelace"' in page.text
    unsubscribe = re.search(r'action="/unsubscribe/([^"]+)"', page.text).group(1)
    assert site.signer.verify_unsubscribe(unsubscribe) == reader
    # Reading the page changes nothing.
    assert site.status(reader) == "active" and name_of(site, reader) == "Ada Lovelace"
    assert site.client.head(f"/preferences/{token}").status_code == 200


def test_post_renames_and_the_page_says_so(site: Site, reader: str) -> None:
    token = site.signer.preferences_token("ADA@example.org")  # links are made from any spelling
    browser, _, form_token = open_page(site, token)
    with closing(browser):
        saved = browser.post(f"/preferences/{token}", data={"name": "  Augusta\tAda   King ", "csrf_token": form_token})
    assert saved.status_code == 200
    assert 'id="saved"' in saved.text and "we will greet you as Augusta Ada King" in saved.text
    assert '<dd id="current-name">Augusta Ada King</dd>' in saved.text
    assert name_of(site, reader) == "Augusta Ada King"
    assert site.status(reader) == "active"


def test_an_empty_name_clears_it(site: Site, reader: str) -> None:
    token = site.signer.preferences_token(reader)
    browser, _, form_token = open_page(site, token)
    with closing(browser):
        saved = browser.post(f"/preferences/{token}", data={"name": "", "csrf_token": form_token})
    assert saved.status_code == 200 and "(none given)" in saved.text
    assert name_of(site, reader) == ""


def test_forged_and_foreign_tokens_show_nothing_and_change_nothing(site: Site, reader: str) -> None:
    genuine = site.signer.preferences_token(reader)
    browser, _, form_token = open_page(site, genuine)
    forged = [altered(genuine), "forged-<b>", genuine + "x",
              site.signer.unsubscribe_token(reader),   # another salt: an unsubscribe link opens nothing here
              site.signer.confirm_token(reader)]
    with closing(browser):
        for token in forged:
            page = browser.get(f"/preferences/{token}")
            assert page.status_code == 400 and "This link is not valid" in page.text, token
            assert "ada@example.org" not in page.text
            assert all(header in page.headers for header in SECURITY_HEADERS)
            posted = browser.post(f"/preferences/{token}", data={"name": "Mallory", "csrf_token": form_token})
            assert posted.status_code == 400 and "nothing was shown or changed" in posted.text
    # A preferences token cannot unsubscribe either.
    assert site.client.post(f"/unsubscribe/{genuine}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert name_of(site, reader) == "Ada Lovelace" and site.status(reader) == "active"
    assert [kind for kind, _ in site.events(reader)] == ["subscribed"]


def test_the_rename_form_refuses_a_post_without_the_form_token_or_from_another_site(site: Site, reader: str) -> None:
    token = site.signer.preferences_token(reader)
    # No cookie, no token: what a forged cross-site form sends.
    refused = site.client.post(f"/preferences/{token}", data={"name": "Mallory"})
    assert refused.status_code == 403 and "Nothing was changed" in refused.text
    # A token from the page, but without the cookie it was paired with.
    browser, _, form_token = open_page(site, token)
    with closing(browser):
        assert site.client.post(f"/preferences/{token}",
                                data={"name": "Mallory", "csrf_token": form_token}).status_code == 403
        # The right pair, sent from another site's page.
        cross = browser.post(f"/preferences/{token}", data={"name": "Mallory", "csrf_token": form_token},
                             headers={"Origin": "https://evil.example.com"})
        assert cross.status_code == 403
        # A JSON body is not a form.
        assert browser.post(f"/preferences/{token}", json={"name": "Mallory"}).status_code == 415
    assert name_of(site, reader) == "Ada Lovelace"


def test_a_hostile_name_is_escaped_on_the_page(site: Site, reader: str) -> None:
    token = site.signer.preferences_token(reader)
    browser, _, form_token = open_page(site, token)
    with closing(browser):
        saved = browser.post(f"/preferences/{token}", data={"name": HOSTILE, "csrf_token": form_token})
        assert saved.status_code == 200
        assert name_of(site, reader) == HOSTILE
        page = browser.get(f"/preferences/{token}")
    for response in (saved, page):
        assert "<script>" not in response.text and "<img src=x" not in response.text
        assert f'<dd id="current-name">{escape(HOSTILE)}</dd>' in response.text
        assert f'value="{escape(HOSTILE)}"' in response.text


@pytest.mark.parametrize("name,words", [("x" * 101, "longer than 100 characters"),
                                        ("Eve\x00\x1b[31m", "control characters")])
def test_a_bad_name_is_refused_in_words_and_changes_nothing(site: Site, reader: str, name: str, words: str) -> None:
    token = site.signer.preferences_token(reader)
    browser, _, form_token = open_page(site, token)
    with closing(browser):
        refused = browser.post(f"/preferences/{token}", data={"name": name, "csrf_token": form_token})
    assert refused.status_code == 400 and words in refused.text
    assert "\x00" not in refused.text and "\x1b" not in refused.text
    assert name_of(site, reader) == "Ada Lovelace"


@pytest.mark.parametrize("name", [b"\xff\xfe\xc3(", b"%ff%fe", b"Ada%C3%28"], ids=["raw bytes", "escapes", "bad sequence"])
def test_a_name_whose_text_is_not_utf8_is_refused_and_changes_nothing(site: Site, reader: str, name: bytes) -> None:
    token = site.signer.preferences_token(reader)
    browser, _, form_token = open_page(site, token)
    with closing(browser):
        refused = browser.post(f"/preferences/{token}", content=f"csrf_token={form_token}&name=".encode() + name,
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert refused.status_code == 400 and "not UTF-8" in refused.text
        assert all(header in refused.headers for header in SECURITY_HEADERS)
        assert "\ufffd" not in refused.text and "ÿþ" not in refused.text
        assert name_of(site, reader) == "Ada Lovelace"
        # Percent-encoded UTF-8, as every browser sends it, still saves.
        saved = browser.post(f"/preferences/{token}", content=f"csrf_token={form_token}&name=D%C3%B6rte".encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert saved.status_code == 200 and 'id="saved"' in saved.text
    assert name_of(site, reader) == "Dörte"


def test_the_page_button_unsubscribes(site: Site, reader: str) -> None:
    browser, page, _ = open_page(site, site.signer.preferences_token(reader))
    with closing(browser):
        form = re.search(r'<form method="post" action="(/unsubscribe/[^"]+)">(.*?)</form>', page.text, re.S)
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]+)"', form.group(2)))
        done = browser.post(form.group(1), data=fields)
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert site.status(reader) == "unsubscribed"
    assert site.events(reader)[-1] == ("unsubscribed", "unsubscribe page")


def test_a_suppressed_reader_sees_the_status_and_no_button(site: Site, reader: str) -> None:
    with site.store.atomic() as conn:
        set_status(conn, reader, "bounced", "550 5.1.1 no such user")
    token = site.signer.preferences_token(reader)
    browser, page, form_token = open_page(site, token)
    with closing(browser):
        assert page.status_code == 200 and "Paused: your mail server refused our messages" in page.text
        assert "/unsubscribe/" not in page.text
        # Renaming is harmless and never makes the address mailable again.
        assert browser.post(f"/preferences/{token}", data={"name": "Ada", "csrf_token": form_token}).status_code == 200
    assert site.status(reader) == "bounced" and name_of(site, reader) == "Ada"


def test_a_genuine_link_for_a_removed_address_answers_404(site: Site, reader: str) -> None:
    token = site.signer.preferences_token(reader)
    browser, _, form_token = open_page(site, token)
    with site.store.atomic() as conn:
        remove_subscriber(conn, reader)
    with closing(browser):
        assert browser.get(f"/preferences/{token}").status_code == 404
        assert browser.post(f"/preferences/{token}", data={"name": "Ada", "csrf_token": form_token}).status_code == 404
    assert name_of(site, reader) is None


def test_the_archive_never_carries_a_readers_preferences_link(site: Site, fixtures_dir: Path) -> None:
    from newsletter import pipeline

    config = site.config.with_overrides({"newsletter.base_url": "https://papers.example.org"})
    pipeline.ingest(site.store, config, [str(fixtures_dir / "seed-trending-papers.txt")])
    issue = pipeline.build_issue(site.store, config)
    rendered = pipeline.render_issue(site.store, config, issue)
    assert placeholders.PREFERENCES_URL in rendered.html and placeholders.PREFERENCES_URL in rendered.text
    with site.store.atomic() as conn:
        freeze_issue(conn, issue, rendered)

    page = site.client.get(f"/archive/{issue.key}")
    assert page.status_code == 200
    assert not any(token in page.text for token in placeholders.TOKENS)
    assert "/preferences/" not in page.text and "/unsubscribe/" not in page.text
    link = re.search(r'<a [^>]*href="([^"]*)"[^>]*>Your subscription page</a>', page.text)
    assert link and link.group(1) == f"{site.url}/"
