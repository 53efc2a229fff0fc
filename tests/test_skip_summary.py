"""The test run's own reporting: the one-line skip summary (tests/conftest.py) stays last before
pytest's final line, and ``--without-shared-fixtures`` (tests/shared_fixtures_layer.py) leaves out
exactly the tests that read the shared corpus. Each is checked on a small suite run in a
subprocess, as CI runs the real one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SUITE_CONFTEST = '''
import pytest
from tests.conftest import pytest_terminal_summary  # the hook under test

@pytest.fixture(scope="session")
def fixtures_dir():
    pytest.skip("fixtures folder ../shared/fixtures is missing")
'''

SUITE_TESTS = '''
import pytest

def test_passes():
    pass

def test_reads_the_corpus(fixtures_dir):
    pass

@pytest.fixture
def papers(fixtures_dir):
    return fixtures_dir

def test_reads_it_through_another_fixture(papers):
    pass

@pytest.mark.parametrize("which", ["papers", "tmp_path"])
def test_asks_by_name(which, request):
    request.getfixturevalue(which)

def test_needs_a_program():
    pytest.skip("spamassassin not installed")
'''

SUITE_OWN = '''
import pytest

@pytest.fixture
def fixtures_dir(tmp_path):  # our own files instead of the corpus
    return tmp_path

def test_own_data(fixtures_dir):
    assert fixtures_dir.is_dir()
'''


def run_suite(tmp_path: Path, *args: str) -> list[str]:
    suite = tmp_path / "suite"
    suite.mkdir(exist_ok=True)
    (suite / "conftest.py").write_text(SUITE_CONFTEST, encoding="utf-8")
    (suite / "test_corpus.py").write_text(SUITE_TESTS, encoding="utf-8")
    (suite / "test_own.py").write_text(SUITE_OWN, encoding="utf-8")
    (suite / "pytest.ini").write_text("[pytest]\naddopts = -ra\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("CI", None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                            cwd=suite, env=env, capture_output=True, text=True, timeout=120)
    return result.stdout.splitlines()


def test_the_skip_line_groups_reasons_and_comes_last_before_the_final_line(tmp_path: Path) -> None:
    lines = run_suite(tmp_path)
    assert lines[-2] == ("skipped: 4 (3 fixtures folder ../shared/fixtures is missing; "
                         "1 spamassassin not installed)"), lines
    assert lines[-1].startswith("3 passed, 4 skipped in "), lines
    assert any("short test summary info" in line for line in lines[:-2])  # -ra's list comes before it
    assert sum(line.startswith("skipped: ") for line in lines) == 1


def test_without_skips_the_line_says_none(tmp_path: Path) -> None:
    lines = run_suite(tmp_path, "-k", "passes or own_data")
    assert lines[-2:-1] == ["skipped: none"] and lines[-1].startswith("2 passed, 5 deselected in "), lines


def test_without_shared_fixtures_the_corpus_tests_are_deselected_not_skipped(tmp_path: Path) -> None:
    lines = run_suite(tmp_path, "-p", "tests.shared_fixtures_layer", "--without-shared-fixtures")
    # deselected: directly, through another fixture, and by name through request.getfixturevalue;
    # kept: the module that overrides fixtures_dir, and the test asking for tmp_path by name
    assert "deselected: 3 tests that read ../shared/fixtures (the conformance layer, run with the shared fixtures)" in lines
    assert lines[-2] == "skipped: 1 (1 spamassassin not installed)", lines
    assert lines[-1].startswith("3 passed, 1 skipped, 3 deselected in "), lines
