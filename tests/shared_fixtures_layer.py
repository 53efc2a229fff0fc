"""A pytest plugin for the run without ../shared/fixtures (a fresh clone's view).

``python3 -m pytest -p tests.shared_fixtures_layer --without-shared-fixtures`` deselects the tests
that read the shared real-world corpus through conftest's ``fixtures_dir``: the conformance
layer, which the main run (with the corpus, required in CI) runs. Deselected is not skipped:
every format and feature those tests cover is also tested on inputs of our own (tests/data),
and those tests still run here, so the skips that remain are only the tests whose external
program is missing on purpose. The run says how many it left out, and why, in one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

OPTION = "--without-shared-fixtures"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(OPTION, action="store_true", default=False,
                     help="Deselect the tests that read ../shared/fixtures (the conformance layer).")


def reads_shared_fixtures(item: pytest.Item) -> bool:
    """Whether the item's ``fixtures_dir`` (asked for directly or through other fixtures) is
    conftest's, the shared corpus; modules of ours override it with tests/own_corpus.py's."""
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs.get("fixtures_dir") if info is not None else None
    if not definitions:
        return False
    return Path(definitions[-1].func.__code__.co_filename).name == "conftest.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption(OPTION):
        return
    layer = [item for item in items if reads_shared_fixtures(item)]
    if layer:
        config.hook.pytest_deselected(items=layer)
        left_out = set(map(id, layer))
        items[:] = [item for item in items if id(item) not in left_out]
    config.stash[_COUNT] = len(layer)


_COUNT = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    if config.getoption(OPTION):
        terminalreporter.write_line(f"deselected: {config.stash.get(_COUNT, 0)} tests that read ../shared/fixtures "
                                    "(the conformance layer, run with the shared fixtures)")
