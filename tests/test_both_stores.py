"""The suite's switch between stores (tests/conftest.py): with ``--store=postgresql`` a test's
store is a database of its own on a real PostgreSQL, named by ``db_url``, ``store`` and
``NEWSLETTER_STORE_URL`` alike; a second store is another database and leaves the test to name
its stores itself; ``sqlite_only`` tests are deselected there, not skipped. Checked on a small
suite run in a subprocess, on the session's PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SUITE_CONFTEST = '''
from tests.conftest import (_store_of_this_test, db_url, postgres_server, postgres_url, pytest_addoption,
                            pytest_collection_modifyitems, pytest_configure, store)
'''

SUITE_TESTS = '''
import os
import sys

import pytest

from tests.conftest import store_url

EXPECTED = "postgresql" if "--store=postgresql" in sys.argv else "sqlite"


def test_the_own_store_is_named_alike(db_url, store, tmp_path):
    assert db_url.startswith(EXPECTED) and store.url == db_url
    assert store_url(tmp_path / "newsletter.db") == db_url
    if EXPECTED == "postgresql":
        assert os.environ["NEWSLETTER_STORE_URL"] == db_url
    else:
        assert "NEWSLETTER_STORE_URL" not in os.environ


def test_a_second_store_is_another_and_the_test_names_its_stores(db_url, tmp_path):
    other = store_url(tmp_path / "other.db")
    assert other.startswith(EXPECTED) and other != db_url
    assert "NEWSLETTER_STORE_URL" not in os.environ


def test_postgres_url_is_another_database(db_url, postgres_url):
    assert postgres_url.startswith("postgresql") and postgres_url != db_url


@pytest.mark.sqlite_only("about SQLite itself")
def test_about_sqlite(db_url):
    assert db_url.startswith("sqlite")
'''


def run_suite(tmp_path: Path, server: str, *args: str) -> subprocess.CompletedProcess[str]:
    suite = tmp_path / "suite"
    suite.mkdir(exist_ok=True)
    (suite / "conftest.py").write_text(SUITE_CONFTEST, encoding="utf-8")
    (suite / "test_stores.py").write_text(SUITE_TESTS, encoding="utf-8")
    (suite / "pytest.ini").write_text("[pytest]\naddopts = -ra\n", encoding="utf-8")
    env = {**os.environ, "NEWSLETTER_TEST_POSTGRES_URL": server,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("NEWSLETTER_STORE_URL", None)  # this run's own, in the PostgreSQL run
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=suite, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "summary"), [((), "4 passed in "),
                                              (("--store=postgresql",), "3 passed, 1 deselected in ")])
def test_the_store_switch(tmp_path: Path, postgres_server: str, args: tuple[str, ...], summary: str) -> None:
    lines = run_suite(tmp_path, postgres_server, *args).stdout.splitlines()
    assert lines[-1].startswith(summary), lines


def test_the_databases_of_each_test_are_dropped_after_it(tmp_path: Path, postgres_server: str) -> None:
    import psycopg

    def databases() -> set[str]:
        with psycopg.connect(postgres_server) as conn:
            return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}

    before = databases()
    result = run_suite(tmp_path, postgres_server, "--store=postgresql")
    assert result.stdout.splitlines()[-1].startswith("3 passed"), result.stdout
    assert databases() <= before


def test_a_sqlite_only_marker_needs_a_reason(tmp_path: Path, postgres_server: str) -> None:
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_bare.py").write_text(
        "import pytest\n\n@pytest.mark.sqlite_only\ndef test_x():\n    pass\n", encoding="utf-8")
    result = run_suite(tmp_path, postgres_server)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout
    assert "test_bare.py::test_x: sqlite_only needs a reason" in result.stderr
