"""What a reader follows, on their preferences page, over real HTTP (uvicorn on 127.0.0.1, httpx,
a real SQLite store): the page shows the profile and the ratings (with paper titles), saves every
field through ``api.set_profile``, answers bad input with the form, the reader's text kept and
the field and entry named, changes nothing without the CSRF pair, and takes a rating back."""

from __future__ import annotations

import re
from contextlib import closing

import httpx
import pytest
from markupsafe import escape

from newsletter import api
from newsletter.models import Paper, ReaderProfile
from newsletter.store.papers import upsert_papers
from newsletter.store.subscribers import add_subscriber
from test_web import SECURITY_HEADERS, Site, site  # noqa: F401 - the fixture is used by name

FULL = {"name": "Ada Lovelace", "interests": "speech recognition\nlow-resource languages",
        "categories": "cs.CL, eess.AS", "authors": "Tri Dao\nAlec Radford", "mutes": "blockchain",
        "likes": "2403.05525\nhttps://doi.org/10.1000/xyz123", "size": "8"}


@pytest.fixture
def reader(site: Site) -> str:
    with site.store.atomic() as conn:
        add_subscriber(conn, "ada@example.org", name="Ada", status="active")
        upsert_papers(conn, [Paper(id="arxiv:2403.05525", title="Robust <Speech> Recognition",
                                   url="https://arxiv.org/abs/2403.05525"),
                             Paper(id="arxiv:2401.00001", title="Feed title", url="javascript:alert(1)")])
    return "ada@example.org"


def open_page(site: Site, address: str) -> tuple[httpx.Client, str, httpx.Response, str]:
    token = site.signer.preferences_token(address)
    browser = httpx.Client(base_url=site.url, follow_redirects=False, timeout=10)
    page = browser.get(f"/preferences/{token}")
    return browser, token, page, re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def profile_of(site: Site, address: str) -> ReaderProfile:
    return api.reader(site.store, address).profile


def test_every_field_is_saved_shown_back_and_kept_across_a_reload(site: Site, reader: str) -> None:
    browser, token, page, csrf = open_page(site, reader)
    with closing(browser):
        assert page.status_code == 200 and 'id="no-ratings"' in page.text
        saved = browser.post(f"/preferences/{token}", data={**FULL, "csrf_token": csrf})
        assert saved.status_code == 200 and 'id="saved"' in saved.text
        reloaded = browser.get(f"/preferences/{token}")
    assert profile_of(site, reader) == ReaderProfile(
        interests="speech recognition; low-resource languages", categories=("cs.CL", "eess.AS"),
        authors=("Tri Dao", "Alec Radford"), mutes=("blockchain",), likes=("arxiv:2403.05525", "doi:10.1000/xyz123"),
        size=8)
    assert api.reader(site.store, reader).subscriber.name == "Ada Lovelace"
    for response in (saved, reloaded):
        text = response.text
        assert ">speech recognition\nlow-resource languages</textarea>" in text
        assert 'value="cs.CL eess.AS"' in text and ">Tri Dao\nAlec Radford</textarea>" in text
        assert ">blockchain</textarea>" in text and ">2403.05525\n10.1000/xyz123</textarea>" in text
        assert 'name="size" min="3" max="30"' in text and 'value="8"' in text
        assert all(header in response.headers for header in SECURITY_HEADERS)


def test_empty_fields_clear_the_profile_and_a_name_only_post_keeps_it(site: Site, reader: str) -> None:
    api.set_profile(site.store, reader, interests="graphs", categories="cs.LG", size=5)
    browser, token, _, csrf = open_page(site, reader)
    with closing(browser):
        assert browser.post(f"/preferences/{token}", data={"name": "Augusta", "csrf_token": csrf}).status_code == 200
        assert profile_of(site, reader) == ReaderProfile(interests="graphs", categories=("cs.LG",), size=5)
        cleared = browser.post(f"/preferences/{token}", data={
            "name": "Augusta", "csrf_token": csrf, **{key: "" for key in FULL if key != "name"}})
    assert cleared.status_code == 200 and profile_of(site, reader).is_empty
    assert api.reader(site.store, reader).subscriber.name == "Augusta"


@pytest.mark.parametrize("field,value,words", [
    ("categories", "cs.CL, 12.34", "categories: '12.34' is not an arXiv category"),
    ("likes", "2403.05525\nnot-a-paper", "likes: 'not-a-paper' is not an arXiv id or a DOI"),
    ("size", "31", "size: expected a whole number from 3 to 30, got 31"),
    ("size", "eight", "size: expected a whole number from 3 to 30, got 'eight'"),
    ("interests", "x" * 1001, "interests: longer than 1,000 characters"),
    ("authors", "\n".join(f"Author {i}" for i in range(51)), "authors: at most 50 entries, got 51"),
    ("mutes", "y" * 101, "is longer than 100 characters"),
    ("name", "n" * 101, "the name is longer than 100 characters"),
])
def test_bad_input_is_answered_with_the_form_the_text_kept_and_nothing_changed(
        site: Site, reader: str, field: str, value: str, words: str) -> None:
    api.set_profile(site.store, reader, interests="graphs")
    browser, token, _, csrf = open_page(site, reader)
    with closing(browser):
        refused = browser.post(f"/preferences/{token}", data={**FULL, field: value, "csrf_token": csrf})
    assert refused.status_code == 400
    assert str(escape(words)) in refused.text and 'id="form-error"' in refused.text
    if field != "name":
        assert re.search(rf'id="{field}" [^>]*aria-invalid="true"', refused.text)
    # What the reader typed is all still there, to correct.
    shown = str(escape(value)) if field != "size" else f'value="{escape(value)}"'
    assert shown in refused.text
    assert field == "authors" or ">Tri Dao\nAlec Radford</textarea>" in refused.text
    assert profile_of(site, reader) == ReaderProfile(interests="graphs")
    assert api.reader(site.store, reader).subscriber.name == "Ada"


def test_a_form_over_the_size_limit_is_refused_and_changes_nothing(site: Site, reader: str) -> None:
    browser, token, _, csrf = open_page(site, reader)
    with closing(browser):
        refused = browser.post(f"/preferences/{token}", data={**FULL, "likes": "2403.05525\n" * 7000,
                                                              "csrf_token": csrf})
    assert refused.status_code == 413 and "too large" in refused.text
    assert profile_of(site, reader).is_empty


def test_without_the_form_token_or_from_another_site_nothing_changes(site: Site, reader: str) -> None:
    browser, token, _, csrf = open_page(site, reader)
    with closing(browser):
        missing = site.client.post(f"/preferences/{token}", data=FULL)
        assert missing.status_code == 403 and "Nothing was changed" in missing.text
        assert site.client.post(f"/preferences/{token}", data={**FULL, "csrf_token": csrf}).status_code == 403
        cross = browser.post(f"/preferences/{token}", data={**FULL, "csrf_token": csrf},
                             headers={"Origin": "https://evil.example.com"})
        assert cross.status_code == 403 and ">Tri Dao\nAlec Radford</textarea>" in cross.text
    assert profile_of(site, reader).is_empty


def test_hostile_text_is_escaped_in_the_fields(site: Site, reader: str) -> None:
    hostile = '</textarea><script>alert(1)</script>'
    browser, token, _, csrf = open_page(site, reader)
    with closing(browser):
        saved = browser.post(f"/preferences/{token}", data={"interests": hostile, "authors": hostile,
                                                            "csrf_token": csrf})
    assert saved.status_code == 200 and "<script>" not in saved.text
    assert profile_of(site, reader).interests == hostile


def test_ratings_are_listed_with_titles_and_one_is_taken_back(site: Site, reader: str) -> None:
    api.rate(site.store, reader, "arxiv:2403.05525", 1)
    api.rate(site.store, reader, "arxiv:2401.00001", -1)
    api.rate(site.store, reader, "arxiv:2502.00002", 1, require_known=False)   # not in the store
    browser, token, page, csrf = open_page(site, reader)
    with closing(browser):
        listed = page.text[page.text.index('id="ratings"'):]
        assert "More like this:</span>" in listed and "Less like this:</span>" in listed
        assert '<a href="https://arxiv.org/abs/2403.05525">Robust &lt;Speech&gt; Recognition</a>' in listed
        assert "javascript:" not in page.text and "Feed title" in listed   # a title, not a link
        assert "arxiv:2502.00002" in listed
        undo = re.findall(r'action="/rate/([^"]+)/undo"', page.text)
        assert sorted(site.signer.verify_rating(t)[1] for t in undo) == [
            "arxiv:2401.00001", "arxiv:2403.05525", "arxiv:2502.00002"]
        target = next(t for t in undo if site.signer.verify_rating(t)[1] == "arxiv:2401.00001")
        taken = browser.post(f"/rate/{target}/undo", data={"csrf_token": csrf})
        assert taken.status_code == 200 and "Your rating was taken back" in taken.text
        again = browser.get(f"/preferences/{token}")
    assert {r.paper_id for r in api.reader(site.store, reader).ratings} == {"arxiv:2403.05525", "arxiv:2502.00002"}
    assert "Feed title" not in again.text
