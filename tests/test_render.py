"""Rendering an issue: templates, premailer once, the email checklist on the final HTML and
text, and golden files (``pytest --update-golden`` rewrites them)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import html5lib
import pytest

from newsletter.config import load_config
from newsletter.errors import RenderError
from newsletter.models import Issue, Paper, Subscriber
from newsletter.render import placeholders
from newsletter.render.issue import render_issue, size_warning
from newsletter.render.messages import MessageFactory
from newsletter.render.templates import default_templates_dir
from newsletter.tokens import Signer

GOLDEN = Path(__file__).parent / "golden" / "render"
NOW = datetime(2026, 11, 25, 9, 30, tzinfo=timezone.utc)
SECRET = "test-secret-key"
BASE_URL = "https://papers.example.org"
READER = Subscriber(email="ada@example.org", name="Ada Lovelace", id=1)


def hf_papers(fixtures_dir: Path, now: datetime = NOW) -> list[Paper]:
    """The 29 real Hugging Face daily papers of 2024-10-25 as ``Paper`` values."""
    entries = json.loads((fixtures_dir / "hf_daily_papers" / "api_daily_papers_2024-10-25.json").read_text("utf-8"))
    papers = []
    for entry in entries:
        p = entry["paper"]
        papers.append(Paper(
            id=f"arxiv:{p['id']}", title=p["title"], url=f"https://arxiv.org/abs/{p['id']}",
            authors=tuple(a["name"] for a in p["authors"]), abstract=p["summary"],
            pdf_url=f"https://arxiv.org/pdf/{p['id']}", thumbnail_url=entry.get("thumbnail"),
            score=p.get("upvotes"), first_seen_at=now, sources=("hf",)))
    return papers


def long_word_paper(score: int | None = 9_999) -> Paper:
    """A paper whose title, first author and excerpt each hold one long unbroken word."""
    return Paper(id="arxiv:2410.88888", title="Long " + "Supercalifragilistic" * 60,
                 url="https://arxiv.org/abs/2410.88888", authors=("Q" * 300, "B. Two"),
                 abstract="We release the code at https://example.org/" + "very-long-path/" * 20 + "index.html. It works.",
                 pdf_url="https://arxiv.org/pdf/2410.88888", score=score, first_seen_at=NOW, sources=("hf",))


def thirty_papers(fixtures_dir: Path) -> list[Paper]:
    papers = hf_papers(fixtures_dir)
    longest = max(papers, key=lambda p: len(p.abstract))
    papers.append(Paper(id="arxiv:2410.99999", title=longest.title + " (extended version)",
                        url="https://arxiv.org/abs/2410.99999", authors=longest.authors,
                        abstract=longest.abstract, pdf_url="https://arxiv.org/pdf/2410.99999",
                        code_url="https://github.com/example/extended", thumbnail_url=longest.thumbnail_url,
                        score=1, first_seen_at=NOW))
    assert len(papers) == 30
    return papers


def make_config(tmp_path: Path, **values: object):
    """A configuration file in tmp_path with [newsletter] values (base_url set by default)."""
    body = {"base_url": BASE_URL, "postal_address": "1 Example Street, 75001 Paris"}
    body.update(values)
    lines = ["[newsletter]"] + [f"{k} = {json.dumps(v)}" for k, v in body.items()]
    path = tmp_path / "newsletter.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(path, env={})


def make_issue(papers: list[Paper], note: str = "", number: int = 7) -> Issue:
    return Issue(key="2026-W48", number=number, title=f"Trending Papers Weekly #{number}", papers=tuple(papers),
                 created_at=NOW, editor_note=note)


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path)


@pytest.fixture
def papers(fixtures_dir):
    return hf_papers(fixtures_dir)[:10]


@pytest.fixture
def rendered(papers, config):
    return render_issue(make_issue(papers, note="A **short** note with a [link](https://example.org/notes)."), config)


@pytest.fixture
def factory(rendered, config):
    return MessageFactory(rendered, config, Signer(SECRET), now=NOW)


@pytest.fixture
def final_html(factory):
    return factory.personalised_parts(READER)[0]


def parse_errors(html: str) -> list:
    parser = html5lib.HTMLParser(strict=False)
    parser.parse(html)
    return parser.errors


def dom(html: str):
    return html5lib.parse(html, treebuilder="etree", namespaceHTMLElements=False)


# --- golden files ------------------------------------------------------------------------

def _mask_eml(data: bytes) -> str:
    text = data.decode("ascii")
    boundary = re.search(r'boundary="([^"]+)"', text).group(1)
    text = re.sub(r"^(Date|Message-ID): .*$", r"\1: MASKED", text, flags=re.M)
    return text.replace(boundary, "BOUNDARY")


def _golden(name: str, actual: str, update: bool) -> None:
    path = GOLDEN / name
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="")
        return
    assert path.exists(), f"{path} is missing: run pytest --update-golden"
    assert actual == path.read_bytes().decode("utf-8"), f"{name} differs (pytest --update-golden if intended)"


def test_golden_html_text_and_eml(factory, update_golden):
    html, text = factory.personalised_parts(READER)
    message = factory.build(READER)
    _golden("issue.html", html, update_golden)
    _golden("issue.txt", text, update_golden)
    _golden("issue.eml", _mask_eml(message.data), update_golden)


def test_no_unused_golden_files():
    assert sorted(p.name for p in GOLDEN.iterdir()) == ["issue.eml", "issue.html", "issue.txt"]


# --- the document ------------------------------------------------------------------------

def test_html5lib_parses_the_final_html_without_errors(final_html):
    assert parse_errors(final_html) == []


def test_document_head_follows_the_checklist(final_html, rendered):
    assert final_html.startswith("<!DOCTYPE html>")
    root = dom(final_html)
    assert root.get("lang") == "en" and root.get("dir") == "ltr"
    head = root.find("head")
    assert head[0].tag == "meta" and head[0].get("charset") == "utf-8"
    metas = {m.get("name"): m.get("content") for m in head.iter("meta") if m.get("name")}
    assert "width=device-width" in metas["viewport"]
    assert "x-apple-disable-message-reformatting" in metas
    assert metas["color-scheme"] == "light dark" and metas["supported-color-schemes"] == "light dark"
    assert head.find("title").text == rendered.subject


def test_no_forbidden_elements(final_html):
    root = dom(final_html)
    for tag in ("script", "form", "iframe", "base", "link", "svg", "object", "embed"):
        assert list(root.iter(tag)) == [], tag
    assert "@import" not in final_html
    assert "cid:" not in final_html and "data:" not in final_html


def test_layout_tables_are_presentational_and_600px(final_html):
    root = dom(final_html)
    tables = list(root.iter("table"))
    assert len(tables) >= 3
    for table in tables:
        assert table.get("role") == "presentation"
        assert (table.get("border"), table.get("cellpadding"), table.get("cellspacing")) == ("0", "0", "0")
    container = [t for t in tables if t.get("class") == "container"]
    assert len(container) == 1 and container[0].get("width") == "600"
    assert "max-width:600px" in container[0].get("style").replace(" ", "")
    widths = [int(w) for w in re.findall(r'width="(\d+)"', final_html)]
    assert max(widths) <= 600
    wrapper = [t for t in tables if t.get("class") == "wrapper"][0]
    assert "background-color:#f4f5f7" in wrapper.get("style")


def test_inline_styles_avoid_unsupported_css(final_html):
    styles = " ".join(re.findall(r'style="([^"]*)"', final_html) + re.findall(r"style='([^']*)'", final_html))
    assert styles
    for banned in ("display:flex", "display:grid", "float:", "position:"):
        assert banned not in styles.replace(" ", ""), banned
    # Padding lives on cells, and body text is at least 14px.
    sizes = [int(s) for s in re.findall(r"font-size:\s*(\d+)px", styles)]
    assert min(s for s in sizes if s > 1) >= 14
    root = dom(final_html)
    # Padding lives on cells, except on the links that are tap targets (buttons, the title
    # link, the footer's links): the link itself must be 44x44 CSS px for a finger, and a
    # client that ignores the padding (Outlook on Windows) still shows a live text link.
    tap_links = {a for h2 in root.iter("h2") for a in h2.iter("a")}
    for el in root.iter():
        if el in tap_links or (el.tag == "a" and set((el.get("class") or "").split()) & {"button", "tap"}):
            continue
        if el.tag in ("p", "h1", "h2", "a", "span") and el.get("style"):
            assert not re.search(r"(^|;)\s*padding", el.get("style")), el.tag


def test_colours_are_six_digit_hex(final_html):
    root = dom(final_html)
    css = " ".join([el.get("style") or "" for el in root.iter()] + [el.get("bgcolor") or "" for el in root.iter()]
                   + ["".join(s.itertext()) for s in root.iter("style")])
    colours = re.findall(r"#[0-9a-fA-F]+\b", css)
    assert colours and all(len(c) == 7 for c in colours), sorted(set(c for c in colours if len(c) != 7))


def test_style_blocks_only_in_head_small_and_keep_important(final_html):
    root = dom(final_html)
    head_styles = list(root.find("head").iter("style"))
    assert len(list(root.iter("style"))) == len(head_styles) >= 1
    css = "".join(s.text or "" for s in head_styles)
    assert len(css.encode()) < 16_000
    assert "@media screen and (max-width:600px)" in css
    assert "@media (prefers-color-scheme: dark)" in css
    for block in re.findall(r"@media[^{]*\{(.*?\})\s*\}", css, re.S):
        declarations = re.findall(r":\s*([^;{}]+);", block)
        assert declarations and all(d.strip().endswith("!important") for d in declarations)
    # No nested at-rules: every @media block holds plain rules only.
    assert re.search(r"@media[^{]*\{[^}]*@", css) is None


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_both_palettes_meet_wcag_aa_contrast():
    css = (default_templates_dir() / "style.css").read_text() + (default_templates_dir() / "responsive.css").read_text()
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S).replace("{{ newsletter.accent }}", "#1a56db")

    def colour_of(selector: str, prop: str, dark: bool) -> str:
        part = css.split("@media (prefers-color-scheme: dark)")[1] if dark else css.split("@media")[0]
        for rule in re.finditer(r"([^{}]+)\{([^}]*)\}", part):
            selectors = [s.strip() for s in rule.group(1).split(",")]
            m = re.search(rf"(?<![-\w]){prop}\s*:\s*(#[0-9a-f]{{6}})", rule.group(2))
            if selector in selectors and m:
                return m.group(1)
        raise AssertionError(f"{selector} {prop} not found")

    for dark in (False, True):
        page = colour_of(".container", "background-color", dark)
        note = colour_of(".note-box", "background-color", dark)
        for selector in ("h1", ".kicker", ".intro", ".paper-title a", ".excerpt", ".authors", ".meta", ".score",
                         ".date", ".rank", ".button", ".tap", ".thumb", ".footer p", ".footer a"):
            assert _contrast(colour_of(selector, "color", dark), page) >= 4.5, (selector, dark)
        main = colour_of(".button-main", "background-color", dark)
        assert _contrast(colour_of(".button-main", "color", dark), main) >= 4.5, dark
        for selector in (".note-box p", ".note-box a"):
            assert _contrast(colour_of(selector, "color", dark), note) >= 4.5, (selector, dark)


def test_headings_one_h1_no_skips_each_title_a_heading(final_html, papers):
    root = dom(final_html)
    assert len(list(root.iter("h1"))) == 1
    levels = [int(el.tag[1]) for el in root.iter() if isinstance(el.tag, str) and re.fullmatch(r"h[1-6]", el.tag)]
    assert levels[0] == 1 and all(b - a <= 1 for a, b in zip(levels, levels[1:]))
    h2_text = [" ".join("".join(h.itertext()).split()) for h in root.iter("h2")]
    for paper in papers:
        assert " ".join(paper.title.split()) in h2_text


def test_images_have_alt_width_border_and_https(final_html):
    images = list(dom(final_html).iter("img"))
    assert images, "the fixture papers have thumbnails"
    for img in images:
        assert img.get("alt")
        assert img.get("width", "").isdigit()
        assert img.get("border") == "0"
        assert img.get("src").startswith("https://")


def test_links_are_absolute_live_text_and_nothing_is_left_over(final_html):
    root = dom(final_html)
    anchors = list(root.iter("a"))
    assert anchors
    for a in anchors:
        assert a.get("href").startswith("https://"), a.get("href")
        words = " ".join("".join(a.itertext()).split()).lower()
        assert words and words not in ("click here", "read more", "here")
    assert "{{" not in final_html and "%7B%7B" not in final_html.upper()
    for token in placeholders.TOKENS:
        assert token not in final_html


def test_preheader_is_first_hidden_and_a_real_summary(final_html, papers):
    body = dom(final_html).find("body")
    first = body[0]
    assert first.get("class") == "preheader" and first.get("aria-hidden") == "true"
    assert "display:none" in first.get("style")
    text = "".join(first.itertext())
    assert 40 <= len(text) <= 140
    # It says what the subject does not: the other papers, by their short names.
    assert text.startswith(f"+ {len(papers) - 1} more: ")
    assert " ".join(papers[0].title.split())[:30] not in text
    assert " ".join(papers[1].title.split())[:12] in text
    hidden = [el for el in body.iter() if "display:none" in (el.get("style") or "").replace(" ", "")]
    assert hidden == [first]


def test_footer_has_reason_unsubscribe_sender_and_postal_address(final_html, factory):
    footer = [td for td in dom(final_html).iter("td") if td.get("class") == "footer"][0]
    text = " ".join("".join(footer.itertext()).split())
    assert "because ada@example.org subscribed" in text
    assert "digest@example.org" in text and "1 Example Street, 75001 Paris" in text
    links = {a.get("href"): "".join(a.itertext()) for a in footer.iter("a")}
    assert links[factory.unsubscribe_url(READER.email)] == "Unsubscribe"
    assert links[factory.preferences_url(READER.email)] == "Your subscription page"
    assert links["https://papers.example.org/archive"] == "Past issues"
    assert factory.preferences_url(READER.email).startswith("https://papers.example.org/preferences/")


def test_without_a_base_url_there_is_no_preferences_link(papers, tmp_path):
    config = make_config(tmp_path, base_url="")
    rendered = render_issue(make_issue(papers[:2]), config)
    for part in (rendered.html, rendered.text):
        assert placeholders.PREFERENCES_URL not in part and "subscription page" not in part.lower()
        assert placeholders.UNSUBSCRIBE_URL in part
    html, text = MessageFactory(rendered, config, Signer(SECRET), now=NOW).personalised_parts(READER)
    assert "/preferences/" not in html + text and "subscription page" not in (html + text).lower()
    assert parse_errors(html) == []


def test_editor_note_is_markdown_without_raw_html(config, papers):
    note = "# Welcome\n\nThis week **two** things. <script>alert(1)</script>\n\n## Details\n\n- [one](https://example.org/1)"
    html = render_issue(make_issue(papers, note=note), config).html
    assert "<strong>two</strong>" in html and "&lt;script&gt;" in html and "<script>" not in html
    root = dom(html)
    assert len(list(root.iter("h1"))) == 1
    assert [h.text for h in root.iter("h2")][:1] == ["Welcome"] and [h.text for h in root.iter("h3")] == ["Details"]
    assert parse_errors(html) == []


def test_hostile_titles_and_abstracts_are_escaped_and_folded(config):
    hostile = Paper(id="arxiv:2401.00001",
                    title="<script>alert('x')</script> Attention\n   Is All\tYou Need XNLUNSUBSCRIBEURLX XNLPREFERENCESURLX",
                    url="https://arxiv.org/abs/2401.00001", authors=("Eve <eve@evil>",),
                    abstract="<img src=x onerror=alert(1)> We show things. Then more. And more. And even more.",
                    pdf_url="javascript:alert(1)", code_url="/relative/path", score=3, first_seen_at=NOW)
    rendered = render_issue(make_issue([hostile]), config)
    factory = MessageFactory(rendered, config, Signer(SECRET), now=NOW)
    html, text = factory.personalised_parts(READER)
    assert "<script" not in html and "&lt;script&gt;alert('x')&lt;/script&gt; Attention Is All You Need" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    root = dom(html)
    assert list(root.iter("script")) == [] and all(img.get("onerror") is None for img in root.iter("img"))
    assert "javascript:" not in html and "/relative/path" not in html
    # A token inside a title is defused: the reader's unsubscribe link does not appear there.
    assert html.count(factory.unsubscribe_url(READER.email).replace("&", "&amp;")) == 1
    assert html.count(factory.preferences_url(READER.email)) == 1
    assert "<script>alert('x')</script> Attention Is All You Need" in text
    assert parse_errors(html) == []


def test_text_part_carries_every_title_url_and_the_unsubscribe_url(factory, papers):
    text = factory.personalised_parts(READER)[1]
    for paper in papers:
        assert " ".join(paper.title.split()) in " ".join(text.split())
        assert paper.url in text and paper.pdf_url in text
    assert factory.unsubscribe_url(READER.email) in text
    assert f"Your subscription page: {factory.preferences_url(READER.email)}" in text
    assert "Hi Ada Lovelace," in text and "<" not in text.split("Sent by")[0]


def test_thirty_papers_stay_under_the_clip_size(fixtures_dir, config):
    rendered = render_issue(make_issue(thirty_papers(fixtures_dir)), config)
    html = MessageFactory(rendered, config, Signer(SECRET), now=NOW).personalised_parts(READER)[0]
    assert len(html.encode("utf-8")) < 100_000
    assert size_warning(rendered) is None
    assert parse_errors(html) == []


def test_long_unbroken_words_may_wrap_and_the_html_still_follows_the_checklist(papers, config):
    """A 1,205-character title, a 300-character author and a URL in the excerpt: every text
    element carries word-break/overflow-wrap inline (test_preview checks the layout in Chromium)."""
    rendered = render_issue(make_issue([long_word_paper(), *papers[:2]], note="A **short** note."), config)
    html = MessageFactory(rendered, config, Signer(SECRET), now=NOW).personalised_parts(READER)[0]
    assert parse_errors(html) == []
    assert "Supercalifragilistic" * 60 in html and "Q" * 300 in html and "very-long-path/" * 20 in html
    body = dom(html).find("body")
    footer = next(td for td in body.iter("td") if td.get("class") == "footer")
    text_elements = ([el for el in body.iter() if el.get("class") in
                      ("kicker", "intro", "note-box", "paper-title", "authors", "excerpt", "meta")]
                     + list(body.iter("h1")) + list(footer.iter("p")))
    assert len(text_elements) >= 3 * 5 + 5
    for el in text_elements:
        style = (el.get("style") or "").replace(" ", "")
        assert "word-break:break-word" in style and "overflow-wrap:anywhere" in style, (el.tag, el.get("class"))


def test_size_warning_before_gmail_clips(fixtures_dir, config, tmp_path):
    padded = [Paper(id=f"arxiv:2410.{i:05d}", title=f"Paper {i} " + "word " * 20, url=f"https://arxiv.org/abs/2410.{i:05d}",
                    abstract="A sentence that goes on. " * 20, first_seen_at=NOW) for i in range(120)]
    rendered = render_issue(make_issue(padded), config)
    warning = size_warning(rendered)
    assert warning is not None and "clips" in warning and "max_papers" in warning


# --- templates ---------------------------------------------------------------------------

def test_operator_templates_override_file_by_file(tmp_path, papers):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "subject.txt.j2").write_text("Weekly picks no. {{ issue.number }}\n")
    (folder / "issue.html.j2").write_text(
        '{% extends "default:issue.html.j2" %}\n', encoding="utf-8")
    config = make_config(tmp_path, templates="mine")
    rendered = render_issue(make_issue(papers), config)
    assert rendered.subject == "Weekly picks no. 7"
    assert f"<title>Weekly picks no. 7</title>" in rendered.html
    assert "Hi XNLNAMEX" in rendered.text  # the text template is still the default


def test_strict_undefined_names_the_template(tmp_path, papers):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "subject.txt.j2").write_text("{{ issue.numbr }}\n")
    with pytest.raises(RenderError) as err:
        render_issue(make_issue(papers), make_config(tmp_path, templates="mine"))
    assert "subject.txt.j2" in str(err.value) and "numbr" in str(err.value)


def test_template_syntax_error_names_file_and_line(tmp_path, papers):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "issue.txt.j2").write_text("line one\n{% for x in %}\n")
    with pytest.raises(RenderError) as err:
        render_issue(make_issue(papers), make_config(tmp_path, templates="mine"))
    assert re.search(r"issue\.txt\.j2:2: template syntax error", str(err.value))


def test_a_template_failing_at_run_time_names_file_and_line(tmp_path, papers):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "issue.txt.j2").write_text("fine\n{{ issue.number + 'x' }}\n")
    with pytest.raises(RenderError) as err:
        render_issue(make_issue(papers), make_config(tmp_path, templates="mine"))
    assert re.search(r"mine/issue\.txt\.j2:2: TypeError: ", str(err.value)), str(err.value)


def test_missing_templates_folder_is_a_clear_error(tmp_path, papers):
    with pytest.raises(RenderError, match="no such folder"):
        render_issue(make_issue(papers), make_config(tmp_path, templates="nowhere"))


def test_premailer_instance_is_reused_across_issues(papers, config):
    from newsletter.render import inline

    render_issue(make_issue(papers[:2]), config)
    first = inline.premailer_instance()
    render_issue(make_issue(papers[2:4]), config)
    assert inline.premailer_instance() is first


def test_text_sits_in_paragraphs_headings_or_list_items(final_html):
    """No bare text directly in a <td> or <div> (clients style those unpredictably)."""
    blocks = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "li"}
    body = dom(final_html).find("body")
    parents = {child: parent for parent in body.iter() for child in parent}

    def in_block(el) -> bool:
        while el is not None:
            if el.tag in blocks or el.get("class") == "preheader":
                return True
            el = parents.get(el)
        return False

    for el in body.iter():
        if (el.text or "").strip():
            assert in_block(el), (el.tag, el.text[:40])
        if (el.tail or "").strip():
            assert in_block(parents.get(el)), (el.tag, el.tail[:40])


# --- premailer: once per issue, with the checklist's settings ----------------------------

def test_premailer_runs_once_per_issue_never_per_subscriber(papers, config, monkeypatch):
    from newsletter.render import inline

    instance = inline.premailer_instance()
    calls = []
    original = instance.transform
    monkeypatch.setattr(instance, "transform", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    rendered = render_issue(make_issue(papers), config)
    assert len(calls) == 1
    factory = MessageFactory(rendered, config, Signer(SECRET), now=NOW)
    for i in range(200):
        sub = Subscriber(email=f"reader{i}@example.org", name=f"Reader {i}")
        factory.build(sub)
        factory.personalised_parts(sub)
    assert len(calls) == 1


def test_premailer_settings_follow_the_checklist():
    from newsletter.render import inline

    instance = inline.premailer_instance()
    assert instance.strip_important is False and instance.allow_network is False
    assert instance.base_url is None and instance.disable_validation is True


def _css_errors(css: str) -> str:
    """What cssutils reports while parsing ``css`` (Gmail drops a whole block it cannot parse)."""
    import io
    import logging

    import cssutils

    stream = io.StringIO()
    log = logging.getLogger("newsletter.tests.css")
    log.handlers[:] = [logging.StreamHandler(stream)]
    log.propagate = False
    cssutils.CSSParser(log=log, loglevel=logging.WARNING, raiseExceptions=False, validate=False).parseString(css)
    return stream.getvalue()


def test_head_css_parses_without_errors_and_avoids_unsupported_layout(final_html):
    assert _css_errors("a { color: #000000; } b {{ c: d }")  # the check does catch a broken block
    css = "".join("".join(s.itertext()) for s in dom(final_html).find("head").iter("style"))
    assert css.strip() and _css_errors(css) == ""
    flat = css.replace(" ", "")
    for banned in ("display:flex", "display:grid", "float:", "position:", "@import"):
        assert banned not in flat, banned


def test_every_font_stack_is_web_safe(final_html):
    root = dom(final_html)
    css = ";".join([el.get("style") or "" for el in root.iter()] + ["".join(s.itertext()) for s in root.iter("style")])
    stacks = re.findall(r"font-family:\s*([^;}]+)", css)
    assert stacks
    for stack in stacks:
        fonts = [f.strip().strip("'\"").lower() for f in stack.replace("!important", "").split(",")]
        assert fonts[-1] in ("sans-serif", "serif", "monospace"), stack
        assert {"arial", "helvetica", "georgia", "times new roman", "courier new"} & set(fonts), stack
    # Every cell holding text carries its font inline (Gmail and Outlook ignore inherited <style>).
    for td in root.iter("td"):
        if td.get("class") in ("header", "note", "paper", "footer"):
            assert "font-family" in (td.get("style") or ""), td.get("class")


def test_a_subscriber_name_is_escaped_in_the_html_part(factory):
    sub = Subscriber(email="eve@example.org", name='Eve <script>alert(1)</script> & "Co" <img src=x onerror=y>')
    html, text = factory.personalised_parts(sub)
    assert "Hi Eve &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Co&quot; &lt;img src=x onerror=y&gt;," in html
    root = dom(html)
    assert list(root.iter("script")) == [] and all(img.get("onerror") is None for img in root.iter("img"))
    assert parse_errors(html) == []
    assert 'Hi Eve <script>alert(1)</script> & "Co" <img src=x onerror=y>,' in text
    # The same through the message actually sent.
    import email
    from email import policy

    msg = email.message_from_bytes(factory.build(sub).data, policy=policy.default)
    assert msg.get_body("html").get_content().replace("\r\n", "\n") == html


def test_text_part_carries_code_and_discussion_links(config):
    paper = Paper(id="arxiv:2501.12948", title="A paper with every link", url="https://arxiv.org/abs/2501.12948",
                  pdf_url="https://arxiv.org/pdf/2501.12948", code_url="https://github.com/example/code",
                  page_url="https://huggingface.co/papers/2501.12948", score=12, first_seen_at=NOW)
    rendered = render_issue(make_issue([paper]), config)
    html, text = MessageFactory(rendered, config, Signer(SECRET), now=NOW).personalised_parts(READER)
    for url in (paper.url, paper.pdf_url, paper.code_url, paper.page_url):
        assert url in text and f'href="{url}"' in html
    assert "12 upvotes" in html and "\u25b2 12 upvotes" in text


# --- the shape of each paper: excerpt, authors, folded text ------------------------------

def test_excerpt_takes_two_or_three_whole_sentences():
    from newsletter.render.context import excerpt

    assert excerpt("We study X. We find Y. We propose Z. We also W.") == "We study X. We find Y. We propose Z."
    assert excerpt("Only one sentence.") == "Only one sentence."
    # Abbreviations do not end a sentence, so the excerpt never stops at "et al.".
    text = ("Large models (e.g. GPT-4) reason. As shown by Smith et al. (2023), data matters (Fig. 3). "
            "Results in Sec. 4 beat baselines vs. prior work. A fourth sentence.")
    assert excerpt(text) == ("Large models (e.g. GPT-4) reason. As shown by Smith et al. (2023), data matters "
                             "(Fig. 3). Results in Sec. 4 beat baselines vs. prior work.")
    # A third sentence that would make it too long is left out; a first one that is too long is cut.
    long_second = "First sentence here. " + "Second sentence goes on and on with many words, " * 10 + "end. Third."
    assert excerpt(long_second) == "First sentence here."
    endless = "word " * 200
    cut = excerpt(endless)
    assert cut.endswith("\u2026") and len(cut) <= 421 and "  " not in cut
    assert excerpt("") == "" and excerpt("  \n ") == ""


def test_authors_are_shortened_past_three_and_whitespace_is_folded():
    from newsletter.render.context import fold, shorten_authors

    assert shorten_authors(("A. One", "B. Two", "C. Three")) == "A. One, B. Two, C. Three"
    assert shorten_authors(("A. One", "B. Two", "C. Three", "D. Four")) == "A. One, B. Two, C. Three et al."
    assert shorten_authors((" Ada\n  Lovelace ", "", "  ")) == "Ada Lovelace"
    assert fold("Attention\n   Is All\tYou Need") == "Attention Is All You Need"
