"""Paper categories (``cs.CL``, ``hep-ex``, bioRxiv's ``Plant Biology``): read from every format
that carries them, cleaned like other untrusted text, stored, merged across sources, listed by
``papers --json`` and read back from that output.

The inputs are our own (tests/data/categories, tests/data/formats); the last tests are the
conformance layer on the shared real-world corpus (``fixtures_dir``).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from newsletter import pipeline
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.sources import categories, load_source
from newsletter.store.papers import get_paper, upsert_papers
from newsletter.store.schema import papers as papers_table

DATA = Path(__file__).resolve().parent / "data"
OWN = DATA / "categories"
FORMATS = DATA / "formats"
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _no_test_variables_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSLETTER_FIXTURES", raising=False)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    return load_config(env={})


def by_id(path: Path) -> dict[str, tuple[str, ...]]:
    parsed = load_source(str(path), timeout_s=5, max_bytes=10_000_000).parsed
    assert parsed.warnings == [] and all(s.endswith(": no title") for s in parsed.skipped)
    return {p.id: p.categories for p in parsed.papers}


# --- the rules -------------------------------------------------------------------------------

def test_arxiv_categories_are_written_as_arxiv_writes_them() -> None:
    assert categories.arxiv_category("cs.CL") == "cs.CL"
    assert categories.arxiv_category("CS.cl") == "cs.CL"
    assert categories.arxiv_category("Cond-Mat.Mes-Hall") == "cond-mat.mes-hall"
    assert categories.arxiv_category("physics.optics") == "physics.optics"
    assert categories.arxiv_category("HEP-EX") == "hep-ex"
    assert categories.arxiv_category("alg-geom") == "alg-geom"  # a merged archive old papers still carry
    for not_one in ("I.2.7", "68T50", "releases", "cs.CL\n", "cs.CL cs.LG", "foo.BAR", "cs.", "Plant Biology"):
        assert categories.arxiv_category(not_one) is None, not_one
    assert categories.arxiv_category("cs") == "cs"  # an archive alone is a category too


def test_one_string_is_split_on_semicolons_commas_or_spaces_between_arxiv_categories() -> None:
    assert categories.split_categories("cs.CL; cs.LG, x") == ["cs.CL", " cs.LG, x"]
    assert categories.split_categories("cs.CL, cs.LG") == ["cs.CL", " cs.LG"]
    assert categories.split_categories("cs.CL cs.LG") == ["cs.CL", "cs.LG"]
    assert categories.split_categories("Plant Biology") == ["Plant Biology"]
    assert categories.split_categories("cs.CL Biology") == ["cs.CL Biology"]


def test_cleaning_bounds_count_and_length_and_drops_control_characters() -> None:
    many = [f"subject {i}" for i in range(categories.MAX_CATEGORIES + 10)]
    assert len(categories.clean_categories(many)) == categories.MAX_CATEGORIES
    assert categories.clean_categories(["x" * 101, "x" * 100]) == ("x" * 100,)
    assert categories.clean_categories(["cs.CL", "CS.CL", "Ecology", "ECOLOGY", "ecology "]) == ("cs.CL", "Ecology")
    cleaned = categories.clean_categories(["a\x1b[31mb", "c\x08d", "<i>q-bio.NC</i>", "\ud800x", None, 3, ["x"]])
    assert cleaned == ("a [31mb", "c d", "q-bio.NC", "\ufffdx")


# --- each format, on our own inputs ------------------------------------------------------------

def test_arxiv_api_primary_first_then_arxiv_categories_only() -> None:
    found = by_id(OWN / "arxiv_api_classes.xml")
    # primary (listed last in the entry) first; ACM (I.2.7) and MSC (68T50) classes left out;
    # CS.sd written cs.SD; the repeated cs.CL once
    assert found == {"arxiv:2604.02001": ("eess.AS", "cs.CL", "cs.SD"), "arxiv:2604.02002": ()}
    query = by_id(FORMATS / "arxiv_api_query.xml")
    assert query["arxiv:2604.01234"] == ("astro-ph.EP", "physics.comp-ph")
    assert query["arxiv:math.GT/0309999"] == ("math.GT",)
    legacy = by_id(FORMATS / "arxiv_api_legacy.xml")
    assert sorted(legacy.values()) == [("astro-ph.CO",), ("hep-ph",)]


def test_arxiv_listings_of_both_generations() -> None:
    """2024+ RSS 2.0 and Atom: the ``<category>`` elements in order, and the listing's own category
    (every paper in the cs.DL listing is in cs.DL). Legacy RSS 1.0: the ``[cat]`` of the title
    suffix (the primary), then the listing's category."""
    rss2 = list(by_id(FORMATS / "arxiv_listing_rss2.xml").values())
    assert rss2 == [("cs.DL",), ("cs.IR", "cs.DL"), ("cs.DL",), ("math.OC", "cs.DL")]
    assert set(by_id(FORMATS / "arxiv_listing_atom.xml").values()) == {("cs.DL",)}
    legacy = list(by_id(FORMATS / "arxiv_listing_rdf_legacy.xml").values())
    assert legacy[1] == ("hep-ph", "nucl-th")  # "(arXiv:2210.05555v2 [hep-ph] CROSS LISTED)" in nucl-th
    assert set(legacy) == {("nucl-th",), ("hep-ph", "nucl-th")}


def test_biorxiv_subjects_as_written() -> None:
    assert by_id(OWN / "biorxiv_subjects.rdf") == {
        "doi:10.1101/2026.02.09.800101": ("Plant Biology", "Ecology"),  # dc:subject, trimmed, repeat dropped
        "doi:10.1101/2026.02.10.800102": ("Pharmacology and Toxicology",),
    }
    # no dc:subject: the subject collection the feed is of ("bioRxiv Subject Collection: Imaginary Botany")
    assert set(by_id(FORMATS / "biorxiv.rdf").values()) == {("Imaginary Botany",)}


def test_blog_tags_and_hugging_face_keywords_are_not_categories() -> None:
    for name in ("blog_rss2.rss", "wordpress_rss2.rss", "blog_atom.atom", "hf_daily_papers_2026.json",
                 "hf_daily_papers_week.json", "hf_mirror_rss.xml", "hf_community_scrape.json", "jsonfeed.json"):
        assert set(by_id(FORMATS / name).values()) == {()}, name


def test_json_feed_tags_count_only_as_arxiv_categories_of_an_arxiv_paper() -> None:
    assert by_id(OWN / "jsonfeed_tags.json") == {
        "arxiv:2604.02001": ("cs.CL", "eess.AS"),                 # "speech", "reading group" left out
        "url:https://blog.example.org/releases/3.0": (),          # a blog post: even "cs.LG" is a free tag
    }


def test_our_json_list_or_string_and_hostile_values() -> None:
    found = by_id(OWN / "papers_categories.json")
    assert found["arxiv:2604.03001"] == ("cs.CL", "eess.AS", "cs.LG")
    assert found["arxiv:2604.03002"] == ("cs.CL", "stat.ML")
    assert found["arxiv:2604.03003"] == ("hep-th", "gr-qc")
    assert found["doi:10.1101/2026.03.01.800201"] == ("Plant Biology",)
    assert found["doi:10.1101/2026.03.01.800202"] == ("Plant Biology", "Ecology")
    hostile = found["arxiv:2604.03004"]
    assert hostile[:3] == ("cs.CR [31m", "q-bio.NC", "line break")  # escape, tags, line break made harmless
    assert len(hostile) == categories.MAX_CATEGORIES and all(len(c) <= 100 for c in hostile)
    assert all(c.isprintable() for c in hostile)
    assert found["arxiv:2604.03005"] == found["arxiv:2604.03006"] == ()


def test_csv_categories_column() -> None:
    assert by_id(OWN / "papers_categories.csv") == {
        "arxiv:2604.04001": ("cs.CL", "eess.AS"),
        "arxiv:2604.04002": ("cs.CL", "cs.LG", "cs.IR"),
        "arxiv:2604.04003": ("cs.CL", "cs.SD"),
        "doi:10.1101/2026.03.02.800301": ("Plant Biology",),
        "arxiv:2604.04004": (),
    }


# --- the store: kept, merged, listed, read back ----------------------------------------------

def _raw_categories(store) -> dict[str, str | None]:
    with store.atomic() as conn:
        return dict(conn.exec_driver_sql("SELECT id, CAST(categories AS TEXT) FROM papers").fetchall())


def test_stored_as_json_or_null_and_merged_first_source_first(store, config) -> None:
    listing, api = str(FORMATS / "arxiv_listing_rss2.xml"), str(OWN / "arxiv_api_classes.xml")
    blog = str(OWN / "jsonfeed_tags.json")
    report = pipeline.ingest(store, config, [blog, api], now=T0)
    assert [(s.new, s.updated, s.unchanged) for s in report.sources] == [(2, 0, 0), (1, 1, 0)]
    raw = _raw_categories(store)
    assert raw["url:https://blog.example.org/releases/3.0"] is None      # none known: SQL NULL
    assert raw["arxiv:2604.02002"] is None
    assert json.loads(raw["arxiv:2604.02001"]) == ["cs.CL", "eess.AS", "cs.SD"]  # the blog's first, API's added
    with store.atomic() as conn:
        assert get_paper(conn, "arxiv:2604.02001").categories == ("cs.CL", "eess.AS", "cs.SD")
        assert get_paper(conn, "arxiv:2604.02002").categories == ()
    again = pipeline.ingest(store, config, [blog, api, listing], now=T0 + timedelta(hours=1))
    assert [(s.updated, s.unchanged) for s in again.sources[:2]] == [(0, 2), (0, 2)]
    assert _raw_categories(store)["arxiv:2604.02001"] == raw["arxiv:2604.02001"]


def test_a_paper_stored_before_categories_gains_them(store) -> None:
    from newsletter.models import Paper

    plain = Paper(id="arxiv:2604.09001", title="T", url="https://arxiv.org/abs/2604.09001", sources=("a",))
    with store.atomic() as conn:
        upsert_papers(conn, [plain], now=T0)
        counts = upsert_papers(conn, [Paper(**{**plain.__dict__, "categories": ("cs.CL", "cs.LG")})], now=T0)
        assert (counts.new, counts.updated, counts.unchanged) == (0, 1, 0)
        # the same categories again, in another order, with one more: the stored order stays
        counts = upsert_papers(conn, [Paper(**{**plain.__dict__, "categories": ("CS.lg", "stat.ML", "cs.CL")})],
                               now=T0)
        assert (counts.new, counts.updated) == (0, 1)
        assert get_paper(conn, plain.id).categories == ("cs.CL", "cs.LG", "stat.ML")


def test_papers_json_lists_categories_and_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    db, fresh = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    sources = [str(OWN / n) for n in ("papers_categories.json", "papers_categories.csv", "biorxiv_subjects.rdf")]
    assert runner.invoke(main, ["--db", db, "ingest", *sources]).exit_code == 0
    exported = runner.invoke(main, ["--db", db, "papers", "--all", "--json"]).output
    listed = {p["id"]: p["categories"] for p in json.loads(exported)}
    assert listed["arxiv:2604.04002"] == ["cs.CL", "cs.LG", "cs.IR"]
    assert listed["doi:10.1101/2026.02.09.800101"] == ["Plant Biology", "Ecology"]
    assert listed["arxiv:2604.04004"] == []
    (tmp_path / "all.json").write_text(exported, encoding="utf-8")
    assert runner.invoke(main, ["--db", db, "ingest", "all.json"]).exit_code == 0  # adds itself as a source
    again = runner.invoke(main, ["--db", db, "ingest", "all.json"])
    assert again.exit_code == 0 and "0 new, 0 updated, 15 unchanged" in again.output, again.output
    assert {p["id"]: p["categories"]
            for p in json.loads(runner.invoke(main, ["--db", db, "papers", "--all", "--json"]).output)} == listed
    assert runner.invoke(main, ["--db", fresh, "ingest", "all.json"]).exit_code == 0
    copied = json.loads(runner.invoke(main, ["--db", fresh, "papers", "--all", "--json"]).output)
    assert {p["id"]: p["categories"] for p in copied} == listed


def test_postgresql_stores_and_merges_them_as_sqlite_does(tmp_path: Path, postgres_url: str, config) -> None:
    """PostgreSQL takes the SQLAlchemy Core path, SQLite its own: the same papers either way."""
    from newsletter.store import open_store
    from newsletter.store.papers import list_papers

    sources = [str(OWN / "jsonfeed_tags.json"), str(OWN / "arxiv_api_classes.xml"), str(OWN / "papers_categories.csv")]
    seen = {}
    for name, url in (("sqlite", f"sqlite:///{tmp_path / 'c.db'}"), ("postgresql", postgres_url)):
        store = open_store(url)
        try:
            reports = [pipeline.ingest(store, config, sources, now=T0 + timedelta(hours=h)) for h in (0, 1)]
            with store.atomic() as conn:
                papers = {p.id: p.categories for p in list_papers(conn)}
                nulls = conn.execute(select(func.count()).select_from(papers_table)
                                     .where(papers_table.c.categories.is_(None))).scalar_one()
        finally:
            store.dispose()
        seen[name] = ([[(s.new, s.updated, s.unchanged) for s in r.sources] for r in reports], papers, nulls)
    assert seen["postgresql"] == seen["sqlite"]
    assert seen["sqlite"][1]["arxiv:2604.02001"] == ("cs.CL", "eess.AS", "cs.SD")
    assert seen["sqlite"][2] == 3  # the blog post, the API paper without categories, the CSV row without


# --- the conformance layer: the shared real-world corpus -------------------------------------

def _shared(fixtures_dir: Path, relative: str) -> list[tuple[str, ...]]:
    parsed = load_source(relative, path=fixtures_dir / relative, timeout_s=5, max_bytes=20_000_000).parsed
    return [p.categories for p in parsed.papers]


def test_real_arxiv_api_responses(fixtures_dir: Path) -> None:
    assert _shared(fixtures_dir, "arxiv_api/api_id_1605.08386_single_entry.xml") == [("math.CO", "math.ST")]
    assert _shared(fixtures_dir, "arxiv_api/api_id_astro-ph_0601001_old_style_id.xml") == [("astro-ph",)]
    assert _shared(fixtures_dir, "arxiv_api/api_legacy_format_2021_au_gariazzo.xml") == [
        ("astro-ph.CO", "hep-ph"), ("astro-ph.CO",)]
    page = _shared(fixtures_dir, "arxiv_api/api_query_testing_start10_max10.xml")
    assert page[0] == ("math.ST", "cs.IT", "stat.ML") and all(page)
    assert all(categories.arxiv_category(c) == c for cats in page for c in cats)


def test_real_arxiv_listings(fixtures_dir: Path) -> None:
    assert _shared(fixtures_dir, "arxiv_rss/rss2_2024format_math.OC_ASSEMBLED_from_spec.xml") == [
        ("math.AP", "math.OC")]
    assert _shared(fixtures_dir, "arxiv_rss/atom_2024format_math.OC_ASSEMBLED_from_spec.xml") == [
        ("math.AP", "math.OC")]
    assert _shared(fixtures_dir, "arxiv_rss/rss2_2024format_cs.CV_2025-09-18_truncated_first_2000_chars.xml") == [
        ("cs.CV",)]
    assert _shared(fixtures_dir, "arxiv_rss/rss1_rdf_legacy_hep-ex_2021-07-08.xml") == [
        ("hep-ex",), ("math.GR", "hep-ex"), ("hep-ph", "hep-ex")]


def test_real_biorxiv_blogs_and_hugging_face(fixtures_dir: Path) -> None:
    assert set(_shared(fixtures_dir, "feeds_other/preprints_rss1_rdf_biorxiv_plant_biology.rdf")) == {
        ("Plant Biology",)}
    for relative in ("feeds_other/wordpress_rss2_items_with_empty_titles_manton.rss",  # tag "Snippets"
                     "feeds_other/blog_atom1_neverworkintheory.atom", "feeds_other/jsonfeed1_inessential.json",
                     "hf_daily_papers/api_daily_papers_2026_schema_single_entry.json",  # ai_keywords
                     "hf_daily_papers/community_rss_hf_daily_papers_mirror_2026-10-03.xml"):
        assert set(_shared(fixtures_dir, relative)) == {()}, relative
    qemu = load_source("qemu.atom", path=fixtures_dir / "feeds_other/blog_atom1_jekyll_feed_relative_urls_qemu.atom",
                       timeout_s=5, max_bytes=10_000_000, base_url="https://www.qemu.org/").parsed
    assert qemu.papers and {p.categories for p in qemu.papers} == {()}  # "releases", "qemu 10.1"


def test_an_issue_frozen_with_categories_reads_them_back_as_they_were() -> None:
    """A sent issue keeps a copy of its papers (store/issues.py): categories come back a tuple,
    so the paper is equal to (and hashes like) the one it was made from."""
    from newsletter.models import Paper
    from newsletter.store.issues import paper_from_json, paper_to_json

    paper = Paper(id="arxiv:2604.02001", title="T", url="https://arxiv.org/abs/2604.02001", sources=("a",),
                  published_at=T0, categories=("eess.AS", "cs.CL"))
    again = paper_from_json(json.loads(json.dumps(paper_to_json(paper))))
    assert again == paper and hash(again) == hash(paper)
