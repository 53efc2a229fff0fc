"""Debian's Postfix as a real receiving MTA for tests: one instance with a throwaway configuration
in a temporary folder, listening on a loopback port, delivering virtual mailboxes into maildirs.
(No tests here; imported by the tests that need a real MTA's behaviour.)

Postfix answers as it does on the Internet: ``550 5.1.1 ... User unknown in virtual mailbox
table`` to RCPT for an unknown mailbox, and, with ``smtpd_delay_reject`` (its default), a
refused sender at RCPT too (``554 5.1.8 ... Sender address rejected``).

For bounce tests it can also fail *after* accepting, as most real bounces happen: with
``accept_unknown`` an unknown mailbox is accepted at RCPT and then bounced by the virtual
delivery agent, and mail for each of ``dead_domains`` is accepted and failed by the ``error``
transport; either way Postfix writes an RFC 3464 DSN to the envelope sender. Mail for each of
``slow_domains`` is deferred (the ``retry`` transport, 4.2.2) and a "delayed" DSN sent soon. With
``recipient_delimiter="+"``, ``bounces+TOKEN@DOMAIN`` is delivered to the ``bounces`` maildir.
"""

from __future__ import annotations

import grp
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import free_port, require_tool

DOMAIN = "readers.tpweekly.org"
BANNED_SENDER = "banned@tpweekly.org"


@dataclass
class Postfix:
    folder: Path
    port: int
    mailboxes: tuple[str, ...]

    @property
    def config_dir(self) -> Path:
        return self.folder / "etc"

    def maildir(self, address: str) -> Path:
        return self.folder / "mail" / address.split("@")[0]

    def delivered(self, address: str) -> list[bytes]:
        """The messages in ``address``'s maildir (new/ and cur/)."""
        found = []
        for sub in ("new", "cur"):
            box = self.maildir(address) / sub
            if box.is_dir():
                found += [p.read_bytes() for p in sorted(box.iterdir()) if p.is_file()]
        return found

    def wait_for(self, addresses: list[str], timeout_s: float = 30.0) -> None:
        """Wait until each address has at least one message (Postfix delivers from its queue)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.delivered(a) for a in addresses):
                return
            time.sleep(0.1)
        log = (self.folder / "maillog").read_text(errors="replace")[-3000:]
        raise AssertionError(f"Postfix did not deliver to every one of {addresses} in {timeout_s} s:\n{log}")

    def stop(self) -> None:
        pid_file = self.folder / "spool" / "pid" / "master.pid"
        try:
            master = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            master = 0
        subprocess.run(["postfix", "-c", str(self.config_dir), "stop"], capture_output=True, timeout=30)
        # Wait for this instance's master process to end (its pid file can outlive it).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (_alive(master) if master else pid_file.exists()):
            time.sleep(0.1)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postfix(mailboxes: tuple[str, ...], *, accept_unknown: bool = False, dead_domains: tuple[str, ...] = (),
                  slow_domains: tuple[str, ...] = (), recipient_delimiter: str = "") -> Postfix:
    """A Postfix instance in a new folder on a free loopback port, with ``mailboxes`` (local
    parts at ``DOMAIN``) as its only recipients and ``BANNED_SENDER`` refused. The folder
    is outside pytest's (which only root may enter): Postfix's daemons run as ``postfix``."""
    require_tool("/usr/sbin/postfix")
    folder = Path(tempfile.mkdtemp(prefix="newsletter-postfix-"))
    folder.chmod(0o755)
    owner = pwd.getpwnam("postfix")
    port = free_port()
    etc, spool, data, mail = (folder / n for n in ("etc", "spool", "data", "mail"))
    for path in (etc, spool, data, mail):
        path.mkdir(parents=True, exist_ok=True)
    for path in (data, mail):
        subprocess.run(["chown", f"{owner.pw_uid}:{owner.pw_gid}", str(path)], check=True)
    (etc / "mailboxes").write_text("".join(f"{m}@{DOMAIN} {m}/\n" for m in mailboxes), encoding="utf-8")
    (etc / "senders").write_text(f"{BANNED_SENDER} REJECT 5.1.8 Sender address rejected: not allowed here\n",
                                 encoding="utf-8")
    extra = ""
    if accept_unknown:
        extra += "smtpd_reject_unlisted_recipient = no\n"
    if dead_domains or slow_domains:
        (etc / "transport").write_text(
            "".join(f"{d} error:5.1.2 host {d} does not accept mail (test)\n" for d in dead_domains)
            + "".join(f"{d} retry:4.2.2 mailbox of {d} full, try later (test)\n" for d in slow_domains),
            encoding="utf-8")
        extra += f"transport_maps = texthash:{etc / 'transport'}\n"
    if slow_domains:
        # Deferred mail is retried every second and a "delayed" DSN goes out after the first try.
        extra += ("delay_warning_time = 1s\nqueue_run_delay = 1s\nminimal_backoff_time = 1s\n"
                  "maximal_backoff_time = 2s\n")
    if recipient_delimiter:
        extra += f"recipient_delimiter = {recipient_delimiter}\n"
    (etc / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
mail_owner = postfix
setgid_group = {grp.getgrnam("postdrop").gr_name}
myhostname = mx.tpweekly.test
mydomain = tpweekly.test
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination =
relayhost =
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = texthash:{etc / "mailboxes"}
virtual_mailbox_base = {mail}
virtual_uid_maps = static:{owner.pw_uid}
virtual_gid_maps = static:{owner.pw_gid}
smtpd_sender_restrictions = check_sender_access texthash:{etc / "senders"}
maillog_file = {folder / "maillog"}
maillog_file_prefixes = {folder}
smtputf8_enable = yes
{extra}""", encoding="utf-8")
    master = Path("/etc/postfix/master.cf").read_text(encoding="utf-8")
    # The public smtpd on our port, not 25, and not chrooted (the chroot would need a copy of
    # /etc in the spool folder).
    public = "smtp      inet  n       -       y       -       -       smtpd"
    if public not in master:
        raise RuntimeError(f"/etc/postfix/master.cf has no line {public!r} to move to a test port")
    master = master.replace(public, f"{port}      inet  n       -       n       -       -       smtpd", 1)
    (etc / "master.cf").write_text(master, encoding="utf-8")
    result = subprocess.run(["postfix", "-c", str(etc), "start"], capture_output=True, text=True, timeout=60)
    instance = Postfix(folder, port, mailboxes)
    if result.returncode != 0:
        log = (folder / "maillog").read_text(errors="replace") if (folder / "maillog").exists() else ""
        raise RuntimeError(f"Postfix did not start: {result.stdout}{result.stderr}{log[-2000:]}")
    _wait_for_port(port)
    return instance


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive: Postfix's master is not our child, so read its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


def _wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"Postfix does not listen on 127.0.0.1:{port}")
