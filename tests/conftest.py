"""Shared test fixtures: real SQLite files in tmp_path, and the read-only fixtures in ../shared.

In CI (``CI=true``) a missing tool or fixture folder is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Iterator

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


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'newsletter.db'}"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL for the session: ``NEWSLETTER_TEST_POSTGRES_URL`` if set, else one the
    ``pgserver`` package starts in a temporary folder. Skips where it cannot start; fails in CI."""
    given = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    # pgserver asks platformdirs for a runtime folder, which warns where none is set (root, CI).
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))
    try:
        import pgserver

        server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    except Exception as exc:  # noqa: BLE001 - any reason it cannot start is the same answer
        if IN_CI:
            pytest.fail(f"PostgreSQL could not be started with pgserver: {exc}")
        pytest.skip(f"PostgreSQL could not be started with pgserver: {exc}")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the session's PostgreSQL, for this test alone."""
    import secrets

    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base, _, query = postgres_server.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


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
