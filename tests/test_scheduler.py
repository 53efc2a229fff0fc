"""The scheduler's own logic, with injected jobs and time moved by time-machine: schedule
strings, refusal of bad ones, local times across daylight-saving changes, catch-up, restarts."""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine

from newsletter.compose.issue import issue_key
from newsletter.config import load_config
from newsletter.errors import ConfigError
from newsletter.scheduler import JobSpec, Scheduler, latest_slot, load_plan, parse_job_spec

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "newsletter.toml"
    path.write_text(body, encoding="utf-8")
    return path


def plan_for(tmp_path: Path, *, tz: str = "Europe/Berlin", ingest: str = "daily at 06:00",
             send: str = "monday at 08:00", grace_hours: float = 48):
    path = write_config(tmp_path, f'[schedule]\ntimezone = "{tz}"\ningest = "{ingest}"\n'
                                  f'send = "{send}"\ngrace_hours = {grace_hours}\n')
    return load_plan(load_config(path, env={}))


class MemoryState:
    """Scheduler state as the store keeps it, in memory: last runs, and issue keys sent."""

    def __init__(self) -> None:
        self.runs: dict[str, datetime] = {}
        self.sent_keys: set[str] = set()

    def last_run(self, job: str) -> datetime | None:
        return self.runs.get(job)

    def record_run(self, job: str, when: datetime) -> None:
        self.runs[job] = when

    def issue_done(self, slot: datetime) -> bool:
        return issue_key(slot, slot.tzinfo) in self.sent_keys  # as StoreState: the slot's own zone

    def retries_due(self, slot: datetime, now: datetime) -> bool:
        return False


class Recorder:
    """Jobs that note when (real local time) they ran; ``send`` marks its issue key sent,
    refusing loudly to send one key twice, as the ledger would."""

    def __init__(self, state: MemoryState, fail: set[str] | None = None) -> None:
        self.state = state
        self.calls: list[tuple[str, datetime, datetime]] = []
        self.fail = fail or set()

    def jobs(self):
        return {"ingest": lambda slot: self._call("ingest", slot), "send": lambda slot: self._call("send", slot)}

    def _call(self, job: str, slot: datetime) -> str:
        now = datetime.now(UTC)
        self.calls.append((job, now.astimezone(BERLIN), slot))
        if job in self.fail:
            raise RuntimeError(f"{job} broke on purpose")
        if job == "send":
            key = issue_key(slot, BERLIN)  # as the pipeline keys issues: in the schedule's zone
            assert key not in self.state.sent_keys, f"issue {key} sent twice"
            self.state.sent_keys.add(key)
        return f"{job} ok"

    def times(self, job: str) -> list[datetime]:
        return [at for name, at, _ in self.calls if name == job]


def advance(traveller, scheduler: Scheduler, until: datetime) -> None:
    """Jump from one due time to the next, running what is due, up to ``until``."""
    while True:
        wake = scheduler.next_wakeup()
        if wake is None or wake > until:
            break
        traveller.move_to(wake)
        scheduler.run_pending()
    traveller.move_to(until)


# ---- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("daily at 06:00", JobSpec("daily at 06:00", "at", at=time(6, 0))),
    ("every day at 6:30", JobSpec("every day at 6:30", "at", at=time(6, 30))),
    ("monday at 08:00", JobSpec("monday at 08:00", "at", at=time(8, 0), weekday=0)),
    ("Every Sunday at 20:15", JobSpec("Every Sunday at 20:15", "at", at=time(20, 15), weekday=6)),
    ("fri at 07:05", JobSpec("fri at 07:05", "at", at=time(7, 5), weekday=4)),
    ("every 6 hours", JobSpec("every 6 hours", "interval", interval=timedelta(hours=6))),
    ("every hour", JobSpec("every hour", "interval", interval=timedelta(hours=1))),
    ("hourly", JobSpec("hourly", "interval", interval=timedelta(hours=1))),
    ("every 30 minutes", JobSpec("every 30 minutes", "interval", interval=timedelta(minutes=30))),
    ("off", JobSpec("off", "off")),
])
def test_schedule_strings_parse(text: str, expected: JobSpec) -> None:
    assert parse_job_spec(text) == expected


@pytest.mark.parametrize("text, why", [
    ("mondy at 08:00", "did you mean 'monday'"),
    ("monday at 25:00", "not a time of day"),
    ("daily at 06:60", "not a time of day"),
    ("monday", "has no time"),
    ("every 0 hours", "at least 1"),
    ("every 3 days", "days take a time"),
    ("whenever", "cannot read"),
    ("", "empty schedule"),
])
def test_bad_schedule_strings_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_job_spec(text)


def test_bad_schedule_is_refused_with_file_and_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[newsletter]\nname = "X"\n\n[schedule]\ntimezone = "UTC"\n'
                                  'send = "mondy at 25:00"\n')
    with pytest.raises(ConfigError) as info:
        load_plan(load_config(path, env={}))
    assert str(info.value).startswith(f"{path}:6: schedule.send: unknown day 'mondy'")
    assert info.value.line == 6


def test_unknown_timezone_is_refused_with_file_and_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[schedule]\ningest = "daily at 06:00"\ntimezone = "Europe/Berlni"\n')
    with pytest.raises(ConfigError) as info:
        load_plan(load_config(path, env={}))
    assert str(info.value).startswith(f"{path}:3: schedule.timezone: unknown timezone 'Europe/Berlni'")
    assert "Europe/Berlin" in str(info.value)


@pytest.mark.parametrize("tz, send, first, second", [
    ("Europe/Berlin", "monday at 01:30", "2027-03-22", "2027-03-29"),   # Mon 00:30 UTC, then Sun 23:30 UTC
    ("America/New_York", "sunday at 19:30", "2027-03-07", "2027-03-14"),  # Mon 00:30 UTC, then Sun 23:30 UTC
])
def test_weekly_sends_a_week_apart_across_a_dst_change_get_two_issue_keys(
        tmp_path: Path, tz: str, send: str, first: str, second: str) -> None:
    """Counted in UTC these two sends would share one ISO week (a week skipped); issue keys are
    counted in the schedule's timezone, so each send gets its own issue."""
    path = write_config(tmp_path, f'[schedule]\ntimezone = "{tz}"\nsend = "{send}"\n')
    assert load_plan(load_config(path, env={}), now=utc(2026, 11, 2, 12)).jobs["send"].text == send
    at = parse_job_spec(send).at
    slots = [datetime.combine(date.fromisoformat(day), at, tzinfo=ZoneInfo(tz)) for day in (first, second)]
    assert slots[1].astimezone(UTC) - slots[0].astimezone(UTC) == timedelta(days=7, hours=-1)  # clocks went forward
    assert issue_key(slots[0], UTC) == issue_key(slots[1], UTC)  # what counting in UTC would do
    assert issue_key(slots[0], tz) != issue_key(slots[1], tz)


@pytest.mark.parametrize("tz, send", [
    ("Europe/Berlin", "monday at 00:30"),    # Sunday in UTC all year: keys stay one week apart
    ("Europe/Berlin", "monday at 02:00"),
    ("America/New_York", "sunday at 20:00"),  # Monday in UTC all year
    ("Europe/Berlin", "daily at 01:30"),      # not weekly: one issue per week whatever the day
])
def test_weekly_sends_that_keep_their_utc_day_are_accepted(tmp_path: Path, tz: str, send: str) -> None:
    path = write_config(tmp_path, f'[schedule]\ntimezone = "{tz}"\nsend = "{send}"\n')
    assert load_plan(load_config(path, env={}), now=utc(2026, 11, 2, 12)).jobs["send"].text == send


def test_bad_schedule_from_environment_names_the_variable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    # Refused as the configuration is read, with the other settings: before any command runs.
    with pytest.raises(ConfigError, match=r"^environment NEWSLETTER_SCHEDULE_INGEST: schedule.ingest: "):
        load_config(None, env={"NEWSLETTER_SCHEDULE_INGEST": "daily at 24:00"})


def test_defaults_are_a_valid_plan(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    plan = load_plan(load_config(None, env={}))
    assert plan.timezone == "UTC"
    assert plan.jobs["ingest"].describe() == "daily at 06:00"
    assert plan.jobs["send"].describe() == "monday at 08:00"
    assert plan.grace == timedelta(hours=48)


# ---- slots ----------------------------------------------------------------------------------


def test_latest_slot_is_local_time_on_both_sides_of_a_dst_change() -> None:
    spec = parse_job_spec("monday at 08:00")
    # Summer time: 08:00 CEST is 06:00 UTC.
    assert latest_slot(spec, BERLIN, utc(2026, 10, 21, 12), None) == utc(2026, 10, 19, 6)
    # After the change on Sunday 25 October: 08:00 CET is 07:00 UTC.
    assert latest_slot(spec, BERLIN, utc(2026, 10, 28, 12), None) == utc(2026, 10, 26, 7)
    # Monday before 08:00 local: the slot is last week's.
    assert latest_slot(spec, BERLIN, berlin(2026, 10, 26, 7, 59), None) == utc(2026, 10, 19, 6)
    assert latest_slot(spec, BERLIN, berlin(2026, 10, 26, 8, 0), None) == utc(2026, 10, 26, 7)


def test_latest_slot_of_interval_jobs_follows_the_last_run() -> None:
    spec = parse_job_spec("every 6 hours")
    now = utc(2026, 11, 2, 12)
    assert latest_slot(spec, BERLIN, now, None) == now
    assert latest_slot(spec, BERLIN, now, now - timedelta(hours=5)) is None
    # A run that began a few seconds late still counts as due (cron and timers drift).
    assert latest_slot(spec, BERLIN, now, now - timedelta(hours=6) + timedelta(seconds=5)) is not None
    assert latest_slot(parse_job_spec("off"), BERLIN, now, None) is None


# ---- the loop, with time moved --------------------------------------------------------------


def test_jobs_fire_at_local_times_across_the_autumn_dst_change(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    state = MemoryState()
    state.runs["ingest"] = utc(2026, 10, 20, 12)  # ingested already today: no catch-up
    state.sent_keys.add(issue_key(utc(2026, 10, 19, 6)))
    recorder = Recorder(state)
    with time_machine.travel(utc(2026, 10, 20, 12), tick=False) as traveller:
        scheduler = Scheduler(plan, recorder.jobs(), state)
        assert scheduler.catch_up() == []
        advance(traveller, scheduler, utc(2026, 11, 3, 12))
    ingest_times = recorder.times("ingest")
    assert len(ingest_times) == 14
    assert {(t.hour, t.minute) for t in ingest_times} == {(6, 0)}
    assert [t.utcoffset() for t in ingest_times].count(timedelta(hours=2)) == 4   # 21-24 Oct, CEST
    assert [t.utcoffset() for t in ingest_times].count(timedelta(hours=1)) == 10  # from 25 Oct, CET
    send_times = recorder.times("send")
    assert send_times == [berlin(2026, 10, 26, 8), berlin(2026, 11, 2, 8)]
    assert [t.weekday() for t in send_times] == [0, 0]
    # Both sends were on time: each sent its own week's issue.
    assert state.sent_keys == {"2026-W43", "2026-W44", "2026-W45"}


def test_jobs_fire_at_local_times_across_the_spring_dst_change(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, ingest="daily at 02:30", send="sunday at 08:00")
    state = MemoryState()
    state.runs["ingest"] = utc(2027, 3, 25, 12)
    state.sent_keys.add(issue_key(utc(2027, 3, 21, 7)))
    recorder = Recorder(state)
    with time_machine.travel(utc(2027, 3, 25, 12), tick=False) as traveller:
        scheduler = Scheduler(plan, recorder.jobs(), state)
        advance(traveller, scheduler, utc(2027, 4, 1, 12))
    ingest_times = recorder.times("ingest")
    # 28 March 2027 has no 02:30 in Berlin (02:00 -> 03:00): that day runs at 03:30 CEST, once.
    assert [(t.day, t.hour, t.minute) for t in ingest_times] == [
        (26, 2, 30), (27, 2, 30), (28, 3, 30), (29, 2, 30), (30, 2, 30), (31, 2, 30), (1, 2, 30)]
    assert recorder.times("send") == [berlin(2027, 3, 28, 8)]
    assert recorder.times("send")[0].utcoffset() == timedelta(hours=2)


def test_a_time_the_autumn_change_repeats_runs_once(tmp_path: Path) -> None:
    # 25 October 2026, Berlin: 02:00-03:00 happens twice (CEST, then CET).
    plan = plan_for(tmp_path, ingest="daily at 02:30", send="sunday at 02:30")
    state = MemoryState()
    state.runs["ingest"] = utc(2026, 10, 22, 12)
    state.sent_keys.add(issue_key(utc(2026, 10, 18, 1)))
    recorder = Recorder(state)
    with time_machine.travel(utc(2026, 10, 22, 12), tick=False) as traveller:
        scheduler = Scheduler(plan, recorder.jobs(), state)
        advance(traveller, scheduler, utc(2026, 10, 27, 12))
    ingest_times = recorder.times("ingest")
    assert [(t.day, t.hour, t.minute) for t in ingest_times] == [
        (23, 2, 30), (24, 2, 30), (25, 2, 30), (26, 2, 30), (27, 2, 30)]
    assert ingest_times[2].utcoffset() == timedelta(hours=2)  # the first of the two 02:30s
    assert recorder.times("send") == [berlin(2026, 10, 25, 2, 30)]
    assert state.sent_keys == {"2026-W42", "2026-W43"}


def test_a_missed_monday_is_caught_up_once(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    state = MemoryState()
    state.runs["ingest"] = utc(2026, 11, 1, 5)
    state.sent_keys.add("2026-W44")
    recorder = Recorder(state)
    # The machine was off from Sunday to Tuesday 10:00 local: Monday's 08:00 send was missed.
    with time_machine.travel(berlin(2026, 11, 3, 10).astimezone(UTC), tick=False) as traveller:
        scheduler = Scheduler(plan, recorder.jobs(), state)
        outcomes = scheduler.catch_up()
        assert [(o.job, o.ok) for o in outcomes] == [("ingest", True), ("send", True)]
        # Ingest first, so the caught-up issue holds fresh papers; the send is for Monday's slot.
        assert [c[0] for c in recorder.calls] == ["ingest", "send"]
        assert recorder.calls[1][2] == berlin(2026, 11, 2, 8).astimezone(UTC)
        assert scheduler.catch_up() == []  # a second catch-up finds nothing owed
        advance(traveller, scheduler, berlin(2026, 11, 9, 9).astimezone(UTC))
    sends = recorder.times("send")
    assert sends == [berlin(2026, 11, 3, 10), berlin(2026, 11, 9, 8)]
    assert state.sent_keys == {"2026-W44", "2026-W45", "2026-W46"}


def test_a_send_missed_beyond_the_grace_period_is_not_caught_up(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, grace_hours=24)
    state = MemoryState()
    state.runs["ingest"] = utc(2026, 11, 4, 5)
    recorder = Recorder(state)
    with time_machine.travel(berlin(2026, 11, 4, 9).astimezone(UTC), tick=False):  # Wednesday
        scheduler = Scheduler(plan, recorder.jobs(), state)
        assert scheduler.catch_up() == []
    assert recorder.calls == []


def test_a_restart_mid_week_sends_nothing_twice(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    state = MemoryState()
    recorder = Recorder(state)
    with time_machine.travel(berlin(2026, 11, 2, 7).astimezone(UTC), tick=False) as traveller:
        first = Scheduler(plan, recorder.jobs(), state)
        first.catch_up()
        advance(traveller, first, berlin(2026, 11, 3, 9).astimezone(UTC))  # Monday's send ran
        assert len(recorder.times("send")) == 1
        # Restart on Tuesday (within the grace period), and again on Wednesday.
        for restart in (berlin(2026, 11, 3, 9), berlin(2026, 11, 4, 7, 30)):
            traveller.move_to(restart.astimezone(UTC))
            again = Scheduler(plan, recorder.jobs(), state)
            again.catch_up()
            advance(traveller, again, restart.astimezone(UTC) + timedelta(hours=20))
    assert len(recorder.times("send")) == 1, "the week's issue was sent twice"
    assert state.sent_keys == {"2026-W45"}


def test_a_restart_after_a_send_cut_short_resumes_it(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    state = MemoryState()
    state.runs["ingest"] = berlin(2026, 11, 2, 6).astimezone(UTC)
    calls: list[datetime] = []

    def cut_short(slot: datetime) -> str:  # SIGTERM mid-send: returns, issue not done
        calls.append(slot)
        return "stopped"

    def finish(slot: datetime) -> str:
        calls.append(slot)
        state.sent_keys.add(issue_key(slot))
        return "sent"

    with time_machine.travel(berlin(2026, 11, 2, 8).astimezone(UTC), tick=False) as traveller:
        first = Scheduler(plan, {"ingest": lambda s: None, "send": cut_short}, state)
        first.catch_up()
        traveller.move_to(berlin(2026, 11, 2, 8, 30).astimezone(UTC))
        second = Scheduler(plan, {"ingest": lambda s: None, "send": finish}, state)
        second.catch_up()
        second.catch_up()
    assert calls == [berlin(2026, 11, 2, 8).astimezone(UTC)] * 2


def test_a_failing_job_is_logged_and_retried_at_its_next_time(tmp_path: Path, caplog) -> None:
    plan = plan_for(tmp_path)
    state = MemoryState()
    state.runs["ingest"] = utc(2026, 11, 2, 5)
    recorder = Recorder(state, fail={"ingest"})
    caplog.set_level(logging.INFO, logger="newsletter.scheduler")
    with time_machine.travel(utc(2026, 11, 2, 12), tick=False) as traveller:
        scheduler = Scheduler(plan, recorder.jobs(), state)
        advance(traveller, scheduler, utc(2026, 11, 5, 12))
        assert len(recorder.times("ingest")) == 3  # failed each day, tried again each day
        recorder.fail.clear()
        advance(traveller, scheduler, utc(2026, 11, 6, 12))
    assert len(recorder.times("ingest")) == 4
    assert state.runs["ingest"] == berlin(2026, 11, 6, 6).astimezone(UTC)  # only success recorded
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("ingest: failed: RuntimeError: ingest broke on purpose") == 3
    assert "ingest: started (slot 2026-11-03 06:00 CET)" in messages
    assert "ingest: next run 2026-11-04 06:00 CET" in messages
    assert "ingest: done: ingest ok" in messages


def test_the_loop_stops_when_asked(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, ingest="every 1 minutes", send="off")
    state = MemoryState()
    ran = threading.Event()
    stop = threading.Event()

    def ingest(slot: datetime) -> None:
        ran.set()
        stop.set()  # as SIGTERM would, in the middle of a job

    scheduler = Scheduler(plan, {"ingest": ingest, "send": lambda s: None}, state)
    thread = threading.Thread(target=scheduler.run, args=(stop,), kwargs={"poll_s": 0.05})
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert ran.is_set()
    assert scheduler.next_run("send") is None


# ---- state kept in the store --------------------------------------------------------------


def test_store_state_keeps_last_runs_and_reads_the_issue_from_the_ledger(store) -> None:
    from newsletter.models import Issue, RenderedIssue
    from newsletter.scheduler import StoreState
    from newsletter.store.deliveries import claim_deliveries, create_deliveries, mark_sent
    from newsletter.store.issues import freeze_issue
    from newsletter.store.subscribers import add_subscriber

    state = StoreState(store)
    assert state.last_run("ingest") is None
    state.record_run("ingest", berlin(2026, 11, 2, 6))
    state.record_run("ingest", berlin(2026, 11, 3, 6))
    assert state.last_run("ingest") == berlin(2026, 11, 3, 6)
    assert state.last_run("send") is None

    slot = berlin(2026, 11, 2, 8)  # 2026-W45
    assert not state.issue_done(slot)
    now = slot.astimezone(UTC)
    issue = Issue(key="2026-W45", number=1, title="Issue 1", papers=(), created_at=now)
    with store.atomic() as conn:
        for n in range(3):
            add_subscriber(conn, f"r{n}@example.org")
        freeze_issue(conn, issue, RenderedIssue(issue, "Subject", "<p>x</p>", "x"), now=now)
        create_deliveries(conn, 1, now)
        claimed, _ = claim_deliveries(conn, 1, claimed_by="test", now=now, limit=2)
        for delivery in claimed:
            mark_sent(conn, delivery.id, message_id="<m@x>", now=now, holder="test")
    assert not state.issue_done(slot)  # one subscriber still pending: a catch-up resumes it
    with store.atomic() as conn:
        claimed, _ = claim_deliveries(conn, 1, claimed_by="test", now=now, limit=5)
        assert len(claimed) == 1
    assert not state.issue_done(slot)  # in flight is not done either
    with store.atomic() as conn:
        mark_sent(conn, claimed[0].id, message_id="<m2@x>", now=now, holder="test")
    assert state.issue_done(slot)
    assert state.issue_done(berlin(2026, 11, 8, 23))  # same ISO week
    assert not state.issue_done(berlin(2026, 11, 9, 8))  # next week


def test_a_send_just_after_local_midnight_on_monday_is_this_weeks_issue(tmp_path: Path, store) -> None:
    """Monday 00:30 in Berlin is Sunday in UTC, last ISO week: the check whether the week's
    issue already went out must count the week where the send does, or every week after the
    first is skipped as done."""
    from newsletter.models import Issue, RenderedIssue
    from newsletter.scheduler import StoreState
    from newsletter.store.deliveries import claim_deliveries, create_deliveries, mark_sent
    from newsletter.store.issues import freeze_issue
    from newsletter.store.subscribers import add_subscriber

    plan = plan_for(tmp_path, send="monday at 00:30")
    last_week = berlin(2026, 11, 23, 0, 30).astimezone(UTC)  # 2026-W48, sent to everyone
    issue = Issue(key="2026-W48", number=1, title="Issue 1", papers=(), created_at=last_week)
    with store.atomic() as conn:
        add_subscriber(conn, "r@example.org")
        freeze_issue(conn, issue, RenderedIssue(issue, "Subject", "<p>x</p>", "x"), now=last_week)
        create_deliveries(conn, 1, last_week)
        (claimed,), _ = claim_deliveries(conn, 1, claimed_by="test", now=last_week, limit=1)
        mark_sent(conn, claimed.id, message_id="<m@x>", now=last_week, holder="test")
    state = StoreState(store)
    state.record_run("ingest", berlin(2026, 11, 29, 6).astimezone(UTC))
    sends: list[datetime] = []
    jobs = {"ingest": lambda slot: "ok", "send": lambda slot: sends.append(slot) or "sent"}
    with time_machine.travel(berlin(2026, 11, 30, 0, 37).astimezone(UTC), tick=False):  # Sun 23:37 UTC
        outcomes = Scheduler(plan, jobs, state).catch_up()
    assert sends == [berlin(2026, 11, 30, 0, 30).astimezone(UTC)], outcomes
    assert issue_key(sends[0], BERLIN) == "2026-W49"


def test_a_broken_state_is_logged_and_never_ends_the_loop(tmp_path: Path, caplog) -> None:
    class BrokenState(MemoryState):
        def issue_done(self, slot: datetime) -> bool:
            raise OSError("database is locked")

    plan = plan_for(tmp_path)
    state = BrokenState()
    state.runs["ingest"] = utc(2026, 11, 2, 5)
    caplog.set_level(logging.INFO, logger="newsletter.scheduler")
    with time_machine.travel(berlin(2026, 11, 2, 9).astimezone(UTC), tick=False) as traveller:
        scheduler = Scheduler(plan, Recorder(state).jobs(), state)
        outcomes = scheduler.catch_up()
        assert [(o.job, o.ok) for o in outcomes] == [("send", False)]
        advance(traveller, scheduler, berlin(2026, 11, 9, 9).astimezone(UTC))
        # Read while the clock (and its local zone) is still the travelled one.
        assert scheduler.next_run("send") == berlin(2026, 11, 16, 8).astimezone(UTC)
    assert any("send: failed: OSError: database is locked" in r.getMessage() for r in caplog.records)


def test_the_scheduler_resumes_the_send_when_deferred_retries_fall_due(tmp_path: Path, store) -> None:
    """A temporary failure backs off for minutes to hours; the running scheduler resumes the
    week's send when such a retry is due, and not before."""
    from datetime import timedelta

    from newsletter.models import Issue, RenderedIssue
    from newsletter.scheduler import StoreState
    from newsletter.store.deliveries import claim_deliveries, create_deliveries, mark_retry
    from newsletter.store.issues import freeze_issue
    from newsletter.store.subscribers import add_subscriber

    plan = plan_for(tmp_path, send="monday at 08:00")
    slot = berlin(2026, 11, 30, 8).astimezone(UTC)  # 2026-W49
    issue = Issue(key="2026-W49", number=1, title="Issue 1", papers=(), created_at=slot)
    with store.atomic() as conn:
        add_subscriber(conn, "r@example.org")
        freeze_issue(conn, issue, RenderedIssue(issue, "Subject", "<p>x</p>", "x"), now=slot)
        create_deliveries(conn, 1, slot)
        (claimed,), _ = claim_deliveries(conn, 1, claimed_by="test", now=slot, limit=1)
        mark_retry(conn, claimed.id, error="452 4.2.2 mailbox full", now=slot, holder="test",
                   next_attempt_at=slot + timedelta(minutes=8))
    sends: list[datetime] = []
    jobs = {"ingest": lambda s: "ok", "send": lambda s: sends.append(s) or "sent"}
    scheduler = Scheduler(plan, jobs, StoreState(store))
    assert scheduler.retry_deferred(now=slot + timedelta(minutes=5)) is None and sends == []
    outcome = scheduler.retry_deferred(now=slot + timedelta(minutes=9))
    assert outcome is not None and outcome.ok and sends == [berlin(2026, 11, 30, 8)]
