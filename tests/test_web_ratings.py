"""The "more / less like this" links over real HTTP (uvicorn on 127.0.0.1, httpx, a real SQLite
store): one GET records, a replay changes nothing, Undo is a CSRF-protected POST, forged,
altered and recombined tokens are refused and change nothing, readers who left are refused
politely, a paper missing from the store is still rated, a link scanner opening both links of a
card keeps neither, the access log never holds a rating token, and all of it works on PostgreSQL."""

from __future__ import annotations

import base64
import logging
import re
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from markupsafe import escape
from sqlalchemy import text

from newsletter import api
from newsletter.models import Paper
from newsletter.store import open_store
from newsletter.store.papers import upsert_papers
from newsletter.store.subscribers import add_subscriber, remove_subscriber, set_status
from newsletter.web.app import create_app
from newsletter.web.server import BackgroundServer, redact_tokens
from test_web import SECURITY_HEADERS, Site, altered, site, start_site
from test_web_security import _Records  # noqa: F401 - the fixture is used by name

PAPER = "arxiv:2403.05525"
OTHER = "arxiv:2401.00001"
TITLE = 'Whisper <b>at</b> "scale" & more'


@pytest.fixture
def readers(site: Site) -> dict[str, int]:
    with site.store.atomic() as conn:
        ids = {address: add_subscriber(conn, address, status="active").id
               for address in ("ada@example.org", "bob@example.org")}
        upsert_papers(conn, [Paper(id=PAPER, title=TITLE, url="https://arxiv.org/abs/2403.05525"),
                             Paper(id=OTHER, title="Another paper", url="https://arxiv.org/abs/2401.00001")])
    return ids


def ratings(site: Site, who: str) -> dict[str, int]:
    return {r.paper_id: r.value for r in api.reader(site.store, who).ratings}


def csrf_of(page: httpx.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def recombined(token_a: str, token_b: str) -> str:
    """The signature of ``token_a`` with the reader and paper of ``token_b``: a swap."""
    def raw(token: str) -> bytes:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    return base64.urlsafe_b64encode(raw(token_a)[:12] + raw(token_b)[12:]).rstrip(b"=").decode()


def test_one_click_records_the_rating_and_the_page_confirms_with_undo(site: Site, readers: dict[str, int]) -> None:
    token = site.signer.rating_token(readers["ada@example.org"], PAPER)
    with httpx.Client(base_url=site.url, timeout=10) as browser:
        page = browser.get(f"/rate/{token}/up")
        assert page.status_code == 200
        assert all(header in page.headers for header in SECURITY_HEADERS)
        assert page.headers["cache-control"] == "no-store"
        assert f"You’ll see more papers like “{escape(TITLE)}”" in page.text and "<b>at</b>" not in page.text
        assert f'action="/rate/{token}/undo"' in page.text and browser.cookies.get("nl_csrf")
        preferences = re.search(r'href="/preferences/([^"]+)"', page.text).group(1)
        assert site.signer.verify_preferences(preferences) == "ada@example.org"
        assert ratings(site, "ada@example.org") == {PAPER: 1}

        # A replay changes nothing; the other link turns it around (much later than a scanner would).
        assert browser.get(f"/rate/{token}/up").status_code == 200
        assert ratings(site, "ada@example.org") == {PAPER: 1}
        with site.store.atomic() as conn:
            conn.execute(text("UPDATE ratings SET at = :at"), {"at": datetime.now(timezone.utc) - timedelta(hours=1)})
        down = browser.get(f"/rate/{token}/down")
        assert down.status_code == 200 and "You’ll see fewer papers like" in down.text
        assert ratings(site, "ada@example.org") == {PAPER: -1}

        undone = browser.post(f"/rate/{token}/undo", data={"csrf_token": csrf_of(down)})
        assert undone.status_code == 200 and "Your rating was taken back" in undone.text
        assert f'action="/rate/{token}/up"' in undone.text and f'action="/rate/{token}/down"' in undone.text
        assert ratings(site, "ada@example.org") == {}

        again = browser.post(f"/rate/{token}/up", data={"csrf_token": csrf_of(undone)})
        assert again.status_code == 200 and "You’ll see more papers like" in again.text
    assert ratings(site, "ada@example.org") == {PAPER: 1}
    assert ratings(site, "bob@example.org") == {}


def test_head_and_a_get_of_the_undo_link_change_nothing(site: Site, readers: dict[str, int]) -> None:
    token = site.signer.rating_token(readers["ada@example.org"], PAPER)
    assert site.client.head(f"/rate/{token}/up").status_code == 200
    assert ratings(site, "ada@example.org") == {}
    site.client.get(f"/rate/{token}/up")
    shown = site.client.get(f"/rate/{token}/undo")
    assert shown.status_code == 200 and 'id="undo"' in shown.text
    assert ratings(site, "ada@example.org") == {PAPER: 1}


def test_forged_altered_and_swapped_tokens_are_refused_and_change_nothing(site: Site,
                                                                          readers: dict[str, int]) -> None:
    ada, bob = readers["ada@example.org"], readers["bob@example.org"]
    genuine = site.signer.rating_token(ada, PAPER)
    bobs = site.signer.rating_token(bob, PAPER)
    forged = [altered(genuine), genuine[:-2], "forged-<b>", "x" * 3000,
              recombined(genuine, bobs),                                   # Ada's signature, Bob's id
              recombined(genuine, site.signer.rating_token(ada, OTHER)),   # Ada's signature, another paper
              site.signer.preferences_token("ada@example.org"),             # another kind of token
              site.signer.unsubscribe_token("ada@example.org")]
    with httpx.Client(base_url=site.url, timeout=10) as browser:
        csrf = csrf_of(browser.get(f"/rate/{genuine}/undo"))
        for token in forged:
            for method, direction in (("GET", "up"), ("GET", "down"), ("POST", "undo"), ("POST", "up")):
                answer = browser.request(method, f"/rate/{token}/{direction}", data={"csrf_token": csrf}
                                         if method == "POST" else None)
                assert answer.status_code == 400 and "This link is not valid" in answer.text, (token, direction)
                assert "ada@example.org" not in answer.text
                assert all(header in answer.headers for header in SECURITY_HEADERS)
    assert ratings(site, "ada@example.org") == {} and ratings(site, "bob@example.org") == {}
    assert site.client.get(f"/rate/{genuine}/sideways").status_code == 404


def test_undo_and_the_rating_buttons_need_the_form_token_and_our_origin(site: Site, readers: dict[str, int]) -> None:
    token = site.signer.rating_token(readers["ada@example.org"], PAPER)
    with httpx.Client(base_url=site.url, timeout=10) as browser:
        page = browser.get(f"/rate/{token}/up")
        assert ratings(site, "ada@example.org") == {PAPER: 1}
        csrf = csrf_of(page)
        # No cookie, no token: what a cross-site form sends.
        refused = site.client.post(f"/rate/{token}/undo", data={"via": "page"})
        assert refused.status_code == 403 and "Nothing was changed" in refused.text
        # The token without its cookie; the right pair from another site; a JSON body.
        assert site.client.post(f"/rate/{token}/undo", data={"csrf_token": csrf}).status_code == 403
        assert browser.post(f"/rate/{token}/undo", data={"csrf_token": csrf},
                            headers={"Origin": "https://evil.example.com"}).status_code == 403
        assert browser.post(f"/rate/{token}/down", json={"csrf_token": csrf}).status_code == 415
    assert ratings(site, "ada@example.org") == {PAPER: 1}


@pytest.mark.parametrize("leave", ["unsubscribed", "bounced", "removed"])
def test_a_reader_who_left_is_refused_politely_and_nothing_is_stored(site: Site, readers: dict[str, int],
                                                                     leave: str) -> None:
    token = site.signer.rating_token(readers["ada@example.org"], PAPER)
    with site.store.atomic() as conn:
        if leave == "removed":
            remove_subscriber(conn, "ada@example.org")
        else:
            set_status(conn, "ada@example.org", leave, "test")
    page = site.client.get(f"/rate/{token}/up")
    assert page.status_code == 410 and "ratings are not recorded" in page.text
    assert "Something went wrong" not in page.text
    with site.store.atomic() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM ratings").scalar_one() == 0


def test_an_unknown_reader_id_is_refused(site: Site, readers: dict[str, int]) -> None:
    token = site.signer.rating_token(999_999, PAPER)  # genuine signature, nobody by that number
    assert site.client.get(f"/rate/{token}/up").status_code == 410
    with site.store.atomic() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM ratings").scalar_one() == 0


def test_a_paper_missing_from_the_store_is_still_rated_without_a_title(site: Site, readers: dict[str, int]) -> None:
    token = site.signer.rating_token(readers["bob@example.org"], "arxiv:2501.99999")
    page = site.client.get(f"/rate/{token}/down")
    assert page.status_code == 200 and "You’ll see fewer papers like this one." in page.text
    assert ratings(site, "bob@example.org") == {"arxiv:2501.99999": -1}


def test_a_scanner_opening_both_links_of_a_card_keeps_neither_and_the_reader_chooses(site: Site,
                                                                                      readers: dict[str, int]) -> None:
    ada = readers["ada@example.org"]
    cards = [site.signer.rating_token(ada, paper) for paper in (PAPER, OTHER)]
    # What a scanner does: every link of the message in turn, within a second or two.
    for token in cards:
        assert site.client.get(f"/rate/{token}/up").status_code == 200
        scanned = site.client.get(f"/rate/{token}/down")
        assert scanned.status_code == 200 and "Which did you mean?" in scanned.text
    assert ratings(site, "ada@example.org") == {}
    # The person then picks one on the page: a POST, always what they chose.
    with httpx.Client(base_url=site.url, timeout=10) as browser:
        page = browser.get(f"/rate/{cards[0]}/undo")
        chosen = browser.post(f"/rate/{cards[0]}/down", data={"csrf_token": csrf_of(page)})
        assert chosen.status_code == 200 and "fewer papers like" in chosen.text
    assert ratings(site, "ada@example.org") == {PAPER: -1}


def test_ratings_are_rate_limited_per_client(site: Site, readers: dict[str, int]) -> None:
    token = site.signer.rating_token(readers["ada@example.org"], PAPER)
    answers = [site.client.get(f"/rate/{token}/up").status_code for _ in range(110)]
    assert answers[:100] == [200] * 100 and answers[-1] == 429
    limited = site.client.get(f"/rate/{token}/up")
    assert limited.headers["retry-after"] == "60" and "nothing was changed" in limited.text
    # A forged link spends nothing and is still answered as forged.
    assert site.client.get(f"/rate/{altered(token)}/up").status_code == 400


def test_the_access_log_never_holds_a_rating_token(site: Site, readers: dict[str, int]) -> None:
    token = site.signer.rating_token(readers["ada@example.org"], PAPER)
    assert redact_tokens(f"/rate/{token}/up?x=1") == "/rate/…/up?x=1"
    server = BackgroundServer(log_level="info").start(create_app(site.config, site.store))
    lines = _Records()
    logging.getLogger("uvicorn.access").addHandler(lines)
    try:
        for direction in ("up", "down", "undo"):
            httpx.get(f"{server.url}/rate/{token}/{direction}", timeout=10)
        httpx.head(f"{server.url}/rate/{token}/up", timeout=10)
        deadline = time.monotonic() + 5
        while len(lines.lines) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        logging.getLogger("uvicorn.access").removeHandler(lines)
        server.stop()
    logged = [line for line in lines.lines if "/rate/" in line]
    assert len(logged) == 4 and all("/rate/…/" in line for line in logged), lines.lines
    assert not any(token in line for line in lines.lines)


def test_rating_undo_and_the_profile_form_work_on_postgresql(tmp_path, postgres_url: str) -> None:
    store = open_store(postgres_url)
    try:
        for site in start_site(tmp_path, postgres_url, store):
            with store.atomic() as conn:
                ada = add_subscriber(conn, "ada@example.org", status="active").id
            token = site.signer.rating_token(ada, PAPER)
            with httpx.Client(base_url=site.url, timeout=10) as browser:
                page = browser.get(f"/rate/{token}/up")
                assert page.status_code == 200 and "papers like this one" in page.text  # not in the store
                assert ratings(site, "ada@example.org") == {PAPER: 1}
                scanned = browser.get(f"/rate/{token}/down")
                assert "Which did you mean?" in scanned.text and ratings(site, "ada@example.org") == {}
                browser.post(f"/rate/{token}/down", data={"csrf_token": csrf_of(scanned)})
                assert ratings(site, "ada@example.org") == {PAPER: -1}
                preferences = f"/preferences/{site.signer.preferences_token('ada@example.org')}"
                form = browser.get(preferences)
                saved = browser.post(preferences, data={"categories": "cs.CL", "size": "5",
                                                        "csrf_token": csrf_of(form)})
                assert saved.status_code == 200 and "Less like this:" in saved.text
            assert api.reader(store, ada).profile.categories == ("cs.CL",)
    finally:
        store.dispose()
