"""``newsletter send``, ``resend``, ``issues`` and ``check``: thin commands over ``api.send``,
``api.resend``, ``api.issues`` and ``api.check``.

The API is imported inside each command, not here: it loads the whole pipeline (premailer,
feedparser, lxml, the email package), and ``newsletter --help`` took 0.54 s with it imported
here against 0.39 s without (measured on the 2-core development machine)."""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from newsletter.cli import AppContext, console, err_console, pass_app
from newsletter.cli.progress import progress_bar
from newsletter.cli.signals import exit_aborted, stop_on_signals
from newsletter.errors import NothingToSendError
from newsletter.models import RunReport


def _announce_stop(signal_name: str) -> None:
    err_console.print(f"{signal_name}: stopping after the messages in flight (again to abort)...", markup=False)


def _print_report(report: RunReport, *, outbox: bool, dry_run: bool = False) -> None:
    if dry_run:
        console.print(f"Dry run of issue {report.issue_key}: {report.deferred} message(s) built and would be "
                      f"{'written' if outbox else 'sent'}, {report.already_sent} already "
                      f"{'written' if outbox else 'sent'}, {report.suppressed} suppressed address(es) left out, "
                      f"{report.failed} could not be built ({report.elapsed_s:.1f} s). Nothing was delivered.",
                      markup=False, soft_wrap=True)
        console.print(f"{report.distinct_issues} distinct issue(s): {report.personal} reader(s) get their own, "
                      f"the others the shared one.", markup=False, soft_wrap=True)
    else:
        verb = "written" if outbox else "sent"
        rate = (report.sent / report.elapsed_s) if report.elapsed_s > 0 else 0.0
        uncertain = f"{report.uncertain} uncertain, " if report.uncertain else ""
        console.print(
            f"Issue {report.issue_key}: {report.sent} {verb}, {report.failed} failed, {uncertain}{report.deferred} left "
            f"for later, {report.suppressed} skipped as suppressed, {report.already_sent} done before; "
            f"{report.elapsed_s:.1f} s ({rate:,.0f} msg/s).", markup=False, soft_wrap=True)
        console.print(f"Destination: {report.destination}", markup=False, soft_wrap=True)
        if report.throttled:
            console.print(f"The server throttled us {report.throttled} time(s); the run slowed down each time "
                          f"(no message spent an attempt on it).", markup=False, soft_wrap=True)
        if report.next_retry_at is not None and report.deferred:
            console.print(f"{report.deferred} message(s) wait for a retry; the next is due at "
                          f"{report.next_retry_at:%Y-%m-%d %H:%M:%S} UTC.", markup=False, soft_wrap=True)
    for error in report.errors[:20]:
        err_console.print(f"  {error}", markup=False, style="red", soft_wrap=True)
    total = max(report.error_count, len(report.errors))
    if total > 20:
        err_console.print(f"  ... and {total - 20} more (see `newsletter issues`)", markup=False)


def _stopped_by_error(report: RunReport) -> bool:
    """The run ended early on an error (unreachable server, a refused sender, certificate or
    login, a store that cannot record); reaching the daily cap is not one."""
    return bool(report.stopped)


def _hints(report: RunReport, *, outbox: bool) -> None:
    if outbox and report.sent:
        console.print("These are .eml files you can open in any mail program. To send the issue for real, add an "
                      "[smtp] section (host, port, security, username) to newsletter.toml, export "
                      "NEWSLETTER_SMTP_PASSWORD, set newsletter.from, newsletter.postal_address and an https "
                      "newsletter.base_url, check them with `newsletter check`, and run `newsletter send` again: "
                      "each subscriber gets it once.", markup=False, soft_wrap=True)
    if report.deferred:
        console.print("Run `newsletter send` again later (or let `newsletter run` do it) to deliver what is left; "
                      "nothing already accepted is sent twice.", markup=False, soft_wrap=True)
    if report.uncertain:
        console.print(f"Uncertain messages went out whole but their reply was lost: the server may have them. "
                      f"They are not retried on their own; `newsletter resend --uncertain {report.issue_key}` "
                      f"sends them again (same Message-ID).", markup=False, soft_wrap=True)
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
@click.option("--allow-placeholders", is_flag=True,
              help="Send for real even with the example From address or postal address (never without an "
                   "https base_url).")
@pass_app
def send_command(app: AppContext, dry_run: bool, to: str | None, limit: int | None, rate: float | None,
                 concurrency: int | None, allow_placeholders: bool) -> None:
    """Deliver the current issue to every active subscriber not sent it yet.

    Without [smtp] in the configuration each message is written as a .eml file to the outbox
    folder (delivery.outbox); with it, messages go to the SMTP server. Every message is
    recorded in the store as the server accepts it, so running `send` again after a crash, a
    stop or --limit continues where it was and never sends anyone a second copy.

    A real send over SMTP first checks the go-live list (https base_url, a real From address
    and postal address; see `newsletter check`) and refuses to start while any item fails.

    \b
    Example:
      newsletter send --dry-run
      newsletter send --to me@example.org
      newsletter send
      newsletter send --limit 100 --rate 5 --concurrency 2
    """
    from newsletter import api

    if dry_run and to is not None:
        raise click.UsageError("--to sends a test copy and --dry-run sends nothing: use one of them")
    config = app.config
    store = app.store
    outbox = not config.smtp_enabled
    with stop_on_signals(_announce_stop) as stop:
        try:
            if dry_run or to is not None:
                report = api.send(store, config, dry_run=dry_run, to=to, limit=limit, rate=rate,
                                             concurrency=concurrency)
            else:
                with progress_bar(err_console, "writing" if outbox else "sending",
                                  disable=not err_console.is_terminal) as progress:
                    report = api.send(store, config, limit=limit, rate=rate, concurrency=concurrency,
                                                 stop=stop, progress=progress, allow_placeholders=allow_placeholders)
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
    if report.failed or report.uncertain or _stopped_by_error(report):
        sys.exit(1)


@click.command("resend")
@click.option("--failed", "which", flag_value="failed", help="Send again the deliveries that failed.")
@click.option("--uncertain", "which", flag_value="uncertain",
              help="Send again the deliveries whose reply was lost after the whole message went out.")
@click.option("--allow-placeholders", is_flag=True, help="As for `send`.")
@click.argument("issue", required=False, metavar="[ISSUE]")
@pass_app
def resend_command(app: AppContext, which: str | None, allow_placeholders: bool, issue: str | None) -> None:
    """Send again, on purpose, the failed or uncertain deliveries of ISSUE (default: the latest
    issue with such deliveries).

    Only those are sent, with the issue exactly as it was first sent and the same Message-ID;
    whatever the server accepted is never sent again, and unsubscribed or bounced addresses are
    skipped. An uncertain delivery may already be in the reader's mailbox: resending it is a
    choice (a receiver that deduplicates by Message-ID drops the copy).

    \b
    Example:
      newsletter resend --failed
      newsletter resend --failed 2026-W48
      newsletter resend --uncertain
    """
    from newsletter import api

    if which is None:
        raise click.UsageError("say which deliveries to send again: --failed or --uncertain")
    config = app.config
    outbox = not config.smtp_enabled
    with stop_on_signals(_announce_stop) as stop:
        try:
            with progress_bar(err_console, "resending", disable=not err_console.is_terminal) as progress:
                report = api.resend(app.store, config, issue, status=which, stop=stop, progress=progress,
                                         allow_placeholders=allow_placeholders)
        except NothingToSendError as exc:
            console.print(f"Nothing to resend: {exc}", markup=False, soft_wrap=True)
            return
        except KeyboardInterrupt:
            exit_aborted(lambda text: err_console.print(text, markup=False, soft_wrap=True))
    _print_report(report, outbox=outbox)
    _hints(report, outbox=outbox)
    if report.failed or report.uncertain or _stopped_by_error(report):
        sys.exit(1)


@click.command("issues")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def issues_command(app: AppContext, as_json: bool) -> None:
    """List past issues, newest first, with how many deliveries are in each state.

    Columns: sent (accepted by the SMTP server), written (to the outbox folder, shown when any),
    failed, uncertain (sent whole, reply lost: see `resend --uncertain`; shown when any), pending
    (left for later, or in flight), skipped (unsubscribed or bounced before their turn); hard
    (hard bounces) and spam (complaints): readers, and their share of those sent, from
    `newsletter bounces`, shown once there are any, with a warning past 2% hard bounces or 0.1%
    complaints. A delivery journal left by a run whose store refused to record is applied first.
    The JSON output also has the title and every state separately.

    \b
    Example:
      newsletter issues
      newsletter issues --json
    """
    from newsletter import api

    found = api.issues(app.store)
    if as_json:
        def iso(value):  # type: ignore[no-untyped-def]
            return value.isoformat().replace("+00:00", "Z") if value else None

        click.echo(json.dumps([{**row, "created_at": iso(row["created_at"]), "frozen_at": iso(row["frozen_at"]),
                                "last_sent_at": iso(row["last_sent_at"])} for row in found], indent=2))
        return
    if not found:
        console.print("No issues yet: run `newsletter send` (or `newsletter preview`) first.", markup=False)
        return
    # 80 columns hold every field; "written" (outbox) and "uncertain" are shown only where some
    # issue has such rows, which is rarely both at once.
    counts = ("sent", "written", "failed", "uncertain", "pending", "skipped")
    shown = [c for c in counts if c not in ("written", "uncertain") or any(r["deliveries"][c] for r in found)]
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("#", "key", "status"):
        table.add_column(name, no_wrap=True)
    for name in shown:
        table.add_column(name, justify="right", no_wrap=True)
    # Bounce columns only once `newsletter bounces` has tied a report to some issue: 80 columns
    # hold them beside the usual ones, not beside "written" and "uncertain" too.
    with_bounces = any(row["bounces"]["hard"] or row["bounces"]["complaint"] for row in found)
    for name in ("hard", "spam") if with_bounces else ():  # hard bounces, complaints: count and rate
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("last delivery (UTC)")  # the one column that may wrap in a narrow terminal
    for row in found:
        d = {**row["deliveries"], "pending": row["deliveries"]["pending"] + row["deliveries"]["sending"]}
        b, r = row["bounces"], row["rates"]
        rates = (f"{b['hard']} {r['hard']:.1%}", f"{b['complaint']} {r['complaint']:.2%}") if with_bounces else ()
        table.add_row(str(row["number"]), row["key"], row["status"], *(str(d[c]) for c in shown), *rates,
                      row["last_sent_at"].strftime("%Y-%m-%d %H:%M") if row["last_sent_at"] else "")
    console.print(table, markup=False)
    console.print(f"{len(found)} issue(s) in {app.store.shown_url}", markup=False)
    for row in found:
        for warning in row["warnings"]:
            err_console.print(f"Warning: {warning}", markup=False, style="yellow", soft_wrap=True)


@click.command("check")
@click.option("--no-smtp", is_flag=True, help="Check the settings only; do not contact the SMTP server.")
@pass_app
def check_command(app: AppContext, no_smtp: bool) -> None:
    """Print the go-live checklist without sending anything.

    The settings a real send refuses to start without (an https base_url, a From address and
    postal address that are not the examples), then what the SMTP server says to us: does it
    answer, offer STARTTLS, accept our login and our MAIL FROM (no message is sent), and the
    DNS records (SPF, DKIM, DMARC) the From domain needs. Exit status 1 while anything fails.

    \b
    Example:
      newsletter check
      newsletter check --no-smtp
    """
    from newsletter import api

    config = app.config
    checks = api.check(config, smtp=not no_smtp)
    for check in checks:
        mark, style = ("OK  ", "green") if check.ok else ("FIX ", "red")
        fix = f"  [{check.key}]" if check.key and not check.ok else ""
        console.print(f"{mark} {check.name}: {check.detail}{fix}", markup=False, soft_wrap=True, style=style)
    console.print("DNS records the From domain needs (not looked up here):", markup=False)
    for line in api.dns_advice(config):
        console.print(f"  - {line}", markup=False, soft_wrap=True)
    failing = sum(not c.ok for c in checks)
    console.print(f"{len(checks) - failing} of {len(checks)} checks pass." +
                  (" Nothing was sent." if not no_smtp and config.smtp_enabled else ""), markup=False)
    if failing:
        sys.exit(1)


COMMANDS: list[click.Command] = [send_command, resend_command, issues_command, check_command]
