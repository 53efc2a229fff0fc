"""Importing real exports (../shared/fixtures/subscribers) and awkward files into a real SQLite store."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.errors import ImportRowsError, SubscriberError
from newsletter.store import Store
from newsletter.store.schema import events, subscribers
from newsletter.store.subscribers import add_subscriber, get_subscriber, list_subscribers, unsubscribe
from newsletter.subscribers.exporter import export_subscribers
from newsletter.subscribers.importer import import_subscribers

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def by_email(store: Store) -> dict[str, object]:
    with store.atomic() as conn:
        return {s.email: s for s in list_subscribers(conn)}


def count(store: Store, table=subscribers) -> int:  # type: ignore[no-untyped-def]
    with store.atomic() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def write(tmp_path: Path, name: str, data: str | bytes, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


# --- the real exports -------------------------------------------------------------------------

def test_every_fixture_file_is_recognised_and_imported(store: Store, fixtures_dir: Path) -> None:
    expected = {
        "buttondown_subscribers_export.csv": "buttondown",
        "listmonk_import_mixed_case_blocklisted_domains.csv": "listmonk",
        "listmonk_import_subs.csv": "listmonk",
        "mailchimp_export_real_minimal_snippet.csv": "mailchimp",
        "mailchimp_subscribed_members_export.csv": "mailchimp",
        "substack_email_list.csv": "substack",
    }
    files = sorted(p.name for p in (fixtures_dir / "subscribers").iterdir())
    assert files == sorted(expected), "a new fixture file needs a test"
    total = 0
    for name, fmt in expected.items():
        report = import_subscribers(store, fixtures_dir / "subscribers" / name, now=NOW)
        assert (report.format, report.invalid, report.imported) == (fmt, [], True), name
        assert report.added == report.rows - report.duplicates, name
        total += report.added
    assert count(store) == total


# What each real export imports as: format, rows, addresses added and their statuses. Recognising
# a service by its own columns (not by "Email Address" alone) must not change any of these.
FIXTURE_IMPORTS = {
    "buttondown_subscribers_export.csv": ("buttondown", 5, 5, {"active": 3, "pending": 1, "unsubscribed": 1}),
    "listmonk_import_mixed_case_blocklisted_domains.csv": ("listmonk", 4, 4, {"active": 4}),
    "listmonk_import_subs.csv": ("listmonk", 100, 100, {"active": 100}),
    "mailchimp_export_real_minimal_snippet.csv": ("mailchimp", 1, 1, {"active": 1}),
    "mailchimp_subscribed_members_export.csv": ("mailchimp", 5, 5, {"active": 5}),
    "substack_email_list.csv": ("substack", 6, 6, {"active": 5, "bounced": 1}),
}


@pytest.mark.parametrize("name", sorted(FIXTURE_IMPORTS))
def test_each_fixture_export_imports_as_before(store: Store, fixtures_dir: Path, name: str) -> None:
    report = import_subscribers(store, fixtures_dir / "subscribers" / name, now=NOW)
    statuses: dict[str, int] = {}
    for s in by_email(store).values():
        statuses[s.status] = statuses.get(s.status, 0) + 1
    assert (report.format, report.rows, report.added, statuses) == FIXTURE_IMPORTS[name]
    assert (report.invalid_count, report.duplicates) == (0, 0)


def test_a_spreadsheet_headed_email_address_name_status_keeps_its_statuses(store: Store, tmp_path: Path) -> None:
    """Google Forms / Excel lists: "Email Address" alone does not make a Mailchimp export, whose
    mapping would have ignored Status and imported unsubscribed and bounced rows as active."""
    path = write(tmp_path, "f.csv", "Email Address,Name,Status\n"
                 "x1@example.org,X One,unsubscribed\n"
                 "x2@example.org,X Two,bounced\n"
                 "x3@example.org,X Three,\n")
    report = import_subscribers(store, path, now=NOW)
    assert (report.format, report.added, report.newly_suppressed) == ("ours", 3, 2)
    s = by_email(store)
    assert {e: (x.name, x.status) for e, x in s.items()} == {
        "x1@example.org": ("X One", "unsubscribed"), "x2@example.org": ("X Two", "bounced"),
        "x3@example.org": ("X Three", "active")}
    assert all(not x.attributes for x in s.values())


def test_other_spellings_of_the_email_column_are_our_format(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "form.csv", "Timestamp,E-mail,First Name,Last Name,status\n"
                 "2026-01-02 10:00,ada@example.org,Ada,Lovelace,\n"
                 "2026-01-03 11:00,gone@example.org,Gone,,Unsubscribed\n")
    report = import_subscribers(store, path, now=NOW)
    assert report.format == "ours"
    s = by_email(store)
    assert (s["ada@example.org"].name, s["ada@example.org"].status) == ("Ada Lovelace", "active")
    assert s["ada@example.org"].attributes == {"Timestamp": "2026-01-02 10:00"}
    assert (s["gone@example.org"].name, s["gone@example.org"].status) == ("Gone", "unsubscribed")
    # An unknown status is an invalid row, never an active subscriber.
    bad = write(tmp_path, "bad.csv", "Email Address,Name,Status\nx@example.org,X,Cleaned\n")
    with pytest.raises(ImportRowsError) as info:
        import_subscribers(store, bad)
    assert "status: 'cleaned' is not one of" in str(info.value.errors[0])
    assert "x@example.org" not in by_email(store)


def test_buttondown_statuses_times_and_fields(store: Store, fixtures_dir: Path) -> None:
    report = import_subscribers(store, fixtures_dir / "subscribers" / "buttondown_subscribers_export.csv", now=NOW)
    assert (report.rows, report.added, report.newly_suppressed) == (5, 5, 1)
    s = by_email(store)
    assert {e: x.status for e, x in s.items()} == {
        "liz.lemon@example.com": "active", "researcher@example.org": "active",
        "pending.confirm@example.net": "pending", "premium.reader@example.com": "active",
        "left.us@example.org": "unsubscribed"}
    left = s["left.us@example.org"]
    assert left.status_changed_at == utc(2024, 6, 1, 12)
    assert left.status_reason == "buttondown: unsubscribed"
    assert left.created_at == datetime(2022, 2, 2, 2, 2, 2, 20202, tzinfo=timezone.utc)
    liz = s["liz.lemon@example.com"]
    assert liz.attributes["notes"] == "Met in NYC."
    assert liz.attributes["tags"] == "corporate;nyc"
    assert liz.attributes["metadata"] == "{'staff': 'true', 'role': 'writer'}"
    assert s["premium.reader@example.com"].attributes["ip_address"] == "2001:db8::42"
    with store.atomic() as conn:
        kinds = conn.execute(select(events.c.email, events.c.kind, events.c.detail).order_by(events.c.id)).all()
    detail = "import buttondown_subscribers_export.csv"
    # one sign-up event per added address, in file order, then the suppression of the one who left
    assert kinds == [(email, "imported", detail) for email in s] + [("left.us@example.org", "unsubscribed", detail)]


def test_substack_disabled_email_imports_as_bounced(store: Store, fixtures_dir: Path) -> None:
    report = import_subscribers(store, fixtures_dir / "subscribers" / "substack_email_list.csv", now=NOW)
    assert report.rows == 6
    s = by_email(store)
    assert s["bounced.reader@example.org"].status == "bounced"
    assert [e for e, x in s.items() if x.status == "active"] == [
        "reader.one@example.com", "paid.monthly@example.org", "paid.yearly@example.net",
        "founding.member@example.com", "lapsed.paid@example.com"]
    assert s["paid.monthly@example.org"].attributes["plan"] == "monthly"
    assert s["reader.one@example.com"].created_at == datetime(2023, 2, 14, 8, 21, 44, 512000, tzinfo=timezone.utc)


def test_mailchimp_names_confirmations_and_unicode(store: Store, fixtures_dir: Path) -> None:
    import_subscribers(store, fixtures_dir / "subscribers" / "mailchimp_subscribed_members_export.csv", now=NOW)
    import_subscribers(store, fixtures_dir / "subscribers" / "mailchimp_export_real_minimal_snippet.csv", now=NOW)
    s = by_email(store)
    assert s["kenji.tanaka@example.net"].name == "Kenji 田中"
    assert s["ada.lovelace@example.com"].name == "Ada Lovelace"
    assert s["ada.lovelace@example.com"].confirmed_at == utc(2023, 4, 11, 9, 15, 3)
    assert s["ada.lovelace@example.com"].attributes["TAGS"] == '"Weekly digest","NLP"'
    assert s["dr.ngozi.okafor+research@example.com"].attributes["NOTES"] == "Imported from conference sign-up sheet"
    assert s["x@mail.example.com"].name == ""
    minimal = s["mail@example.com"]
    assert (minimal.status, minimal.confirmed_at) == ("active", utc(2015, 3, 16, 14, 40, 47))
    assert minimal.attributes == {"MEMBER_RATING": "2", "LAST_CHANGED": "2015-03-16 14:40:47",
                                  "LEID": "some-value", "EUID": "some-other-value"}
    assert all(x.status == "active" for x in s.values())


def test_mailchimp_unsubscribed_and_cleaned_exports_keep_their_status(store: Store, fixtures_dir: Path,
                                                                       tmp_path: Path) -> None:
    # The unsubscribed/cleaned exports are the subscribed layout plus their own trailing columns.
    header = (fixtures_dir / "subscribers" / "mailchimp_export_real_minimal_snippet.csv").read_text().splitlines()[0]
    unsub = write(tmp_path, "unsubscribed_members_export.csv",
                  header + ",UNSUB_TIME,UNSUB_CAMPAIGN_TITLE,UNSUB_CAMPAIGN_ID,UNSUB_REASON,UNSUB_REASON_OTHER\n"
                  "gone@example.com,Gone,Away,2,,,,,,,,,,,,,,,,\"2024-05-01 10:00:00\",Issue 12,abc,\"No longer interested\",\n")
    cleaned = write(tmp_path, "cleaned_members_export.csv",
                    header + ",CLEAN_TIME,CLEAN_CAMPAIGN_TITLE,CLEAN_CAMPAIGN_ID\n"
                    "dead@example.com,,,1,,,,,,,,,,,,,,,,\"2024-06-01 00:00:00\",Issue 13,def\n")
    import_subscribers(store, unsub, now=NOW)
    import_subscribers(store, cleaned, now=NOW)
    s = by_email(store)
    assert (s["gone@example.com"].status, s["gone@example.com"].status_reason) == (
        "unsubscribed", "mailchimp: No longer interested")
    assert s["gone@example.com"].status_changed_at == utc(2024, 5, 1, 10)
    assert s["gone@example.com"].name == "Gone Away"
    assert (s["dead@example.com"].status, s["dead@example.com"].status_changed_at) == ("bounced", utc(2024, 6, 1))


def test_listmonk_files_crlf_blank_line_json_attributes_and_mixed_case(store: Store, fixtures_dir: Path) -> None:
    report = import_subscribers(store, fixtures_dir / "subscribers" / "listmonk_import_subs.csv", now=NOW)
    raw_rows = [line for line in (fixtures_dir / "subscribers" / "listmonk_import_subs.csv").read_bytes()
                .split(b"\r\n")[1:] if line.strip()]
    assert report.rows == len(raw_rows) == report.added
    s = by_email(store)
    assert s["user0@mail.com"].attributes == {"age": 29, "city": "Bangalore", "clientId": "DAXX79"}
    assert s["user0@mail.com"].name == "First0 Last0"
    import_subscribers(store, fixtures_dir / "subscribers" / "listmonk_import_mixed_case_blocklisted_domains.csv")
    s = by_email(store)
    assert "ban1-import@ban.net" in s and "ban2-import@ban.org" in s  # domains lower-cased
    with store.atomic() as conn:
        assert get_subscriber(conn, "BAN1-IMPORT@BAN.NET").email == "ban1-import@ban.net"


# --- awkward files ----------------------------------------------------------------------------

def test_bom_crlf_semicolons_quoted_newlines_blank_lines_trailing_column(store: Store, tmp_path: Path) -> None:
    data = ("\ufeffemail;name;\r\n"
            "zoe@example.org;\"Zoë\r\nMüller\";\r\n"
            "\r\n"
            "\"o'brien@example.org\";\"O'Brien; \"\"Pat\"\"\";\r\n"
            ";;\r\n"
            "li@example.org;李小龙")
    report = import_subscribers(store, write(tmp_path, "awkward.csv", data), now=NOW)
    assert (report.format, report.rows, report.added, report.invalid) == ("ours", 3, 3, [])
    s = by_email(store)
    assert s["zoe@example.org"].name == "Zoë Müller"
    assert s["o'brien@example.org"].name == 'O\'Brien; "Pat"'
    assert s["li@example.org"].name == "李小龙"


def test_cr_only_line_endings_and_tabs(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "mac.csv", "email\tname\ra@example.org\tA\rb@example.org\tB\r")
    assert import_subscribers(store, path).added == 2


def test_utf16_with_bom_is_read(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "u16.csv", "email,name\nzoe@example.org,Zoë Ñandú\n", encoding="utf-16")
    report = import_subscribers(store, path)
    assert report.encoding == "utf-16"
    assert by_email(store)["zoe@example.org"].name == "Zoë Ñandú"


def test_an_encoding_that_cannot_be_told_for_sure_is_refused_clearly(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "legacy.csv", "email,name\nzoe@example.org,Zoë Müller\nfr@example.org,François Côté\n",
                 encoding="cp1252")
    with pytest.raises(SubscriberError) as info:
        import_subscribers(store, path)
    message = str(info.value)
    assert message.startswith(f"{path}: not UTF-8, and the encoding cannot be told for sure")
    assert "--encoding" in message
    assert count(store) == 0
    report = import_subscribers(store, path, encoding="cp1252")
    assert report.encoding == "cp1252"
    assert by_email(store)["fr@example.org"].name == "François Côté"


def test_a_lone_but_wrong_encoding_guess_is_refused(store: Store, tmp_path: Path) -> None:
    """charset-normalizer offers one candidate for this KOI8-R file, Shift-JIS, which garbles
    every name: one candidate is not certainty."""
    names = ["Дмитрий Иванов", "Анна Петрова", "Сергей Смирнов", "Ольга Кузнецова"]
    text = "email,name\n" + "".join(f"u{i}@example.org,{names[i % 4]}\n" for i in range(300))
    path = write(tmp_path, "koi8.csv", text, encoding="koi8-r")
    with pytest.raises(SubscriberError, match="not UTF-8, and the encoding cannot be told for sure"):
        import_subscribers(store, path)
    assert count(store) == 0
    import_subscribers(store, path, encoding="koi8-r")
    assert by_email(store)["u1@example.org"].name == "Анна Петрова"


def test_bad_utf8_after_the_sample_fails_the_whole_import(store: Store, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import newsletter.subscribers.importer as importer

    monkeypatch.setattr(importer, "SAMPLE_BYTES", 64)  # so the bad byte lies past the sample
    rows = "".join(f"user{i}@example.org,User {i}\n" for i in range(20))
    path = write(tmp_path, "late.csv", ("email,name\n" + rows).encode() + "zoe@example.org,Zo\u00eb\n".encode("latin-1"))
    with pytest.raises(SubscriberError, match="not valid UTF-8.*nothing was imported"):
        import_subscribers(store, path)
    assert count(store) == 0


def test_bad_utf8_deep_in_a_file_names_its_line(store: Store, tmp_path: Path) -> None:
    """One Latin-1 row at row 59,000 of 60,000: the error says on which line, not where in a
    block of the decoder."""
    rows = ['multi@example.org,"Two\nlines"\n'] + [f"user{i}@example.org,User {i}\n" for i in range(2, 60001)]
    rows[58999] = "zoe@example.org,Zoë\n"  # row 59,000; line 59,002 (the header, and row 1 spans two lines)
    data = b"email,name\n" + b"".join(r.encode("latin-1" if r.startswith("zoe@") else "utf-8") for r in rows)
    path = write(tmp_path, "mostly-utf8.csv", data)
    assert data.split(b"\n")[59002 - 1].startswith(b"zoe@")
    with pytest.raises(SubscriberError) as info:
        import_subscribers(store, path)
    assert str(info.value) == (
        f"{path}:59002: not valid UTF-8 (invalid continuation byte 0xeb); nothing was imported; "
        "save the file as UTF-8 or name its encoding with --encoding (cp1252, for example)")
    assert count(store) == 0
    assert import_subscribers(store, path, encoding="cp1252").added == 60000


def test_unrecognised_header_says_what_it_saw(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", "mail,who\na@example.org,A\n")
    with pytest.raises(SubscriberError, match=r"x\.csv:1: no email column in the header \(saw 'mail', 'who'\)"):
        import_subscribers(store, path)
    with pytest.raises(SubscriberError, match="empty file"):
        import_subscribers(store, write(tmp_path, "empty.csv", ""))
    with pytest.raises(SubscriberError, match="cannot read"):
        import_subscribers(store, tmp_path / "missing.csv")


# --- all or nothing, merging, suppression ------------------------------------------------------

BAD = ("email,name,status\n"
       "good@example.org,Good,active\n"
       "\"bad@@example.org\",\"Two\nlines\",active\n"   # line 3, spanning 4
       "also-good@example.org,,active\n"
       ",No address,active\n"                            # line 6
       "x@example.org,,subscribed\n"                     # line 7: unknown status
       "y@example.org,,active,surplus\n")                # line 8: more fields than the header


def test_any_invalid_row_means_nothing_changes_and_every_bad_row_is_listed(store: Store, tmp_path: Path) -> None:
    with store.atomic() as conn:
        add_subscriber(conn, "good@example.org", "Before", now=NOW)
    path = write(tmp_path, "bad.csv", BAD)
    with pytest.raises(ImportRowsError) as info:
        import_subscribers(store, path)
    lines = [str(e) for e in info.value.errors]
    assert lines[0].startswith(f"{path}:3: bad@@example.org: ")
    assert lines[1] == f"{path}:6: (no address): no address given"
    assert lines[2] == (f"{path}:7: x@example.org: status: 'subscribed' is not one of "
                        "pending, active, unsubscribed, bounced, complained")
    assert lines[3] == f"{path}:8: y@example.org: 4 fields but the header has 3"
    assert len(lines) == 4
    assert "4 invalid rows of 6; nothing was imported" in str(info.value)
    assert count(store) == 1
    assert by_email(store)["good@example.org"].name == "Before"


def test_a_quote_never_closed_is_an_error_not_the_rest_of_the_file_in_one_name(store: Store, tmp_path: Path) -> None:
    rows = "".join(f"u{i}@example.org,User {i}\n" for i in range(50))
    path = write(tmp_path, "open.csv", 'email,name\na@example.org,"Ada\n' + rows)
    with pytest.raises(SubscriberError) as info:
        import_subscribers(store, path)
    assert str(info.value) == f"{path}:2: not a readable CSV record (unexpected end of data); nothing was imported"
    assert count(store) == 0
    # A stray quote inside an unquoted field is still read as text.
    assert import_subscribers(store, write(tmp_path, "stray.csv", 'email,name\nb@example.org,Pat "PJ" Lee\n')).added == 1


def test_odd_cells_are_invalid_rows_not_crashes(store: Store, tmp_path: Path) -> None:
    deep = '"' + '{""a"":' * 3000 + "1" + "}" * 3000 + '"'
    path = write(tmp_path, "odd.csv", "email,created_at,attributes\n"
                 f"a@example.org,,{deep}\n"
                 "b@example.org,0001-01-01T00:00:00+05:00,\n")
    with pytest.raises(ImportRowsError) as info:
        import_subscribers(store, path)
    assert [str(e) for e in info.value.errors] == [
        f"{path}:2: a@example.org: attributes: JSON nested too deeply",
        f"{path}:3: b@example.org: created_at: not a date and time: '0001-01-01T00:00:00+05:00'"]


def test_skip_invalid_imports_the_good_rows_and_lists_the_rest(store: Store, tmp_path: Path) -> None:
    report = import_subscribers(store, write(tmp_path, "bad.csv", BAD), skip_invalid=True)
    assert (report.added, len(report.invalid), report.imported) == (2, 4, True)
    assert sorted(by_email(store)) == ["also-good@example.org", "good@example.org"]


def test_duplicate_rows_merge_case_insensitively(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "dups.csv", "email,name,attributes\n"
                 "Ada@Example.org,Ada,\"{\"\"a\"\": \"\"1\"\"}\"\n"
                 "ada@example.ORG,Ada Lovelace,\"{\"\"b\"\": \"\"2\"\"}\"\n"
                 "ADA@example.org,,\n")
    report = import_subscribers(store, path)
    assert (report.rows, report.added, report.duplicates) == (3, 1, 2)
    s = by_email(store)
    assert list(s) == ["Ada@example.org"]  # the first spelling is kept
    assert s["Ada@example.org"].name == "Ada Lovelace"
    assert dict(s["Ada@example.org"].attributes) == {"a": "1", "b": "2"}


def test_an_import_never_reactivates_a_suppressed_address(store: Store, tmp_path: Path) -> None:
    with store.atomic() as conn:
        add_subscriber(conn, "gone@example.org", "Gone", now=NOW)
        unsubscribe(conn, "gone@example.org", "one-click", now=NOW)
        add_subscriber(conn, "bounced@example.org", now=NOW)
        from newsletter.store.subscribers import mark_bounced
        mark_bounced(conn, "bounced@example.org", "550 5.1.1", now=NOW)
    path = write(tmp_path, "again.csv", "email,name,status\n"
                 "GONE@example.org,New Name,active\n"
                 "bounced@example.org,,pending\n"
                 "fresh@example.org,,unsubscribed\n"
                 "fresh@example.org,,active\n"
                 "new@example.org,,active\n")
    report = import_subscribers(store, path, now=NOW)
    # fresh@'s second row, reactivating what its first row suppressed, is left alone, not merged
    assert (report.added, report.suppressed_kept, report.duplicates) == (2, 3, 0)
    assert report.added + report.updated + report.unchanged + report.suppressed_kept + report.duplicates == 5
    s = by_email(store)
    assert (s["gone@example.org"].status, s["gone@example.org"].name, s["gone@example.org"].status_reason) == (
        "unsubscribed", "Gone", "one-click")
    assert s["bounced@example.org"].status == "bounced"
    assert s["fresh@example.org"].status == "unsubscribed"
    assert s["fresh@example.org"].status_reason == "import again.csv"
    assert s["new@example.org"].status == "active"


def test_an_import_can_suppress_and_records_when_and_why(store: Store, tmp_path: Path) -> None:
    with store.atomic() as conn:
        add_subscriber(conn, "ada@example.org", now=NOW)
        add_subscriber(conn, "grace@example.org", status="pending", now=NOW)
        add_subscriber(conn, "kept@example.org", now=NOW)
    path = write(tmp_path, "changes.csv", "email,status,status_reason,status_changed_at\n"
                 "ada@example.org,unsubscribed,asked by letter,2026-11-01T10:00:00Z\n"
                 "grace@example.org,active,,\n"
                 "kept@example.org,pending,,\n")
    later = datetime(2026, 12, 1, tzinfo=timezone.utc)
    report = import_subscribers(store, path, now=later)
    # kept@ is already active and "pending" never demotes it: nothing changes, so it is unchanged
    assert (report.added, report.updated, report.unchanged, report.newly_suppressed) == (0, 2, 1, 1)
    s = by_email(store)
    assert (s["ada@example.org"].status, s["ada@example.org"].status_reason) == ("unsubscribed", "asked by letter")
    assert s["ada@example.org"].status_changed_at == utc(2026, 11, 1, 10)
    assert (s["grace@example.org"].status, s["grace@example.org"].status_changed_at) == ("active", later)
    assert (s["kept@example.org"].status, s["kept@example.org"].status_changed_at) == ("active", NOW)  # not demoted
    with store.atomic() as conn:
        rows = conn.execute(select(events.c.email, events.c.kind).where(events.c.at == later)).all()
    assert rows == [("ada@example.org", "unsubscribed")]


def test_export_then_import_into_an_empty_store_gives_the_same_list(store: Store, fixtures_dir: Path,
                                                                     tmp_path: Path) -> None:
    from newsletter.store import open_store

    for path in sorted((fixtures_dir / "subscribers").iterdir()):
        import_subscribers(store, path, now=NOW)
    with store.atomic() as conn:
        unsubscribe(conn, "user7@mail.com", "complained", now=NOW)
    exported = tmp_path / "export.csv"
    with exported.open("w", newline="", encoding="utf-8") as out:
        written = export_subscribers(store, out)
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        import_subscribers(other, exported, now=datetime(2027, 1, 1, tzinfo=timezone.utc))
        strip = lambda s: {k: v for k, v in vars(s).items() if k not in ("id", "updated_at")}  # noqa: E731
        assert [strip(s) for s in by_email(other).values()] == [strip(s) for s in by_email(store).values()]
        assert written == count(other)
        again = io.StringIO(newline="")
        export_subscribers(other, again)
        assert again.getvalue() == exported.read_bytes().decode("utf-8")
    finally:
        other.dispose()


def test_progress_reports_bytes(store: Store, tmp_path: Path) -> None:
    rows = "".join(f"u{i}@example.org,U\n" for i in range(12000))
    path = write(tmp_path, "big.csv", "email,name\n" + rows)
    seen: list[tuple[int, int]] = []
    import_subscribers(store, path, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) >= 3
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_bad_rows_can_be_streamed_to_a_callback_instead_of_kept(store: Store, tmp_path: Path) -> None:
    seen: list[str] = []
    with pytest.raises(ImportRowsError) as info:
        import_subscribers(store, write(tmp_path, "bad.csv", BAD), on_invalid=lambda e: seen.append(str(e)))
    assert len(seen) == 4 and info.value.errors == []
    assert seen[3].endswith(":8: y@example.org: 4 fields but the header has 3")


def test_reimport_counts_unchanged_apart_from_updated(store: Store, tmp_path: Path) -> None:
    first = write(tmp_path, "list.csv", "email,name,status,attributes\n"
                  'ada@example.org,Ada,active,"{""plan"": ""pro"", ""tags"": [1, 2]}"\n'
                  "grace@example.org,Grace,pending,\n"
                  "alan@example.org,Alan,active,\n"
                  "gone@example.org,Gone,unsubscribed,\n")
    report = import_subscribers(store, first, now=NOW)
    assert (report.added, report.updated, report.unchanged) == (4, 0, 0)
    before = by_email(store)

    later = datetime(2026, 12, 1, tzinfo=timezone.utc)
    report = import_subscribers(store, first, now=later)
    # gone@ is still unsubscribed, as the file says: unchanged too
    assert (report.added, report.updated, report.unchanged, report.suppressed_kept) == (0, 0, 4, 0)
    assert by_email(store) == before  # updated_at and attribute text included: nothing happened

    changed = write(tmp_path, "changed.csv", "email,name,status,attributes\n"
                    'ADA@example.org,,active,"{""tags"": [1, 2], ""plan"": ""pro""}"\n'  # same values, other order
                    "grace@example.org,Grace,active,\n"        # status
                    "alan@example.org,Alan Turing,active,\n"   # name
                    "new@example.org,,active,\n")
    report = import_subscribers(store, changed, now=later)
    assert (report.added, report.updated, report.unchanged) == (1, 2, 1)
    after = by_email(store)
    assert after["ada@example.org"].updated_at == NOW
    assert (after["grace@example.org"].updated_at, after["alan@example.org"].updated_at) == (later, later)


def test_imported_sign_ups_are_in_the_last_30_days(store: Store, tmp_path: Path) -> None:
    from newsletter.store.subscribers import subscriber_stats

    with store.atomic() as conn:
        add_subscriber(conn, "by.hand@example.org", now=NOW)
    path = write(tmp_path, "old-list.csv", "email,status,created_at\n"
                 "a@example.org,active,2019-01-01T00:00:00Z\n"
                 "b@example.org,pending,\n"
                 "c@example.org,unsubscribed,\n"
                 "by.hand@example.org,active,\n")
    report = import_subscribers(store, path, now=NOW)
    assert report.added == 3
    with store.atomic() as conn:
        stats = subscriber_stats(conn, now=NOW)
        rows = conn.execute(select(events.c.email, events.c.kind, events.c.detail)
                            .where(events.c.detail == "import old-list.csv").order_by(events.c.id)).all()
    assert stats["last_30_days"] == {"imported": 3, "subscribed": 1, "unsubscribed": 1}
    assert [(e, k) for e, k, _ in rows] == [("a@example.org", "imported"), ("b@example.org", "imported"),
                                           ("c@example.org", "imported"), ("c@example.org", "unsubscribed")]
    # the event is when the address joined this list, not the file's own sign-up date
    with store.atomic() as conn:
        later = subscriber_stats(conn, now=NOW + timedelta(days=31))
    assert later["last_30_days"] == {}


def test_a_failed_import_records_no_events(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "bad.csv", "email\nok@example.org\nnot-an-address\n")
    with pytest.raises(ImportRowsError):
        import_subscribers(store, path, now=NOW)
    assert (count(store), count(store, events)) == (0, 0)


def test_every_row_is_counted_once_when_rows_carry_suppressed_statuses(store: Store, tmp_path: Path) -> None:
    """Export then re-import with unsubscribed and bounced addresses: each row lands in exactly
    one count (added, updated, unchanged, suppressed left alone, duplicates, invalid)."""
    from newsletter.store.subscribers import mark_bounced

    with store.atomic() as conn:
        for email in ("ada@example.org", "grace@example.org", "alan@example.org", "edsger@example.org",
                      "gone@example.org", "dead@example.org"):
            add_subscriber(conn, email, now=NOW)
        unsubscribe(conn, "gone@example.org", "asked by email", now=NOW)
        mark_bounced(conn, "dead@example.org", "550 5.1.1", now=NOW)
    backup = tmp_path / "backup.csv"
    with backup.open("w", newline="", encoding="utf-8") as out:
        export_subscribers(store, out)
    before = by_email(store)

    def total(report) -> int:  # type: ignore[no-untyped-def]
        return (report.added + report.updated + report.unchanged + report.suppressed_kept + report.duplicates
                + report.invalid_count)

    report = import_subscribers(store, backup, now=datetime(2026, 12, 1, tzinfo=timezone.utc))
    assert (report.rows, report.added, report.updated, report.unchanged, report.suppressed_kept,
            report.duplicates, report.newly_suppressed) == (6, 0, 0, 6, 0, 0, 0)
    assert total(report) == report.rows
    assert by_email(store) == before  # updated_at included: nothing happened

    # bounced and unsubscribed swapped: still suppressed, the import changes nothing in them
    swapped = write(tmp_path, "swapped.csv", "email,status\ngone@example.org,bounced\ndead@example.org,unsubscribed\n")
    report = import_subscribers(store, swapped, now=NOW)
    assert (report.unchanged, report.suppressed_kept, total(report)) == (2, 0, 2)
    assert by_email(store) == before

    mixed = write(tmp_path, "mixed.csv", "email,name,status\n"
                  "gone@example.org,Gone,active\n"       # left alone
                  "gone@example.org,,pending\n"          # duplicate
                  "dead@example.org,,bounced\n"          # unchanged
                  "ada@example.org,Ada,\n"               # updated
                  "alan@example.org,,unsubscribed\n"     # updated (newly suppressed)
                  "alan@example.org,,active\n"           # left alone (suppressed just above)
                  "fresh@example.org,,bounced\n"         # added (newly suppressed)
                  "fresh@example.org,,active\n"          # left alone
                  "fresh@example.org,,active\n"          # duplicate
                  "new@example.org,,active\n"            # added
                  "NEW@example.org,New,\n"               # duplicate
                  "bad@,,active\n")                      # invalid
    report = import_subscribers(store, mixed, skip_invalid=True, now=NOW)
    assert (report.rows, report.added, report.updated, report.unchanged, report.suppressed_kept,
            report.duplicates, report.invalid_count, report.newly_suppressed) == (12, 2, 2, 1, 3, 3, 1, 2)
    assert total(report) == report.rows
    s = by_email(store)
    assert [s[e].status for e in ("gone@example.org", "alan@example.org", "fresh@example.org", "new@example.org")] == [
        "unsubscribed", "unsubscribed", "bounced", "active"]


@pytest.mark.sqlite_only("SQLite's write lock, met from a raw connection with a short busy timeout")
def test_the_store_can_be_written_while_a_long_import_reads_its_file(store: Store, tmp_path: Path,
                                                                    db_url: str) -> None:
    """Only the merge holds the store's write lock: an unsubscribe from the web (another
    connection, here with a 0.2 s busy timeout) goes through while the import stages its rows."""
    import sqlite3

    with store.atomic() as conn:
        add_subscriber(conn, "reader@example.org")
    path = write(tmp_path, "big.csv", "email,name\n" + "".join(f"r{i}@example.org,R {i}\n" for i in range(12_000)))
    writes: list[str] = []

    def meanwhile(done: int, total: int) -> None:
        if writes:
            return
        with sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=0.2, isolation_level=None) as other:
            other.execute("UPDATE subscribers SET status = 'unsubscribed' WHERE email = 'reader@example.org'")
        writes.append("done")

    report = import_subscribers(store, path, progress=meanwhile)
    assert writes == ["done"] and report.added == 12_000
    assert by_email(store)["reader@example.org"].status == "unsubscribed"
