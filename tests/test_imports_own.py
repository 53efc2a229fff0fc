"""Every subscriber export format, on small files of our own making (tests/data/imports/).

Mailchimp (subscribed, unsubscribed and cleaned exports), Substack, Buttondown, listmonk (its
import file and its subscriber export) and our own format: recognised by their header, their
statuses carried over, suppressed addresses never reactivated, bad rows named by file and line.
Nothing here reads ../shared/fixtures; the addresses are synthetic (example.org/.com/.net).
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from newsletter.cli import main
from newsletter.errors import ImportRowsError
from newsletter.store import Store, open_store
from newsletter.store.schema import events
from newsletter.store.subscribers import get_subscriber, list_subscribers
from newsletter.subscribers.exporter import export_subscribers
from newsletter.subscribers.importer import import_subscribers

IMPORTS = Path(__file__).resolve().parent / "data" / "imports"
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _no_test_variables_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """NEWSLETTER_FIXTURES points conftest at another corpus; to the CLI it is an unknown
    NEWSLETTER_* variable, and its warning on stderr would land in the output parsed here."""
    monkeypatch.delenv("NEWSLETTER_FIXTURES", raising=False)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def by_email(store: Store) -> dict[str, object]:
    with store.atomic() as conn:
        return {s.email: s for s in list_subscribers(conn)}


def statuses(store: Store) -> dict[str, int]:
    found: dict[str, int] = {}
    for s in by_email(store).values():
        found[s.status] = found.get(s.status, 0) + 1
    return found


# file -> (format, rows, added, statuses after importing it alone)
OWN_EXPORTS = {
    "buttondown_subscribers_export.csv": ("buttondown", 5, 5, {"active": 2, "pending": 1, "unsubscribed": 1, "bounced": 1}),
    "listmonk_import_subs.csv": ("listmonk", 3, 3, {"active": 3}),
    "listmonk_subscribers_export.csv": ("listmonk", 3, 3, {"active": 1, "unsubscribed": 2}),
    "mailchimp_cleaned_members_export.csv": ("mailchimp", 1, 1, {"bounced": 1}),
    "mailchimp_subscribed_members_export.csv": ("mailchimp", 4, 4, {"active": 4}),
    "mailchimp_unsubscribed_members_export.csv": ("mailchimp", 2, 2, {"unsubscribed": 2}),
    "ours_export.csv": ("ours", 6, 6, {"active": 2, "pending": 1, "unsubscribed": 2, "bounced": 1}),
    "substack_email_list.csv": ("substack", 4, 4, {"active": 3, "bounced": 1}),
}


def test_every_own_import_file_has_a_case() -> None:
    files = sorted(p.name for p in IMPORTS.glob("*.csv"))
    assert files == sorted([*OWN_EXPORTS, "ours_invalid_rows.csv"]), "a new import file needs a test"


@pytest.mark.parametrize("name", sorted(OWN_EXPORTS))
def test_each_export_is_recognised_and_keeps_its_statuses(store: Store, name: str) -> None:
    report = import_subscribers(store, IMPORTS / name, now=NOW)
    assert (report.format, report.rows, report.added, statuses(store)) == OWN_EXPORTS[name]
    assert (report.invalid, report.invalid_count, report.duplicates, report.imported) == ([], 0, 0, True)
    assert report.newly_suppressed == sum(n for s, n in OWN_EXPORTS[name][3].items() if s in ("unsubscribed", "bounced"))


def test_mailchimp_subscribed_names_times_unicode_and_attributes(store: Store) -> None:
    import_subscribers(store, IMPORTS / "mailchimp_subscribed_members_export.csv", now=NOW)
    s = by_email(store)
    noor = s["noor.reader@example.com"]
    assert noor.name == "Noor Reader"  # First Name + Last Name
    assert (noor.created_at, noor.confirmed_at) == (utc(2025, 1, 10, 8), utc(2025, 1, 10, 8, 1, 30))  # OPTIN, CONFIRM
    assert noor.attributes["TAGS"] == '"Weekly digest","Vision"'
    assert noor.attributes["TIMEZONE"] == "Europe/Berlin"
    assert "Email Address" not in noor.attributes and "CONFIRM_TIME" not in noor.attributes
    kenta = s["kenta.yamada@example.org"]
    assert kenta.name == "Kenta 山田"
    assert kenta.created_at == kenta.confirmed_at == utc(2024, 11, 2, 19, 45)  # no OPTIN_TIME: the confirmation
    assert kenta.attributes["NOTES"] == "Signed up at a workshop, table 3"
    assert s["only.address@example.net"].name == ""
    # the domain is lower-cased, the local part keeps its case; lookups ignore case
    assert "Mixed.Case@example.com" in s and s["Mixed.Case@example.com"].name == "Ｍaria García-Núñez"
    assert s["Mixed.Case@example.com"].attributes["Phone Number"] == "+34 555 0100"
    with store.atomic() as conn:
        assert get_subscriber(conn, "MIXED.CASE@EXAMPLE.COM").email == "Mixed.Case@example.com"


def test_mailchimp_unsubscribed_and_cleaned_exports_suppress_with_reason_and_time(store: Store) -> None:
    import_subscribers(store, IMPORTS / "mailchimp_unsubscribed_members_export.csv", now=NOW)
    import_subscribers(store, IMPORTS / "mailchimp_cleaned_members_export.csv", now=NOW)
    s = by_email(store)
    lea = s["left.after.issue9@example.com"]
    assert (lea.status, lea.status_reason) == ("unsubscribed", "mailchimp: I no longer want to receive these emails")
    assert lea.status_changed_at == utc(2025, 5, 1, 10) and lea.name == "Lea Left"
    assert lea.attributes["UNSUB_CAMPAIGN_TITLE"] == "Issue 9"
    noor = s["noor.reader@example.com"]
    assert noor.status_reason == "mailchimp: Other" and noor.attributes["UNSUB_REASON_OTHER"] == "Too many papers"
    gone = s["gone.mailbox@example.org"]
    assert (gone.status, gone.status_reason, gone.status_changed_at) == (
        "bounced", "mailchimp export: bounced", utc(2024, 8, 8, 8))


def test_an_unsubscribed_export_suppresses_and_a_later_subscribed_one_never_reactivates(store: Store) -> None:
    subscribed = IMPORTS / "mailchimp_subscribed_members_export.csv"
    import_subscribers(store, subscribed, now=NOW)
    report = import_subscribers(store, IMPORTS / "mailchimp_unsubscribed_members_export.csv", now=NOW)
    assert (report.added, report.updated, report.newly_suppressed) == (1, 1, 2)
    assert by_email(store)["noor.reader@example.com"].status == "unsubscribed"
    again = import_subscribers(store, subscribed, now=NOW)
    assert (again.added, again.suppressed_kept, again.unchanged) == (0, 1, 3)
    noor = by_email(store)["noor.reader@example.com"]
    assert (noor.status, noor.status_changed_at) == ("unsubscribed", utc(2025, 7, 7, 7, 7, 7))
    with store.atomic() as conn:
        kinds = conn.execute(select(events.c.kind).where(events.c.email == "noor.reader@example.com")
                             .order_by(events.c.id)).scalars().all()
    assert kinds == ["imported", "unsubscribed"]  # nothing recorded by the third import


def test_substack_disabled_email_is_bounced_and_plans_are_attributes(store: Store) -> None:
    import_subscribers(store, IMPORTS / "substack_email_list.csv", now=NOW)
    s = by_email(store)
    dead = s["dead.inbox@example.org"]
    assert (dead.status, dead.status_reason) == ("bounced", "substack: email disabled")
    assert s["monthly.patron@example.org"].attributes == {
        "active_subscription": "true", "expiry": "2026-12-01T00:00:00.000Z", "plan": "monthly",
        "first_payment_at": "2025-12-01T10:00:05.000Z"}
    assert s["free.reader@example.com"].created_at == datetime(2024, 4, 1, 8, 21, 44, 512000, tzinfo=timezone.utc)
    assert [e for e, x in s.items() if x.status == "active"] == [
        "free.reader@example.com", "monthly.patron@example.org", "annual.patron@example.net"]


def test_buttondown_subscriber_types_times_fields_and_events(store: Store) -> None:
    report = import_subscribers(store, IMPORTS / "buttondown_subscribers_export.csv", now=NOW)
    assert (report.rows, report.added, report.newly_suppressed) == (5, 5, 2)
    s = by_email(store)
    assert {e: (x.status, x.status_reason) for e, x in s.items()} == {
        "first.reader@example.com": ("active", ""), "paying.reader@example.org": ("active", ""),  # regular, premium
        "not.confirmed@example.net": ("pending", ""),  # unactivated
        "said.goodbye@example.org": ("unsubscribed", "buttondown: unsubscribed"),
        "bouncing.box@example.com": ("bounced", "buttondown: undeliverable")}
    first = s["first.reader@example.com"]
    assert first.created_at == datetime(2025, 3, 13, 0, 3, 9, 183465, tzinfo=timezone.utc)
    assert first.confirmed_at == first.created_at  # subscription_date
    assert first.attributes["tags"] == "conference;ml" and first.attributes["notes"] == "Asked at the conference."
    assert first.attributes["metadata"] == "{'source': 'booth', 'role': 'student'}"  # kept as written
    assert s["paying.reader@example.org"].attributes["ip_address"] == "2001:db8::7"
    goodbye = s["said.goodbye@example.org"]
    assert (goodbye.status_changed_at, goodbye.confirmed_at) == (utc(2025, 6, 1, 12), None)
    assert s["not.confirmed@example.net"].confirmed_at is None
    with store.atomic() as conn:
        rows = conn.execute(select(events.c.email, events.c.kind, events.c.detail).order_by(events.c.id)).all()
    detail = "import buttondown_subscribers_export.csv"
    assert rows == ([(email, "imported", detail) for email in s]
                    + [("said.goodbye@example.org", "unsubscribed", detail), ("bouncing.box@example.com", "bounced", detail)])


def test_listmonk_import_file_crlf_blank_line_typed_attributes_and_domains(store: Store) -> None:
    report = import_subscribers(store, IMPORTS / "listmonk_import_subs.csv", now=NOW)
    assert report.rows == 3  # the blank CRLF line is not a row
    s = by_email(store)
    assert list(s) == ["alpha.one@example.com", "beta.two@example.org", "gamma.three@example.net"]
    assert s["alpha.one@example.com"].attributes == {"team": "red", "seats": 3, "trial": False}  # JSON types kept
    assert s["gamma.three@example.net"].attributes == {"city": "Zürich"}
    assert s["beta.two@example.org"].name == "Beta Two" and s["beta.two@example.org"].attributes == {}


def test_listmonk_export_statuses_and_times(store: Store) -> None:
    import_subscribers(store, IMPORTS / "listmonk_subscribers_export.csv", now=NOW)
    s = by_email(store)
    assert {e: (x.status, x.status_reason) for e, x in s.items()} == {
        "enabled.one@example.com": ("active", ""),
        "blocked.two@example.org": ("unsubscribed", "listmonk: blocklisted"),
        "disabled.three@example.net": ("unsubscribed", "listmonk: disabled")}
    enabled = s["enabled.one@example.com"]
    assert enabled.created_at == utc(2025, 1, 1, 9)  # +01:00
    assert enabled.attributes == {"plan": "free", "uuid": "0a0a0a0a-0000-4000-8000-00000000000a"}


def test_our_format_statuses_reasons_times_and_extra_columns(store: Store) -> None:
    import_subscribers(store, IMPORTS / "ours_export.csv", now=NOW)
    s = by_email(store)
    ada = s["ada@example.org"]
    assert (ada.name, ada.status, ada.confirmed_at) == ("Ada Example", "active", utc(2025, 9, 1, 8, 5))
    assert ada.attributes == {"lang": "en", "source": "website"}  # JSON attributes and an unknown column
    zoe = s["Zoë@example.com"]  # a non-ASCII local part
    assert (zoe.name, zoe.created_at) == ("Müller-Lüdenscheidt, Zoë", utc(2025, 9, 2, 7))
    assert (s["grace@example.org"].status_reason, s["grace@example.org"].status_changed_at) == (
        "asked by email", utc(2025, 10, 10, 10, 10, 10))
    assert (s["bounced@example.net"].status, s["bounced@example.net"].status_reason) == (
        "bounced", "550 5.1.1 user unknown")
    assert s["pending@example.org"].status == "pending"


def test_bad_rows_are_listed_by_file_and_line_and_nothing_is_imported(store: Store) -> None:
    path = IMPORTS / "ours_invalid_rows.csv"
    with pytest.raises(ImportRowsError) as info:
        import_subscribers(store, path, now=NOW)
    assert [str(e) for e in info.value.errors] == [
        f"{path}:3: not-an-address: An email address must have an @-sign.",
        f"{path}:4: ok.two@example.org: status: 'sleeping' is not one of pending, active, unsubscribed, bounced, complained",
        # line 5's quoted name runs onto line 6: the next record starts on line 7
        f"{path}:7: ok.four@example.org: created_at: not a date and time: 'yesterday'",
        f"{path}:8: (no address): no address given"]
    assert by_email(store) == {}
    report = import_subscribers(store, path, now=NOW, skip_invalid=True)
    assert (report.added, report.invalid_count) == (3, 4)
    s = by_email(store)
    assert list(s) == ["ok.one@example.org", "ok.three@example.org", "ok.five@example.org"]
    assert s["ok.three@example.org"].name == "OK Three"  # the line break in the name folded
    assert s["ok.one@example.org"].created_at == utc(2025, 1, 1)


def test_everything_exported_imports_into_an_empty_store_as_the_same_list(store: Store, tmp_path: Path) -> None:
    for name in sorted(OWN_EXPORTS):
        import_subscribers(store, IMPORTS / name, now=NOW)
    exported = tmp_path / "export.csv"
    with exported.open("w", newline="", encoding="utf-8") as out:
        written = export_subscribers(store, out)
    assert written == len(by_email(store)) == 28 - 1  # 28 rows; noor.reader@ is in two Mailchimp exports
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        import_subscribers(other, exported, now=datetime(2027, 1, 1, tzinfo=timezone.utc))
        strip = lambda s: {k: v for k, v in vars(s).items() if k not in ("id", "updated_at")}  # noqa: E731
        assert [strip(s) for s in by_email(other).values()] == [strip(s) for s in by_email(store).values()]
        again = io.StringIO(newline="")
        export_subscribers(other, again)
        assert again.getvalue() == exported.read_bytes().decode("utf-8")
    finally:
        other.dispose()


# --- through the CLI ------------------------------------------------------------------------

@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no newsletter.toml here: embedded defaults
    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(main, ["--db", db_url, "subscribers", *args], catch_exceptions=False)
    return invoke


def test_cli_import_export_with_a_status_filter(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("import", str(IMPORTS / "buttondown_subscribers_export.csv"))
    assert result.exit_code == 0 and "5 addresses added" in result.output, result.output
    out = tmp_path / "backup.csv"
    result = run("export", str(out))
    assert result.exit_code == 0 and "Exported 5 subscribers to" in result.output
    stdout = run("export", "--status", "bounced").stdout
    assert stdout.splitlines()[0].startswith("email,name,status,")
    assert [line.split(",")[0] for line in stdout.splitlines()[1:]] == ["bouncing.box@example.com"]
    assert "not.confirmed@example.net,,pending," in out.read_text(encoding="utf-8")
    stats = json.loads(run("stats", "--json").output)
    assert (stats["total"], stats["suppressed"]) == (5, 2)


def test_cli_forced_format_must_carry_the_status_column(run) -> None:  # type: ignore[no-untyped-def]
    substack = IMPORTS / "substack_email_list.csv"
    result = run("import", str(substack), "--format", "buttondown")
    assert result.exit_code == 1
    assert f"{substack}:1: a Buttondown subscriber export needs the column(s) subscriber_type" in result.output
    buttondown = IMPORTS / "buttondown_subscribers_export.csv"
    for forced in ("ours", "listmonk"):
        result = run("import", str(buttondown), "--format", forced)
        assert result.exit_code == 1, forced
        assert "this header is that of a Buttondown subscriber export" in result.output
    listmonk_export = IMPORTS / "listmonk_subscribers_export.csv"  # has statuses: not readable as ours
    result = run("import", str(listmonk_export), "--format", "mailchimp")
    assert result.exit_code == 1 and "needs the column(s) email address" in result.output
    assert json.loads(run("list", "--json").output) == []
    assert run("import", str(substack), "--format", "substack").exit_code == 0
    assert run("import", str(IMPORTS / "listmonk_import_subs.csv"), "--format", "ours").exit_code == 0  # no statuses
    listed = json.loads(run("list", "--json", "--status", "bounced").output)
    assert [s["email"] for s in listed] == ["dead.inbox@example.org"]


def test_cli_lists_bad_rows_with_file_and_line(run) -> None:  # type: ignore[no-untyped-def]
    path = IMPORTS / "ours_invalid_rows.csv"
    result = run("import", str(path))
    assert result.exit_code == 1
    assert f"{path}:3: not-an-address: " in result.output and f"{path}:7: ok.four@example.org: " in result.output
    assert "nothing was imported" in result.output
    result = run("import", str(path), "--skip-invalid")
    assert result.exit_code == 1 and "Skipped 4 invalid rows" in result.output, result.output
    assert len(json.loads(run("list", "--json").output)) == 3


def test_cli_reimport_leaves_suppressed_addresses_alone(run) -> None:  # type: ignore[no-untyped-def]
    assert run("import", str(IMPORTS / "mailchimp_unsubscribed_members_export.csv")).exit_code == 0
    result = run("import", str(IMPORTS / "mailchimp_subscribed_members_export.csv"))
    assert result.exit_code == 0
    assert "Left 1 suppressed address alone" in result.output, result.output
    listed = {s["email"]: s["status"] for s in json.loads(run("list", "--json").output)}
    assert listed["noor.reader@example.com"] == "unsubscribed"


# --- addresses ------------------------------------------------------------------------------

ADDRESS_CASES = [json.loads(line) for line in
                 (IMPORTS / "address_cases.jsonl").read_text("utf-8").splitlines() if line.strip()]


def test_address_cases_cover_both_outcomes() -> None:
    kinds = [case["expect"] for case in ADDRESS_CASES]
    assert kinds.count("valid") >= 25 and kinds.count("invalid") >= 50


@pytest.mark.parametrize("case", ADDRESS_CASES, ids=lambda case: case["note"])
def test_each_address_case_is_checked_as_recorded(case: dict) -> None:
    from newsletter.subscribers.addresses import check_address

    if case["expect"] == "valid":
        assert check_address(case["address"]) == case["normalized"]
    else:
        with pytest.raises(ValueError) as info:
            check_address(case["address"])
        assert str(info.value) == case["error"]


def test_an_import_of_every_address_case_keeps_the_valid_and_names_the_invalid(store: Store, tmp_path: Path) -> None:
    import csv

    path = tmp_path / "addresses.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "name"])
        for case in ADDRESS_CASES:
            writer.writerow([case["address"], case["note"]])
    report = import_subscribers(store, path, now=NOW, skip_invalid=True)
    valid = [c for c in ADDRESS_CASES if c["expect"] == "valid"]
    keys = {c["normalized"].lower() for c in valid}
    assert report.added == len(keys) and report.invalid_count == len(ADDRESS_CASES) - len(valid)
    assert {e.lower() for e in by_email(store)} == keys
    messages = [str(e) for e in report.invalid]
    assert all(m.startswith(f"{path}:") for m in messages)
    assert any(m.endswith(": An email address must have an @-sign.") for m in messages)
