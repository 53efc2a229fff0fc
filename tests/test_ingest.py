"""Ingesting into a real SQLite store: counts, idempotence, merging across sources, failures
that leave the store as it was, and the CLI around it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from newsletter import pipeline
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.store.papers import count_papers, get_paper, list_papers
from newsletter.store.schema import papers as papers_table

DATA = Path(__file__).resolve().parent / "data"
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    return load_config(env={})


def _rows(store) -> list[dict]:
    with store.atomic() as conn:
        return [dict(r._mapping) for r in conn.execute(select(papers_table).order_by(papers_table.c.id))]


def test_second_ingest_changes_nothing(store, config, fixtures_dir: Path) -> None:
    source = str(fixtures_dir / "hf_daily_papers" / "api_daily_papers_2024-10-25.json")
    first = pipeline.ingest(store, config, [source], now=T0)
    assert (first.sources[0].new, first.sources[0].updated, first.sources[0].unchanged) == (29, 0, 0)
    before = _rows(store)
    second = pipeline.ingest(store, config, [source], now=T0 + timedelta(hours=1))
    assert (second.sources[0].new, second.sources[0].updated, second.sources[0].unchanged) == (0, 0, 29)
    after = _rows(store)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "last_seen_at"} for r in rows]  # noqa: E731
    assert strip(after) == strip(before)
    assert {r["last_seen_at"] for r in after} == {T0 + timedelta(hours=1)}
    assert {r["first_seen_at"] for r in after} == {T0}


def test_same_paper_from_three_sources_is_one_record(store, config) -> None:
    sources = [str(DATA / "papers_small.json"), str(DATA / "papers_small.csv"), str(DATA / "hf_mirror_small.xml")]
    report = pipeline.ingest(store, config, sources, now=T0)
    assert not report.failed
    assert [s.new for s in report.sources] == [2, 2, 0]
    assert [s.updated for s in report.sources] == [0, 1, 1]
    with store.atomic() as conn:
        paper = get_paper(conn, "arxiv:2403.05525")
        total = count_papers(conn)
    assert total == 4
    assert paper.sources == tuple(sources)
    assert paper.score == 12                       # the highest seen
    assert paper.authors == ("Haoyu Lu", "Wen Liu", "Bo Zhang")  # the longest list
    assert paper.abstract == "A short note of our own, with tags & entities."  # the longest abstract
    assert paper.url == "https://arxiv.org/abs/2403.05525" and paper.pdf_url == "https://arxiv.org/pdf/2403.05525"
    assert paper.published_at == datetime(2024, 3, 8, tzinfo=timezone.utc)  # the earliest
    # Any order gives the same record: ingest again reversed into a fresh store.
    again = pipeline.ingest(store, config, list(reversed(sources)), now=T0)
    assert [s.updated for s in again.sources] == [0, 0, 0]


def test_reversed_order_converges(tmp_path: Path, config) -> None:
    from newsletter.store import open_store

    sources = [str(DATA / "papers_small.json"), str(DATA / "papers_small.csv"), str(DATA / "hf_mirror_small.xml")]
    a, b = open_store(f"sqlite:///{tmp_path / 'a.db'}"), open_store(f"sqlite:///{tmp_path / 'b.db'}")
    pipeline.ingest(a, config, sources, now=T0)
    pipeline.ingest(b, config, list(reversed(sources)), now=T0)
    norm = lambda rows: [{**r, "sources": sorted(r["sources"])} for r in rows]  # noqa: E731
    assert norm(_rows(a)) == norm(_rows(b))


def test_broken_source_is_reported_and_others_still_ingested(store, config, fixtures_dir: Path) -> None:
    good = str(DATA / "papers_small.json")
    bad = str(fixtures_dir / "feeds_other" / "jsonfeed_truncated_allthis_partial.json")
    report = pipeline.ingest(store, config, [bad, good, str(DATA / "missing.json")], now=T0)
    assert report.failed
    assert report.errors[0].startswith(f"{bad}:1: not valid JSON")
    assert report.errors[1] == f"{DATA / 'missing.json'}: no such file"
    assert report.sources[1].new == 2 and report.sources[1].skipped == 2


def test_a_readers_unexpected_failure_is_reported_and_the_others_still_ingested(
        store, config, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault no real input produces now (odd inputs are handled): injected, to prove the net."""
    real = pipeline.load_source

    def failing(name, **kwargs):  # type: ignore[no-untyped-def]
        if name.endswith(".csv"):
            raise KeyError("surprise")
        return real(name, **kwargs)

    monkeypatch.setattr(pipeline, "load_source", failing)
    csv_path, json_path = str(DATA / "papers_small.csv"), str(DATA / "papers_small.json")
    report = pipeline.ingest(store, config, [csv_path, json_path], now=T0)
    assert report.errors == (f"{csv_path}: could not be read (KeyError: 'surprise'); nothing from it was stored",)
    assert report.sources[1].new == 2


def test_without_sources_the_sample_is_ingested(store, config) -> None:
    report = pipeline.ingest(store, config, now=T0)
    assert report.used_sample and report.sources[0].source == pipeline.SAMPLE_SOURCE
    assert report.sources[0].new == 12 and not report.failed
    with store.atomic() as conn:
        listed = list_papers(conn)
    assert all(p.id.startswith("arxiv:") and p.abstract for p in listed)
    dates = [p.published_at for p in listed]
    assert dates == sorted(dates, reverse=True)


def test_configured_relative_paths_are_relative_to_the_config_file(tmp_path: Path, store) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "mine.json").write_text(json.dumps([{"title": "Mine", "url": "https://example.org/mine"}]))
    (folder / "newsletter.toml").write_text('[sources]\nurls = ["mine.json"]\n')
    config = load_config(folder / "newsletter.toml", env={})
    report = pipeline.ingest(store, config, now=T0)
    assert not report.used_sample and report.sources[0].new == 1


def test_list_papers_order_and_filters(store, config) -> None:
    items = [
        {"title": "Old high", "url": "https://e.org/1", "score": 99, "published_at": "2026-01-01T10:00:00Z"},
        {"title": "New low", "url": "https://e.org/2", "score": 1, "published_at": "2026-01-05T09:00:00Z"},
        {"title": "New high", "url": "https://e.org/3", "score": 50, "published_at": "2026-01-05T08:00:00Z"},
        {"title": "New unscored", "url": "https://e.org/4", "published_at": "2026-01-05T23:00:00Z"},
    ]
    path = Path.cwd() / "list.json"  # tmp_path: the config fixture went there
    path.write_text(json.dumps({"papers": items}))
    pipeline.ingest(store, config, [str(path)], now=T0)
    with store.atomic() as conn:
        titles = [p.title for p in list_papers(conn)]
        assert titles == ["New high", "New low", "New unscored", "Old high"]
        assert [p.title for p in list_papers(conn, limit=2, exclude_ids=["url:https://e.org/3"])] == ["New low", "New unscored"]
        assert list_papers(conn, first_seen_since=T0 + timedelta(seconds=1)) == []


def test_cli_ingest_and_papers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    result = runner.invoke(main, ["--db", db, "ingest"], env={})
    assert result.exit_code == 0, result.output
    assert "bundled sample" in result.output and "12 new" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("nothing useful\n")
    result = runner.invoke(main, ["--db", db, "ingest", str(DATA / "papers_small.csv"), str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:1: the CSV header needs a title column" in result.output
    assert "2 new, 1 updated" in result.output
    assert f"Skipped: {DATA / 'papers_small.csv'}: line 4: no link or id" in result.output  # says why
    result = runner.invoke(main, ["--db", db, "ingest", "ftp://example.org/papers.xml"])
    assert result.exit_code == 1
    assert "ftp://example.org/papers.xml: only http:// and https:// URLs (or file paths) can be read" in result.output
    result = runner.invoke(main, ["--db", db, "papers", "--all", "--json"])
    assert result.exit_code == 0
    listed = json.loads(result.output)
    assert len(listed) == 14
    assert listed[0]["id"] == "doi:10.1101/743294"  # undated: first seen now, so newest
    assert [p["id"] for p in listed if p["published_at"]][0] == "arxiv:2501.12948"
    assert {"id", "title", "authors", "abstract", "url", "pdf_url", "score", "sources"} <= set(listed[0])
    for command in (["ingest", "--help"], ["papers", "--help"]):
        assert "Example:" in runner.invoke(main, command).output


def test_papers_json_ingested_again_is_the_same_papers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        fixtures_dir: Path) -> None:
    """`papers --json` is ingestible: into the same store it adds nothing, into a fresh one it
    gives the same ids, including the title-only papers of a plain-text page."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    db, fresh = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    assert runner.invoke(main, ["--db", db, "ingest", str(fixtures_dir / "seed-trending-papers.txt")]).exit_code == 0
    assert runner.invoke(main, ["--db", db, "ingest"]).exit_code == 0  # the bundled sample as well
    exported = runner.invoke(main, ["--db", db, "papers", "--all", "--json", "--limit", "1000"]).output
    (tmp_path / "all.json").write_text(exported, encoding="utf-8")
    before = {p["id"] for p in json.loads(exported)}
    assert any(i.startswith("title:") for i in before)
    again = runner.invoke(main, ["--db", db, "ingest", "all.json"])
    assert again.exit_code == 0 and f"0 new" in again.output, again.output
    assert {p["id"] for p in json.loads(runner.invoke(main, ["--db", db, "papers", "--all", "--json", "--limit", "1000"]).output)} == before
    assert runner.invoke(main, ["--db", fresh, "ingest", "all.json"]).exit_code == 0
    copied = json.loads(runner.invoke(main, ["--db", fresh, "papers", "--all", "--json", "--limit", "1000"]).output)
    assert {p["id"] for p in copied} == before


# --- the SQLite upsert (driver SQL, pre-serialised values) against the SQLAlchemy Core path ---

def _paper(pid: str, **fields):
    from newsletter.models import Paper

    values = {"title": f"Title of {pid}", "url": f"https://example.org/{pid}", "sources": ("one.json",)}
    values.update(fields)
    return Paper(id=pid, **values)


def _raw_rows(store) -> list[tuple]:
    """The rows exactly as stored (text, not decoded by the column types)."""
    with store.atomic() as conn:
        return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM papers ORDER BY id").fetchall()]


def test_sqlite_path_and_core_path_store_identical_rows(tmp_path: Path) -> None:
    from newsletter.store import open_store
    from newsletter.store import papers as papers_store

    plus_two = timezone(timedelta(hours=2))
    first = [
        _paper("arxiv:1", authors=("Ada Lovelace", "Émile Borel", 'Quote "Q" Back\\slash'), abstract="Short.",
               score=3, published_at=datetime(2026, 3, 1, 14, 30, 5, 123456, tzinfo=plus_two),
               categories=("cs.CL", "eess.AS")),
        _paper("arxiv:2", authors=(), abstract="", pdf_url="https://example.org/2.pdf", code_url="https://c/2",
               thumbnail_url="https://t/2.png", page_url="https://p/2", score=None, published_at=None,
               categories=("Plant Biology", 'Q"uoted', "Écologie")),
        _paper("doi:10.1/x", authors=("中文 名字",), abstract="Tab\tand ☃ snow", score=0,
               published_at=datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)),
        _paper("url:https://example.org/u", sources=("one.json", "two.xml")),
    ]
    second = [
        _paper("arxiv:1", authors=("Ada Lovelace", "Émile Borel", 'Quote "Q" Back\\slash'), abstract="Short.",
               score=3, published_at=datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=timezone.utc),  # same instant
               categories=("cs.CL", "eess.AS")),
        _paper("arxiv:2", title="Another title", abstract="A longer abstract now.", score=7,
               sources=("two.xml",), categories=("Ecology", "plant biology")),                    # merged
        _paper("doi:10.1/x", authors=("中文 名字",), abstract="Tab\tand ☃ snow", score=0,
               published_at=datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone.utc), categories=("q-bio.NC",)),
        _paper("arxiv:3", title="New in the second batch"),
    ]
    results = {}
    for path in ("sqlite", "core"):
        store = open_store(f"sqlite:///{tmp_path / f'{path}.db'}")
        counts = []
        for batch, when in ((first, T0), (second, T0 + timedelta(days=1))):
            with store.atomic() as conn:
                if path == "sqlite":
                    counts.append(papers_store.upsert_papers(conn, batch, now=when))
                else:
                    counts.append(papers_store._upsert_core(conn, {p.id: p for p in batch}, when))
        with store.atomic() as conn:
            decoded = list_papers(conn)
        results[path] = (counts, _raw_rows(store), decoded)
        store.dispose()
    assert results["sqlite"] == results["core"]
    counts, rows, decoded = results["sqlite"]
    assert [(c.new, c.updated, c.unchanged) for c in counts] == [(4, 0, 0), (1, 2, 1)]
    assert len(rows) == 5
    categories = {p.id: p.categories for p in decoded}
    assert categories["arxiv:2"] == ("Plant Biology", 'Q"uoted', "Écologie", "Ecology")  # union, first source first
    assert categories["doi:10.1/x"] == ("q-bio.NC",) and categories["arxiv:3"] == ()
    raw = {row[0]: row[-1] for row in rows}  # the categories column, as stored
    assert raw["arxiv:3"] is None and raw["url:https://example.org/u"] is None  # none known: SQL NULL
    assert raw["arxiv:1"] == '["cs.CL", "eess.AS"]'


@pytest.mark.sqlite_only("SQLite's upsert compares the stored JSON text")
def test_equal_values_stored_differently_are_still_unchanged(store) -> None:
    """A row whose JSON text differs from ours (written by another tool) is decoded and merged,
    not rewritten."""
    from newsletter.store.papers import upsert_papers

    paper = _paper("arxiv:9", authors=("A", "B"))
    with store.atomic() as conn:
        upsert_papers(conn, [paper], now=T0)
        conn.exec_driver_sql("UPDATE papers SET authors = '[\"A\",\"B\"]' WHERE id = 'arxiv:9'")
    with store.atomic() as conn:
        counts = upsert_papers(conn, [paper], now=T0 + timedelta(hours=1))
        again = get_paper(conn, "arxiv:9")
    assert (counts.new, counts.updated, counts.unchanged) == (0, 0, 1)
    assert again.authors == ("A", "B") and again.last_seen_at == T0 + timedelta(hours=1)
    assert _raw_rows(store)[0][2] == '["A","B"]'


def test_naive_time_is_a_store_error_on_both_paths(store) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from newsletter.store import papers as papers_store

    naive = _paper("arxiv:8", published_at=datetime(2026, 3, 1, 12, 0))
    with pytest.raises(SQLAlchemyError, match="naive datetime"):
        with store.atomic() as conn:
            papers_store.upsert_papers(conn, [naive], now=T0)
    with pytest.raises(SQLAlchemyError, match="naive datetime"):
        with store.atomic() as conn:
            papers_store._upsert_core(conn, {naive.id: naive}, T0)
    assert _raw_rows(store) == []


def test_json_names_match_json_dumps() -> None:
    from newsletter.store.papers import _json_names

    for names in ((), ("A",), ("Émile", 'q"uote', "back\\slash", "tab\t", "中文", "😀", "\x00")):
        assert _json_names(names) == json.dumps(list(names))
