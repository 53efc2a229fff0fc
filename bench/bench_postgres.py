"""Benchmark: PostgreSQL as the store, beside SQLite and beside the least any client could do.

(filled in below)
"""

from __future__ import annotations

import os
import secrets
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server's URL: ``NEWSLETTER_BENCH_POSTGRES_URL`` if set, else one the
    ``pgserver`` package (the test extra) starts in a temporary folder and stops afterwards."""
    given = os.environ.get("NEWSLETTER_BENCH_POSTGRES_URL")
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as folder:
        os.environ.setdefault("XDG_RUNTIME_DIR", folder)  # pgserver warns without one (root, CI)
        import pgserver

        server = pgserver.get_server(Path(folder) / "data", cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def new_database(server_url: str) -> str:
    """The URL of a new, empty database on the server."""
    import psycopg

    name = f"bench_{secrets.token_hex(5)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base, _, query = server_url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
