"""The ingest's fast paths give exactly what the general paths give.

Each shortcut taken for speed (bench/bench_ingest.py) has a general path beside it: an item of
our JSON format read with one lookup per field, clean author lists taken whole, long text
checked as bytes, a ``Paper`` made from its attribute dict, the garbage collector paused while a
source is read. Generated inputs, full of the
values that tell them apart (empty strings, lists and objects, 0 and false, spaces at the ends,
markup, control characters), must give the same papers both ways.
"""

from __future__ import annotations

import dataclasses
import gc
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.errors import SourceError
from newsletter.models import Paper
from newsletter.sources import base, jsonfiles, normalize, parse_bytes
from newsletter.sources.jsonfiles import _OTHER_KEYS, _item, _plain_item

# Characters that matter to the clean-up, and a few that do not.
TEXT = st.text(st.sampled_from(list("ab .<>&;:/-") + ["\t", "\n", "\x1b", "\x7f", "\x00", "é", "\u00a0"]),
               max_size=12)
IDS = st.sampled_from(["2403.05525", "arXiv:2403.05525v2", "doi:10.1101/743294", "https://example.org/p?utm_source=x",
                       "title:Some Title", "", "  ", "not an id"])
LINKS = st.sampled_from(["https://example.org/a", " http://example.org/b ", "ftp://example.org/c", "", "x"])
ODD = st.sampled_from([None, "", [], {}, 0, 1, -1, False, True, 2**70, "12", " 7 ", "x", 3.5])
NAMES = st.lists(st.one_of(TEXT, st.sampled_from(["Ada Lovelace", "Émile Borel", "A" * 201]),
                           st.fixed_dictionaries({"name": TEXT}), ODD), max_size=6)
VALUES = {
    "id": st.one_of(IDS, ODD), "url": st.one_of(LINKS, ODD), "title": st.one_of(TEXT, ODD),
    "authors": st.one_of(NAMES, TEXT, ODD), "abstract": st.one_of(TEXT, ODD), "pdf_url": st.one_of(LINKS, ODD),
    "code_url": st.one_of(LINKS, ODD), "thumbnail_url": st.one_of(LINKS, ODD), "page_url": st.one_of(LINKS, ODD),
    "score": ODD, "published_at": st.one_of(st.sampled_from(["2024-03-08", "2024-03-08T12:00:00+02:00", "nope"]), ODD),
    "categories": st.one_of(st.lists(st.one_of(TEXT, ODD), max_size=4), TEXT, ODD),
}
ITEMS = st.fixed_dictionaries({}, optional=VALUES)


@settings(max_examples=600, deadline=None)
@given(ITEMS)
def test_a_plain_item_is_read_as_the_general_path_reads_it(item: dict) -> None:
    assert item.keys().isdisjoint(_OTHER_KEYS)
    assert _plain_item(item, "s.json") == _item(item, "s.json")


@settings(max_examples=600, deadline=None)
@given(NAMES)
def test_author_lists_taken_whole_are_the_names_cleaned_one_by_one(names: list) -> None:
    assert base._names(names) == base._names(iter(names))  # an iterator takes the general path


WORDS = st.lists(st.sampled_from(["word", "x.", "a-b", "$n$", "(c)"]), min_size=1, max_size=90).map(" ".join)
FAULTS = st.sampled_from(["", " ", "  ", "<", "&", "\t", "\n", "\x1f", "\x7f", "\x00", "é", "\u00a0"])


@settings(max_examples=600, deadline=None)
@given(WORDS, FAULTS, st.integers(min_value=0))
def test_the_long_text_check_is_the_short_one(words: str, fault: str, where: int) -> None:
    """Texts on both sides of ``_LONG`` characters, clean or with one fault anywhere."""
    where %= len(words) + 1
    text = words[:where] + fault + words[where:]
    short = (text.isascii() and text[0] != " " and text[-1] != " " and "<" not in text and "&" not in text
             and text.isprintable() and "  " not in text)
    assert normalize.is_clean(text) == short
    if short:
        assert " ".join(text.split()) == text


def test_a_long_clean_abstract_and_its_faults() -> None:
    clean = "We study a thing. " * 30 + "The end."
    assert len(clean) > normalize._LONG and normalize.is_clean(clean)
    for fault in ("\x1b[31m", "\x7f", "<b>", "&amp;", "  ", "\t", "é"):
        assert not normalize.is_clean(clean[:300] + fault + clean[300:]), repr(fault)
    assert not normalize.is_clean(" " + clean) and not normalize.is_clean(clean + " ")


def test_a_paper_made_from_its_dict_is_the_constructors() -> None:
    built = base.build_paper(title="A title", ids=["2403.05525"], authors=["Ada", "Bo"], abstract="Short.",
                             score=3, published_at="2024-03-08T12:00:00Z", categories=["cs.CL"], source="s.json")
    assert isinstance(built, Paper)
    assert set(vars(built)) == {f.name for f in dataclasses.fields(Paper)}
    made = Paper(**{f.name: getattr(built, f.name) for f in dataclasses.fields(Paper)})
    assert built == made and hash(built) == hash(made) and repr(built) == repr(made)
    assert made.published_at == datetime(2024, 3, 8, 12, tzinfo=timezone.utc)


def test_the_collector_is_paused_only_while_a_source_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []

    def spy(**fields):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        return base.build_paper(**fields)

    monkeypatch.setattr(jsonfiles, "build_paper", spy)
    assert gc.isenabled()
    try:
        parse_bytes(b'[{"id": "2403.05525", "title": "T"}]', "a.json")
        assert seen == [False] and gc.isenabled()
        with pytest.raises(SourceError):
            parse_bytes(b'{"papers": [', "broken.json")
        assert gc.isenabled()  # back on after an error too
        gc.disable()
        parse_bytes(b'[{"id": "2403.05525", "title": "T"}]', "a.json")
        assert not gc.isenabled() and seen == [False, False]  # off before: left off
    finally:
        gc.enable()


def test_frozen_objects_stay_frozen_and_the_store_restores_the_collector(store) -> None:
    """A process that froze objects (a server before it forks) keeps them frozen through a read;
    writing the papers leaves the collector as it found it."""
    from newsletter.store.papers import upsert_papers

    data = b'[{"id": "2403.05525", "title": "T", "categories": ["cs.CL"]}]'
    assert gc.get_freeze_count() == 0
    papers = parse_bytes(data, "a.json").papers
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        parse_bytes(data, "a.json")
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
    with store.atomic() as conn:
        upsert_papers(conn, papers)
    assert gc.isenabled()
    gc.disable()
    try:
        with store.atomic() as conn:
            upsert_papers(conn, papers)
        assert not gc.isenabled()
    finally:
        gc.enable()
