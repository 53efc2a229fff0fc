"""``newsletter send``, ``resend`` and ``issues``: thin commands over ``pipeline.send_issue``,
``pipeline.resend_failed`` and the delivery ledger."""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from newsletter import pipeline
from newsletter.cli import AppContext, console, err_console, pass_app
from newsletter.cli.signals import exit_aborted, stop_on_signals
from newsletter.deliver.sender import CAP_REACHED, progress_bar
from newsletter.errors import NothingToSendError
from newsletter.models import RunReport
from newsletter.store.deliveries import issues_with_counts


def _announce_stop(signal_name: str) -> None:
    err_console.print(f"{signal_name}: stopping after the messages in flight (again to abort)...", markup=False)


def _print_report(report: RunReport, *, outbox: bool, dry_run: bool = False) -> None:
    if dry_run:
        console.print(f"Dry run of issue {report.issue_key}: {report.deferred} message(s) built and would be "
                      f"{'written' if outbox else 'sent'}, {report.already_sent} already "
                      f"{'written' if outbox else 'sent'}, {report.suppressed} suppressed address(es) left out, "
                      f"{report.failed} could not be built ({report.elapsed_s:.1f} s). Nothing was delivered.",
                      markup=False, soft_wrap=True)
    else:
        verb = "written" if outbox else "sent"
        rate = (report.sent / report.elapsed_s) if report.elapsed_s > 0 else 0.0
        console.print(
            f"Issue {report.issue_key}: {report.sent} {verb}, {report.failed} failed, {report.deferred} left for later, "
            f"{report.suppressed} skipped as suppressed, {report.already_sent} done before; "
            f"{report.elapsed_s:.1f} s ({rate:,.0f} msg/s).", markup=False, soft_wrap=True)
        console.print(f"Destination: {report.destination}", markup=False, soft_wrap=True)
    for error in report.errors[:20]:
        err_console.print(f"  {error}", markup=False, style="red", soft_wrap=True)
    total = max(report.error_count, len(report.errors))
    if total > 20:
        err_console.print(f"  ... and {total - 20} more (see `newsletter issues`)", markup=False)


def _stopped_by_error(report: RunReport) -> bool:
    """The run ended early on an error (unreachable server, refused certificate or login);
    reaching the daily cap is not one."""
    return bool(report.deferred and any(not e.startswith(CAP_REACHED) for e in report.errors[:1]))


def _hints(report: RunReport, *, outbox: bool) -> None:
    if outbox and report.sent:
        console.print("These are .eml files you can open in any mail program. To send the issue for real, add an "
                      "[smtp] section (host, port, security, username) to newsletter.toml, export "
                      "NEWSLETTER_SMTP_PASSWORD, and run `newsletter send` again: each subscriber gets it once.",
                      markup=False, soft_wrap=True)
    if report.deferred:
        console.print("Run `newsletter send` again later to deliver what is left; nothing already accepted is sent "
                      "twice.", markup=False, soft_wrap=True)
    if report.failed:
        console.print(f"Failures are kept in the ledger; retry them with `newsletter resend --failed "
                      f"{report.issue_key}`.", markup=False, soft_wrap=True)


@click.command("send")
@click.option("--dry-run", is_flag=True, help="Build every message and count them; deliver nothing.")
@click.option("--to", "to", metavar="EMAIL", default=None,
              help="Send one test copy of the issue to EMAIL, outside the ledger.")
@click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N",
              help="Stop after N messages (the rest is left for the next run).")
@click.option("--rate", type=click.FloatRange(min=0), default=None, metavar="N",
              help="At most N messages per second, all workers together (0: no limit).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None, metavar="N",
              help="Parallel SMTP connections.")
@pass_app
def send_command(app: AppContext, dry_run: bool, to: str | None, limit: int | None, rate: float | None,
                 concurrency: int | None) -> None:
    """Deliver the current issue to every active subscriber not sent it yet.

    Without [smtp] in the configuration each message is written as a .eml file to the outbox
    folder (delivery.outbox); with it, messages go to the SMTP server. Every message is
    recorded in the store as the server accepts it, so running `send` again after a crash, a
    stop or --limit continues where it was and never sends anyone a second copy.

    \b
    Example:
      newsletter send --dry-run
      newsletter send --to me@example.org
      newsletter send
      newsletter send --limit 100 --rate 5 --concurrency 2
    """
    if dry_run and to is not None:
        raise click.UsageError("--to sends a test copy and --dry-run sends nothing: use one of them")
    config = app.config
    store = app.store
    outbox = not config.smtp_enabled
    with stop_on_signals(_announce_stop) as stop:
        try:
            if dry_run or to is not None:
                report = pipeline.send_issue(store, config, dry_run=dry_run, to=to, limit=limit, rate=rate,
                                             concurrency=concurrency)
            else:
                with progress_bar(err_console, "writing" if outbox else "sending",
                                  disable=not err_console.is_terminal) as progress:
                    report = pipeline.send_issue(store, config, limit=limit, rate=rate, concurrency=concurrency,
                                                 stop=stop, progress=progress)
        except NothingToSendError as exc:
            console.print(f"Nothing to send: {exc}", markup=False, soft_wrap=True)
            return
        except KeyboardInterrupt:
            exit_aborted(lambda text: err_console.print(text, markup=False, soft_wrap=True))
    if to is not None:
        if report.sent:
            console.print(f"Test copy of issue {report.issue_key} {'written' if outbox else 'sent'} to {to} "
                          f"(not recorded in the ledger). Destination: {report.destination}",
                          markup=False, soft_wrap=True)
        else:
            _print_report(report, outbox=outbox)
    else:
        _print_report(report, outbox=outbox, dry_run=dry_run)
        if not dry_run:
            _hints(report, outbox=outbox)
    if report.failed or _stopped_by_error(report):
        sys.exit(1)


@click.command("resend")
@click.option("--failed", "failed", is_flag=True, required=True,
              help="Retry the deliveries that failed (required: the only kind of resend).")
@click.argument("issue", required=False, metavar="[ISSUE]")
@pass_app
def resend_command(app: AppContext, failed: bool, issue: str | None) -> None:
    """Retry the failed deliveries of ISSUE (default: the latest issue with failures).

    Only failures are retried, with the issue exactly as it was first sent; whatever the
    server accepted is never sent again, and unsubscribed or bounced addresses are skipped.

    \b
    Example:
      newsletter resend --failed
      newsletter resend --failed 2026-W48
    """
    config = app.config
    outbox = not config.smtp_enabled
    with stop_on_signals(_announce_stop) as stop:
        try:
            with progress_bar(err_console, "resending", disable=not err_console.is_terminal) as progress:
                report = pipeline.resend_failed(app.store, config, issue, stop=stop, progress=progress)
        except NothingToSendError as exc:
            console.print(f"Nothing to resend: {exc}", markup=False, soft_wrap=True)
            return
        except KeyboardInterrupt:
            exit_aborted(lambda text: err_console.print(text, markup=False, soft_wrap=True))
    _print_report(report, outbox=outbox)
    _hints(report, outbox=outbox)
    if report.failed or _stopped_by_error(report):
        sys.exit(1)


@click.command("issues")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def issues_command(app: AppContext, as_json: bool) -> None:
    """List past issues, newest first, with how many deliveries are in each state.

    Columns: sent (accepted by the SMTP server), written (to the outbox folder), failed,
    pending (left for later, or in flight), skipped (unsubscribed or bounced before their turn).
    The JSON output also has the title and every state separately.

    \b
    Example:
      newsletter issues
      newsletter issues --json
    """
    with app.store.atomic() as conn:
        found = issues_with_counts(conn)
    if as_json:
        def iso(value):  # type: ignore[no-untyped-def]
            return value.isoformat().replace("+00:00", "Z") if value else None

        click.echo(json.dumps([{**row, "created_at": iso(row["created_at"]), "frozen_at": iso(row["frozen_at"]),
                                "last_sent_at": iso(row["last_sent_at"])} for row in found], indent=2))
        return
    if not found:
        console.print("No issues yet: run `newsletter send` (or `newsletter preview`) first.", markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")  # 80 columns hold every field
    for name in ("#", "key", "status"):
        table.add_column(name, no_wrap=True)
    for name in ("sent", "written", "failed", "pending", "skipped"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("last delivery (UTC)")  # the one column that may wrap in a narrow terminal
    for row in found:
        d = row["deliveries"]
        table.add_row(str(row["number"]), row["key"], row["status"], str(d["sent"]), str(d["written"]),
                      str(d["failed"]), str(d["pending"] + d["sending"]), str(d["skipped"]),
                      row["last_sent_at"].strftime("%Y-%m-%d %H:%M") if row["last_sent_at"] else "")
    console.print(table, markup=False)
    console.print(f"{len(found)} issue(s) in {app.store.shown_url}", markup=False)


COMMANDS: list[click.Command] = [send_command, resend_command, issues_command]
