"""Shared parts of the delivery tests: a real aiosmtpd server whose handler records what arrived
and can misbehave in SMTP on demand, a throwaway certificate authority, and a store seeded with
an issue and subscribers. (No tests here; the name keeps it with the delivery test modules.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid
from pathlib import Path
from typing import Callable

from aiosmtpd.controller import Controller

from newsletter.models import Issue, RenderedIssue, Subscriber
from newsletter.store import Store
from newsletter.store.issues import freeze_issue
from newsletter.store.subscribers import add_subscriber

FROM = "digest@example.org"


@dataclass
class RecordingHandler:
    """Records every accepted message; the fault knobs make it answer like a troubled server."""

    refuse: dict[str, str] = field(default_factory=dict)       # recipient -> full RCPT answer
    temp_fail_data: dict[str, int] = field(default_factory=dict)  # recipient -> DATA answers of 451 to give
    answer_421_every: int = 0        # every Nth DATA gets "421" and the connection is closed
    drop_every: int = 0              # close the connection after every Nth accepted message
    delay_s: float = 0.0             # slow server: wait before answering DATA
    stall_once: dict[str, float] = field(default_factory=dict)  # recipient -> one DATA answer this late
    withhold_reply: dict[str, float] = field(default_factory=dict)  # recipient -> keep the message, answer this late
    mail_from_answer: str = ""       # every MAIL FROM gets this answer (a refused sender: "553 5.1.8 ...")
    data_answer: str = ""            # every DATA gets this answer instead of being accepted ("554 5.7.1 ...")
    throttle_for_s: float = 0.0      # for this long after the first message, answer throttle_answer
    throttle_answer: str = "451 4.7.1 Too many messages, slow down"
    throttle_stage: str = "DATA"     # where the throttle answer is given: "MAIL" or "DATA"
    max_per_second: float = 0.0      # answer throttle_answer to messages above this rate (sliding 1 s)
    throttled: int = 0               # throttle answers given
    on_message: Callable[[int], None] | None = None  # called with the count after each accepted message
    messages: list[tuple[str, tuple[str, ...], bytes]] = field(default_factory=list)
    data_commands: int = 0
    sessions: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._per_session: Counter[int] = Counter()
        self._first_at: float | None = None
        self._accepted_at: list[float] = []

    def _throttle_now(self) -> bool:
        """True when this message meets the throttle (a window after the first, or a rate)."""
        now = time.monotonic()
        with self.lock:
            if self._first_at is None:
                self._first_at = now
            if self.throttle_for_s and now - self._first_at < self.throttle_for_s:
                self.throttled += 1
                return True
            if self.max_per_second:
                self._accepted_at = [t for t in self._accepted_at if now - t < 1.0]
                if len(self._accepted_at) >= self.max_per_second:
                    self.throttled += 1
                    return True
                self._accepted_at.append(now)
        return False

    def _throttle_reply(self, server, stage: str) -> str:  # type: ignore[no-untyped-def]
        """The throttle answer when this message meets it at ``stage`` ("" otherwise); a 421
        closes the connection after it, as a server shedding load does."""
        if self.throttle_stage != stage or not self._throttle_now():
            return ""
        if self.throttle_answer.startswith("421"):
            asyncio.get_running_loop().call_soon(server.transport.close)
        return self.throttle_answer

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        if self.mail_from_answer:
            return self.mail_from_answer
        throttled = self._throttle_reply(server, "MAIL")
        if throttled:
            return throttled
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        with self.lock:
            self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        stall_s = self.stall_once.pop(envelope.rcpt_tos[0], 0.0) if envelope.rcpt_tos else 0.0
        if stall_s:
            # Longer than the client's timeout: it gives up on this answer; the message is not kept.
            await asyncio.sleep(stall_s)
            return "451 4.4.2 Timed out"
        if self.data_answer:
            return self.data_answer
        throttled = self._throttle_reply(server, "DATA")
        if throttled:
            return throttled
        withhold_s = self.withhold_reply.pop(envelope.rcpt_tos[0], 0.0) if envelope.rcpt_tos else 0.0
        if withhold_s:
            # The message is queued, and the reply comes too late for the client: it cannot know.
            with self.lock:
                self.messages.append((envelope.mail_from, tuple(envelope.rcpt_tos), envelope.content))
            await asyncio.sleep(withhold_s)
            return "250 2.0.0 Message accepted for delivery"
        with self.lock:
            self.data_commands += 1
            n = self.data_commands
            rcpt = envelope.rcpt_tos[0]
            if self.temp_fail_data.get(rcpt, 0) > 0:
                self.temp_fail_data[rcpt] -= 1
                return "451 4.3.0 Temporary local problem, try again"
            if self.answer_421_every and n % self.answer_421_every == 0:
                asyncio.get_running_loop().call_soon(server.transport.close)
                return "421 4.3.2 Service shutting down, closing channel"
            self.messages.append((envelope.mail_from, tuple(envelope.rcpt_tos), envelope.content))
            accepted = len(self.messages)
            self._per_session[id(session)] += 1
            drop = self.drop_every and self._per_session[id(session)] % self.drop_every == 0
        if self.on_message is not None:
            self.on_message(accepted)
        if drop:
            # After the 250 has been written: the server hangs up on an idle client.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 2.0.0 Message accepted for delivery"

    def recipients(self) -> Counter[str]:
        with self.lock:
            return Counter(r for _, rcpts, _ in self.messages for r in rcpts)


class SmtpServer:
    """aiosmtpd on 127.0.0.1 at a reserved port; stop() and start() again on the same port."""

    def __init__(self, handler: RecordingHandler, port: int, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.handler = handler
        self.port = port
        self.kwargs = kwargs
        self.controller: Controller | None = None

    def start(self) -> "SmtpServer":
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **self.kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@dataclass(frozen=True)
class TestMessage:
    message_id: str
    sender: str
    recipient: str
    data: bytes


def build_message(subscriber: Subscriber) -> TestMessage:
    """A small stand-in for the render area's MessageFactory.build, through the EmailMessage API."""
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = FROM
    msg["To"] = subscriber.email
    msg["Subject"] = "Trending Papers Weekly"
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(f"Hello {subscriber.name or 'there'},\n\nThis week's papers.\n")
    return TestMessage(msg["Message-ID"], FROM, subscriber.email, msg.as_bytes())


TestMessage.__test__ = False  # type: ignore[attr-defined]


def seed(store: Store, n: int, *, key: str = "2026-W48", number: int = 1) -> list[str]:
    """A frozen issue and ``n`` active subscribers; returns their addresses."""
    now = dt.datetime(2026, 11, 23, 8, tzinfo=dt.timezone.utc)
    issue = Issue(key=key, number=number, title=f"Issue {number}", papers=(), created_at=now)
    emails = [f"reader{i:04d}@example.com" for i in range(n)]
    with store.atomic() as conn:
        freeze_issue(conn, issue, RenderedIssue(issue=issue, subject="Subject", html="<p>x</p>", text="x"), now=now)
        for i, email in enumerate(emails):
            add_subscriber(conn, email, name=f"Reader {i}", now=now)
    return emails


def make_certificates(folder: Path, *, hostname_ip: str = "127.0.0.1") -> dict[str, Path]:
    """A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost, plus a
    self-signed certificate nobody trusts. Returns the PEM paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key, path: Path) -> None:  # type: ignore[no-untyped-def]
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(name("Test CA")).issuer_name(name("Test CA"))
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                       x509.IPAddress(ipaddress.ip_address(hostname_ip))])

    def leaf(issuer_key, issuer_name: x509.Name):  # type: ignore[no-untyped-def]
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(issuer_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
                .add_extension(san, critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(issuer_key, hashes.SHA256()))
        return key, cert

    server_key, server_cert = leaf(ca_key, ca_cert.subject)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue_leaf_key, rogue_cert = leaf(rogue_key, name("Rogue CA"))
    paths = {name_: folder / f"{name_}.pem" for name_ in ("ca", "server_cert", "server_key", "rogue_cert", "rogue_key")}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["server_cert"].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    write_key(server_key, paths["server_key"])
    paths["rogue_cert"].write_bytes(rogue_cert.public_bytes(serialization.Encoding.PEM))
    write_key(rogue_leaf_key, paths["rogue_key"])
    return paths
