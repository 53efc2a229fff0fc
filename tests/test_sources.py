"""Sources: every shared fixture ingests or fails clearly, golden output of key fixtures, and
the normalisation that makes one paper from many sightings."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from newsletter.cli.ingest import paper_to_json
from newsletter.config import load_config
from newsletter.errors import SourceError
from newsletter.sources import load_source, normalize, parse_bytes
from tests.conftest import SHARED_FIXTURES

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
GOLDEN = HERE / "golden" / "sources"
EXCLUDED = ("subscribers", "emails")

FIXTURE_FILES = sorted(
    str(p.relative_to(SHARED_FIXTURES)) for p in SHARED_FIXTURES.rglob("*")
    if p.is_file() and p.name != "README.md" and p.relative_to(SHARED_FIXTURES).parts[0] not in EXCLUDED
) if SHARED_FIXTURES.is_dir() else ["(fixtures folder missing)"]

GOLDEN_CASES = {
    "hf_api_2024": "hf_daily_papers/api_daily_papers_2024-10-25.json",
    "hf_api_2026_single": "hf_daily_papers/api_daily_papers_2026_schema_single_entry.json",
    "arxiv_rss2_2024": "arxiv_rss/rss2_2024format_math.OC_ASSEMBLED_from_spec.xml",
    "arxiv_atom_2024": "arxiv_rss/atom_2024format_math.OC_ASSEMBLED_from_spec.xml",
    "arxiv_rss1_legacy": "arxiv_rss/rss1_rdf_legacy_hep-ex_2021-07-08.xml",
    "arxiv_api_34_authors": "arxiv_api/api_id_1707.08567_34_authors_non_ascii.xml",
    "hf_community_rss": "hf_daily_papers/community_rss_hf_daily_papers_mirror_2026-10-03.xml",
    "biorxiv_rdf": "feeds_other/preprints_rss1_rdf_biorxiv_plant_biology.rdf",
    "jsonfeed": "feeds_other/jsonfeed1_inessential.json",
    "seed_text": "seed-trending-papers.txt",
}


def _load(fixtures_dir: Path, relative: str, max_bytes: int = 20_000_000):
    return load_source(relative, path=fixtures_dir / relative, timeout_s=5, max_bytes=max_bytes).parsed


def _snapshot(parsed) -> dict:
    papers = []
    for paper in parsed.papers:
        data = paper_to_json(paper)
        data.pop("first_seen_at"), data.pop("last_seen_at")
        # The fixtures are not ours to redistribute: keep a digest of each abstract, not its text.
        abstract = data.pop("abstract")
        data["abstract_digest"] = {"chars": len(abstract), "starts": abstract[:40],
                                   "sha256": hashlib.sha256(abstract.encode()).hexdigest()[:16]}
        papers.append(data)
    return {"format": parsed.format, "papers": papers, "skipped": parsed.skipped, "warnings": parsed.warnings}


@pytest.mark.parametrize("relative", FIXTURE_FILES)
def test_every_fixture_ingests_or_fails_clearly(fixtures_dir: Path, relative: str) -> None:
    try:
        parsed = _load(fixtures_dir, relative)
    except SourceError as exc:
        message = str(exc)
        assert message.startswith(f"{relative}:"), message
        assert len(message) > len(relative) + 5 and "Traceback" not in message
        return
    for paper in parsed.papers:
        assert paper.title and paper.title == paper.title.strip() and "\n" not in paper.title
        assert paper.url.startswith(("http://", "https://"))
        assert paper.id.split(":", 1)[0] in ("arxiv", "doi", "url", "title")
        assert paper.published_at is None or paper.published_at.utcoffset().total_seconds() == 0
    for reason in parsed.skipped:
        assert reason.split(":", 1)[0].split()[0] in ("entry", "item", "line")


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_normalised_output(fixtures_dir: Path, update_golden: bool, case: str) -> None:
    actual = _snapshot(_load(fixtures_dir, GOLDEN_CASES[case]))
    path = GOLDEN / f"{case}.json"
    text = json.dumps(actual, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if update_golden:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run pytest --update-golden"
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(text)


def test_no_unused_golden_files() -> None:
    names = {p.stem for p in GOLDEN.glob("*.json")}
    assert names <= set(GOLDEN_CASES), f"golden files without a case: {sorted(names - set(GOLDEN_CASES))}"


# --- specific behaviours ---------------------------------------------------------------------

def test_arxiv_listing_prefix_and_suffix_are_removed(fixtures_dir: Path) -> None:
    rss2 = _load(fixtures_dir, "arxiv_rss/rss2_2024format_math.OC_ASSEMBLED_from_spec.xml").papers[0]
    assert rss2.id == "arxiv:2203.01250"
    assert rss2.abstract.startswith("We consider first order")
    assert "Announce Type" not in rss2.abstract and "$\\min \\int_{\\mathbb{R}^N}" in rss2.abstract
    assert rss2.authors == ("Antonin Monteil", "Paul Pegon")
    legacy = _load(fixtures_dir, "arxiv_rss/rss1_rdf_legacy_hep-ex_2021-07-08.xml").papers
    assert [p.title.endswith(")") for p in legacy] == [False, False, False]
    assert legacy[1].title == "Potential applications of modular representation theory to quantum mechanics."
    assert legacy[0].authors == ("LHCb collaboration", "R. Aaij")  # links, without "et al."


def test_hugging_face_api_fields(fixtures_dir: Path) -> None:
    papers = _load(fixtures_dir, "hf_daily_papers/api_daily_papers_2026_schema_single_entry.json").papers
    (paper,) = papers
    assert paper.id == "arxiv:2602.23229"
    assert paper.url == "https://arxiv.org/abs/2602.23229" and paper.pdf_url == "https://arxiv.org/pdf/2602.23229"
    assert paper.page_url == "https://huggingface.co/papers/2602.23229"
    assert paper.code_url == "https://github.com/marco-garosi/CIRCLE"
    assert paper.score == 10 and paper.thumbnail_url and paper.thumbnail_url.startswith("https://")
    assert paper.published_at.isoformat() == "2026-02-26T17:08:18+00:00"


@pytest.mark.parametrize("relative", [
    "arxiv_rss/rss2_2024format_physics_2025-12-31_holiday_empty.xml",
    "arxiv_api/api_id_0000.0000_zero_results.xml",
    "feeds_other/papers_with_code_trending_after_shutdown_empty.xml",
])
def test_an_empty_feed_is_not_an_error(fixtures_dir: Path, relative: str) -> None:
    parsed = _load(fixtures_dir, relative)
    assert (parsed.papers, parsed.skipped, parsed.warnings) == ([], [], [])
    assert parsed.format.startswith("feed (")


def test_a_malformed_feed_with_recovered_entries_is_ingested_with_a_warning(fixtures_dir: Path) -> None:
    parsed = _load(fixtures_dir, "arxiv_rss/rss2_2024format_cs.CV_2025-09-18_truncated_first_2000_chars.xml")
    assert len(parsed.papers) == 1 and parsed.papers[0].id.startswith("arxiv:")
    assert parsed.warnings == ["malformed feed, 1 entries recovered: <unknown>:21:913: no element found"]
    with pytest.raises(SourceError, match="not a readable feed: .*unclosed token"):
        _load(fixtures_dir, "malformed/fp_illformed_unclosed_root.xml")  # nothing recovered: an error


def test_title_zero_is_a_title(fixtures_dir: Path) -> None:
    (paper,) = _load(fixtures_dir, "arxiv_api/api_id_2104.12255v1_title_is_zero.xml").papers
    assert paper.title == "0"


def test_arxiv_api_error_entry_is_an_error(fixtures_dir: Path) -> None:
    with pytest.raises(SourceError, match="arXiv API reported an error: incorrect id format for abc"):
        _load(fixtures_dir, "arxiv_api/api_id_abc_http400_error_entry.xml")


def test_seed_text_page_skips_the_header(fixtures_dir: Path) -> None:
    papers = _load(fixtures_dir, "seed-trending-papers.txt").papers
    assert papers[0].title == "DeepSeek-VL: Towards Real-World Vision-Language Understanding"
    assert all(p.title not in ("new", "Subscribe", "Mar 11") for p in papers)
    assert all(len(p.abstract) > 120 for p in papers)


def test_entity_bomb_and_utf16_entities_are_refused(fixtures_dir: Path) -> None:
    for name in ("malformed/xml_entity_expansion_bomb.xml", "malformed/feed_utf16be_bom_entity_expansion_title.xml"):
        with pytest.raises(SourceError, match="not a readable feed"):
            _load(fixtures_dir, name)


def test_bigger_generated_entity_bomb_is_bounded() -> None:
    levels = "".join(f'<!ENTITY e{i} "{("&e%d;" % (i - 1)) * 10}">' for i in range(1, 12))
    doc = (f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY e0 "lol">{levels}]>'
           '<rss version="2.0"><channel><item><title>&e11;</title><link>https://example.org/a</link>'
           '</item></channel></rss>').encode()
    try:
        parsed = parse_bytes(doc, "bomb.xml")
    except SourceError as exc:
        assert str(exc).startswith("bomb.xml: ")
    else:
        assert all(len(p.title) < 10_000 for p in parsed.papers)


def test_absurd_nesting_is_refused_before_feedparser_walks_it() -> None:
    """400,000 nested elements (2.8 MB) took feedparser ~9 s and ~180 MB; refused at once now."""
    deep = b'<rss version="2.0"><channel>' + b"<a>" * 400_000 + b"</a>" * 400_000 + b"</channel></rss>"
    with pytest.raises(SourceError) as info:
        parse_bytes(deep, "deep.xml")
    assert str(info.value) == ("deep.xml: refused: elements nested more than 256 deep "
                               "(no feed is; a hostile or broken document)")
    # Nesting a real feed could have (XHTML content a few dozen levels deep) is still read.
    nested = "<div>" * 40 + "Deep but fine" + "</div>" * 40
    ok = (f'<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>T</title><link href="https://example.org/t"/>'
          f'<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">{nested}</div></content>'
          f"</entry></feed>").encode()
    (paper,) = parse_bytes(ok, "ok.atom").papers
    assert paper.abstract == "Deep but fine"


def test_binary_junk_and_size_cap(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(SourceError, match="binary data"):
        load_source(str(junk), timeout_s=5, max_bytes=1_000_000)
    big = tmp_path / "big.xml"
    big.write_bytes(b"<rss>" + b" " * 5000 + b"</rss>")
    with pytest.raises(SourceError, match="too large: 5,011 bytes"):
        load_source(str(big), timeout_s=5, max_bytes=1000)


def test_csv_columns_and_skips() -> None:
    parsed = load_source(str(DATA / "papers_small.csv"), timeout_s=5, max_bytes=10**6).parsed
    ids = [p.id for p in parsed.papers]
    assert ids == ["arxiv:2403.05525", "arxiv:hep-th/9901001", "doi:10.1101/743294"]
    first = parsed.papers[0]
    assert first.title == "DeepSeek-VL: Towards Real-World Vision-Language Understanding"
    assert first.abstract == "A short note of our own, with tags & entities."
    assert first.authors == ("Haoyu Lu", "Wen Liu") and first.score == 7
    assert parsed.papers[1].published_at.isoformat() == "1998-12-31T22:00:00+00:00"
    assert parsed.skipped == ["line 4: no link or id", "line 5: no title"]


def test_a_guessed_encoding_is_read_with_a_warning() -> None:
    data = "title,url\nCafé théorie des catégories,https://example.org/a\n".encode("cp1252")
    parsed = parse_bytes(data, "legacy.csv")
    assert len(parsed.papers) == 1
    (warning,) = parsed.warnings
    assert warning.startswith("not UTF-8: read as ") and "save the file as UTF-8" in warning
    assert parse_bytes("title,url\nCafé,https://example.org/b\n".encode(), "utf8.csv").warnings == []


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_western_accents_in_a_legacy_file_come_out_right(encoding: str) -> None:
    """cp1250, cp1252, cp1257 and ISO 8859-4 fit this text equally well; Western wins the tie."""
    text = "title,url\nCafé naïve résumé,https://example.org/a\nÉtude über Straße,https://example.org/b\n"
    parsed = parse_bytes(text.encode(encoding), "legacy.csv")
    assert [p.title for p in parsed.papers] == ["Café naïve résumé", "Étude über Straße"]
    assert parsed.warnings and "not UTF-8" in parsed.warnings[0]


def test_csv_without_required_columns(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("name,homepage\nx,y\n", encoding="utf-8")
    with pytest.raises(SourceError) as info:
        load_source(str(path), timeout_s=5, max_bytes=10**6)
    assert str(info.value) == f"{path}:1: the CSV header needs a title column and a url or id column (found: name, homepage)"


@pytest.mark.parametrize("text", ["2403.05525", "2403.05525v2", "arXiv:2403.05525", "https://arxiv.org/abs/2403.05525v3",
                                  "http://arxiv.org/pdf/2403.05525v2.pdf", "https://huggingface.co/papers/2403.05525",
                                  "oai:arXiv.org:2403.05525v1", "https://export.arxiv.org/abs/2403.05525"])
def test_arxiv_forms_share_one_id(text: str) -> None:
    assert normalize.canonical_id(text) == "arxiv:2403.05525"


def test_other_ids() -> None:
    assert normalize.canonical_id("hep-th/9901001v2") == "arxiv:hep-th/9901001"
    assert normalize.canonical_id("https://arxiv.org/abs/math.GT/0309136") == "arxiv:math.GT/0309136"
    assert normalize.canonical_id("https://doi.org/10.1101/743294") == "doi:10.1101/743294"
    assert normalize.canonical_id("DOI:10.5802/JEP.257") == "doi:10.5802/jep.257"
    assert normalize.canonical_id("HTTPS://Example.org/a#b") == "url:https://example.org/a"
    assert normalize.canonical_id("not an id") is None


def test_text_clean_up() -> None:
    assert normalize.clean_text("A <b>bold</b>\n  title &amp; more") == "A bold title & more"
    assert normalize.clean_text("H<sub>2</sub>O and <i>in vivo</i>-like <SPAN class='x'>CO</SPAN><sub>2</sub>") == (
        "H2O and in vivo-like CO2")
    assert normalize.clean_text("<p>One.</p><p>Two.<br/>Three</p><li>Four</li>") == "One. Two. Three Four"
    assert normalize.clean_text("Example &lt;b&gt;Atom&lt;/b&gt;") == "Example <b>Atom</b>"
    assert normalize.clean_text("$\\alpha$ &gt; 1") == "$\\alpha$ > 1"
    assert normalize.clean_title("Title. (arXiv:2007.03939v2 [hep-ph] UPDATED)") == "Title."
    assert normalize.clean_text('<a href="https://x.org/?a=1&b=2" target=_blank>link</a> <img src=x alt="">'
                                '<video controls src=a>clip</video><H1 class="t">H</H1>') == "link clip H"


@pytest.mark.parametrize("text", [
    "Bounds for p<q and q>1 regimes", "Vec<T> and Option<Box<dyn Fn>>", "Sorting when n<m and k>2",
    "$x<i$ and $j>0$", "Unmanaged<AnyObject>!", "a <-> b", "x < /p> y", "<unknown-tag> stays",
])
def test_less_than_and_greater_than_in_text_are_kept(text: str) -> None:
    """Only what HTML itself would write is a tag: comparisons, generics and LaTeX stay."""
    assert normalize.clean_text(text) == text


@pytest.mark.parametrize(("html", "text"), [
    ('<a href="x" download>link</a>', "link"), ("<img src=x alt>", ""), ("<div class=foo data-x>t</div>", "t"),
    ('<a href="x"target="_blank">y</a>', "y"), ("<math><mi>x</mi></math>", "x"), ('<svg><path d="M0"/></svg>', ""),
    ("<input disabled>", ""), ("one</br />two", "one two"), ("<P CLASS='a'>Up</P>", "Up"),
])
def test_real_markup_is_removed_whatever_its_attributes(html: str, text: str) -> None:
    assert normalize.clean_text(html) == text


def test_comparisons_survive_every_plain_text_format() -> None:
    title, abstract = "Bounds for p<q and q>1 regimes", "For $n<m$ and $k>2$ we show Vec<T> is enough."
    atom = ('<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/abs/2401.00001v1</id>'
            '<title>Bounds for p&lt;q and q&gt;1 regimes</title>'
            '<summary>For $n&lt;m$ and $k&gt;2$ we show Vec&lt;T&gt; is enough.</summary></entry></feed>')
    for data, name in (
        (json.dumps([{"id": "2401.00001", "title": title, "abstract": abstract}]).encode(), "p.json"),
        (f'id,title,abstract\n2401.00001,"{title}","{abstract}"\n'.encode(), "p.csv"),
        (atom.encode(), "p.atom"),
    ):
        (paper,) = parse_bytes(data, name).papers
        assert (paper.title, paper.abstract) == (title, abstract), name


def test_clean_text_fast_path_never_changes_the_result() -> None:
    """Text taken as already clean must be exactly what the full clean-up would return."""
    import random

    full = lambda t: " ".join(t.split())  # noqa: E731 -- the full path for text without markup
    whitespace = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    alphabet = list("ab.<>&;") + whitespace + ["\x00", "é", "中"]
    rng = random.Random(7)
    for _ in range(50_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
        if normalize.is_clean(text):
            assert full(text) == text and "<" not in text and "&" not in text and "\x00" not in text, repr(text)
    for text in ("Plain title", "Émile Borel", " lead", "trail ", "two  spaces", "a\u00a0b", "a\x1fb", "a\x0cb"):
        assert normalize.clean_text(text) == full(text)


def test_json_feed_1_1_authors_external_url_and_dates() -> None:
    feed = {"version": "https://jsonfeed.org/version/1.1", "title": "Reading list",
            "authors": [{"name": "Feed Editor"}],
            "items": [
                {"id": "1", "url": "https://blog.example.org/notes/1",
                 "external_url": "https://arxiv.org/abs/2403.05525v2", "title": "A <em>vision</em>-language model",
                 "content_text": "Our note on it.", "authors": [{"name": "Ada Lovelace"}, {"name": "Alan Turing"}],
                 "date_published": "2024-03-08T12:00:00+02:00"},
                {"id": "2", "url": "https://blog.example.org/notes/2", "title": "A post", "content_html": "<p>Hi</p>"},
                {"id": "3", "content_text": "A micro-post without a title"},
            ]}
    parsed = parse_bytes(json.dumps(feed).encode(), "feed.json")
    first, second = parsed.papers
    assert parsed.format == "JSON Feed"
    assert (first.id, first.title, first.abstract) == ("arxiv:2403.05525", "A vision-language model", "Our note on it.")
    assert first.authors == ("Ada Lovelace", "Alan Turing")
    assert first.published_at.isoformat() == "2024-03-08T10:00:00+00:00"
    assert (second.id, second.authors, second.abstract) == ("url:https://blog.example.org/notes/2", ("Feed Editor",), "Hi")
    assert parsed.skipped == ["item 3: no title"]


@pytest.mark.parametrize("doc", [
    [{"title": "T", "url": "https://example.org/a", "authors": 5, "score": 1e400, "published_at": "0001-01-01T00:00:00+05:00"}],
    [{"title": "T", "url": "https://example.org/a", "authors": True, "upvotes": 10**30, "details": {"github_links": "x"}}],
    [{"paper": {"id": "2403.05525", "title": "T", "authors": 7, "mediaUrls": True, "upvotes": float("inf")}}],
    {"version": "https://jsonfeed.org/version/1.1", "authors": 3,
     "items": [{"title": "T", "url": "https://example.org/a", "authors": 1.5, "date_published": "yesterday"}]},
])
def test_odd_json_types_never_crash_a_reader(doc) -> None:
    """Numbers or booleans where names, lists or scores belong (found by fuzzing): the paper is
    kept without the odd field, never a traceback."""
    text = json.dumps(doc).replace("1e+400", "1e400")
    (paper,) = parse_bytes(text.encode(), "odd.json").papers
    assert paper.title == "T" and paper.authors == () and paper.score is None and paper.published_at is None


def test_json_values_zero_and_false_are_kept_empty_ones_skipped() -> None:
    data = json.dumps([{"title": "T", "url": "https://example.org/z", "score": 0, "upvotes": 9,
                        "abstract": "", "summary": "From the summary.", "link": [], "pdf_url": {}}]).encode()
    (paper,) = parse_bytes(data, "zero.json").papers
    assert paper.score == 0 and paper.abstract == "From the summary." and paper.pdf_url is None


def test_the_configured_size_limit_is_applied_to_a_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter import pipeline
    from newsletter.store import open_store

    monkeypatch.chdir(tmp_path)
    config = load_config(env={"NEWSLETTER_SOURCES_MAX_BYTES": "1000"})
    store = open_store(f"sqlite:///{tmp_path / 'n.db'}")
    report = pipeline.ingest(store, config, [str(pipeline.SAMPLE_PAPERS)])
    assert report.failed and "limit 1,000, see sources.max_bytes" in report.sources[0].error
    relaxed = pipeline.ingest(store, load_config(env={}), [str(pipeline.SAMPLE_PAPERS)])
    assert not relaxed.failed and relaxed.total("new") == 12


def test_enormous_titles_abstracts_and_names_are_cut_on_a_word() -> None:
    """A hostile source must not put megabytes into every issue and every message."""
    from newsletter.sources.base import MAX_ABSTRACT_CHARS, MAX_NAME_CHARS, MAX_TITLE_CHARS

    word = "representation "
    data = json.dumps([{"id": "2401.00001", "title": word * 1_000_000, "abstract": word * 100_000,
                        "authors": ["Ada " + "Lovelace" * 100, "Alan Turing"]}]).encode()
    (paper,) = parse_bytes(data, "big.json").papers
    assert len(paper.title) <= MAX_TITLE_CHARS and paper.title.endswith("representation\u2026")
    assert len(paper.abstract) <= MAX_ABSTRACT_CHARS and paper.abstract.endswith("\u2026")
    assert len(paper.authors[0]) <= MAX_NAME_CHARS and paper.authors[1] == "Alan Turing"
    (short,) = parse_bytes(json.dumps([{"id": "2401.00002", "title": "A normal title"}]).encode(), "s.json").papers
    assert short.title == "A normal title"


def test_a_lone_surrogate_is_replaced_not_a_reason_to_lose_the_source() -> None:
    """"\\ud800" is legal JSON but cannot be stored or mailed as UTF-8."""
    data = (b'[{"id":"2401.00011","title":"Surrogate \\ud800 title","authors":["A \\udc00 B"]},'
            b'{"id":"2401.00012","title":"Fine \\ud83d\\ude00 title"}]')
    first, second = parse_bytes(data, "s.json").papers
    assert first.title == "Surrogate \ufffd title" and first.authors == ("A \ufffd B",)
    assert second.title == "Fine \U0001F600 title"  # a proper pair is one character


def test_control_characters_become_spaces() -> None:
    """A terminal escape in a feed's title must not reach the operator's terminal or a message."""
    assert normalize.clean_text("Red \x1b[31mtitle\x08\x01 x\x7f") == "Red [31mtitle x"
    assert normalize.clean_text("caf\u00e9 \x9b1m") == "caf\u00e9 1m"
    (paper,) = parse_bytes(json.dumps([{"id": "2401.00013", "title": "A \x1b[2J title"}]).encode(), "c.json").papers
    assert paper.title == "A [2J title"


def test_author_strings_with_initials_split_after_the_initials() -> None:
    """bioRxiv writes "Surname, I." lists; some with initials in lower case."""
    assert normalize.split_authors("Kaur, M., Shukla, A. K., Singh, R.") == ["Kaur, M.", "Shukla, A. K.", "Singh, R."]
    assert normalize.split_authors("Zhang, a., jiang, x., zhang, x.") == ["Zhang, a.", "jiang, x.", "zhang, x."]
    assert normalize.split_authors("Ada Lovelace, Alan Turing and Grace Hopper") == [
        "Ada Lovelace", "Alan Turing", "Grace Hopper"]
