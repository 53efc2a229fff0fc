"""Property: import -> export -> import into an empty store gives back the same list, for awkward
names (any script, quotes, delimiters, line breaks, control characters) and addresses
(mixed case, Unicode local parts, internationalised domains)."""

from __future__ import annotations

import csv
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from newsletter import api
from newsletter.models import SUBSCRIBER_STATUSES
from newsletter.store import open_store
from newsletter.store.subscribers import list_subscribers
from newsletter.subscribers.addresses import check_address, clean_name, email_key
from newsletter.subscribers.exporter import export_subscribers
from newsletter.subscribers.formats import OUR_COLUMNS, escape_cell
from newsletter.subscribers.importer import import_subscribers

LOCAL_CHARS = "abcXYZ019!#$%&'*+-/=?^_`{|}~éüßñ田中Дж"
DOMAINS = ("example.org", "EXAMPLE.com", "mail.example.net", "bücher.example", "臺網中心.tw", "xn--bcher-kva.example")

local_parts = st.lists(st.text(alphabet=LOCAL_CHARS, min_size=1, max_size=12), min_size=1, max_size=3).map(".".join)
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, st.sampled_from(DOMAINS))
names = st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
                  st.tuples(st.sampled_from(["=", "+", "-", "@", "\t", "\r", "'", "''", "'="]), st.text(max_size=10))
                  .map("".join))
attributes = st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=12), max_size=3)
people = st.lists(st.tuples(addresses, names, st.sampled_from(SUBSCRIBER_STATUSES), attributes), max_size=12)


def _snapshot(store) -> list[dict]:  # type: ignore[no-untyped-def]
    with store.atomic() as conn:
        return [{k: v for k, v in vars(s).items() if k not in ("id", "updated_at")} for s in list_subscribers(conn)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people)
def test_import_export_import_gives_the_same_list(rows: list) -> None:  # type: ignore[type-arg]
    unique: dict[str, tuple] = {}
    for address, name, status, attrs in rows:
        try:
            normalized = check_address(address)
        except ValueError:
            continue
        unique.setdefault(email_key(normalized), (normalized, name, status, attrs))
    assume(unique)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.csv"
        with source.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(OUR_COLUMNS)
            for normalized, name, status, attrs in unique.values():
                writer.writerow([escape_cell(cell) for cell in (
                    normalized, name, status, "", "", "", "", json.dumps(attrs) if attrs else "")])
        first = open_store(f"sqlite:///{tmp}/first.db")
        second = open_store(f"sqlite:///{tmp}/second.db")
        try:
            report = import_subscribers(first, source, now=datetime(2026, 1, 1, tzinfo=timezone.utc))
            assert report.added == len(unique) and not report.invalid
            imported = _snapshot(first)
            assert [(s["email"], s["name"], s["status"], s["attributes"]) for s in imported] == [
                (n, clean_name(name), status, attrs) for n, name, status, attrs in unique.values()]

            exported = Path(tmp) / "export.csv"
            with exported.open("w", newline="", encoding="utf-8") as out:
                export_subscribers(first, out)
            import_subscribers(second, exported, now=datetime(2027, 1, 1, tzinfo=timezone.utc))
            assert _snapshot(second) == imported

            again = Path(tmp) / "again.csv"
            with again.open("w", newline="", encoding="utf-8") as out:
                export_subscribers(second, out)
            assert again.read_bytes() == exported.read_bytes()
        finally:
            first.dispose()
            second.dispose()


# What each reader follows: any text the checks let through (formula starts, quotes, commas and
# semicolons inside entries, any script), ids of every kind, ratings of papers whose ids hold
# any character.
entry_text = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
    st.tuples(st.sampled_from(["=", "+", "-", "@", "'", "Dao, ", "(MIT, CSAIL) ", '"']), st.text(max_size=10)).map("".join))
paper_ids = st.one_of(
    st.sampled_from(["2403.05525", "hep-th/9901001", "10.48550/arXiv.2312.00752", "10.1000/x,y(1;2)",
                     "doi:10.18653/v1/P19-1001"]),
    st.from_regex(r"\A2[0-9]{3}\.[0-9]{5}\Z"))
rated_ids = st.one_of(paper_ids.map(lambda i: i if ":" in i else f"arxiv:{i}"),
                      st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)
                      .map(lambda t: "title:" + t))
profiles = st.fixed_dictionaries({
    "interests": st.lists(entry_text, max_size=3).map("; ".join),
    "categories": st.lists(st.sampled_from(["cs.CL", "eess.AS", "hep-ph", "cond-mat.supr-con", "math"]), max_size=3),
    "authors": st.lists(entry_text, max_size=4),
    "mutes": st.lists(entry_text, max_size=3),
    "likes": st.lists(paper_ids, max_size=4),
    "size": st.one_of(st.none(), st.integers(3, 30)),
})
readers = st.lists(st.tuples(st.sampled_from(["active", "unsubscribed", "bounced"]), profiles,
                             st.lists(st.tuples(rated_ids, st.sampled_from([1, -1])), max_size=4)),
                   min_size=1, max_size=5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(readers)
def test_profiles_and_ratings_export_import_export_byte_for_byte(rows: list) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        first = open_store(f"sqlite:///{tmp}/first.db")
        second = open_store(f"sqlite:///{tmp}/second.db")
        try:
            for n, (status, profile, ratings) in enumerate(rows):
                email = f"reader{n}@example.org"
                api.add_subscriber(first, email)
                for paper, value in ratings:
                    api.rate(first, email, paper, value, require_known=False)
                try:
                    api.set_profile(first, email, **profile)
                except api.ProfileError:
                    pass  # an entry the checks refuse (too long once cleaned): the reader keeps none
                if status != "active":
                    api.unsubscribe(first, email, "test", bounced=status == "bounced")
            exported = Path(tmp) / "export.csv"
            with exported.open("w", newline="", encoding="utf-8") as out:
                api.export_subscribers(first, out)
            report = api.import_subscribers(second, exported)
            assert report.added == len(rows) and not report.invalid, report.invalid
            again = Path(tmp) / "again.csv"
            with again.open("w", newline="", encoding="utf-8") as out:
                api.export_subscribers(second, out)
            assert again.read_bytes() == exported.read_bytes()
            for n in range(len(rows)):
                before, after = api.reader(first, f"reader{n}@example.org"), api.reader(second, f"reader{n}@example.org")
                assert after.profile == before.profile
                assert [(r.paper_id, r.value, r.at) for r in after.ratings] == [
                    (r.paper_id, r.value, r.at) for r in before.ratings]
        finally:
            first.dispose()
            second.dispose()
