"""`newsletter bounces` against Debian's Dovecot (packages dovecot-imapd, dovecot-pop3d), started
by the test on loopback ports with a throwaway configuration and a certificate made here:
IMAPS with MOVE to a folder, IMAP with a keyword flag, POP3S with delete. A second run must do
nothing twice, and a message that is not ours stays where it was."""

from __future__ import annotations

import mailbox
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import free_port, require_tool
from newsletter import api
from newsletter.store.schema import subscribers
from test_bounces import READERS, sample, site  # noqa: F401 - site is a fixture

PASSWORD = "correct horse battery staple"
USER = "bounces"


class Dovecot:
    def __init__(self) -> None:
        binary = require_tool("/usr/sbin/dovecot")
        self.folder = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
        self.folder.chmod(0o755)
        self.ports = {name: free_port() for name in ("imap", "imaps", "pop3", "pop3s")}
        cert, key = self.folder / "cert.pem", self.folder / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True, timeout=60)
        self.cert = cert
        home = self.folder / "home" / USER
        self.maildir = home / "Maildir"
        home.mkdir(parents=True)
        mailbox.Maildir(self.maildir)  # creates cur/ new/ tmp/
        subprocess.run(["chown", "-R", "nobody:nogroup", str(self.folder / "home")], check=True)
        (self.folder / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n", encoding="utf-8")
        dh = "ssl_dh = </usr/share/dovecot/dh.pem\n" if Path("/usr/share/dovecot/dh.pem").exists() else ""
        conf = self.folder / "dovecot.conf"
        conf.write_text(f"""\
base_dir = {self.folder}/run
state_dir = {self.folder}/state
log_path = {self.folder}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
{dh}disable_plaintext_auth = no
auth_mechanisms = plain
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.folder}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={self.folder}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    port = {self.ports["imap"]}
  }}
  inet_listener imaps {{
    port = {self.ports["imaps"]}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {self.ports["pop3"]}
  }}
  inet_listener pop3s {{
    port = {self.ports["pop3s"]}
    ssl = yes
  }}
}}
pop3_uidl_format = %08Xu%08Xv
""", encoding="utf-8")
        self.process = subprocess.Popen([binary, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._wait()

    def _wait(self) -> None:
        import socket

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Dovecot exited: {self.process.stdout.read().decode(errors='replace')}"  # type: ignore[union-attr]
                                   f"{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.ports["pop3s"]), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"Dovecot does not listen: {self.log()}")

    def log(self) -> str:
        path = self.folder / "dovecot.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def deliver(self, data: bytes) -> None:
        box = mailbox.Maildir(self.maildir)
        box.add(data)
        subprocess.run(["chown", "-R", "nobody:nogroup", str(self.maildir)], check=True)

    def count(self, folder: str = "") -> int:
        root = self.maildir / folder if folder else self.maildir
        return sum(1 for sub in ("new", "cur") if (root / sub).is_dir() for _ in (root / sub).iterdir())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def dovecot(monkeypatch):  # type: ignore[no-untyped-def]
    instance = Dovecot()
    monkeypatch.setenv("NEWSLETTER_BOUNCES_PASSWORD", PASSWORD)
    yield instance
    instance.stop()


def _status(store, address: str) -> str:  # type: ignore[no-untyped-def]
    with store.atomic() as conn:
        return conn.execute(select(subscribers.c.status).where(subscribers.c.email == address)).scalar_one()


def test_imaps_moves_what_it_acted_on_and_leaves_the_rest(site, dovecot: Dovecot) -> None:  # type: ignore[no-untyped-def]
    _, config, store = site
    dovecot.deliver(sample("sendmail_hard.eml"))
    dovecot.deliver(sample("human_reply.eml"))
    config = config.with_overrides({"smtp.ca_file": str(dovecot.cert)})
    url = f"imaps://{USER}@127.0.0.1:{dovecot.ports['imaps']}/INBOX"
    run = api.process_bounces(store, config, [url])
    assert not run.errors, (run.errors, dovecot.log())
    assert run.counts["hard"] == 1 and run.counts["not_ours"] == 1
    assert _status(store, "retired@example.edu") == "bounced"
    assert dovecot.count(".Processed") == 1 and dovecot.count() == 1
    again = api.process_bounces(store, config, [url])
    assert again.counts["hard"] == 0 and again.counts["not_ours"] == 1 and not again.actions


def test_imaps_refuses_a_certificate_it_does_not_trust(site, dovecot: Dovecot) -> None:  # type: ignore[no-untyped-def]
    _, config, store = site
    dovecot.deliver(sample("sendmail_hard.eml"))
    run = api.process_bounces(store, config, [f"imaps://{USER}@127.0.0.1:{dovecot.ports['imaps']}/INBOX"])
    assert run.errors and "certificate" in run.errors[0].lower()
    assert _status(store, "retired@example.edu") == "active"


def test_imap_flag_mode_marks_with_a_keyword_and_skips_it_next_time(site, dovecot: Dovecot) -> None:  # type: ignore[no-untyped-def]
    _, config, store = site
    dovecot.deliver(sample("qmail_hard.eml", message_id="none@x"))
    flagging = config.with_overrides({"bounces.processed": "flag"})
    url = f"imap://{USER}@127.0.0.1:{dovecot.ports['imap']}/INBOX"
    run = api.process_bounces(store, flagging, [url])
    assert run.counts["hard"] == 1, (run, dovecot.log())
    assert dovecot.count() == 1  # still there, flagged
    again = api.process_bounces(store, flagging, [url])
    assert again.messages == 0


def test_pop3s_delete(site, dovecot: Dovecot) -> None:  # type: ignore[no-untyped-def]
    _, config, store = site
    dovecot.deliver(sample("dsn_mailbox_full.eml"))
    dovecot.deliver(sample("human_reply.eml"))
    deleting = config.with_overrides({"bounces.processed": "delete", "smtp.ca_file": str(dovecot.cert)})
    run = api.process_bounces(store, deleting, [f"pop3s://{USER}@127.0.0.1:{dovecot.ports['pop3s']}"])
    assert not run.errors, (run.errors, dovecot.log())
    assert run.counts["soft"] == 1 and run.counts["not_ours"] == 1
    assert dovecot.count() == 1  # the reply is left
    with store.atomic() as conn:
        from newsletter.store.subscribers import subscriber_events

        assert [e["kind"] for e in subscriber_events(conn, "full@example.org")][-1] == "soft_bounce"


def test_a_clear_text_password_to_a_remote_host_is_refused(site, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, config, store = site
    monkeypatch.setenv("NEWSLETTER_BOUNCES_PASSWORD", "x")
    run = api.process_bounces(store, config, ["imap://bounces@mail.example.org/INBOX"])
    assert run.errors and "clear" in run.errors[0]
