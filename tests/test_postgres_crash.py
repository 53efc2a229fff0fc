"""Crashes on a shared PostgreSQL store: three ``newsletter send`` processes started together on
one store and one aiosmtpd server, each SIGKILLed once at a random moment and then resumed. Two of
them run in UTS and pid namespaces of their own with the host's name, where both have the same
pid: the same host name and pid, told apart only by the claim's pid namespace and run id. The server's
record is the judge: the daily cap and the rate held across all three, then everyone had the
issue, with extra copies no more than the messages in flight at the kills."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
from sqlalchemy import func, select

from conftest import ROOT, free_port, require_tool
from newsletter.store import open_store
from newsletter.store.schema import deliveries
from test_deliver_support import RecordingHandler, SmtpServer
from test_postgres import busiest_second, seed, write_config

SUBSCRIBERS = 150
DAILY_CAP = 120
RATE = 40  # messages per second, for the three together
CONCURRENCY = 2  # connections (and so messages in flight) per process
HELD_MAX = CONCURRENCY  # rows one process holds at once: at this rate each worker claims one at a time


def command(config: Path) -> str:
    return f"{sys.executable} -m newsletter --config {config} send"


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "NEWSLETTER_SECRET_KEY": "test-key"}


def contained_sender(unshare: str, config: Path) -> subprocess.Popen:
    """``send``, killed, then ``send`` again, both in one new UTS and pid namespace named as the
    host. The shell is pid 1 there, ``hostname`` pid 2 and the first ``send`` pid 3 (``exit $?``
    keeps the shell from exec'ing the last one); its exit status is the second ``send``'s."""
    script = f"hostname {socket.gethostname()} && {command(config)}; {command(config)}; exit $?"
    return subprocess.Popen([unshare, "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c", script],
                            cwd=config.parent, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def host_sender(config: Path) -> subprocess.Popen:
    return subprocess.Popen(command(config).split(), cwd=config.parent, env=environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def senders_in(proc: subprocess.Popen) -> list[psutil.Process]:
    """The ``newsletter send`` processes running under ``proc`` (itself included)."""
    try:
        root = psutil.Process(proc.pid)
        found = [root, *root.children(recursive=True)]
        return [p for p in found if p.cmdline()[1:3] == ["-m", "newsletter"]]
    except psutil.NoSuchProcess:
        return []


def inner_pid(process: psutil.Process) -> int:
    """The pid a process has in its own (innermost) pid namespace."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError("no NSpid line")


inner_pid_of: dict[int, int] = {}


def claim_prefix(process: psutil.Process) -> str:
    """How the claims of a running ``send`` begin: ``host:pid:pid-namespace:``, as seen from
    inside its namespaces (see ``newsletter/deliver/ledger.py``)."""
    inner_pid_of[process.pid] = inner_pid(process)
    namespace = os.readlink(f"/proc/{process.pid}/ns/pid").strip("pid:[]")
    return f"{socket.gethostname()}:{inner_pid_of[process.pid]}:{namespace}:"


def held_by(url: str, prefix: str) -> set[str]:
    """The addresses whose rows a sender (by its claim prefix) holds: in flight, or claimed."""
    store = open_store(url)
    with store.atomic() as conn:
        found = set(conn.execute(select(deliveries.c.email).where(
            deliveries.c.status == "sending", deliveries.c.claimed_by.startswith(prefix, autoescape=True))).scalars())
    store.dispose()
    return found


def sent_in_ledger(url: str) -> int:
    store = open_store(url)
    with store.atomic() as conn:
        found = conn.execute(select(func.count()).select_from(deliveries).where(deliveries.c.status == "sent"))
        count = found.scalar_one()
    store.dispose()
    return count


# Long: one scenario, in order: start, kill each once, resume, judge, finish, judge again.
def test_three_senders_killed_and_resumed_on_postgresql_keep_cap_rate_and_deliver_everyone(
        tmp_path: Path, postgres_url: str) -> None:
    unshare = require_tool("unshare")
    rng = random.Random(int(os.environ.get("CRASH_SEED", "14")))
    handler = RecordingHandler(delay_s=0.01)
    server = SmtpServer(handler, free_port()).start()
    try:
        config = write_config(tmp_path, postgres_url, server.port,
                              extra=f"daily_cap = {DAILY_CAP}\n")
        config.write_text(config.read_text().replace("rate_per_second = 0", f"rate_per_second = {RATE}")
                          .replace("concurrency = 2", f"concurrency = {CONCURRENCY}"))
        everyone = seed(postgres_url, config, SUBSCRIBERS)
        procs = [contained_sender(unshare, config), contained_sender(unshare, config), host_sender(config)]
        # Each is killed once, when the server has taken a random number of messages; in a random order.
        targets = dict(zip(rng.sample(range(3), 3), sorted(rng.sample(range(8, 90), 3))))
        first_senders: dict[int, psutil.Process] = {}
        resumed: dict[int, subprocess.Popen] = {}
        inner_pids: list[int] = []
        in_flight_at_kills: set[str] = set()
        deadline = time.monotonic() + 120
        while len(first_senders) < 3 or len(resumed) < 3:
            assert time.monotonic() < deadline, "the kills never happened"
            for i, proc in enumerate(procs):
                if i in first_senders or i in resumed:
                    continue
                found = senders_in(proc)
                if found and len(handler.messages) >= targets[i]:
                    victim = found[-1]
                    holder = claim_prefix(victim)
                    victim.send_signal(signal.SIGKILL)
                    victim.wait(timeout=30)
                    in_flight_at_kills |= held_by(postgres_url, holder)  # before its resumption releases them
                    first_senders[i] = victim
                    if i < 2:  # contained: the shell resumes it
                        inner_pids.append(inner_pid_of[victim.pid])
                        resumed[i] = proc
                    else:
                        proc.wait()
                        resumed[i] = host_sender(config)
            time.sleep(0.002)
        assert inner_pids[0] == inner_pids[1]  # same host name, same pid, in two namespaces
        outputs = [p.communicate(timeout=180)[0].decode() for p in resumed.values()]
        assert [p.returncode for p in resumed.values()] == [0, 0, 0], outputs
        assert any(f"daily cap of {DAILY_CAP} messages reached" in o for o in outputs), outputs

        # The cap held across all three: exactly that many recorded sent, and the server got no
        # more addresses than that plus those in flight at the kills (accepted, never recorded).
        assert len(in_flight_at_kills) <= 3 * HELD_MAX
        got = handler.recipients()
        assert sent_in_ledger(postgres_url) == DAILY_CAP
        assert DAILY_CAP <= len(got) <= DAILY_CAP + len(in_flight_at_kills), (len(got), outputs)
        # The rate held across all three: one bucket in the store. In any second at most the rate,
        # plus the bucket's burst (a tenth of a second's worth), plus what each process took in
        # its last batch and had not spent yet.
        batch = RATE // 10
        most = RATE + batch + 3 * (batch - 1)
        assert busiest_second(handler.accepted_at) <= most
        accepted = len(handler.accepted_at)
        assert max(handler.accepted_at) - min(handler.accepted_at) >= (accepted - most) / RATE

        # The next day's allowance, as it were: the cap lifted, one more send finishes the list.
        config.write_text(config.read_text().replace(f"daily_cap = {DAILY_CAP}", "daily_cap = 0"))
        last = host_sender(config)
        output = last.communicate(timeout=120)[0].decode()
        assert last.returncode == 0, output
        got = handler.recipients()
        assert sorted(got) == sorted(everyone)
        # Only a message a killed sender held can have arrived twice: a live sender's claims,
        # under the same host name and pid in another namespace, were never taken.
        twice = {address for address, n in got.items() if n > 1}
        assert twice <= in_flight_at_kills, (twice - in_flight_at_kills, in_flight_at_kills)
        assert max(got.values()) <= 2
        assert sent_in_ledger(postgres_url) == SUBSCRIBERS
    finally:
        server.stop()
