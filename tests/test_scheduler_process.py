"""Real ``newsletter run`` processes against one store: the lock keeps a second scheduler out,
and SIGTERM in the middle of a send against a real (slow) SMTP server leaves a ledger that
matches what the server received, which the next start then completes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from newsletter.scheduler import WEEKDAYS
from newsletter.store import Store, open_store
from newsletter.store.locks import lock_holder
from newsletter.store.schema import deliveries
from newsletter.store.subscribers import add_subscriber

from conftest import LIVE_SETTINGS, free_port

ROOT = Path(__file__).resolve().parent.parent


def just_missed_slot() -> str:
    """A weekly schedule string whose slot passed two minutes ago (UTC): caught up at start."""
    then = datetime.now(timezone.utc) - timedelta(minutes=2)
    return f"{WEEKDAYS[then.weekday()]} at {then:%H:%M}"


def write_config(tmp_path: Path, db_url: str, extra: str = "") -> Path:
    path = tmp_path / "newsletter.toml"
    path.write_text(
        f'{LIVE_SETTINGS}\n'
        f'[store]\nurl = "{db_url}"\n\n'
        f'[delivery]\noutbox = "{tmp_path / "outbox"}"\nrate_per_second = 0\n\n'
        f'[schedule]\ntimezone = "UTC"\ningest = "daily at 00:00"\nsend = "{just_missed_slot()}"\n\n'
        + extra, encoding="utf-8")
    return path


def add_subscribers(store: Store, count: int) -> list[str]:
    emails = [f"reader{n:02d}@example.org" for n in range(count)]
    with store.atomic() as conn:
        for email in emails:
            add_subscriber(conn, email, name=f"Reader {email[6:8]}")
    return emails


def newsletter(config: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": "test-secret-key-for-scheduler-tests",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config), *args],
                            cwd=config.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def sent_rows(store: Store) -> list[tuple[str, str]]:
    with store.atomic() as conn:
        return [(r.email, r.status) for r in conn.execute(select(deliveries.c.email, deliveries.c.status))]


def wait_for(condition, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_two_schedulers_against_one_store_only_one_runs_and_sends(tmp_path: Path, db_url: str) -> None:
    store = open_store(db_url)
    emails = add_subscribers(store, 5)
    config = write_config(tmp_path, db_url)
    first, second = newsletter(config, "run"), newsletter(config, "run")
    try:
        # One of them takes the lock; the other is refused at once and says who holds it.
        wait_for(lambda: first.poll() is not None or second.poll() is not None, what="one run to be refused")
        loser, winner = (first, second) if first.poll() is not None else (second, first)
        out, err = loser.communicate(timeout=30)
        assert loser.returncode == 1, err
        holder = lock_holder(store)
        assert holder is not None and holder.pid == winner.pid
        assert f"process {holder.holder} holds the scheduler lock" in err
        # The winner caught up the missed send: every subscriber once, in the outbox.
        # (the outbox transport records a message as "written" rather than "sent")
        wait_for(lambda: sorted(e for e, s in sent_rows(store) if s == "written") == emails
                 or winner.poll() is not None, what="the send")
        assert winner.poll() is None, winner.communicate()
        winner.send_signal(signal.SIGTERM)
        out, err = winner.communicate(timeout=60)
        assert winner.returncode == 0, err
        assert "ingest: done" in err and "send: done" in err
        assert "ingest: daily at 00:00, next run" in err  # the plan, with each job's next run
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == len(emails)
    assert lock_holder(store) is None  # released on a clean stop
    # A third start within the grace period finds the week's issue sent and sends nothing.
    third = newsletter(config, "run", "--once")
    out, err = third.communicate(timeout=60)
    assert third.returncode == 0, err
    assert "Nothing was due." in out
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == len(emails)
    store.dispose()


def test_run_once_refuses_a_bad_schedule_before_anything_runs(tmp_path: Path, db_url: str) -> None:
    config = tmp_path / "newsletter.toml"
    config.write_text(f'[store]\nurl = "{db_url}"\n\n[schedule]\nsend = "mondy at 25:00"\n', encoding="utf-8")
    proc = newsletter(config, "run", "--once")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"{config}:5: schedule.send: unknown day 'mondy'" in err
    assert not (tmp_path / "newsletter.db").exists()  # refused before the store was opened


def test_run_once_runs_what_is_due_and_then_nothing(tmp_path: Path, db_url: str) -> None:
    config = tmp_path / "newsletter.toml"
    config.write_text(f'[store]\nurl = "{db_url}"\n\n[schedule]\ningest = "daily at 00:00"\nsend = "off"\n',
                      encoding="utf-8")
    first = newsletter(config, "run", "--once")
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert "ingest: ok:" in out and "new" in out
    assert "ingest: started" in err and "ingest: done:" in err
    second = newsletter(config, "run", "--once")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "Nothing was due." in out
    assert "ingest: started" not in err


class SlowSink:
    """An aiosmtpd handler that takes its time over each message and remembers the recipients."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.received: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001 - aiosmtpd's API
        await asyncio.sleep(self.delay_s)
        with self.lock:
            self.received.extend(envelope.rcpt_tos)
        return "250 OK queued"


@pytest.fixture
def slow_smtp():
    sink = SlowSink(delay_s=0.25)
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield sink, controller.port
    finally:
        controller.stop()


def test_sigterm_mid_send_leaves_the_ledger_matching_the_server(tmp_path: Path, db_url: str, slow_smtp) -> None:
    sink, port = slow_smtp
    store = open_store(db_url)
    emails = add_subscribers(store, 20)
    config = write_config(tmp_path, db_url, extra=(
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\ntimeout_s = 10\n'))
    # Two connections, so more than one message is in flight when the signal lands.
    text = config.read_text().replace("rate_per_second = 0\n", "rate_per_second = 0\nconcurrency = 2\n")
    config.write_text(text, encoding="utf-8")
    proc = newsletter(config, "run")
    try:
        wait_for(lambda: len(sink.received) >= 4 or proc.poll() is not None, what="the send to start")
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "SIGTERM received" in err
    rows = sent_rows(store)
    sent = sorted(e for e, s in rows if s == "sent")
    assert sorted(sink.received) == sent, "the ledger and the server disagree"
    assert 4 <= len(sent) < len(emails), "the signal did not land mid-send"
    assert not [e for e, s in rows if s == "sending"], "a message was left in flight"

    # The next start resumes the issue: everyone gets exactly one copy.
    again = newsletter(config, "run", "--once")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert Counter(sink.received) == Counter(emails)
    assert sorted(e for e, s in sent_rows(store) if s == "sent") == emails
    store.dispose()


@pytest.mark.parametrize("command", [("run",), ("send",)])
def test_a_second_ctrl_c_aborts_at_once_and_the_next_send_completes(
        tmp_path: Path, db_url: str, command: tuple[str, ...]) -> None:
    """The first Ctrl-C waits for the message in flight; against a server that stopped
    answering, the second leaves at once (status 130), releases the scheduler lock, and the
    next send delivers what was left, the aborted message included."""
    sink = SlowSink(delay_s=600)  # a server that takes the message and never answers
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    store = open_store(db_url)
    try:
        emails = add_subscribers(store, 6)
        config = write_config(tmp_path, db_url, extra=(
            f'[smtp]\nhost = "127.0.0.1"\nport = {controller.port}\nsecurity = "none"\ntimeout_s = 600\n'))
        ingest = newsletter(config, "ingest")  # the bundled sample
        assert ingest.wait(timeout=60) == 0, ingest.communicate()
        proc = newsletter(config, *command)
        try:
            wait_for(lambda: any(s == "sending" for _, s in sent_rows(store)) or proc.poll() is not None,
                     what="a message in flight")
            assert proc.poll() is None, proc.communicate()
            proc.send_signal(signal.SIGINT)
            time.sleep(1.0)
            assert proc.poll() is None, "the first Ctrl-C must wait for the message in flight"
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 130, err
        assert time.monotonic() - started < 15
        assert "again to abort" in err and "Aborted." in err
        assert lock_holder(store) is None

        sink.delay_s = 0  # the server answers again
        again = newsletter(config, "send")
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        assert sorted(e for e, s in sent_rows(store) if s == "sent") == emails
        assert sorted(set(sink.received)) == emails
    finally:
        controller.stop()
        store.dispose()
