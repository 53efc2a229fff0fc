"""Every input format the ingest reads, on small files of our own making (tests/data/formats/).

These run on a fresh clone: nothing here reads ../shared/fixtures. The shared real-world corpus
(test_sources.py, test_sources_blogs.py) stays as an additional conformance layer; each format
it covers is covered here too, by a file written for this project that imitates the format's
structure (invented titles, names and addresses at example.org / example.com).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import store_url
from newsletter import pipeline
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.errors import SourceError
from newsletter.sources import load_source
from newsletter.store.papers import count_papers, get_paper

FORMATS = Path(__file__).resolve().parent / "data" / "formats"
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _no_test_variables_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """NEWSLETTER_FIXTURES points conftest at another corpus; to the CLI it is an unknown
    NEWSLETTER_* variable, and its warning on stderr would land in the output parsed here."""
    monkeypatch.delenv("NEWSLETTER_FIXTURES", raising=False)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def load(name: str):
    return load_source(str(FORMATS / name), timeout_s=5, max_bytes=10_000_000).parsed


def check_clean(parsed) -> None:
    """What every reader must hand on, whatever the format."""
    for paper in parsed.papers:
        assert paper.title and paper.title == " ".join(paper.title.split())
        assert paper.url.startswith(("http://", "https://"))
        assert paper.id.split(":", 1)[0] in ("arxiv", "doi", "url", "title")
        assert paper.published_at is None or paper.published_at.utcoffset() == timedelta(0)
        assert "<p>" not in paper.abstract and "&lt;" not in paper.abstract and "&amp;" not in paper.abstract
        assert paper.sources == (str(FORMATS / parsed.name.rsplit("/", 1)[-1]),)


# --- arXiv API (export.arxiv.org/api/query, Atom 1.0) ---------------------------------------

def test_arxiv_api_query_ids_authors_links_and_dates() -> None:
    parsed = load("arxiv_api_query.xml")
    assert parsed.format == "feed (atom10)" and (parsed.skipped, parsed.warnings) == ([], [])
    check_clean(parsed)
    moons, knots, zero = parsed.papers
    # versioned id -> canonical id; abs and pdf links without the version
    assert moons.id == "arxiv:2604.01234"
    assert (moons.url, moons.pdf_url) == ("https://arxiv.org/abs/2604.01234", "https://arxiv.org/pdf/2604.01234")
    assert moons.title == "Tidal Locking of Synthetic Moons: A Benchmark for Orbital Simulators"  # line break folded
    assert moons.authors == ("Zoë Ångström", "Đặng Minh Châu", "Siobhán Ó Briain", "Jürgen Weiß", "Łucja Żółw")
    assert moons.abstract == ("We introduce a small benchmark of invented moons whose spin slows until it matches "
                              "their orbit. Simulators disagree by up to 3<4 orders of magnitude & we show why.")
    assert moons.published_at == utc(2026, 4, 2, 17, 30)  # <published>, not <updated>
    # a pre-2007 id keeps its archive and subject class; affiliations are not authors
    assert knots.id == "arxiv:math.GT/0309999"
    assert knots.url == "https://arxiv.org/abs/math.GT/0309999"
    assert knots.authors == ("Petra Knotts", "Omar Loop")
    assert knots.abstract == "An invented abstract about knot diagrams, kept short for our own tests."  # spaces trimmed
    assert knots.published_at == utc(2003, 9, 30, 9)
    assert zero.title == "0" and zero.id == "arxiv:2605.00042"  # "0" is a title, not a missing one


def test_arxiv_api_legacy_layout() -> None:
    """The pre-2025 API layout: title type="html", per-element namespaces, links titled pdf/doi."""
    parsed = load("arxiv_api_legacy.xml")
    check_clean(parsed)
    first, second = parsed.papers
    assert [p.id for p in parsed.papers] == ["arxiv:2102.07777", "arxiv:2101.00999"]
    assert first.pdf_url == "https://arxiv.org/pdf/2102.07777"  # the arXiv id wins over the DOI
    assert first.authors == ("Alba Example", "Bruno Sample")
    assert first.abstract == "A made-up abstract about the thermal history of teapots."
    assert first.published_at == utc(2021, 2, 15, 18, 45, 12)
    assert (second.title, second.abstract) == ("A Second Invented Entry", "Short.")


def test_arxiv_api_error_entry_is_an_error_naming_the_source() -> None:
    with pytest.raises(SourceError) as info:
        load("arxiv_api_error.xml")
    assert str(info.value) == (f"{FORMATS / 'arxiv_api_error.xml'}: the arXiv API reported an error: "
                               "max_results must be a positive number")


@pytest.mark.parametrize("name", ["arxiv_api_empty.xml", "arxiv_listing_rss2_empty.xml", "pwc_trending_empty.xml"])
def test_an_empty_feed_is_not_an_error(name: str) -> None:
    parsed = load(name)
    assert (parsed.papers, parsed.skipped, parsed.warnings) == ([], [], [])
    assert parsed.format.startswith("feed (")


# --- arXiv listing feeds: 2024+ RSS 2.0 and Atom, legacy RSS 1.0/RDF -------------------------

LISTING_IDS = ["arxiv:2603.04001", "arxiv:2603.03877", "arxiv:2410.11111", "arxiv:2309.00777"]


def test_arxiv_rss2_listing_every_announce_type() -> None:
    parsed = load("arxiv_listing_rss2.xml")
    assert parsed.format == "feed (rss20)" and (parsed.skipped, parsed.warnings) == ([], [])
    check_clean(parsed)
    assert [p.id for p in parsed.papers] == LISTING_IDS  # new, cross, replace, replace-cross
    new, cross, replace, replace_cross = parsed.papers
    # "arXiv:ID Announce Type: new \nAbstract: " is not part of the abstract
    assert new.abstract == ("We build citation graphs for ten imaginary libraries and measure how quickly "
                            "$k$-core decompositions forget their seed. Results hold for $n\\geq 3$ shelves.")
    assert all("Announce Type" not in p.abstract and not p.abstract.startswith("arXiv:") for p in parsed.papers)
    assert new.authors == ("Ines Catalog", "Tomás Index", "Wen Shelf")  # one dc:creator, comma separated
    assert cross.authors == ("Ravi Record",)
    assert replace.abstract == "A revised version of our invented deduplication method, now with fewer false merges."
    assert replace.id == "arxiv:2410.11111"  # arxiv:DOI present, the arXiv id still wins
    assert replace_cross.abstract.endswith("$\\min_x f(x)$ and solve it for fictional collections.")
    assert {p.published_at for p in parsed.papers} == {utc(2026, 3, 10, 4)}  # 00:00 -0400


def test_arxiv_atom_listing_oai_ids() -> None:
    parsed = load("arxiv_listing_atom.xml")
    assert parsed.format == "feed (atom10)" and (parsed.skipped, parsed.warnings) == ([], [])
    check_clean(parsed)
    assert [p.id for p in parsed.papers] == ["arxiv:2603.04001", "arxiv:2410.11111"]  # from oai:arXiv.org:...
    rss2 = {p.id: p for p in load("arxiv_listing_rss2.xml").papers}
    for paper in parsed.papers:  # the same announcement in either syndication format reads the same
        same = rss2[paper.id]
        assert (paper.title, paper.authors, paper.abstract, paper.url, paper.published_at) == (
            same.title, same.authors, same.abstract, same.url, same.published_at)


def test_arxiv_legacy_rdf_listing_suffixes_author_links_and_missing_parts() -> None:
    parsed = load("arxiv_listing_rdf_legacy.xml")
    assert parsed.format == "feed (rss10)" and parsed.warnings == []
    check_clean(parsed)
    assert parsed.skipped == ["entry 4: no title"]
    first, cross, updated, bare = parsed.papers
    # "(arXiv:ID [cat])", "CROSS LISTED" and "UPDATED" suffixes removed
    assert [p.title for p in parsed.papers] == [
        "Pairing gaps in an imaginary isotope chain.", "Shell closures seen from far away.",
        "Revisiting the drip line with toy models.", "An item without a description or authors."]
    assert [p.id for p in parsed.papers] == ["arxiv:2211.08001", "arxiv:2210.05555", "arxiv:2104.00321",
                                             "arxiv:2211.08003"]
    # dc:creator holds escaped HTML links; "et al. (N additional authors not shown)" is not a name
    assert first.authors == ("Example Collaboration", "A. Alpha", "B. Beta")
    assert updated.authors == ("Dana Delta", "Émile Epsilon")
    assert first.abstract == ("We compute pairing gaps for a chain of isotopes that does not exist, "
                              "with $\\Delta < 2$ MeV throughout.")
    assert (bare.authors, bare.abstract, bare.published_at) == ((), "", None)


def test_a_truncated_listing_keeps_the_entries_recovered_with_a_warning() -> None:
    parsed = load("arxiv_listing_rss2_truncated.xml")
    assert [p.id for p in parsed.papers] == LISTING_IDS[:3]
    assert parsed.warnings == ["malformed feed, 3 entries recovered: <unknown>:46:30: no element found"]
    assert parsed.papers[0].authors == ("Ines Catalog", "Tomás Index", "Wen Shelf")


# --- Hugging Face daily papers: API JSON (2024 and 2026 schemas), community RSS and scrape ---

def test_hugging_face_api_2024_schema() -> None:
    parsed = load("hf_daily_papers_2024.json")
    assert parsed.format == "Hugging Face daily papers" and (parsed.skipped, parsed.warnings) == ([], [])
    check_clean(parsed)
    sparse, method, zero = parsed.papers
    assert sparse.id == "arxiv:2410.20001"
    assert sparse.title == "Sparse Attention for Very Long Invented Documents"  # "\n  " folded
    assert sparse.authors == ("Mira Vector", "Jonas Tensor", "Aiko Gradient")  # the hidden author is left out
    assert sparse.score == 57
    assert sparse.thumbnail_url == "https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2410.20001.png"
    assert sparse.page_url == "https://huggingface.co/papers/2410.20001"
    assert (sparse.url, sparse.pdf_url) == ("https://arxiv.org/abs/2410.20001", "https://arxiv.org/pdf/2410.20001")
    assert sparse.published_at == utc(2024, 10, 23, 17, 59, 58)  # paper.publishedAt, not the submission
    assert "85.1\\% of dense" in sparse.abstract and "Q&A tasks" in sparse.abstract and "\n" not in sparse.abstract
    assert method.title == "A \\method for Tiny Image Generators"  # LaTeX residue kept as written
    assert zero.score == 0  # zero upvotes is a score, not a missing one


def test_hugging_face_api_2026_schema() -> None:
    parsed = load("hf_daily_papers_2026.json")
    assert parsed.format == "Hugging Face daily papers"
    check_clean(parsed)
    footnotes, four_bit = parsed.papers
    assert footnotes.id == "arxiv:2603.10001" and footnotes.score == 23  # upvotes under paper
    assert footnotes.code_url == "https://github.com/example-org/footnote-retrieval"  # paper.githubRepo
    # no top-level thumbnail: the first image among mediaUrls (the video is passed over)
    assert footnotes.thumbnail_url == "https://cdn-uploads.huggingface.co/production/uploads/own/overview.webp"
    assert footnotes.published_at == utc(2026, 3, 5, 17, 8, 18)  # paper.publishedAt, not submittedOnDailyAt
    assert footnotes.abstract.startswith("Retrieval systems skip footnotes. We build")  # paper.summary, not the short one
    assert footnotes.page_url == "https://huggingface.co/papers/2603.10001"
    assert (four_bit.code_url, four_bit.thumbnail_url, four_bit.score) == (None, None, 5)


def test_hugging_face_community_rss_mirror() -> None:
    """ISO-8601 dates where RFC 822 belongs, a bare guid, "Authors — abstract" descriptions."""
    parsed = load("hf_mirror_rss.xml")
    assert parsed.format == "feed (rss20)" and (parsed.skipped, parsed.warnings) == ([], [])
    check_clean(parsed)
    edge, video, survey = parsed.papers
    assert [p.id for p in parsed.papers] == ["arxiv:2609.30001", "arxiv:2610.00002", "arxiv:2610.00003"]
    assert edge.authors == ("Rosa Router", "Sam Scheduler", "Tao Edge")
    assert edge.abstract == ("Requests wait for a model's decision before they run. We route them through a small "
                             "model first and cut median latency by 31.5-")  # &apos; and the cut mid-number kept
    assert edge.published_at == utc(2026, 9, 26)
    assert video.authors == ("Una Grasp",) and video.abstract.startswith("We generate egocentric videos of hands that pick")
    # a description that is only text, with a dash in it, is not split into authors
    assert survey.authors == () and survey.abstract.startswith("An abstract that does not start")


def test_a_community_scrape_of_daily_papers() -> None:
    parsed = load("hf_community_scrape.json")
    assert parsed.format == "JSON list"
    check_clean(parsed)
    tricks, only_code = parsed.papers
    assert tricks.id == "arxiv:2601.00501" and tricks.score == 17  # "stars" as a string
    assert tricks.code_url == "https://github.com/example-org/cheap-tricks"
    assert tricks.abstract == "We list inexpensive changes that let an invented model read longer inputs."
    assert tricks.authors == ()
    assert (only_code.score, only_code.code_url) == (0, None)


# --- other feeds: bioRxiv RDF, JSON Feed, blogs -----------------------------------------------

def test_biorxiv_rdf_dois_cdata_titles_and_initials() -> None:
    parsed = load("biorxiv.rdf")
    assert parsed.format == "feed (rss10)" and (parsed.skipped, parsed.warnings) == ([], [])
    check_clean(parsed)
    curl, roots, pollen = parsed.papers
    assert [p.id for p in parsed.papers] == [
        "doi:10.1101/2026.02.01.800001", "doi:10.1101/2026.02.02.800002", "doi:10.1101/2026.02.03.800003"]
    assert curl.title == "Leaf curl in a fern that only grows in test suites"  # CDATA with line breaks, trimmed
    assert curl.url == "http://biorxiv.org/cgi/content/short/800001v1?rss=1"
    assert curl.authors == ("Fernandez, A. B.", "Leaf, C.", "o'neill, d. e.")  # split after the initials
    assert curl.published_at == utc(2026, 2, 3)  # dc:date
    assert "{Delta} humidity" in curl.abstract
    assert roots.authors == ("Root, R.",) and pollen.abstract == ""


def test_json_feed_1_0_feed_author_html_content_and_external_url() -> None:
    parsed = load("jsonfeed.json")
    assert parsed.format == "JSON Feed"
    check_clean(parsed)
    assert parsed.skipped == ["item 3: no title"]
    reading, about_arxiv, modified = parsed.papers
    assert reading.id == "url:https://notebook.example.org/2026/01/15/reading-group"
    assert reading.authors == ("Robin Notebook",)  # 1.0's single feed "author"
    assert reading.abstract == "This week we read a paper on sparse attention. Notes follow."
    assert reading.published_at == utc(2026, 1, 16, 2, 5, 47)  # -08:00
    assert about_arxiv.id == "arxiv:2603.04001"  # external_url before url
    assert about_arxiv.abstract == "A two-line summary of a listing paper."  # summary before content_text
    assert modified.published_at == utc(2026, 1, 2, 11)  # date_modified when nothing was published


def test_a_truncated_json_feed_is_an_error_with_its_line() -> None:
    with pytest.raises(SourceError) as info:
        load("jsonfeed_truncated.json")
    assert str(info.value).startswith(f"{FORMATS / 'jsonfeed_truncated.json'}:18: not valid JSON: Unterminated string")


def test_atom_blog_entries_inherit_the_feed_author() -> None:
    parsed = load("blog_atom.atom")
    assert parsed.format == "feed (atom10)" and (parsed.skipped, parsed.warnings) == ([], [])
    check_clean(parsed)
    replication, guest, updated = parsed.papers
    assert replication.title == "Why replication & reanalysis differ"  # title type="html", escaped twice
    assert replication.id == "url:https://methods.example.org/2026/02/20/replication.html"
    assert replication.authors == ("Morgan Method",)  # the feed's author (RFC 4287 4.2.1)
    assert replication.abstract == "A replication collects new data; a reanalysis does not."
    assert guest.authors == ("Gus Guest",)  # an entry's own author wins
    assert guest.published_at == utc(2026, 2, 10, 13, 30)  # -05:00
    assert updated.published_at == utc(2026, 1, 30, 12)  # <updated> when there is no <published>


def test_atom_blog_with_only_relative_links_is_skipped_saying_why() -> None:
    parsed = load("blog_atom_relative_links.atom")
    assert parsed.papers == [] and len(parsed.skipped) == 2
    assert parsed.skipped[0] == (
        "entry 1: relative link '/2026/03/01/v2-1/' and no absolute base to resolve it against "
        "(no xml:base or http(s) self/alternate link in the feed); read the feed from its URL, "
        "or give the address it was saved from (newsletter ingest --base-url URL)")


@pytest.mark.parametrize("edit", [
    (b'<feed xmlns="http://www.w3.org/2005/Atom" >', b'<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://tool.example.org/">'),
    (b'<link href="/feed.xml" rel="self"', b'<link href="https://tool.example.org/feed.xml" rel="self"'),
    (b'<link href="/" rel="alternate"', b'<link href="https://tool.example.org/" rel="alternate"'),
], ids=["xml-base", "self-link", "alternate-link"])
def test_relative_links_resolve_against_the_feeds_own_base(tmp_path: Path, edit: tuple[bytes, bytes]) -> None:
    data = (FORMATS / "blog_atom_relative_links.atom").read_bytes()
    assert data.count(edit[0]) == 1
    path = tmp_path / "release-notes.atom"
    path.write_bytes(data.replace(*edit))
    parsed = load_source(str(path), timeout_s=5, max_bytes=10**6).parsed
    assert parsed.skipped == []
    assert [p.url for p in parsed.papers] == ["https://tool.example.org/2026/03/01/v2-1/",
                                              "https://tool.example.org/2026/01/15/v2-0/"]
    assert parsed.papers[0].authors == ()  # <author><name></name></author> is no author
    assert parsed.papers[0].published_at == utc(2026, 3, 1, 9, 15)


def test_ingest_base_url_resolves_a_saved_feed_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = store_url(tmp_path / "papers.db")
    runner = CliRunner()
    feed = str(FORMATS / "blog_atom_relative_links.atom")
    result = runner.invoke(main, ["--db", db, "ingest", "--base-url", "https://tool.example.org/", feed])
    assert result.exit_code == 0, result.output
    urls = sorted(p["url"] for p in json.loads(runner.invoke(main, ["--db", db, "papers", "--all", "--json"]).output))
    assert urls == ["https://tool.example.org/2026/01/15/v2-0/", "https://tool.example.org/2026/03/01/v2-1/"]
    refused = runner.invoke(main, ["--db", db, "ingest", "--base-url", "tool.example.org", feed])
    assert refused.exit_code == 2 and "not an http(s) URL" in refused.output


def test_rss2_blog_cdata_titles_and_tracking_parameters() -> None:
    parsed = load("blog_rss2.rss")
    assert parsed.format == "feed (rss20)" and (parsed.skipped, parsed.warnings) == ([], [])
    check_clean(parsed)
    first, second = parsed.papers
    assert first.title == "Tests & their fixtures"
    # the per-feed tracking parameter stays in the link, not in the id
    assert first.id == "url:https://medium.com/@samexample/tests-and-their-fixtures-1a2b3c4d5e6f"
    assert first.url.endswith("?source=rss-0123456789ab------2")
    assert first.abstract == "Fixtures you write yourself are fixtures you can share."  # content:encoded
    assert first.published_at == utc(2026, 3, 1, 21, 45, 10)
    assert second.title == "They weren’t."
    assert {p.authors for p in parsed.papers} == {("Sam Example",)}  # dc:creator


def test_wordpress_items_without_titles_are_skipped_and_counted() -> None:
    parsed = load("wordpress_rss2.rss")
    assert parsed.format == "feed (rss20)"
    check_clean(parsed)
    assert parsed.skipped == ["entry 1: no title", "entry 3: no title"]
    (essay,) = parsed.papers
    assert essay.title == "On reading papers slowly"
    assert essay.id == "url:https://pat.example.com/2026/03/on-reading-papers-slowly.html"
    assert essay.authors == ("pat",)
    assert essay.abstract == "Slow reading … pays off. […]"  # numeric entities decoded
    assert essay.published_at == utc(2026, 3, 3, 9, 5)


# --- encodings and hostile documents ------------------------------------------------------

def test_bom_and_cr_only_line_breaks() -> None:
    (paper,) = load("rss2_bom_cr.xml").papers
    assert (paper.title, paper.abstract) == ("Strip 101: The Reviewer", "Panel one … panel three.")
    assert paper.published_at == utc(2026, 2, 2, 15)


def test_declared_encoding_that_is_wrong_and_a_legacy_cjk_encoding() -> None:
    (paper,) = load("rss2_declared_latin1_bytes_utf8.xml").papers
    assert (paper.title, paper.abstract) == ("“Curly quotes” and 中文 tags", "Café ümlaut text.")
    (post,) = load("rss2_gb2312.rss").papers  # GBK bytes, declared gb2312
    assert (post.title, post.abstract, post.url) == ("测试帖子：论文阅读", "一个虚构的帖子。", "https://forum.example.org/t/42")


@pytest.mark.parametrize("name", ["entity_bomb.xml", "entity_utf16be.xml", "unclosed_root.xml"])
def test_entity_expansion_and_broken_documents_are_refused(name: str) -> None:
    with pytest.raises(SourceError) as info:
        load(name)
    assert str(info.value).startswith(f"{FORMATS / name}: not a readable feed: ")
    assert "Traceback" not in str(info.value)


# --- our own lists and the plain-text page ------------------------------------------------

def test_trending_text_page_skips_the_header_and_finds_ids() -> None:
    parsed = load("trending_page.txt")
    assert parsed.format == "text page" and (parsed.skipped, parsed.warnings) == ([], [])
    check_clean(parsed)
    sparse, footnotes, garden = parsed.papers
    assert [p.title for p in parsed.papers] == ["Sparse Attention for Very Long Invented Documents",
                                                "Retrieval That Reads the Footnotes", "Gardening With Gradient Descent"]
    assert sparse.id == "title:sparse attention for very long invented documents"
    assert sparse.url == ("https://arxiv.org/search/?searchtype=title&query="
                          "Sparse+Attention+for+Very+Long+Invented+Documents")
    assert footnotes.id == "arxiv:2603.10001"  # the id mentioned in the abstract
    assert all(len(p.abstract) >= 120 for p in parsed.papers)
    assert garden.abstract.endswith("over one made-up summer season.")


def test_a_page_without_papers_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "header-only.txt"
    path.write_text("new\n\nSubscribe\n\nOct 2\n", encoding="utf-8")
    with pytest.raises(SourceError, match="no papers found"):
        load_source(str(path), timeout_s=5, max_bytes=10**6)


def test_our_json_list_object_form_and_alternative_keys() -> None:
    parsed = load("papers_list.json")
    assert parsed.format == "JSON list"
    check_clean(parsed)
    assert parsed.skipped == ["entry 4: no link or id", "entry 5: no title"]
    moons, fern, page = parsed.papers
    assert moons.id == "arxiv:2604.01234" and moons.authors == ("Zoë Ångström", "Đặng Minh Châu")  # {"name": ...}
    assert (moons.score, moons.code_url) == (31, "https://github.com/example-org/moons")  # upvotes
    assert moons.published_at == utc(2026, 4, 2)  # a date alone is midnight UTC
    assert fern.id == "doi:10.1101/2026.02.01.800001" and fern.url == "https://doi.org/10.1101/2026.02.01.800001"
    assert fern.authors == ("Fernandez, A. B.", "Leaf, C.")  # one ";"-separated string
    assert (fern.score, fern.thumbnail_url) == (8, "https://images.example.org/fern.png")
    assert fern.published_at == utc(2026, 2, 3, 9)
    assert page.id == "url:https://example.org/reading/list/?id=3"  # no tracking parameter, no fragment


def test_our_csv_bom_crlf_column_aliases_and_skips() -> None:
    parsed = load("papers_list.csv")
    assert parsed.format == "CSV"
    check_clean(parsed)
    assert parsed.skipped == ["line 6: no link or id"]  # the blank row (line 4) is not counted
    knots, four_bit, essay = parsed.papers
    assert knots.id == "arxiv:math.GT/0309999" and knots.authors == ("Petra Knotts", "Omar Loop")  # arXiv_ID
    assert (knots.score, knots.published_at) == (3, utc(2003, 9, 30))  # Upvotes, Published
    assert four_bit.id == "arxiv:2603.10002"  # a huggingface.co/papers link is the arXiv paper
    assert four_bit.abstract == 'We quantise an invented model, "to four bits".'
    assert four_bit.code_url == "https://github.com/example-org/four-bit"
    assert essay.id == "url:https://blog.example.org/shelving" and essay.score is None  # "not a number"


# --- through the store: several formats, one paper each ----------------------------------

@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    return load_config(env={})


def test_second_ingest_of_daily_papers_changes_nothing(store, config) -> None:
    source = str(FORMATS / "hf_daily_papers_2024.json")
    first = pipeline.ingest(store, config, [source], now=T0)
    assert (first.sources[0].new, first.sources[0].updated, first.sources[0].unchanged) == (3, 0, 0)
    second = pipeline.ingest(store, config, [source], now=T0 + timedelta(hours=1))
    assert (second.sources[0].new, second.sources[0].updated, second.sources[0].unchanged) == (0, 0, 3)
    with store.atomic() as conn:
        paper = get_paper(conn, "arxiv:2410.20001")
    assert (paper.first_seen_at, paper.last_seen_at) == (T0, T0 + timedelta(hours=1))


def test_one_paper_seen_in_a_listing_the_api_a_feed_and_a_page_is_one_record(store, config) -> None:
    sources = [str(FORMATS / name) for name in
               ("arxiv_listing_rss2.xml", "arxiv_listing_atom.xml", "jsonfeed.json", "hf_daily_papers_2026.json",
                "trending_page.txt")]
    report = pipeline.ingest(store, config, sources, now=T0)
    assert not report.failed
    assert [s.new for s in report.sources] == [4, 0, 2, 2, 2]
    with store.atomic() as conn:
        citation = get_paper(conn, "arxiv:2603.04001")
        footnotes = get_paper(conn, "arxiv:2603.10001")
        total = count_papers(conn)
    assert total == 10
    assert citation.sources == tuple(sources[:3])
    assert citation.title == "Citation Graphs of Libraries That Never Existed"  # the first title stays
    assert citation.authors == ("Ines Catalog", "Tomás Index", "Wen Shelf")  # the longer list
    assert footnotes.sources == (sources[3], sources[4]) and footnotes.score == 23


def test_a_broken_source_is_reported_and_the_others_still_ingested(store, config) -> None:
    bad, good = str(FORMATS / "jsonfeed_truncated.json"), str(FORMATS / "arxiv_api_query.xml")
    error = str(FORMATS / "arxiv_api_error.xml")
    report = pipeline.ingest(store, config, [bad, good, error], now=T0)
    assert report.failed
    assert report.errors[0].startswith(f"{bad}:18: not valid JSON")
    assert report.errors[1] == f"{error}: the arXiv API reported an error: max_results must be a positive number"
    assert report.sources[1].new == 3


def test_papers_json_of_a_text_page_ingests_again_as_the_same_papers(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    db, fresh = store_url(tmp_path / "a.db"), store_url(tmp_path / "b.db")
    for name in ("trending_page.txt", "biorxiv.rdf", "hf_daily_papers_2024.json"):
        assert runner.invoke(main, ["--db", db, "ingest", str(FORMATS / name)]).exit_code == 0
    exported = runner.invoke(main, ["--db", db, "papers", "--all", "--json", "--limit", "1000"]).output
    (tmp_path / "all.json").write_text(exported, encoding="utf-8")
    before = {p["id"] for p in json.loads(exported)}
    assert len(before) == 9 and sum(i.startswith("title:") for i in before) == 2
    again = runner.invoke(main, ["--db", db, "ingest", "all.json"])
    assert again.exit_code == 0 and "0 new" in again.output, again.output
    assert runner.invoke(main, ["--db", fresh, "ingest", "all.json"]).exit_code == 0
    copied = json.loads(runner.invoke(main, ["--db", fresh, "papers", "--all", "--json", "--limit", "1000"]).output)
    assert {p["id"] for p in copied} == before
    assert {p["id"]: p["score"] for p in copied}["arxiv:2410.20003"] == 0


# --- every file here: read, or refused with a clear message ------------------------------

REFUSED = {"arxiv_api_error.xml", "entity_bomb.xml", "entity_utf16be.xml", "jsonfeed_truncated.json",
           "unclosed_root.xml"}
OWN_FILES = sorted(p.name for p in FORMATS.iterdir() if not p.name.startswith("."))


def test_the_own_files_are_all_here() -> None:
    assert len(OWN_FILES) == 31 and REFUSED <= set(OWN_FILES)


@pytest.mark.parametrize("name", OWN_FILES)
def test_every_own_file_ingests_or_fails_clearly(name: str) -> None:
    if name in REFUSED:
        with pytest.raises(SourceError) as info:
            load(name)
        message = str(info.value)
        assert message.startswith(str(FORMATS / name)) and "Traceback" not in message
        return
    parsed = load(name)
    check_clean(parsed)
    for reason in parsed.skipped:
        assert reason.split(":", 1)[0].split()[0] in ("entry", "item", "line")
