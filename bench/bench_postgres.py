"""Benchmark: PostgreSQL as the store, beside SQLite and beside the least any client could do.

(a) ``newsletter send`` in 1, 2 and 4 processes (two SMTP connections each) on one PostgreSQL
    store, the same on one SQLite store, and beside them the best client a user could write: as
    many processes and connections of ``smtplib``, messages built and dot-stuffed beforehand and
    sent with its lowest-level calls (``bench_send.py``'s baseline). All go to one aiosmtpd sink
    in its own process, which times the first and last message it accepts: messages per second
    as the server saw them, start-up excluded.
(b) One-click unsubscribes (RFC 8058 POSTs) to two ``newsletter serve`` processes on one store,
    from ``wrk`` (not Python, so the client does not take the server's cores) with a Lua script
    giving every request another reader's link, while a ``send`` runs to the sink: requests per
    second and p99 latency on PostgreSQL beside the same on SQLite. Every POST must be answered
    200 and every reader it named recorded unsubscribed.
(c) Statements per 1,000 messages sent by one ``send``: on PostgreSQL every statement the server
    logs for that process (``log_statement = all``, BEGIN and COMMIT included) and the database's
    ``pg_stat_database`` counters (transactions, rows); on SQLite every statement its engine
    runs (``sqlite3``'s trace callback, BEGIN and COMMIT included). Counted from outside the
    package: a wrapper installs the hooks, then runs the command.

The PostgreSQL server is one ``pgserver`` starts in a temporary folder (the ``test`` extra), or
``NEWSLETTER_BENCH_POSTGRES_URL`` (then (c) gives only the counters).

    python bench/bench_postgres.py            # 10,000 messages per send, wrk for 10 s
    python bench/bench_postgres.py --quick    # 2,000 messages, wrk for 3 s
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS_PER_PROCESS = 2
WRK_CONNECTIONS = 16  # eight to each serve process
SERVER_LOGS: dict[str, Path] = {}  # URL of a server started here -> its log file

# -- PostgreSQL --------------------------------------------------------------------------------


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
        url = server.get_uri()
        SERVER_LOGS[url] = server.log
        try:
            yield url
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


def server_setting(server_url: str, name: str, value: str) -> None:
    """Set a server setting for new sessions (ALTER SYSTEM, then reload)."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)


def database_counters(url: str) -> dict[str, int]:
    """This database's transactions and rows so far (``pg_stat_database``)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute("SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, tup_updated,"
                           " tup_deleted FROM pg_stat_database WHERE datname = current_database()").fetchone()
    assert row is not None
    names = ("commits", "rollbacks", "rows_returned", "rows_fetched", "rows_inserted", "rows_updated", "rows_deleted")
    return dict(zip(names, row))


# -- the sink: aiosmtpd in its own process, timing what it accepts ------------------------------


def run_sink(port: int) -> None:
    from aiosmtpd.controller import Controller

    class Timing:
        count = 0
        first = last = 0.0

        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            now = time.monotonic()
            Timing.first = Timing.first or now
            Timing.last = now
            Timing.count += len(envelope.rcpt_tos)
            return "250 2.0.0 OK"

    controller = Controller(Timing(), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    for line in sys.stdin:  # "stats": count and seconds from first to last since the last "stats"
        if line.strip() == "stats":
            print(json.dumps({"count": Timing.count, "seconds": Timing.last - Timing.first}), flush=True)
            Timing.count, Timing.first, Timing.last = 0, 0.0, 0.0
    controller.stop()


class Sink:
    def __init__(self) -> None:
        from bench_send import free_port

        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, __file__, "sink", str(self.port)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def stats(self) -> dict:
        """Messages taken since the last call, and the seconds from the first to the last."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


# -- stores --------------------------------------------------------------------------------------


def make_store(folder: Path, url: str, port: int, size: int) -> Path:
    """A config for ``url`` sending to the sink, the bundled papers and ``size`` active readers."""
    from newsletter import pipeline
    from newsletter.config import load_config
    from newsletter.store import open_store

    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "newsletter.toml"
    config_path.write_text(
        '[newsletter]\nbase_url = "https://papers.tpweekly.org"\nfrom = "Papers <digest@papers.tpweekly.org>"\n'
        'postal_address = "12 Science Road, Cambridge"\n'
        f'[store]\nurl = "{url}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        f'[delivery]\nrate_per_second = 0\nconcurrency = {CONNECTIONS_PER_PROCESS}\noutbox = "{folder / "outbox"}"\n',
        encoding="utf-8")
    config = load_config(config_path, env={})
    store = open_store(config.store_url)
    pipeline.ingest(store, config)
    store.dispose()
    add_readers(config_path, 0, size)
    return config_path


def add_readers(config_path: Path, first: int, end: int) -> None:
    """Active readers ``reader{first}`` up to ``reader{end - 1}``, inserted in batches."""
    from newsletter.config import load_config
    from newsletter.store import open_store
    from newsletter.store.schema import subscribers

    store = open_store(load_config(config_path, env={}).store_url)
    now = datetime.now(timezone.utc)
    numbers = iter(range(first, end))
    with store.atomic() as conn:
        while chunk := list(itertools.islice(numbers, 5000)):
            conn.execute(subscribers.insert(), [
                {"email": f"reader{i:06d}@example.com", "email_key": f"reader{i:06d}@example.com", "name": f"Reader {i}",
                 "status": "active", "status_reason": "", "attributes": {}, "created_at": now, "updated_at": now}
                for i in chunk])
    store.dispose()


def reset(config_path: Path, *, unsubscribed_too: bool = False) -> None:
    """Every delivery row gone (the next send sends the issue again); everyone active again."""
    from sqlalchemy import update

    from newsletter.config import load_config
    from newsletter.store import open_store
    from newsletter.store.schema import deliveries, events, rate_buckets, subscribers

    store = open_store(load_config(config_path, env={}).store_url)
    with store.atomic() as conn:
        conn.execute(deliveries.delete())
        conn.execute(rate_buckets.delete())
        if unsubscribed_too:
            conn.execute(update(subscribers).values(status="active", status_reason=""))
            conn.execute(events.delete())
    store.dispose()


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "NEWSLETTER_SECRET_KEY": "bench-key", **extra}


def send_command(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "newsletter", "--config", str(config_path), "send"]


# -- (a) send: processes on each store, and raw smtplib ------------------------------------------


def timed_processes(commands: list[list[str]], sink: Sink, env: dict[str, str]) -> dict:
    """Start the commands together, wait for all; the sink's messages per second."""
    started = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for c in commands]
    outputs = [p.communicate(timeout=1800)[0].decode(errors="replace") for p in procs]
    wall_s = time.perf_counter() - started
    failed = [o for p, o in zip(procs, outputs) if p.returncode != 0]
    assert not failed, failed[0][-2000:]
    stats = sink.stats()
    return {"count": stats["count"], "rate": stats["count"] / max(stats["seconds"], 1e-9), "wall_s": wall_s}


def bench_send(configs: dict[str, Path], sink: Sink, size: int, levels: list[int]) -> list[str]:
    lines = ["| processes | connections | PostgreSQL msg/s | SQLite msg/s | best smtplib msg/s "
             "| PostgreSQL / smtplib | SQLite / smtplib |", "|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for n in levels:
        got: dict[str, dict] = {}
        for name, config_path in configs.items():
            reset(config_path)
            got[name] = timed_processes([send_command(config_path)] * n, sink, environment())
            assert got[name]["count"] == size, (name, n, got[name])
        share = size // n
        raw = [[sys.executable, str(ROOT / "bench" / "bench_send.py"), "raw", str(configs["SQLite"]),
                str(CONNECTIONS_PER_PROCESS), str(share)] for _ in range(n)]
        got["raw"] = timed_processes(raw, sink, environment())
        assert got["raw"]["count"] == share * n
        pg, lite, raw_rate = got["PostgreSQL"]["rate"], got["SQLite"]["rate"], got["raw"]["rate"]
        line = (f"| {n} | {n * CONNECTIONS_PER_PROCESS} | {pg:,.0f} | {lite:,.0f} | {raw_rate:,.0f} "
                f"| {pg / raw_rate:.2f}x | {lite / raw_rate:.2f}x |")
        print(line, flush=True)
        lines.append(line)
    return lines


# -- (b) one-click unsubscribes from wrk to two serve processes ----------------------------------

WRK_SCRIPT = """
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local counter = 1
local made = 0
function setup(thread)
  thread:set("offset", made)
  made = made + 1
end
function init(args)
  step = tonumber(os.getenv("BENCH_STEP"))
  start = tonumber(os.getenv("BENCH_START"))
  threads = tonumber(os.getenv("BENCH_THREADS"))
end
function request()
  local i = start + (offset + (counter - 1) * threads) * step
  counter = counter + 1
  local path = paths[(i % #paths) + 1]
  return wrk.format("POST", path, {["Content-Type"] = "application/x-www-form-urlencoded"},
                    "List-Unsubscribe=One-Click")
end
"""


def start_serve(config_path: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """``newsletter serve --port 0``; the URL from its first line, once uvicorn says it is up."""
    log = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config_path), "serve", "--port", "0"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=environment())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"on (http://127\.0\.0\.1:(\d+))", log_path.read_text())
        if found and "startup complete" in log_path.read_text():
            return proc, found.group(1)
        if proc.poll() is not None:
            raise SystemExit(f"serve exited:\n{log_path.read_text()}")
        time.sleep(0.05)
    proc.terminate()
    raise SystemExit(f"serve did not start within 60 s:\n{log_path.read_text()[-2000:]}")


def parse_wrk(output: str) -> dict:
    """Requests, non-2xx answers, errors and the p99 latency (ms) from ``wrk --latency``."""
    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {"requests": requests, "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "errors": sum(int(g) for g in errors.groups()) if errors else 0,
            "p99_ms": ms(re.search(r"\s99%\s+(\S+)", output).group(1))}  # type: ignore[union-attr]


def unsubscribed(config_path: Path) -> int:
    from sqlalchemy import func, select

    from newsletter.config import load_config
    from newsletter.store import open_store
    from newsletter.store.schema import subscribers

    store = open_store(load_config(config_path, env={}).store_url)
    with store.atomic() as conn:
        count = conn.execute(select(func.count()).select_from(subscribers)
                             .where(subscribers.c.status == "unsubscribed")).scalar_one()
    store.dispose()
    return count


def unsubscribe_paths(size: int) -> list[str]:
    """Every reader's one-click link, signed with the key every process here is given."""
    from newsletter.tokens import Signer

    signer = Signer(environment()["NEWSLETTER_SECRET_KEY"])
    return [f"/unsubscribe/{signer.unsubscribe_token(f'reader{i:06d}@example.com')}" for i in range(size)]


# Long: one measurement in order: servers, a send, both wrk runs, the check, the clean-up.
def unsubscribe_under_load(config_path: Path, wrk: str, size: int, duration_s: int, folder: Path) -> dict:
    """Two serve processes, a send running, and a wrk per server (two threads, eight
    connections each) POSTing every reader's link once at most (disjoint halves)."""
    reset(config_path, unsubscribed_too=True)
    folder.mkdir(parents=True, exist_ok=True)
    paths_file = folder / "paths.txt"
    paths_file.write_text("\n".join(unsubscribe_paths(size)) + "\n")
    script = folder / "unsubscribe.lua"
    script.write_text(WRK_SCRIPT)
    servers = [start_serve(config_path, folder / f"serve{n}.log") for n in range(2)]
    sender = subprocess.Popen(send_command(config_path), cwd=ROOT, env=environment(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
    try:
        time.sleep(1.0)  # the send past its start-up, sending
        runs = [subprocess.Popen([wrk, "-t2", f"-c{WRK_CONNECTIONS // 2}", f"-d{duration_s}s", "--latency", "-s", str(script), url],
                                 env={**os.environ, "BENCH_PATHS": str(paths_file), "BENCH_STEP": "2", "BENCH_THREADS": "2",
                                      "BENCH_START": str(n)}, stdout=subprocess.PIPE, text=True)
                for n, (_, url) in enumerate(servers)]
        results = [parse_wrk(r.communicate(timeout=duration_s + 120)[0]) for r in runs]
        send_running = sender.poll() is None
    finally:
        sender.terminate()
        sender.wait(timeout=30)
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=30)
    total = sum(r["requests"] for r in results)
    return {"requests": total, "rate": total / duration_s, "p99_ms": max(r["p99_ms"] for r in results),
            "bad": sum(r["non_2xx"] + r["errors"] for r in results), "recorded": unsubscribed(config_path),
            "send_running": send_running}


def bench_unsubscribe(configs: dict[str, Path], size: int, duration_s: int, folder: Path) -> list[str]:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed (apt-get install wrk): (b) left out")
        return []
    lines = ["| store | POSTs | requests/s | p99 latency | not 200 or failed | readers unsubscribed | send running |",
             "|---|---:|---:|---:|---:|---:|---|"]
    print("\n".join(lines), flush=True)
    for name, config_path in configs.items():
        got = unsubscribe_under_load(config_path, wrk, size, duration_s, folder / name)
        assert got["requests"] < size, "more POSTs than readers: give it more readers"
        line = (f"| {name}, two `serve` | {got['requests']:,} | {got['rate']:,.0f} | {got['p99_ms']:.1f} ms "
                f"| {got['bad']} | {got['recorded']:,} | {'yes' if got['send_running'] else 'ended before'} |")
        print(line, flush=True)
        lines.append(line)
        # wrk counts the requests answered within its time; those in flight then (one per
        # connection at most) reach the store too.
        ok = got["bad"] == 0 and got["requests"] <= got["recorded"] <= got["requests"] + WRK_CONNECTIONS
        print(f"target: every POST answered 200 and recorded ({name}): {'met' if ok else 'NOT met'}")
    return lines


# -- (c) statements per 1,000 messages ---------------------------------------------------------

COUNTING_WRAPPER = """
import atexit, json, os, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
counts = {"statements": 0, "commits": 0}
def trace(sql):
    counts["statements"] += 1
    counts["commits"] += sql.lstrip().upper().startswith(("COMMIT", "END"))
@event.listens_for(Engine, "connect")
def on_connect(dbapi_connection, record):
    if hasattr(dbapi_connection, "set_trace_callback"):
        dbapi_connection.set_trace_callback(trace)
atexit.register(lambda: open(os.environ["BENCH_COUNTS"], "w").write(json.dumps(counts)))
from newsletter.cli import main
main(sys.argv[1:], prog_name="newsletter")
"""


def count_statements(configs: dict[str, Path], server_url: str, pg_url: str, sink: Sink, folder: Path) -> list[str]:
    lines = ["| store | messages | statements | per 1,000 messages | transactions per 1,000 | rows written per 1,000 |",
             "|---|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    log = SERVER_LOGS.get(server_url)
    for name, config_path in configs.items():
        reset(config_path)
        counts_file = folder / f"counts-{name}.json"
        env = environment(BENCH_COUNTS=str(counts_file), PGAPPNAME="bench-send")
        before_log = log.stat().st_size if log else 0
        before = database_counters(pg_url) if name == "PostgreSQL" else {}
        if name == "PostgreSQL" and log:
            server_setting(server_url, "log_statement", "all")
            server_setting(server_url, "log_line_prefix", "%m [%p] %a ")
        try:
            proc = subprocess.run([sys.executable, "-c", COUNTING_WRAPPER, "--config", str(config_path), "send"],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        finally:
            if name == "PostgreSQL" and log:
                server_setting(server_url, "log_statement", "none")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        size = sink.stats()["count"]
        per = 1000 / size
        if name == "PostgreSQL":
            time.sleep(1.0)
            after = database_counters(pg_url)
            delta = {k: after[k] - before[k] for k in after}
            written = delta["rows_inserted"] + delta["rows_updated"] + delta["rows_deleted"]
            statements: int | None = None
            if log:
                with log.open("rb") as f:
                    f.seek(before_log)
                    logged = f.read().decode(errors="replace")
                statements = len(re.findall(r"\] bench-send LOG:  (?:statement|execute [^:]*):", logged))
            shown = f"{statements:,} | {statements * per:,.0f}" if statements is not None else "(no server log) | "
            line = (f"| PostgreSQL (server log, pg_stat_database) | {size:,} | {shown} | {delta['commits'] * per:,.0f} "
                    f"| {written * per:,.0f} |")
        else:
            counted = json.loads(counts_file.read_text())
            line = (f"| SQLite (engine trace) | {size:,} | {counted['statements']:,} | "
                    f"{counted['statements'] * per:,.0f} | {counted['commits'] * per:,.0f} | |")
        print(line, flush=True)
        lines.append(line)
    return lines


# -- main ------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000, help="messages per send")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per store")
    parser.add_argument("--quick", action="store_true", help="2,000 messages, wrk for 3 s")
    parser.add_argument("--only", default="abc", help="which parts: a, b, c")
    args = parser.parse_args()
    if args.quick:
        args.size, args.duration = min(args.size, 2000), min(args.duration, 3)
    levels = [int(n) for n in args.processes.split(",")]
    sys.path.insert(0, str(ROOT))
    sink = Sink()
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {CONNECTIONS_PER_PROCESS} SMTP connections per "
          f"process, rate limit off; PostgreSQL from pgserver (or NEWSLETTER_BENCH_POSTGRES_URL) on this machine")
    try:
        with tempfile.TemporaryDirectory() as tmp, postgres_server() as server:
            folder = Path(tmp)
            pg_url = new_database(server)
            configs = {"PostgreSQL": make_store(folder / "pg", pg_url, sink.port, args.size),
                       "SQLite": make_store(folder / "sqlite", f"sqlite:///{folder / 'sqlite' / 'bench.db'}", sink.port,
                                            args.size)}
            if "a" in args.only:
                print(f"\n(a) `newsletter send`, {args.size:,} messages, messages/s at the sink")
                bench_send(configs, sink, args.size, levels)
            if "c" in args.only:
                print(f"\n(c) statements per 1,000 messages, one `send` of {args.size:,}")
                count_statements(configs, server, pg_url, sink, folder)
            if "b" in args.only:
                readers = 30_000 if not args.quick else 10_000
                for config_path in configs.values():
                    reset(config_path)
                    add_readers(config_path, args.size, readers)
                print(f"\n(b) one-click unsubscribe POSTs from wrk for {args.duration} s to two `serve` processes "
                      f"each, a `send` of {readers:,} messages running")
                bench_unsubscribe(configs, readers, args.duration, folder)
    finally:
        sink.close()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if len(sys.argv) > 2 and sys.argv[1] == "sink":
        run_sink(int(sys.argv[2]))
    else:
        sys.exit(main())
