"""Two ``newsletter serve`` processes on one store, as behind a proxy: a subscription asked for in
one is confirmed in the other, one-click unsubscribes spread over both all land, and the per-client
subscribe limit holds across both (its counters live in the store, not in each process)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx

from conftest import ROOT
from newsletter.config import load_config
from newsletter.store import open_store
from newsletter.store.subscribers import add_subscriber
from test_web import Site, confirm_link


def serve(config: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config), "serve", "--port", "0"],
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not (found := re.search(r"on (http://127\.0\.0\.1:\d+)", log_path.read_text())):
        assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.05)
    url = found.group(1)
    while True:
        try:
            httpx.get(url + "/", timeout=5)
            return process, url
        except httpx.ConnectError:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)


def test_two_serve_processes_share_one_store(tmp_path: Path, db_url: str) -> None:
    config_path = tmp_path / "newsletter.toml"
    config_path.write_text(f'[store]\nurl = "{db_url}"\n[delivery]\noutbox = "{tmp_path / "outbox"}"\n'
                           f'[web]\nsubscribe_per_client_per_hour = 3\n', encoding="utf-8")
    config = load_config(config_path, env={})
    store = open_store(db_url)
    readers = [f"reader{i:02d}@example.org" for i in range(20)]
    with store.atomic() as conn:
        for address in readers:
            add_subscriber(conn, address)
    first, url_a = serve(config_path, tmp_path / "a.log")
    second, url_b = serve(config_path, tmp_path / "b.log")
    try:
        site_a = Site(config, store, SimpleNamespace(url=url_a), tmp_path / "outbox")
        site_b = Site(config, store, SimpleNamespace(url=url_b), tmp_path / "outbox")
        # Asked for on A, confirmed on B (the link names A's address: open it on B, as a proxy would).
        assert site_a.subscribe("ada@example.org", name="Ada").status_code == 200
        [message] = site_a.messages()
        link = confirm_link(message).replace(url_a, url_b)
        assert site_b.confirm(link).status_code == 200
        assert site_a.status("ada@example.org") == "active"
        # The per-client limit (3 an hour) holds across both processes.
        assert site_b.subscribe("b1@example.org").status_code == 200
        assert site_a.subscribe("b2@example.org").status_code == 200
        refused = site_b.subscribe("b3@example.org")
        assert refused.status_code == 429, refused.text
        # One-click unsubscribes spread over both all land.
        for number, address in enumerate(readers):
            site = site_a if number % 2 else site_b
            token = site.signer.unsubscribe_token(address)
            answer = site.client.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click",
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert answer.status_code in (200, 202), answer.text
        assert {site_a.status(a) for a in readers} == {"unsubscribed"}
    finally:
        for process in (first, second):
            process.terminate()
            process.wait(timeout=10)
        store.dispose()
