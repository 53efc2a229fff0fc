"""Delivery benchmark: ``newsletter send`` (ledger, claims, rate limiter off, MessageFactory,
SMTP pool) to a local aiosmtpd sink in a separate process, beside the best a user could write
with ``smtplib`` over the same number of connections to the same sink, in the same run: messages
built and dot-stuffed beforehand, sent with the lowest-level calls (``mail``, ``rcpt``,
``putcmd("data")``, ``send``). Beside both, the sink's own ceiling: a raw socket client that
pipelines each envelope in one write (no client can be faster than what the sink then takes).

    python bench/bench_send.py [--sizes 10000,100000] [--concurrency 1,4,8] [--out FILE.md]
    python bench/bench_send.py --quick

Every measured run is its own process, so its peak memory (ru_maxrss) is its own. "ours" is
timed end to end: compose, render, freeze, creating the ledger rows, sending, recording each
message. Targets: at least 0.85x the raw rate at every concurrency, and peak memory the same at
100,000 subscribers as at 10,000 (within 20%).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# -- the sink (its own process) ---------------------------------------------------------------


def run_sink(port: int) -> None:
    from aiosmtpd.controller import Controller

    class Counter:
        count = 0

        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            Counter.count += len(envelope.rcpt_tos)
            return "250 2.0.0 OK"

    controller = Controller(Counter(), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    for line in sys.stdin:  # "count" asks for the total so far; EOF ends the sink
        if line.strip() == "count":
            print(Counter.count, flush=True)
    controller.stop()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sink() -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "sink", str(port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, port


def sink_count(proc: subprocess.Popen) -> int:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("count\n")
    proc.stdin.flush()
    return int(proc.stdout.readline())


# -- setting up a store ------------------------------------------------------------------------


def make_store(folder: Path, size: int, port: int) -> Path:
    """Config + store: the bundled sample papers and ``size`` active subscribers."""
    from newsletter import pipeline
    from newsletter.config import load_config
    from newsletter.store import open_store
    from newsletter.store.schema import subscribers

    config_path = folder / "newsletter.toml"
    config_path.write_text(
        '[newsletter]\nbase_url = "https://papers.tpweekly.org"\nfrom = "Papers <digest@papers.tpweekly.org>"\n'
        'postal_address = "12 Science Road, Cambridge"\n'
        f'[store]\nurl = "sqlite:///{folder / "bench.db"}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        f'[delivery]\nrate_per_second = 0\n', encoding="utf-8")
    config = load_config(config_path, env={})
    store = open_store(config.store_url)
    pipeline.ingest(store, config)
    now = datetime.now(timezone.utc)
    rows = ({"email": f"reader{i:06d}@example.com", "email_key": f"reader{i:06d}@example.com",
             "name": f"Reader {i}", "status": "active", "status_reason": "", "attributes": {},
             "created_at": now, "updated_at": now} for i in range(size))
    with store.atomic() as conn:
        while batch := list(itertools.islice(rows, 5000)):
            conn.execute(subscribers.insert(), batch)
    store.dispose()
    return config_path


def reset_deliveries(config_path: Path) -> None:
    from newsletter.config import load_config
    from newsletter.store import open_store
    from newsletter.store.schema import deliveries

    store = open_store(load_config(config_path, env={}).store_url)
    with store.atomic() as conn:
        conn.execute(deliveries.delete())
    store.dispose()


# -- the two measured runs (each in its own process) --------------------------------------------


def cpu_s() -> float:
    """CPU time of this process so far, all threads, user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_ours(config_path: Path, concurrency: int) -> dict:
    from newsletter import pipeline
    from newsletter.config import load_config
    from newsletter.store import open_store

    config = load_config(config_path, env={})
    store = open_store(config.store_url)
    cpu_before = cpu_s()
    started = time.perf_counter()
    report = pipeline.send_issue(store, config, concurrency=concurrency)
    elapsed = time.perf_counter() - started
    return {"sent": report.sent, "failed": report.failed, "elapsed_s": elapsed, "cpu_s": cpu_s() - cpu_before,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_raw(config_path: Path, concurrency: int, size: int, ceiling: bool = False) -> dict:
    """One connection per thread, sending messages built and dot-stuffed beforehand (1,000
    distinct ones, cycled: holding 100,000 would only measure the memory of the baseline):
    through smtplib's lowest-level calls, or (``ceiling``) as raw socket writes with the
    envelope pipelined, which is as fast as the sink can take them."""
    from newsletter import pipeline
    from newsletter.config import load_config
    from newsletter.deliver.transports import dot_stuff
    from newsletter.models import Subscriber
    from newsletter.render.messages import MessageFactory
    from newsletter.store import open_store
    from newsletter.tokens import Signer

    config = load_config(config_path, env={})
    store = open_store(config.store_url)
    issue = pipeline.build_issue(store, config)
    assert issue is not None
    factory = MessageFactory(pipeline.render_issue(store, config, issue), config, Signer("bench"))
    built = [factory.build(Subscriber(email=f"reader{i:06d}@example.com", name=f"Reader {i}", id=i))
             for i in range(min(size, 1000))]
    messages = [(m.sender, dot_stuff(m.data)) for m in built]
    port = config["smtp.port"]
    counts = [0] * concurrency

    def worker(n: int) -> None:
        conn = smtplib.SMTP("127.0.0.1", port, local_hostname="localhost")
        conn.ehlo()
        for i in range(n, size, concurrency):
            sender, stuffed = messages[i % len(messages)]
            assert conn.mail(sender)[0] == 250 and conn.rcpt(f"reader{i:06d}@example.com")[0] == 250
            conn.putcmd("data")
            assert conn.getreply()[0] == 354
            conn.send(stuffed)
            assert conn.getreply()[0] == 250
            counts[n] += 1
        conn.quit()

    def pipelined(n: int) -> None:
        import socket

        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            replies = sock.makefile("rb")

            def expect(count: int) -> None:
                for _ in range(count):
                    line = replies.readline()
                    while line[3:4] == b"-":
                        line = replies.readline()
                    assert line[:1] in (b"2", b"3"), line

            expect(1)
            sock.sendall(b"EHLO localhost\r\n")
            expect(1)
            for i in range(n, size, concurrency):
                sender, stuffed = messages[i % len(messages)]
                sock.sendall(f"MAIL FROM:<{sender}>\r\nRCPT TO:<reader{i:06d}@example.com>\r\nDATA\r\n".encode())
                expect(3)
                sock.sendall(stuffed)
                expect(1)
                counts[n] += 1
            sock.sendall(b"QUIT\r\n")

    cpu_before = cpu_s()
    started = time.perf_counter()
    threads = [threading.Thread(target=pipelined if ceiling else worker, args=(n,)) for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {"sent": sum(counts), "failed": 0, "elapsed_s": elapsed, "cpu_s": cpu_s() - cpu_before,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(kind: str, config_path: Path, concurrency: int, size: int) -> dict:
    out = subprocess.run([sys.executable, __file__, kind, str(config_path), str(concurrency), str(size)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--quick", action="store_true", help="2,000 and 10,000 subscribers")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (Markdown) here")
    args = parser.parse_args()
    sizes = [2000, 10000] if args.quick else [int(s) for s in args.sizes.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]
    sink, port = start_sink()
    lines = ["| subscribers | connections | ours msg/s | best smtplib msg/s | sink ceiling msg/s | ours / smtplib "
             "| ours CPU ms/msg | smtplib CPU ms/msg | ours peak RSS MB | smtplib peak RSS MB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    peaks: dict[int, float] = {}
    ok = True
    try:
        for size in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                config_path = make_store(Path(tmp), size, port)
                for c in levels:
                    before = sink_count(sink)
                    raw = measure("raw", config_path, c, size)
                    top = measure("ceiling", config_path, c, size)
                    reset_deliveries(config_path)
                    ours = measure("ours", config_path, c, size)
                    arrived = sink_count(sink) - before
                    assert ours["sent"] == size and raw["sent"] == size and arrived == 3 * size, (ours, raw, arrived)
                    ours_rate, raw_rate = size / ours["elapsed_s"], size / raw["elapsed_s"]
                    top_rate = size / top["elapsed_s"]
                    ratio = ours_rate / raw_rate
                    ok &= ratio >= 0.85
                    peaks[size] = max(peaks.get(size, 0.0), ours["peak_rss_mb"])
                    line = (f"| {size:,} | {c} | {ours_rate:,.0f} | {raw_rate:,.0f} | {top_rate:,.0f} | {ratio:.2f}x | "
                            f"{ours['cpu_s'] / size * 1000:.3f} | {raw['cpu_s'] / size * 1000:.3f} | "
                            f"{ours['peak_rss_mb']:.0f} | {raw['peak_rss_mb']:.0f} |")
                    lines.append(line)
                    print(line, flush=True)
    finally:
        assert sink.stdin is not None
        sink.stdin.close()
        sink.wait(timeout=30)
    small, large = min(peaks), max(peaks)
    growth = peaks[large] / peaks[small]
    summary = (f"Peak memory of `send`: {peaks[small]:.0f} MB at {small:,} subscribers, {peaks[large]:.0f} MB at "
               f"{large:,} ({growth:.2f}x; target <= 1.20x). Rate target: >= 0.85x raw at every concurrency: "
               f"{'met' if ok else 'NOT met'}.")
    print("\n" + "\n".join(lines) + "\n\n" + summary)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n\n" + summary + "\n", encoding="utf-8")
    return 0 if ok and growth <= 1.2 else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "sink":
        run_sink(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] in ("ours", "raw", "ceiling"):
        kind, config_file, concurrency = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
        result = (run_ours(config_file, concurrency) if kind == "ours"
                  else run_raw(config_file, concurrency, int(sys.argv[4]), ceiling=kind == "ceiling"))
        print(json.dumps(result))
    else:
        sys.exit(main())
