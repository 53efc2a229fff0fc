"""Throttling benchmark: a server that answers ``451 4.7.1`` to any message above R per second
(as Gmail, Outlook and Yahoo do to a new sender), and two senders configured for more than it
takes, in the same run:

* ours: ``deliver_issue`` (shared adaptive rate, throttled messages back to the queue without
  spending an attempt), with the operator's configured rate;
* a fixed-rate sender: raw ``smtplib`` over the same number of connections at the configured
  rate, each 4xx retried up to 5 times (as our sender did before it adapted), then failed.

    python bench/bench_throttle.py [--messages 1000] [--server-rate 50] [--rate 200] [--quick]

Target: ours delivers every message, in at most 1.5x the best possible time (messages / R).
Both report their time, what arrived, what failed and how many 4xx answers they met.
"""

from __future__ import annotations

import argparse
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_send import free_port  # noqa: E402 - after the path is set

CONCURRENCY = 4
THROTTLE = "451 4.7.1 Too many messages from you, slow down"


# -- the throttling server (its own process) --------------------------------------------------


def run_server(port: int, per_second: float) -> None:
    from aiosmtpd.controller import Controller

    class Throttle:
        accepted = 0
        refused = 0
        recent: deque[float] = deque()

        async def handle_MAIL(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
            now = time.monotonic()
            while Throttle.recent and now - Throttle.recent[0] >= 1.0:
                Throttle.recent.popleft()
            if len(Throttle.recent) >= per_second:
                Throttle.refused += 1
                return THROTTLE
            Throttle.recent.append(now)
            envelope.mail_from = address
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            Throttle.accepted += len(envelope.rcpt_tos)
            return "250 2.0.0 OK"

    controller = Controller(Throttle(), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    for line in sys.stdin:  # "count" asks for (accepted, refused); EOF ends the server
        if line.strip() == "count":
            print(Throttle.accepted, Throttle.refused, flush=True)
        elif line.strip() == "reset":
            Throttle.accepted = Throttle.refused = 0
            Throttle.recent.clear()
            print("ok", flush=True)
    controller.stop()


class Server:
    def __init__(self, per_second: float) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, __file__, "server", str(self.port), str(per_second)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def ask(self, what: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def counts(self) -> tuple[int, int]:
        accepted, refused = self.ask("count").split()
        return int(accepted), int(refused)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


# -- the two senders --------------------------------------------------------------------------


def message(i: int) -> tuple[str, bytes]:
    address = f"reader{i:06d}@example.com"
    data = (f"From: digest@papers.tpweekly.org\r\nTo: {address}\r\nSubject: Papers\r\n"
            f"Message-ID: <{i}@bench>\r\n\r\nThis week's papers.\r\n").encode()
    return address, data


def ours(server: Server, n: int, rate: float) -> dict:
    from newsletter.deliver.sender import SendOptions, deliver_issue
    from newsletter.deliver.transports import SmtpPool, SmtpSettings
    from newsletter.models import Issue, RenderedIssue
    from newsletter.store import open_store
    from newsletter.store.issues import freeze_issue
    from newsletter.store.subscribers import add_subscriber
    from datetime import datetime, timezone

    class Built:
        def __init__(self, subscriber) -> None:  # type: ignore[no-untyped-def]
            self.recipient = subscriber.email
            self.sender = "digest@papers.tpweekly.org"
            self.message_id = f"<{subscriber.id}@bench>"
            self.data = message(subscriber.id)[1]

    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{folder}/bench.db")
        now = datetime.now(timezone.utc)
        issue = Issue(key="2026-W49", number=1, title="Issue 1", papers=(), created_at=now)
        with store.atomic() as conn:
            freeze_issue(conn, issue, RenderedIssue(issue=issue, subject="S", html="<p>x</p>", text="x"), now=now)
            for i in range(n):
                add_subscriber(conn, message(i)[0], now=now)
        transport = SmtpPool(SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout_s=30))
        started = time.monotonic()
        report = deliver_issue(store, 1, issue.key, Built, transport,
                               SendOptions(concurrency=CONCURRENCY, rate_per_second=rate))
        elapsed = time.monotonic() - started
        store.dispose()
    return {"elapsed": elapsed, "sent": report.sent, "failed": report.failed, "left": report.deferred}


def fixed_rate(server: Server, n: int, rate: float, max_attempts: int = 5) -> dict:
    """smtplib at a steady ``rate``, all connections together; a 4xx puts the message back at
    the end of the queue until its attempts run out."""
    queue = deque((i, 0) for i in range(n))
    lock = threading.Lock()
    counts = {"sent": 0, "failed": 0}
    next_slot = [time.monotonic()]

    def take_token() -> None:
        with lock:
            slot = next_slot[0] = max(next_slot[0] + 1.0 / rate, time.monotonic())
        time.sleep(max(0.0, slot - time.monotonic()))

    def worker() -> None:
        conn = smtplib.SMTP("127.0.0.1", server.port, timeout=30)
        conn.ehlo()
        while True:
            with lock:
                if not queue:
                    break
                i, attempts = queue.popleft()
            take_token()
            address, data = message(i)
            code, _ = conn.mail("digest@papers.tpweekly.org")
            if code == 250 and conn.rcpt(address)[0] == 250 and conn.data(data)[0] == 250:
                with lock:
                    counts["sent"] += 1
                continue
            conn.rset()
            with lock:
                if attempts + 1 >= max_attempts:
                    counts["failed"] += 1
                else:
                    queue.append((i, attempts + 1))
        conn.quit()

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"elapsed": time.monotonic() - started, **counts, "left": 0}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--server-rate", type=float, default=50.0)
    parser.add_argument("--rate", type=float, default=200.0, help="the rate both senders are configured for")
    parser.add_argument("--quick", action="store_true", help="500 messages")
    args = parser.parse_args(argv)
    n = 500 if args.quick else args.messages
    best = n / args.server_rate
    print(f"{n} messages, server takes at most {args.server_rate:g}/s (best possible {best:.1f} s), "
          f"senders configured for {args.rate:g}/s over {CONCURRENCY} connections")
    print(f"{'sender':<14}{'time':>9}{'x best':>8}{'arrived':>9}{'failed':>8}{'4xx met':>9}")
    results = {}
    for name, run in (("ours", ours), ("fixed rate", fixed_rate)):
        server = Server(args.server_rate)
        try:
            figures = run(server, n, args.rate)
            accepted, refused = server.counts()
        finally:
            server.close()
        results[name] = figures
        print(f"{name:<14}{figures['elapsed']:>8.1f}s{figures['elapsed'] / best:>7.2f}x{accepted:>9}"
              f"{figures['failed']:>8}{refused:>9}")
    mine = results["ours"]
    met = mine["sent"] == n and mine["failed"] == 0 and mine["elapsed"] <= 1.5 * best
    print(f"target: ours delivers all {n} within 1.5x the best possible time: "
          f"{'met' if met else 'NOT met'} ({mine['elapsed'] / best:.2f}x)")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["server"]:
        run_server(int(sys.argv[2]), float(sys.argv[3]))
    else:
        sys.exit(main(sys.argv[1:]))
