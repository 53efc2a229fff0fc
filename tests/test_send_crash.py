"""Crashes and rivals: ``python -m newsletter send`` killed with SIGKILL at random points and
run again until it finishes, and two ``send`` processes at once, against a real aiosmtpd
server. The server's record is the judge."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, free_port
from test_deliver_support import RecordingHandler, SmtpServer
from test_send_cli import setup_store

CONCURRENCY = 4


def send_process(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NEWSLETTER_SECRET_KEY": "test-key"}
    return subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config), "send"],
                            cwd=config.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def many_subscribers(config: Path, n: int) -> list[str]:
    from newsletter.config import load_config
    from newsletter.store import open_store
    from newsletter.store.subscribers import add_subscriber

    store = open_store(load_config(config, env={}).store_url)
    extra = [f"crash{i:04d}@example.net" for i in range(n)]
    with store.atomic() as conn:
        for address in extra:
            add_subscriber(conn, address)
        from newsletter.store.subscribers import active_subscribers
        everyone = [s.email for s in active_subscribers(conn)]
    store.dispose()
    return everyone


def test_send_killed_at_random_points_and_resumed_delivers_everyone_once_more_at_most_in_flight(tmp_path: Path) -> None:
    handler = RecordingHandler(delay_s=0.002)
    server = SmtpServer(handler, free_port()).start()
    rng = random.Random(int(os.environ.get("CRASH_SEED", "48")))
    try:
        config = setup_store(tmp_path, server.port, concurrency=CONCURRENCY)
        everyone = many_subscribers(config, 170)
        kills = 0
        for round_ in range(12):
            before = len(handler.messages)
            proc = send_process(config)
            # Kill after a random number of messages reached the server in this round, i.e.
            # in the middle of sending, with messages in flight on every connection; the last
            # rounds run to the end.
            target = before + rng.randint(5, 40) if round_ < 5 else 10**9
            while proc.poll() is None and len(handler.messages) < target:
                time.sleep(0.001)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                continue
            output = proc.stdout.read().decode() if proc.stdout else ""
            assert proc.returncode == 0, output
            assert "0 failed, 0 left for later" in output
            break
        else:
            raise AssertionError("send never finished")
        assert kills == 5, "every kill should have happened mid-run"
        got = handler.recipients()
        assert sorted(got) == sorted(everyone)
        extra_copies = sum(got.values()) - len(everyone)
        assert extra_copies <= CONCURRENCY * kills, (extra_copies, kills)
        print(f"kills={kills} extra copies={extra_copies}")
        assert max(got.values()) <= 1 + kills
    finally:
        server.stop()


def test_two_send_processes_at_once_never_deliver_the_same_message_twice(tmp_path: Path) -> None:
    handler = RecordingHandler(delay_s=0.001)
    server = SmtpServer(handler, free_port()).start()
    try:
        config = setup_store(tmp_path, server.port)
        everyone = many_subscribers(config, 170)
        procs = [send_process(config) for _ in range(2)]
        outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        got = handler.recipients()
        assert sorted(got) == sorted(everyone) and set(got.values()) == {1}
        sent = [int(o.split(" sent,")[0].rsplit(" ", 1)[1]) for o in outputs]
        assert sum(sent) == len(everyone)
    finally:
        server.stop()


def test_a_send_in_another_container_with_the_same_host_name_never_takes_live_claims(tmp_path: Path) -> None:
    """Two senders, each in its own UTS and pid namespace with the same host name, one store:
    the second sees the first's claims under a host name that is its own and a pid it cannot
    see. Judged by host and pid, it took them at once and sent those messages a second time;
    judged by the claim's pid namespace and lease, it leaves them to the first."""
    import socket

    from conftest import require_tool

    unshare = require_tool("unshare")
    handler = RecordingHandler(delay_s=0.1)
    server = SmtpServer(handler, free_port()).start()
    host = socket.gethostname()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NEWSLETTER_SECRET_KEY": "test-key"}

    def contained(config: Path, exec_python: bool) -> subprocess.Popen:
        # exec: python is pid 1 of its namespace; without: the shell is, and python pid 2 or 3.
        run = f"{'exec ' if exec_python else ''}{sys.executable} -m newsletter --config {config} send"
        return subprocess.Popen([unshare, "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c",
                                 f"hostname {host} && {run}{'' if exec_python else '; exit $?'}"],
                                cwd=config.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    try:
        config = setup_store(tmp_path, server.port, concurrency=2)
        everyone = many_subscribers(config, 10)
        first = contained(config, exec_python=False)
        deadline = time.monotonic() + 60
        while len(handler.messages) < 3 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.01)
        assert first.poll() is None, first.stdout.read().decode() if first.stdout else ""
        second = contained(config, exec_python=True)
        out_second = second.communicate(timeout=120)[0].decode()
        out_first = first.communicate(timeout=120)[0].decode()
        assert first.returncode == 0, out_first
        assert "0 sent" in out_second, out_second  # everything was the first's, in flight
        got = handler.recipients()
        assert sorted(got) == sorted(everyone) and set(got.values()) == {1}, got
    finally:
        server.stop()
