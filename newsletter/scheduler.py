"""``newsletter run``: the configured jobs (ingest, weekly send) on the `schedule` library.

The scheduler has no logic of its own beyond *when*: its jobs call ``api.ingest`` and
``api.send`` and nothing else. What it adds is what an unattended process needs:

- schedule strings (``"daily at 06:00"``, ``"monday at 08:00"``, ``"every 6 hours"``, ``"off"``)
  parsed and refused at start as ``newsletter.toml:LINE: ...``, before anything runs;
- times in ``schedule.timezone``, so 08:00 stays 08:00 local across a daylight-saving change;
  a weekly send time whose issue key (a UTC week) would repeat at such a change is refused;
- catch-up at start: a send slot missed by at most ``schedule.grace_hours`` (the machine was
  off) is sent once, unless the store says that week's issue already went out; a missed ingest
  slot is simply run, so the caught-up issue is composed from fresh papers;
- a job that raises is logged with its reason and tried again at its next time; it never ends
  the loop;
- ``stop`` (set on SIGTERM/SIGINT) is handed to ``send_issue``, which finishes and records the
  message in flight and returns; the loop then ends.

``run --once`` is the catch-up alone: cron or a systemd timer can call it as often as it likes,
since a slot already done is never run twice.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from time import monotonic
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any, Callable, Protocol
from zoneinfo import ZoneInfo

import schedule

from newsletter import api
from newsletter.compose.issue import issue_key
from newsletter.config import Config, timezone_problem
from newsletter.errors import ConfigError, NewsletterError, NothingToSendError
from newsletter.schedule_spec import WEEKDAYS, JobSpec, format_interval, parse_job_spec
from newsletter.store.deliveries import PENDING, SENDING, due_retries, issue_number_for_key, status_counts
from newsletter.store.issues import get_issue
from newsletter.store.meta import get_value, set_value

log = logging.getLogger(__name__)

JOB_NAMES: tuple[str, ...] = ("ingest", "send", "bounces")  # also the order when several are due at once
# cron and timers start a little late or early; an interval job due "every hour" must not be
# skipped because the last run began 2 seconds after the hour.
INTERVAL_SLACK = timedelta(seconds=60)
POLL_S = 60.0


# --------------------------------------------------------------------------------------------
# Schedule strings


@dataclass(frozen=True)
class SchedulePlan:
    """The validated ``[schedule]`` section: the zone, each job's spec and the grace period."""

    timezone: str
    jobs: dict[str, JobSpec]
    grace: timedelta

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _config_error(config: Config, name: str, message: str) -> ConfigError:
    origin = config.origin(name)
    where, _, line = origin.rpartition(":")
    if where and line.isdigit():
        return ConfigError(f"{name}: {message}", where=where, line=int(line))
    return ConfigError(f"{name}: {message}", where=origin)


def load_plan(config: Config, now: datetime | None = None) -> SchedulePlan:
    """Read and check ``[schedule]``; a ConfigError names the file and line of a bad value.

    ``now`` is accepted for callers that pin the clock; parsing does not depend on it.
    """
    # Checked when the configuration is loaded; again here for a Config built another way.
    tz_name = config["schedule.timezone"]
    problem = timezone_problem(tz_name)
    if problem:
        raise _config_error(config, "schedule.timezone", problem)
    jobs: dict[str, JobSpec] = {}
    for job in JOB_NAMES:
        name = f"schedule.{job}"
        if job == "bounces" and not config["bounces.mailbox"]:
            jobs[job] = JobSpec("off (no [bounces] mailbox)", "off")  # nothing to read
            continue
        try:
            jobs[job] = parse_job_spec(config[name])
        except ValueError as exc:
            raise _config_error(config, name, str(exc)) from None
    return SchedulePlan(tz_name, jobs, timedelta(hours=config["schedule.grace_hours"]))


# --------------------------------------------------------------------------------------------
# Slots: when a job was last due


def _local(day: Any, at: time, zone: ZoneInfo) -> datetime:
    # fold=0: a time skipped by a spring-forward change resolves one hour later, as `schedule`
    # does; a time that happens twice in autumn is the first of the two.
    return datetime.combine(day, at, tzinfo=zone).astimezone(timezone.utc)


def latest_slot(spec: JobSpec, zone: ZoneInfo, now: datetime, last_run: datetime | None) -> datetime | None:
    """The latest time at or before ``now`` when the job was due (UTC), None if never.

    An interval job is due ``interval`` after its last run (at once if it never ran).
    """
    if spec.kind == "off":
        return None
    if spec.kind == "interval":
        assert spec.interval is not None
        if last_run is None:
            return now
        due = last_run + spec.interval - min(INTERVAL_SLACK, spec.interval / 10)
        return due if due <= now else None
    assert spec.at is not None
    today = now.astimezone(zone).date()
    for back in range(0, 9):
        day = today - timedelta(days=back)
        if spec.weekday is not None and day.weekday() != spec.weekday:
            continue
        slot = _local(day, spec.at, zone)
        if slot <= now:
            return slot
    return None  # unreachable for daily and weekly specs


def next_slot(spec: JobSpec, zone: ZoneInfo, now: datetime) -> datetime | None:
    """The first local-time slot of an ``at`` job strictly after ``now`` (UTC)."""
    if spec.kind != "at":
        return None
    assert spec.at is not None
    today = now.astimezone(zone).date()
    for ahead in range(0, 9):
        day = today + timedelta(days=ahead)
        if spec.weekday is not None and day.weekday() != spec.weekday:
            continue
        slot = _local(day, spec.at, zone)
        if slot > now:
            return slot
    return None  # unreachable for daily and weekly specs


# --------------------------------------------------------------------------------------------
# What the scheduler needs from the world: injected, so the loop is testable on its own


class SchedulerState(Protocol):
    """Where the scheduler reads what already happened: the store in production."""

    def last_run(self, job: str) -> datetime | None: ...

    def record_run(self, job: str, when: datetime) -> None: ...

    def issue_done(self, slot: datetime) -> bool: ...

    def retries_due(self, slot: datetime, now: datetime) -> bool: ...


JobFunc = Callable[[datetime], Any]
"""A job: called with its slot (the due time, UTC); returns a report for the log."""


def describe_result(result: Any) -> str:
    """A report as one log line: its ``summary()`` if it has one, else its counts."""
    if result is None:
        return "done"
    summary = getattr(result, "summary", None)
    if callable(summary):
        return str(summary())
    total = getattr(result, "total", None)
    if callable(total) and hasattr(result, "sources"):  # an IngestReport
        text = (f"{total('new')} new, {total('updated')} updated, {total('unchanged')} unchanged papers "
                f"from {len(result.sources)} source(s)")
        errors = tuple(getattr(result, "errors", ()))
        return text + (f"; {len(errors)} failed: {'; '.join(errors[:3])}" if errors else "")
    if is_dataclass(result):
        parts = []
        for f in fields(result):
            value = getattr(result, f.name)
            if isinstance(value, bool) or f.name == "elapsed_s":
                continue
            if isinstance(value, (int, float)) and value:
                parts.append(f"{f.name.replace('_', ' ')} {value:g}" if isinstance(value, float)
                             else f"{f.name.replace('_', ' ')} {value}")
            elif isinstance(value, str) and value and f.name in ("issue_key", "destination"):
                parts.append(f"{f.name.replace('_', ' ')} {value}")
            elif isinstance(value, (tuple, list)) and f.name == "errors" and value:
                parts.append(f"{len(value)} error(s): {'; '.join(map(str, value[:3]))}")
        return ", ".join(parts) or "nothing to do"
    return str(result)


def _result_failed(result: Any) -> bool:
    return bool(getattr(result, "failed", 0)) or bool(getattr(result, "errors", ()))


@dataclass
class JobOutcome:
    """What one run of one job did: logged, and what ``run --once`` turns into its exit status."""

    job: str
    slot: datetime
    ok: bool
    detail: str
    skipped: bool = False


def _fmt(when: datetime | None, zone: ZoneInfo) -> str:
    if when is None:
        return "never"
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


class Scheduler:
    """The plan, its jobs and its state, on a private ``schedule.Scheduler``.

    ``catch_up()`` runs what was missed; ``run_pending()`` what is due now; ``run(stop)`` loops
    until ``stop`` is set. Time is read through ``datetime.now``, so tests move it with
    time-machine and a week passes in milliseconds.
    """

    def __init__(self, plan: SchedulePlan, jobs: dict[str, JobFunc], state: SchedulerState) -> None:
        # A plan made without a job (an older caller) has it off.
        plan = dataclasses.replace(plan, jobs={**{n: JobSpec("off", "off") for n in JOB_NAMES}, **plan.jobs})
        missing = [name for name in JOB_NAMES if name not in jobs and plan.jobs[name].kind != "off"]
        if missing:
            raise ValueError(f"no function for job(s) {', '.join(missing)}")
        self.plan = plan
        self.zone = plan.zone
        self.funcs = jobs
        self.state = state
        self._schedule = schedule.Scheduler()
        self._jobs: dict[str, schedule.Job] = {}
        for name in JOB_NAMES:
            spec = plan.jobs[name]
            if spec.kind == "off":
                continue
            job = self._build(spec).do(self._run_scheduled, name)
            self._jobs[name] = job
            self._correct_next_run(name)

    def _build(self, spec: JobSpec) -> schedule.Job:
        if spec.kind == "interval":
            assert spec.interval is not None
            minutes = int(spec.interval.total_seconds() // 60)
            if minutes % 60 == 0:
                return self._schedule.every(minutes // 60).hours
            return self._schedule.every(minutes).minutes
        assert spec.at is not None
        base = self._schedule.every()
        unit = base.day if spec.weekday is None else getattr(base, WEEKDAYS[spec.weekday])
        return unit.at(spec.at.strftime("%H:%M"), self.plan.timezone)

    def _correct_next_run(self, name: str) -> None:
        """Put an ``at`` job's next run where the zone's rules say it is.

        `schedule` 1.2.2 gets the day after a spring-forward gap wrong (a 02:30 job in Berlin
        runs at 03:30 on the gap day, then at 01:30 *and* 02:30 the next day), so the library
        keeps running the jobs and the next local time comes from zoneinfo.
        """
        spec = self.plan.jobs[name]
        slot = next_slot(spec, self.zone, datetime.now(timezone.utc))
        if slot is not None:
            # `schedule` compares naive times in the process's local zone.
            self._jobs[name].next_run = slot.astimezone().replace(tzinfo=None)

    # ---- what is due

    def next_run(self, job: str) -> datetime | None:
        """When ``job`` runs next (UTC); None when it is off."""
        entry = self._jobs.get(job)
        if entry is None or entry.next_run is None:
            return None
        # `schedule` keeps naive times in the process's local zone.
        return entry.next_run.astimezone(timezone.utc)

    def next_wakeup(self) -> datetime | None:
        times = [t for t in (self.next_run(name) for name in self._jobs) if t is not None]
        return min(times) if times else None

    def due_slot(self, job: str, now: datetime) -> datetime | None:
        """The missed slot of ``job`` to catch up at ``now``, or None when nothing is owed."""
        spec = self.plan.jobs[job]
        last = self.state.last_run(job)
        slot = latest_slot(spec, self.zone, now, last)
        if slot is None:
            return None
        if job == "send":
            if now - slot > self.plan.grace:
                return None
            return None if self.state.issue_done(slot.astimezone(self.zone)) else slot
        if last is not None and last >= slot and spec.kind == "at":
            return None
        return slot

    # ---- running

    def _execute(self, job: str, slot: datetime) -> JobOutcome:
        """Run one job, whatever happens: an exception is logged and reported, never raised."""
        started = datetime.now(timezone.utc)
        try:
            # The week of the slot where the operator lives, as the send itself keys its issue:
            # a Monday 00:30 Berlin slot is Sunday in UTC, the week before.
            if job == "send" and self.state.issue_done(slot.astimezone(self.zone)):
                log.info("%s: skipped: the issue of %s was already sent", job, _fmt(slot, self.zone))
                return JobOutcome(job, slot, True, "already sent", skipped=True)
            log.info("%s: started (slot %s)", job, _fmt(slot, self.zone))
            result = self.funcs[job](slot)
        except NothingToSendError as exc:
            outcome = JobOutcome(job, slot, True, f"nothing to do: {exc}")
            log.info("%s: %s", job, outcome.detail)
        except NewsletterError as exc:
            outcome = JobOutcome(job, slot, False, str(exc))
            log.error("%s: failed: %s", job, exc)
        except Exception as exc:  # noqa: BLE001 - a job must never end the loop
            outcome = JobOutcome(job, slot, False, f"{type(exc).__name__}: {exc}")
            log.exception("%s: failed: %s", job, outcome.detail)
        else:
            detail = describe_result(result)
            outcome = JobOutcome(job, slot, not _result_failed(result), detail)
            if outcome.ok:
                log.info("%s: done: %s", job, detail)
            else:
                log.warning("%s: finished with failures: %s", job, detail)
        if outcome.ok:
            try:
                self.state.record_run(job, started)
            except Exception as exc:  # noqa: BLE001
                log.error("%s: could not record the run: %s", job, exc)
        return outcome

    def _run_scheduled(self, job: str) -> None:
        now = datetime.now(timezone.utc)
        slot = latest_slot(self.plan.jobs[job], self.zone, now, None) or now
        if job == "send" and now - slot > self.plan.grace:
            # The loop itself was held up (a suspended machine): the same rule as at start.
            log.warning("%s: skipped: its slot %s is more than the grace period ago", job, _fmt(slot, self.zone))
            return
        self._execute(job, slot)

    def catch_up(self, now: datetime | None = None, stop: threading.Event | None = None) -> list[JobOutcome]:
        """Run, in order, every job whose slot was missed (see ``due_slot``)."""
        outcomes = []
        for job in JOB_NAMES:
            if stop is not None and stop.is_set():
                break
            current = now or datetime.now(timezone.utc)
            try:
                slot = self.due_slot(job, current)
            except Exception as exc:  # noqa: BLE001 - e.g. the store is busy: the loop goes on
                log.error("%s: cannot tell whether a run was missed: %s", job, exc)
                outcomes.append(JobOutcome(job, current, False, f"cannot read the store: {exc}"))
                continue
            if slot is None:
                continue
            log.info("%s: catching up the slot of %s", job, _fmt(slot, self.zone))
            outcomes.append(self._execute(job, slot))
        return outcomes

    def run_pending(self, stop: threading.Event | None = None) -> int:
        """Run the jobs due now, in ``JOB_NAMES`` order; log each one's next run. Returns how many ran."""
        due = [(name, job) for name, job in self._jobs.items() if job.should_run]
        due.sort(key=lambda item: (item[1].next_run, JOB_NAMES.index(item[0])))
        for name, job in due:
            if stop is not None and stop.is_set():
                break
            job.run()  # calls _run_scheduled, which never raises, then computes the next run
            self._correct_next_run(name)
            log.info("%s: next run %s", name, _fmt(self.next_run(name), self.zone))
        return len(due)

    def log_plan(self) -> None:
        log.info("schedule in %s; a send missed by up to %s is caught up", self.plan.timezone,
                 format_interval(self.plan.grace) if self.plan.grace else "0 minutes")
        for name in JOB_NAMES:
            spec = self.plan.jobs[name]
            log.info("%s: %s, next run %s", name, spec.describe(), _fmt(self.next_run(name), self.zone))

    def retry_deferred(self, now: datetime | None = None) -> JobOutcome | None:
        """Resume the latest send when messages it left for a later try (temporary failures,
        backing off over hours) are due now: they go out without waiting a week. None when
        nothing is due."""
        now = now or datetime.now(timezone.utc)
        slot = latest_slot(self.plan.jobs["send"], self.zone, now, None)
        if slot is None:
            return None
        try:
            due = self.state.retries_due(slot.astimezone(self.zone), now)
        except Exception as exc:  # noqa: BLE001 - e.g. the store is busy: the loop goes on
            log.error("send: cannot tell whether retries are due: %s", exc)
            return None
        if not due:
            return None
        log.info("send: retrying the messages of %s that are due", _fmt(slot, self.zone))
        return self._execute("send", slot)

    def run(self, stop: threading.Event, *, poll_s: float = POLL_S,
            should_continue: Callable[[], bool] = lambda: True) -> None:
        """Catch up, then run jobs as they fall due until ``stop`` is set; every ``poll_s``,
        resume the send for retries that have fallen due."""
        self.log_plan()
        self.catch_up(stop=stop)
        retried = monotonic()
        while not stop.is_set() and should_continue():
            self.run_pending(stop)
            if monotonic() - retried >= poll_s and not stop.is_set():
                self.retry_deferred()
                retried = monotonic()
            wakeup = self.next_wakeup()
            if wakeup is None:
                wait_s = poll_s
            else:
                wait_s = (wakeup - datetime.now(timezone.utc)).total_seconds()
                wait_s = min(max(wait_s, 0.05), poll_s)  # re-read the clock often: suspend, clock changes
            stop.wait(wait_s)
        if not should_continue():
            log.error("stopping: the scheduler lock was taken over by another process")


# --------------------------------------------------------------------------------------------
# Production wiring: the store as state, the pipeline as jobs


class StoreState:
    """Scheduler state kept in the store: last runs in ``meta``, the issue's fate in the ledger."""

    def __init__(self, store: Any) -> None:
        self.store = store

    @staticmethod
    def _key(job: str) -> str:
        return f"scheduler.last_run.{job}"

    def last_run(self, job: str) -> datetime | None:

        with self.store.atomic() as conn:
            value = get_value(conn, self._key(job))
        return datetime.fromisoformat(value) if value else None

    def record_run(self, job: str, when: datetime) -> None:

        with self.store.atomic() as conn:
            set_value(conn, self._key(job), when.astimezone(timezone.utc).isoformat())

    def issue_done(self, slot: datetime) -> bool:
        """True when the issue of ``slot``'s week went out to everyone it was meant for.

        An issue with rows still pending or in flight (a send cut short by a crash or SIGTERM)
        is not done: catching it up resumes it, and the ledger keeps anyone from a second copy.
        """

        key = issue_key(slot, slot.tzinfo)  # the scheduler passes slots in the schedule's zone
        with self.store.atomic() as conn:
            issue = get_issue(conn, key)
            if issue is None or issue.status == "draft":
                return False
            if issue.status == "sent":
                return True
            number = issue_number_for_key(conn, key)
            counts = status_counts(conn, number) if number is not None else {}
        return sum(counts.values()) > 0 and counts.get(PENDING, 0) == 0 and counts.get(SENDING, 0) == 0

    def retries_due(self, slot: datetime, now: datetime) -> bool:
        """True when the issue of ``slot``'s week has messages deferred for a retry that is due."""

        with self.store.atomic() as conn:
            number = issue_number_for_key(conn, issue_key(slot, slot.tzinfo))
            return number is not None and due_retries(conn, number, now) > 0


def pipeline_jobs(store: Any, config: Config, stop: threading.Event) -> dict[str, JobFunc]:
    """The real jobs: nothing but calls into ``newsletter.api``."""

    def ingest(slot: datetime) -> Any:
        return api.ingest(store, config)

    def send(slot: datetime) -> Any:
        # The slot, not the clock, picks the issue: a Sunday-evening send caught up on Monday
        # morning is still last week's issue.
        return api.send(store, config, stop=stop, now=slot)

    def bounces(slot: datetime) -> Any:
        return api.process_bounces(store, config)

    return {"ingest": ingest, "send": send, "bounces": bounces}
