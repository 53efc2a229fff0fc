"""One-click unsubscribe under load: `newsletter serve` in its own process, a few thousand RFC 8058
POSTs from this one over loopback, then a check that every one was recorded.

Baselines, same run and same server: GET of a missing page (HTTP, routing and a template only),
and GET of the unsubscribe page (verifies the token and reads the subscriber, writes nothing). The POST adds one BEGIN IMMEDIATE transaction per request
(status change + event row).

    python bench/bench_unsubscribe.py            # 3,000 subscribers, 8 client threads
    python bench/bench_unsubscribe.py --quick    # 500
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.config import load_config  # noqa: E402
from newsletter.store import open_store  # noqa: E402
from newsletter.store.schema import events, subscribers  # noqa: E402
from newsletter.store.subscribers import add_subscriber  # noqa: E402
from newsletter.tokens import Signer, secret_key  # noqa: E402


def start_server(config_path: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`newsletter serve --port 0` in a child process; the URL is read from uvicorn's log."""
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(config_path), "serve", "--port", "0"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log_path.read_text())
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            raise SystemExit(f"the server exited:\n{log_path.read_text()}")
        time.sleep(0.05)
    process.terminate()
    raise SystemExit("the server did not start within 30 s")


def hammer(url: str, paths: list[str], method: str, threads: int) -> tuple[float, dict[int, int], list[str]]:
    """Send one request per path from ``threads`` keep-alive clients; (seconds, statuses, errors)."""
    chunks = [paths[i::threads] for i in range(threads)]
    statuses: Counter[int] = Counter()
    errors: list[str] = []

    def run(chunk: list[str]) -> Counter[int]:
        seen: Counter[int] = Counter()
        with httpx.Client(base_url=url, timeout=30) as client:
            for path in chunk:
                try:
                    if method == "POST":
                        response = client.post(path, content=b"List-Unsubscribe=One-Click",
                                               headers={"Content-Type": "application/x-www-form-urlencoded"})
                    else:
                        response = client.get(path)
                except httpx.HTTPError as exc:
                    errors.append(f"{path}: {exc!r}")
                    continue
                seen[response.status_code] += 1
        return seen

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for seen in pool.map(run, chunks):
            statuses.update(seen)
    return time.perf_counter() - started, dict(statuses), errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    count = args.count or (500 if args.quick else 3000)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db_url = f"sqlite:///{folder / 'newsletter.db'}"
        config_path = folder / "newsletter.toml"
        config_path.write_text(f'[store]\nurl = "{db_url}"\n\n[delivery]\noutbox = "{folder / "outbox"}"\n')
        config = load_config(config_path, env={})
        store = open_store(db_url)
        addresses = [f"reader{n:05d}@example.org" for n in range(count)]
        with store.atomic() as conn:
            for address in addresses:
                add_subscriber(conn, address, status="active")
        signer = Signer(secret_key(config, store))
        paths = [f"/unsubscribe/{signer.unsubscribe_token(a)}" for a in addresses]

        process, url = start_server(config_path, folder / "server.log")
        try:
            # Warm-up, not timed: imports, the first connections and the template cache.
            hammer(url, [f"/warm-up/{n}" for n in range(min(200, count))], "GET", args.threads)
            http_s, http_statuses, http_errors = hammer(url, [f"/no-such-page/{n}" for n in range(count)],
                                                        "GET", args.threads)
            get_s, get_statuses, get_errors = hammer(url, paths, "GET", args.threads)
            post_s, post_statuses, post_errors = hammer(url, paths, "POST", args.threads)
        finally:
            process.terminate()
            process.wait(timeout=10)

        with store.atomic() as conn:
            unsubscribed = conn.execute(select(func.count()).select_from(subscribers)
                                        .where(subscribers.c.status == "unsubscribed")).scalar()
            recorded = conn.execute(select(func.count()).select_from(events)
                                    .where(events.c.kind == "unsubscribed")).scalar()
        store.dispose()

    print(f"{count} subscribers, {args.threads} client threads, server: `newsletter serve` (1 uvicorn worker)")
    print("| request | count | seconds | requests/s | statuses | errors |")
    print("|---|---:|---:|---:|---|---:|")
    print(f"| GET a 404 page (HTTP only, no store) | {count} | {http_s:.2f} | {count / http_s:,.0f} | {http_statuses} | {len(http_errors)} |")
    print(f"| GET unsubscribe page (baseline) | {count} | {get_s:.2f} | {count / get_s:,.0f} | {get_statuses} | {len(get_errors)} |")
    print(f"| POST one-click unsubscribe | {count} | {post_s:.2f} | {count / post_s:,.0f} | {post_statuses} | {len(post_errors)} |")
    print(f"recorded: {unsubscribed} subscribers unsubscribed, {recorded} unsubscribe events (expected {count} each)")
    ok = (unsubscribed == count and recorded == count and not (http_errors or get_errors or post_errors)
          and http_statuses == {404: count} and get_statuses == {200: count} and post_statuses == {200: count})
    for error in (http_errors + get_errors + post_errors)[:5]:
        print("error:", error)
    print(f"target: every one-click unsubscribe answered 200 and recorded: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
