"""What each reader follows, through the real CLI on real stores: ``subscribers set``, ``show``,
``rate``, ``remove``, and the profile columns of ``export`` and ``import``.

Every bad input is one line naming what is wrong, exit status 1 (2 for usage), and leaves the
store exactly as it was: the export and ``show --json`` are compared byte for byte.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import main
from test_postgres_import import new_postgres_database

LIKES = Path(__file__).resolve().parent / "data" / "likes"
BIB_IDS = ["arxiv:2212.04356", "arxiv:2312.00752", "arxiv:2403.05525", "doi:10.18653/v1/p19-1001",
           "arxiv:2106.09685", "arxiv:hep-th/9901001"]
ZOTERO_IDS = ["arxiv:2212.04356", "doi:10.18653/v1/p19-1001", "arxiv:2312.00752"]
Run = Callable[..., Result]


def _runner(url: str) -> Run:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--db", url, *args], catch_exceptions=False)
    return invoke


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    # PostgreSQL first: pgserver runs initdb as another user, who cannot enter tmp_path.
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    monkeypatch.chdir(tmp_path)  # no newsletter.toml here: embedded defaults
    return url or f"sqlite:///{tmp_path / 'newsletter.db'}"


@pytest.fixture
def run(any_store: str) -> Run:
    """The CLI on a store holding the bundled sample papers and ada@example.org."""
    invoke = _runner(any_store)
    assert invoke("ingest").exit_code == 0
    assert invoke("subscribers", "add", "ada@example.org", "--name", "Ada").exit_code == 0
    return invoke


@pytest.fixture
def sqlite_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.chdir(tmp_path)
    invoke = _runner(f"sqlite:///{tmp_path / 'newsletter.db'}")
    assert invoke("ingest").exit_code == 0
    assert invoke("subscribers", "add", "ada@example.org", "--name", "Ada").exit_code == 0
    return invoke


def _show(run: Run, email: str = "ada@example.org") -> dict:  # type: ignore[type-arg]
    result = run("subscribers", "show", email, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _state(run: Run) -> tuple[str, str]:
    """The whole list with profiles and ratings (the export) and Ada as ``show --json`` has her."""
    exported = run("subscribers", "export")
    assert exported.exit_code == 0, exported.output
    return exported.stdout, run("subscribers", "show", "ada@example.org", "--json").stdout


def test_set_stores_each_field_and_show_prints_it(run: Run) -> None:
    result = run("subscribers", "set", "ada@example.org", "--interests", "speech recognition; low-resource languages",
                 "--categories", "cs.CL,eess.AS", "--authors", "Tri Dao, Albert Gu", "--mute", "crypto",
                 "--likes", "2403.05525,10.48550/arXiv.2312.00752", "--size", "8")
    assert result.exit_code == 0, result.output
    for shown in ("Stored for ada@example.org", "speech recognition; low-resource languages", "cs.CL; eess.AS",
                  "Tri Dao; Albert Gu", "crypto", "arxiv:2403.05525", "arxiv:2312.00752", "8 papers"):
        assert shown in result.output, shown
    assert _show(run)["profile"] == {
        "interests": "speech recognition; low-resource languages", "categories": ["cs.CL", "eess.AS"],
        "authors": ["Tri Dao", "Albert Gu"], "mutes": ["crypto"], "likes": ["arxiv:2403.05525", "arxiv:2312.00752"],
        "size": 8}
    shown = run("subscribers", "show", "ada@example.org")
    assert shown.exit_code == 0
    # Liked papers that are in the store are shown with their titles.
    assert "DeepSeek-VL" in shown.output and "Mamba" in shown.output and "categories" in shown.output

    # An option not given keeps its field; an empty one clears it.
    assert run("subscribers", "set", "ada@example.org", "--mute", "", "--size", "").exit_code == 0
    profile = _show(run)["profile"]
    assert (profile["mutes"], profile["size"], profile["categories"]) == ([], None, ["cs.CL", "eess.AS"])


def test_rate_up_down_undo_and_show_newest_first_with_titles(run: Run) -> None:
    assert "more like this" in run("subscribers", "rate", "ada@example.org", "2312.00752", "up").output
    result = run("subscribers", "rate", "ada@example.org", "https://arxiv.org/abs/2501.12948v2", "down")
    assert result.exit_code == 0 and "less like this" in result.output
    again = run("subscribers", "rate", "ada@example.org", "2312.00752", "up")
    assert again.exit_code == 0 and "nothing changed" in again.output
    ratings = _show(run)["ratings"]
    assert [(r["paper"], r["value"]) for r in ratings] == [("arxiv:2501.12948", -1), ("arxiv:2312.00752", 1)]
    assert ratings[0]["title"].startswith("DeepSeek-R1") and ratings[1]["title"].startswith("Mamba")
    table = run("subscribers", "show", "ada@example.org").output
    assert table.index("less like this") < table.index("more like this")

    assert "Took back" in run("subscribers", "rate", "ada@example.org", "2501.12948", "undo").output
    assert "had not rated" in run("subscribers", "rate", "ada@example.org", "2501.12948", "undo").output
    assert [r["paper"] for r in _show(run)["ratings"]] == ["arxiv:2312.00752"]


def test_remove_deletes_the_profile_and_ratings(run: Run, any_store: str) -> None:
    assert run("subscribers", "set", "ada@example.org", "--interests", "speech", "--size", "5").exit_code == 0
    assert run("subscribers", "rate", "ada@example.org", "2312.00752", "up").exit_code == 0
    assert run("subscribers", "remove", "ada@example.org").exit_code == 0
    assert "ada@example.org" not in run("subscribers", "export").stdout
    # Added again, she is a new reader: nothing of the old profile comes back.
    assert run("subscribers", "add", "ada@example.org").exit_code == 0
    record = _show(run)
    assert record["profile"]["interests"] == "" and record["ratings"] == []
    if any_store.startswith("sqlite"):  # and the rows are gone, not only out of reach
        with sqlite3.connect(any_store.removeprefix("sqlite:///")) as db:
            assert db.execute("SELECT count(*) FROM reader_profiles").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM ratings").fetchone() == (0,)


@pytest.mark.parametrize(("args", "said"), [
    (("set", "ada@example.org", "--categories", "cs.CL,speech"), "categories: 'speech' is not an arXiv category"),
    (("set", "ada@example.org", "--size", "2"), "size: expected a whole number from 3 to 30, got 2"),
    (("set", "ada@example.org", "--size", "eight"), "size: expected a whole number from 3 to 30, got 'eight'"),
    (("set", "ada@example.org", "--likes", "2403.05525,not-a-paper"), "likes: 'not-a-paper' is not an arXiv id or a DOI"),
    (("set", "nobody@example.org", "--size", "5"), "nobody@example.org: not on the list"),
    (("set", "ada@example.org", "--size", "9", "--likes-from", str(LIKES / "broken.bib")),
     f"{LIKES / 'broken.bib'}:6: not valid BibTeX: Unexpected block start"),
    (("set", "ada@example.org", "--likes-from", str(LIKES / "missing.bib")), "missing.bib"),
    (("set", "ada@example.org", "--likes-from", str(LIKES / "not-a-library.txt")), "neither BibTeX"),
    (("rate", "ada@example.org", "2212.99999", "up"), "arxiv:2212.99999: no such paper in the store"),
    (("rate", "ada@example.org", "nonsense", "up"), "nonsense: not an arXiv id, DOI or URL of a paper"),
    (("rate", "nobody@example.org", "2312.00752", "down"), "nobody@example.org: not on the list"),
])
def test_bad_input_is_one_line_naming_it_and_changes_nothing(sqlite_run: Run, args: tuple[str, ...],
                                                             said: str) -> None:
    run = sqlite_run
    assert run("subscribers", "set", "ada@example.org", "--categories", "cs.LG", "--size", "7").exit_code == 0
    assert run("subscribers", "rate", "ada@example.org", "2312.00752", "down").exit_code == 0
    before = _state(run)
    result = run("subscribers", *args)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and said in lines[0], result.stderr
    assert _state(run) == before


def test_usage_errors_exit_2(sqlite_run: Run) -> None:
    result = sqlite_run("subscribers", "set", "ada@example.org")
    assert result.exit_code == 2 and "nothing to set" in result.output
    assert sqlite_run("subscribers", "rate", "ada@example.org", "2312.00752", "sideways").exit_code == 2


def test_likes_from_a_bibtex_file_names_the_entries_it_could_not_use(sqlite_run: Run) -> None:
    result = sqlite_run("subscribers", "set", "ada@example.org", "--likes-from", str(LIKES / "library.bib"))
    assert result.exit_code == 0, result.output
    assert "Read 9 BibTeX entries" in result.stdout and "6 liked papers" in result.stdout
    assert "Left out 2 entries" in result.stderr
    assert "knuth1984 (line 38): no arXiv id or DOI" in result.stderr
    assert "pubmed2020 (line 45): no arXiv id or DOI" in result.stderr
    assert _show(sqlite_run)["profile"]["likes"] == BIB_IDS


def test_likes_from_a_zotero_export_with_likes_given_too(sqlite_run: Run) -> None:
    result = sqlite_run("subscribers", "set", "ada@example.org", "--likes", "2501.12948",
                        "--likes-from", str(LIKES / "zotero.csv"))
    assert result.exit_code == 0, result.output
    assert "Read 4 Zotero CSV entries" in result.stdout and "3 liked papers" in result.stdout
    assert "'The TeXbook' (line 7): no arXiv id or DOI" in result.stderr
    assert _show(sqlite_run)["profile"]["likes"] == ["arxiv:2501.12948", *ZOTERO_IDS]


def test_export_has_the_profile_columns_and_imports_back_byte_for_byte(run: Run, any_store: str, tmp_path: Path,
                                                                        request: pytest.FixtureRequest) -> None:
    assert run("subscribers", "add", "bob@example.org").exit_code == 0
    assert run("subscribers", "add", "cy@example.org").exit_code == 0
    assert run("subscribers", "set", "ada@example.org", "--interests", "=cmd; speech, mostly ASR",
               "--categories", "cs.CL", "--authors", "Smith (MIT, CSAIL); Tri Dao", "--mute", "-crypto, @spam",
               "--likes-from", str(LIKES / "library.bib"), "--size", "12").exit_code == 0
    assert run("subscribers", "rate", "ada@example.org", "2312.00752", "up").exit_code == 0
    assert run("subscribers", "rate", "ada@example.org", "2501.12948", "down").exit_code == 0
    assert run("subscribers", "set", "cy@example.org", "--categories", "hep-ph").exit_code == 0
    assert run("subscribers", "unsubscribe", "cy@example.org").exit_code == 0
    backup = tmp_path / "backup.csv"
    assert run("subscribers", "export", str(backup)).exit_code == 0
    text = backup.read_text(encoding="utf-8")
    header, ada = text.splitlines()[:2]
    assert header.endswith(",attributes,interests,categories,authors,mutes,likes,size,ratings")
    # Formula-looking cells are escaped; lists are joined by "; "; ratings are JSON, newest first.
    assert "'=cmd; speech, mostly ASR" in ada and "'-crypto; @spam" in ada
    assert '"Smith (MIT, CSAIL); Tri Dao"' in ada and ";".join(BIB_IDS).replace(";", "; ") in ada
    assert ada.index("arxiv:2501.12948") < ada.index('""value"": 1')

    # Into an empty store of the same kind.
    empty = _runner(f"sqlite:///{tmp_path / 'empty.db'}" if any_store.startswith("sqlite")
                    else new_postgres_database(request.getfixturevalue("postgres_server")))
    result = empty("subscribers", "import", str(backup))
    assert result.exit_code == 0, result.output
    assert "Set 2 reader profiles and 2 ratings" in result.output
    again = tmp_path / "again.csv"
    assert empty("subscribers", "export", str(again)).exit_code == 0
    assert again.read_bytes() == backup.read_bytes()
    for email in ("ada@example.org", "cy@example.org"):
        before, after = _show(run, email), _show(empty, email)
        assert after["profile"] == before["profile"] and after["status"] == before["status"]
        assert [(r["paper"], r["value"], r["at"]) for r in after["ratings"]] == [
            (r["paper"], r["value"], r["at"]) for r in before["ratings"]]


def test_a_bad_profile_cell_names_file_line_and_column_and_nothing_is_imported(sqlite_run: Run,
                                                                              tmp_path: Path) -> None:
    run = sqlite_run
    before = _state(run)
    bad = tmp_path / "bad.csv"
    bad.write_text("email,categories,size,ratings\nnew@example.org,cs.CL,5,\nada@example.org,speech,,\n"
                   'other@example.org,,,"[{""paper"": ""2312.00752"", ""value"": 2}]"\n', encoding="utf-8")
    result = run("subscribers", "import", str(bad))
    assert result.exit_code == 1
    assert (f"{bad}:3: ada@example.org: categories: 'speech' is not an arXiv category" in result.output)
    assert f"{bad}:4: other@example.org: ratings: item 1: value is 1 (more like this) or -1 (less), not 2" \
        in result.output
    assert "nothing was imported" in result.output
    assert _state(run) == before

    result = run("subscribers", "import", str(bad), "--skip-invalid")
    assert result.exit_code == 1 and "Set 1 reader profile and 0 ratings" in result.output
    assert _show(run, "new@example.org")["profile"]["categories"] == ["cs.CL"]
    assert _state(run)[1] == before[1]  # Ada's row was the bad one: her profile is as it was


def test_import_replaces_the_fields_a_row_gives_and_leaves_suppressed_readers_alone(sqlite_run: Run,
                                                                                    tmp_path: Path) -> None:
    run = sqlite_run
    assert run("subscribers", "set", "ada@example.org", "--interests", "speech", "--categories", "cs.CL",
               "--size", "5").exit_code == 0
    assert run("subscribers", "rate", "ada@example.org", "2312.00752", "up").exit_code == 0
    assert run("subscribers", "rate", "ada@example.org", "2501.12948", "down").exit_code == 0
    kept = _show(run)["ratings"][0]
    assert run("subscribers", "add", "gone@example.org").exit_code == 0
    assert run("subscribers", "set", "gone@example.org", "--interests", "old").exit_code == 0
    assert run("subscribers", "unsubscribe", "gone@example.org").exit_code == 0
    f = tmp_path / "update.csv"
    f.write_text("email,interests,categories,size,ratings\n"
                 'ada@example.org,"robots; vision",,9,"[{""paper"": ""2312.00752"", ""value"": -1},'
                 ' {""paper"": ""arxiv:2501.12948"", ""value"": -1}]"\n'
                 "gone@example.org,new,,,\n", encoding="utf-8")
    result = run("subscribers", "import", str(f))
    assert result.exit_code == 0, result.output
    assert "Set 1 reader profile and 1 rating" in result.output
    ada = _show(run)
    assert (ada["profile"]["interests"], ada["profile"]["categories"], ada["profile"]["size"]) == (
        "robots; vision", ["cs.CL"], 9)
    # The changed rating is replaced (and now the newest); the same one again keeps its time.
    assert [(r["paper"], r["value"]) for r in ada["ratings"]] == [("arxiv:2312.00752", -1), ("arxiv:2501.12948", -1)]
    assert ada["ratings"][1] == kept
    assert _show(run, "gone@example.org")["profile"]["interests"] == "old"
