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


def _is_shared(definition) -> bool:  # type: ignore[no-untyped-def]
    return definition.argname == "fixtures_dir" and Path(definition.func.__code__.co_filename).name == "conftest.py"


def reads_shared_fixtures(item: pytest.Item) -> bool:
    """Whether the item uses conftest's ``fixtures_dir`` (the shared corpus), asked for directly,
    through other fixtures, or by a parameter naming a fixture that a test gets with
    ``request.getfixturevalue``. Modules of ours override ``fixtures_dir`` (tests/own_corpus.py)."""
    manager = item.session._fixturemanager
    callspec = getattr(item, "callspec", None)
    wanted = list(getattr(item, "fixturenames", ()))
    wanted += [v for v in (callspec.params.values() if callspec else ()) if isinstance(v, str) and v.isidentifier()]
    seen: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        definitions = manager.getfixturedefs(name, item)
        if not definitions:
            continue
        if _is_shared(definitions[-1]):
            return True
        for definition in definitions:  # an override may ask for the fixture it overrides
            wanted.extend(definition.argnames)
    return False


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
