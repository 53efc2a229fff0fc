"""``newsletter run [--once]``: the scheduler, in the foreground, under the store's lock."""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING

import click

from newsletter.cli import AppContext, console, pass_app
from newsletter.cli.signals import exit_aborted, stop_on_signals

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.scheduler import SchedulePlan
    from newsletter.store import Store


def _configure_logging() -> None:
    """One plain line per event on stderr: readable in a terminal, in journald and in cron mail."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    for name in ("newsletter.scheduler", "newsletter.store.locks"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


@click.command("run")
@click.option("--once", is_flag=True,
              help="Run whatever is due now (missed slots included) and exit: for cron or a systemd timer.")
@pass_app
def run_command(app: AppContext, once: bool) -> None:
    """Run the schedule: ingest (default daily at 06:00) and the weekly send (default Monday
    at 08:00), in [schedule] timezone, until SIGTERM or Ctrl-C.

    A send missed while the machine was off is caught up once within [schedule] grace_hours;
    an issue already sent is never sent again. Only one scheduler runs against a store: a
    second one is refused and told which process holds it.

    \b
    Example:
      newsletter run                    # stay in the foreground (systemd service)
      newsletter run --once             # catch up what is due and exit (cron: every 15 minutes)
    """
    from newsletter.scheduler import load_plan

    config = app.config
    plan = load_plan(config)  # a bad schedule is refused before the store is even opened
    store = app.store
    _configure_logging()
    log = logging.getLogger("newsletter.scheduler")
    with stop_on_signals(lambda name: log.info("%s received: finishing the message in flight, then stopping "
                                               "(again to abort)", name)) as stop:
        try:
            _run(store, config, plan, once, stop)
        except KeyboardInterrupt:  # the second signal; the store lock was released on the way out
            exit_aborted(log.error)


def _run(store: "Store", config: "Config", plan: "SchedulePlan", once: bool, stop: threading.Event) -> None:
    """The scheduler under the store's lock: once (catch up and exit) or until stopped."""
    from newsletter.scheduler import Scheduler, StoreState, pipeline_jobs
    from newsletter.store.locks import StoreLock

    with StoreLock(store) as lock:
        console.print(f"Scheduler lock held by {lock.holder} on {store.shown_url}", markup=False, soft_wrap=True)
        scheduler = Scheduler(plan, pipeline_jobs(store, config, stop), StoreState(store))
        if once:
            outcomes = scheduler.catch_up(stop=stop)
            failed = [o for o in outcomes if not o.ok]
            ran = [o for o in outcomes if not o.skipped]
            if not ran:
                console.print("Nothing was due.")
            for outcome in outcomes:
                status = "ok" if outcome.ok else "FAILED"
                console.print(f"{outcome.job}: {status}: {outcome.detail}", markup=False, soft_wrap=True)
            if failed:
                sys.exit(1)
            return
        scheduler.run(stop, should_continue=lambda: not lock.lost.is_set())
        if lock.lost.is_set():
            sys.exit(1)
    console.print("Scheduler stopped.")


COMMANDS: list[click.Command] = [run_command]
