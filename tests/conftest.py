"""Shared test fixtures: the store (a real SQLite file in tmp_path, or with ``--store=postgresql`` a
database on a real PostgreSQL), and the read-only fixtures in ../shared.

In CI (``CI=true``) a missing tool or fixture folder is a failure, never a skip.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from newsletter.store import Store, open_store

ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = Path(os.environ.get("NEWSLETTER_FIXTURES", ROOT.parent / "shared" / "fixtures"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# What a real SMTP send requires before it starts (see deliver/golive.py): a From address and a
# postal address that are not the shipped examples, and an https (or loopback http) base_url.
LIVE_NEWSLETTER = ('from = "Trending Papers <digest@papers.tpweekly.org>"\n'
                   'postal_address = "Trending Papers, 12 Science Road, Cambridge CB1 2AB"\n')
LIVE_SETTINGS = f'[newsletter]\nbase_url = "https://papers.tpweekly.org"\n{LIVE_NEWSLETTER}'


def require_tool(path_or_name: str) -> str:
    """The path of an external tool; skip locally when absent, fail in CI."""
    found = shutil.which(path_or_name) or (path_or_name if Path(path_or_name).exists() else None)
    if found:
        return found
    if IN_CI:
        pytest.fail(f"{path_or_name} is required in CI and is not installed (.ci/run installs it)")
    pytest.skip(f"{path_or_name} not installed")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared real-world fixtures (never copied into this repository)."""
    if not SHARED_FIXTURES.is_dir():
        if IN_CI:
            pytest.fail(f"fixtures folder {SHARED_FIXTURES} is missing")
        pytest.skip(f"fixtures folder {SHARED_FIXTURES} is missing")
    return SHARED_FIXTURES


# The suite runs against either store: ``--store=sqlite`` (the default) or ``--store=postgresql``.
# In the PostgreSQL run each test gets its own new database on the session's server: ``db_url``
# and ``store`` name it, and ``NEWSLETTER_STORE_URL`` is set to it, so the commands a test runs
# through a configuration file (whose default store is ``sqlite:///newsletter.db``) use it too;
# ``store_url(path)`` gives a test more stores (and unsets the variable: it names them itself).
# Tests that are about SQLite itself carry ``@pytest.mark.sqlite_only("why")`` and are left out.
STORE_OPTION = "--store"
STORES = ("sqlite", "postgresql")
OWN_STORE = "newsletter.db"  # tmp_path / OWN_STORE: the test's own store, as the default store.url names it


class TestDatabases:
    """The PostgreSQL databases of one test, each created empty on first use (as a SQLite file
    is) and all dropped after the test, connections and all (a test may leave a pool open)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, server_url: str, own_path: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
        self.server_url = server_url
        self.own_path = own_path
        self.monkeypatch = monkeypatch  # given: NEWSLETTER_STORE_URL names the test's own store
        self.urls: dict[Path | str, str] = {}
        if monkeypatch is not None:
            monkeypatch.setenv("NEWSLETTER_STORE_URL", self.url(own_path))

    def url(self, path: Path | str) -> str:
        """The database that stands for the SQLite file ``path`` in this test (or for another
        name), created the first time it is asked for. A test that names a store other than its
        own names its stores itself: ``NEWSLETTER_STORE_URL`` would override the ones its
        configuration files name, so it is unset."""
        if path not in self.urls:
            if self.monkeypatch is not None and path != self.own_path:
                self.monkeypatch.delenv("NEWSLETTER_STORE_URL", raising=False)
            name = f"t_{secrets.token_hex(6)}"
            with psycopg.connect(self.server_url, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            base, _, query = self.server_url.partition("?")
            self.urls[path] = f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
        return self.urls[path]

    def drop(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            for url in self.urls.values():
                name = url.partition("?")[0].rsplit("/", 1)[1]
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.urls.clear()


_this_test: TestDatabases | None = None  # the running test's databases, in the PostgreSQL run


def store_url(path: Path) -> str:
    """The URL of a store a test keeps at ``path``: that SQLite file in the SQLite run, a
    database of the test's own in the PostgreSQL run (for ``tmp_path / "newsletter.db"`` the one
    ``db_url`` and ``NEWSLETTER_STORE_URL`` name)."""
    if _this_test is None:
        return f"sqlite:///{path}"
    return _this_test.url(Path(path))


@pytest.fixture(autouse=True)
def _store_of_this_test(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In the PostgreSQL run: this test's databases, and ``NEWSLETTER_STORE_URL`` naming its own."""
    global _this_test
    if request.config.getoption(STORE_OPTION) != "postgresql":
        yield
        return
    _this_test = TestDatabases(request.getfixturevalue("postgres_server"),
                               request.getfixturevalue("tmp_path") / OWN_STORE, monkeypatch)
    try:
        yield
    finally:
        databases, _this_test = _this_test, None
        databases.drop()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The test's store: a SQLite file in ``tmp_path``, or its own PostgreSQL database."""
    return store_url(tmp_path / OWN_STORE)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL for the session: ``NEWSLETTER_TEST_POSTGRES_URL`` if set, else one the
    ``pgserver`` package starts in a temporary folder. Skips where it cannot start; fails in CI."""
    given = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    # Not under pytest's own temporary folder: as root, pgserver runs PostgreSQL as a user of its
    # own, and every pytest session that starts (a test's subprocess, another run) makes
    # /tmp/pytest-of-root private again, which would cut the running server off its data folder.
    folder = Path(tempfile.mkdtemp(prefix="newsletter-tests-postgres-"))
    # Removed at exit, after pgserver's own exit handler (registered later, so run earlier) has
    # stopped the server and last touched its runtime folder.
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    # pgserver asks platformdirs for a runtime folder, which warns where none is set (root, CI).
    os.environ.setdefault("XDG_RUNTIME_DIR", str(folder))
    try:
        import pgserver

        (folder / "data").mkdir()
        server = pgserver.get_server(folder / "data", cleanup_mode="stop")
    except Exception as exc:  # noqa: BLE001 - any reason it cannot start is the same answer
        if IN_CI:
            pytest.fail(f"PostgreSQL could not be started with pgserver: {exc}")
        pytest.skip(f"PostgreSQL could not be started with pgserver: {exc}")
    try:
        url = server.get_uri()
        # A throwaway server in a temporary folder: nothing in it needs to survive a power cut, and
        # each test creates and drops a database (measured here: a drop takes 95 ms with fsync, 10 without).
        with psycopg.connect(url, autocommit=True) as conn:
            for setting in ("fsync", "full_page_writes", "synchronous_commit"):
                conn.execute(f"ALTER SYSTEM SET {setting} = off")
            conn.execute("SELECT pg_reload_conf()")
        yield url
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A new, empty database on the session's PostgreSQL, for this test alone (in the PostgreSQL
    run, one beside the test's own store)."""
    if _this_test is not None:
        yield _this_test.url("postgres_url")
        return
    databases = TestDatabases(postgres_server, Path(OWN_STORE))
    try:
        yield databases.url("postgres_url")
    finally:
        databases.drop()


@pytest.fixture
def store(db_url: str) -> Store:
    s = open_store(db_url)
    yield s
    s.dispose()


def free_port() -> int:
    """A port the OS says is free now (for servers such as aiosmtpd that cannot bind port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="Rewrite the golden files under tests/golden/ from the current output.")
    parser.addoption(STORE_OPTION, choices=STORES, default="sqlite",
                     help="The store the tests use: a SQLite file each (default), or a database each on a real "
                          "PostgreSQL (NEWSLETTER_TEST_POSTGRES_URL, else one pgserver starts).")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): a test about SQLite itself (its files, locks or "
                                       "dumps), left out of the --store=postgresql run; the reason says why")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the PostgreSQL run, deselect (not skip) the tests marked ``sqlite_only``: they ran in
    the SQLite run, and a skip would read as something missing."""
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None and not (marker.args and str(marker.args[0]).strip()):
            raise pytest.UsageError(f"{item.nodeid}: sqlite_only needs a reason")
    if config.getoption(STORE_OPTION) != "postgresql":
        return
    sqlite_only = [item for item in items if item.get_closest_marker("sqlite_only") is not None]
    if sqlite_only:
        config.hook.pytest_deselected(items=sqlite_only)
        left_out = set(map(id, sqlite_only))
        items[:] = [item for item in items if id(item) not in left_out]


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when run with ``--update-golden``: golden tests write instead of compare."""
    return bool(request.config.getoption("--update-golden"))


# As root Chromium needs --no-sandbox; the rest keep it off the network (this machine's closed
# network refuses its background connections) and out of first-run work.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser():
    """Headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    chromium = require_tool("/usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    """One line, last before pytest's own summary line: how many tests skipped and why.

    The outermost wrapper, so it prints after the other summaries (``-ra``'s short test summary
    included) and just before the final "N passed in Ts" line.
    """
    try:
        return (yield)
    finally:
        reasons: dict[str, int] = {}
        for report in terminalreporter.stats.get("skipped", []):
            if not getattr(report, "count_towards_summary", True):
                continue
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
            reason = " ".join(str(reason).removeprefix("Skipped: ").split()) or "no reason given"
            reasons[reason] = reasons.get(reason, 0) + 1
        if reasons:
            grouped = "; ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0])))
            terminalreporter.write_line(f"skipped: {sum(reasons.values())} ({grouped})")
        else:
            terminalreporter.write_line("skipped: none")
