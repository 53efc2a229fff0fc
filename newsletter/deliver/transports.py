"""Where a finished message goes: a folder of .eml files (the default) or an SMTP server.

Both have ``send(sender, recipients, data) -> str`` (what the destination answered) and
``close()``; ``open_transport(config)`` picks one. The SMTP transport is a pool of connections,
one per worker thread, each reused for many messages: a new connection per message costs a
TCP + TLS + login round trip, which is most of the time a message takes.

Failures are sorted by the SMTP step they happened at and the enhanced status code (RFC 3463),
not by the first digit alone, so the sender knows what to do with the message:

* ``SenderRefused``: the server refuses *us* (a 5xx at connect, EHLO, AUTH or MAIL FROM, a
  5.7.x policy refusal of the message at DATA, a 5.1.7/5.1.8 sender-address refusal or a
  "relay access denied" at RCPT): every message would meet it, so the run stops, every message
  stays pending and no subscriber changes state;
* ``Throttled``: the server asks us to slow down (421, any 4.7.x, 450/451 at connect or MAIL
  FROM, "too many messages", a connection dropped in the middle of a message): the whole run
  slows down and the message goes back to the queue without spending an attempt;
* ``TemporaryFailure``: any other 4xx for this message: retried later, with a backoff of
  minutes to hours;
* ``ConnectionFailure`` (a ``TemporaryFailure``): the server could not be reached, nothing was
  sent, so the message is not charged an attempt;
* ``UncertainDelivery``: the whole message was sent and the reply to it was lost (timeout,
  connection reset): the server may have queued it, so it is never retried on its own;
* ``PermanentFailure``: any other 5xx; ``bounced`` only for a "no such mailbox" answer to RCPT
  (5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10, 5.2.1), which suppresses that subscriber. Also a message
  to an internationalised address (``dörte@münchen.de``) when the server does not offer
  SMTPUTF8: nothing is sent, the connection stays in use for the other messages;
* any other ``DeliveryError``: the transport cannot work at all (wrong certificate, no
  STARTTLS): the run stops and leaves the rest for later.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import smtplib
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol, Sequence

from newsletter.config import Config
from newsletter.errors import ConfigError, DeliveryError
from newsletter.files import private_folder
from newsletter.net import is_loopback

PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"
_ENHANCED_CODE = re.compile(rb"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


class TemporaryFailure(DeliveryError):
    """Try this message again later (a 4xx for this message)."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)


class ConnectionFailure(TemporaryFailure):
    """The server could not be reached or greeted: nothing was sent for this message."""


class Throttled(TemporaryFailure):
    """The server asks us to slow down: the run's rate is cut and the message goes back to the
    queue without spending an attempt. ``closed`` when the server dropped the connection (a
    421, a hang-up mid-message): then the worker also waits before reconnecting."""

    def __init__(self, message: str, *, code: int | None = None, closed: bool = False) -> None:
        self.closed = closed
        super().__init__(message, code=code)


class UncertainDelivery(DeliveryError):
    """The whole message went out and the server's reply to it was lost: it may be queued
    there. Never retried on its own (that could deliver it twice); ``resend --uncertain`` does
    it on purpose."""


class PermanentFailure(DeliveryError):
    """The server refused this message for good (5xx); ``bounced`` for "no such mailbox"."""

    def __init__(self, message: str, *, code: int | None = None, bounced: bool = False) -> None:
        self.code = code
        self.bounced = bounced
        super().__init__(message)


SENDER_HINT = ("the server refuses this sender, so every message would fail: check newsletter.from (a "
               "From address the relay lets you use), the domain's SPF and DKIM records, and the relay's "
               "sender rules; every message stays pending")


class SenderRefused(DeliveryError):
    """The server refuses us, not one recipient: the run stops and nobody changes state."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        self.code = code
        super().__init__(f"{message} ({SENDER_HINT})")


class Transport(Protocol):
    """Where finished messages go: what the sender needs of the outbox and the SMTP pool."""

    destination: str

    def send(self, sender: str, recipients: Sequence[str], data: bytes) -> str: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# Outbox


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+-]+")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(.+?)\r?$", re.IGNORECASE | re.MULTILINE)


class OutboxTransport:
    """One .eml file per message in a folder: the default, needing no server.

    The name is the recipient plus a hash of the Message-ID (or, without one, of the bytes):
    sending the same message again rewrites the same file, a different message never
    overwrites another. Each file is written to a temporary name and renamed, so a reader (or
    a crash) never sees half a message.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            private_folder(self.folder)
        except OSError as exc:
            raise DeliveryError(f"cannot create the outbox folder: {exc.strerror}", where=str(self.folder)) from None
        self.destination = str(self.folder.resolve())
        self.ledger_status = "written"  # done for the outbox; a later SMTP run still sends it

    def file_name(self, recipients: Sequence[str], data: bytes) -> str:
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        match = _MESSAGE_ID.search(head)
        digest = hashlib.sha256(match.group(1).strip() if match else data).hexdigest()[:16]
        who = _UNSAFE_NAME.sub("_", ",".join(recipients))[:80].strip("._") or "message"
        return f"{who}--{digest}.eml"

    def send(self, sender: str, recipients: Sequence[str], data: bytes) -> str:
        path = self.folder / self.file_name(recipients, data)
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".eml", dir=self.folder)
        except OSError as exc:  # a folder that cannot be written: the run stops, nothing is failed
            raise DeliveryError(f"cannot write into the outbox folder: {exc.strerror}", where=str(self.folder)) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise DeliveryError(f"cannot write the message: {exc.strerror}", where=str(path)) from None
        return str(path)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# SMTP


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    security: str = "starttls"
    username: str = ""
    password: str = ""
    timeout_s: float = 30.0
    ca_file: str = ""

    @classmethod
    def from_config(cls, config: Config, env: Mapping[str, str] | None = None) -> "SmtpSettings":
        env = os.environ if env is None else env
        settings = cls(
            host=config["smtp.host"], port=config["smtp.port"], security=config["smtp.security"],
            username=config["smtp.username"], password=env.get(PASSWORD_ENV, ""),
            timeout_s=config["smtp.timeout_s"], ca_file=config["smtp.ca_file"],
        )
        settings.check(where=config.origin("smtp.security"))
        return settings

    def check(self, where: str = "[smtp]") -> None:
        if self.security == "none" and not is_loopback(self.host):
            raise ConfigError(
                f"smtp.security = \"none\" sends passwords and mail in clear text; it is allowed only "
                f"for a loopback host, not {self.host!r} (use starttls or tls)", where=where)
        if self.username and not self.password:
            raise ConfigError(f"smtp.username is set but {PASSWORD_ENV} is empty", where=where)
        if self.ca_file and not Path(self.ca_file).is_file():
            raise ConfigError("no such CA file", where=self.ca_file)

    def ssl_context(self) -> ssl.SSLContext:
        """System CAs with hostname and certificate checks, plus ``ca_file`` if given."""
        context = ssl.create_default_context()
        if self.ca_file:
            try:
                context.load_verify_locations(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise DeliveryError(f"cannot load the CA file: {exc}", where=self.ca_file) from None
        return context


def reply_text(reply: bytes | str) -> str:
    """An SMTP reply on one line, as text."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())


# Steps where a refusal is about the sending side, whatever the recipient.
SENDER_STAGES = ("connect", "EHLO", "HELO", "AUTH", "MAIL FROM")
# "No such mailbox" and the like, to RCPT: the address is dead (RFC 3463).
_DEAD_ADDRESS = {(1, 1), (1, 2), (1, 3), (1, 6), (1, 10), (2, 1)}
# Refusals of the sender's address, which Postfix and others give at RCPT (smtpd_delay_reject).
_SENDER_ADDRESS = {(1, 7), (1, 8)}
_THROTTLE_WORDS = re.compile(r"too many|rate.?limit|throttl|slow down|try again later|exceeded", re.IGNORECASE)
_RELAY_DENIED = re.compile(r"relay(ing)? (access )?(denied|not permitted|prohibited)", re.IGNORECASE)
_NO_MAILBOX_WORDS = re.compile(r"user unknown|no such (user|mailbox|recipient)|mailbox (unavailable|not found)|"
                               r"does not exist|unknown (user|recipient)", re.IGNORECASE)


def enhanced_code(reply: bytes | str) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code at the start of a reply's text (``5.1.1``), if any."""
    raw = reply if isinstance(reply, bytes) else str(reply).encode("utf-8", "replace")
    match = _ENHANCED_CODE.match(raw)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def classify_reply(code: int, reply: bytes | str, stage: str) -> DeliveryError:
    """What an SMTP answer at ``stage`` ("connect", "EHLO", "AUTH", "MAIL FROM", "RCPT TO x",
    "DATA") means for the run: see the module's docstring."""
    text = f"{code} {reply_text(reply)}".strip()
    message = f"{stage}: {text}"
    step = "RCPT" if stage.startswith("RCPT") else stage
    enhanced = enhanced_code(reply)
    detail = enhanced[1:] if enhanced else None
    if 400 <= code < 500 or code == -1:
        throttled = (code == 421 or (detail is not None and detail[0] == 7)
                     or (code in (450, 451) and step in SENDER_STAGES) or bool(_THROTTLE_WORDS.search(text)))
        if throttled:
            return Throttled(message, code=code, closed=code == 421)
        return TemporaryFailure(message, code=code)
    if (step in SENDER_STAGES or detail in _SENDER_ADDRESS
            or (step == "DATA" and detail is not None and detail[0] == 7)
            or (step == "RCPT" and _RELAY_DENIED.search(text))):
        return SenderRefused(message, code=code)
    bounced = step == "RCPT" and (detail in _DEAD_ADDRESS if detail is not None
                                  else code in (550, 551, 553) and bool(_NO_MAILBOX_WORDS.search(text)))
    return PermanentFailure(message, code=code, bounced=bounced)


def dot_stuff(data: bytes) -> bytes:
    """The DATA payload of ``data``: a "." doubled at the start of every line, CRLF and "."
    after. What ``smtplib.SMTP.data`` does, with ``bytes.replace`` where it runs the regex
    ``(?m)^\\.`` over the whole message: on a 30 KB digest that regex is ~0.25 ms of CPU, more
    than the rest of our per-message work together."""
    if data[:1] == b".":
        data = b"." + data
    data = data.replace(b"\n.", b"\n..")
    if data[-2:] != b"\r\n":
        data += b"\r\n"
    return data + b".\r\n"


class _ReplyLost(Exception):
    """The whole message was sent and no reply to it came back."""


_BOUNDARY = re.compile(rb'boundary="([^"\r\n]+)"', re.IGNORECASE)
_EIGHT_BIT = re.compile(rb"(?im)^(Content-Transfer-Encoding:[ \t]*)8bit(?=[ \t]*\r?$)")


def seven_bit(data: bytes) -> bytes:
    """``data`` with every ``8bit`` MIME part re-encoded as base64, for a server that does not
    take 8BITMIME (RFC 6152): a reader's own issue is sent as 8bit text, and such a server
    may not pass 8-bit bytes on."""
    head, found, body = data.partition(b"\r\n\r\n")
    boundary = _BOUNDARY.search(head)
    if not found or boundary is None:
        return data
    delimiter = b"\r\n--" + boundary.group(1)
    parts = (b"\r\n" + body).split(delimiter)  # the first delimiter starts the body: no CRLF of its own
    for i, part in enumerate(parts[1:], start=1):
        part_head, found, content = part.partition(b"\r\n\r\n")
        if found and _EIGHT_BIT.search(part_head):
            encoded = base64.encodebytes(content).replace(b"\n", b"\r\n")
            parts[i] = _EIGHT_BIT.sub(rb"\1base64", part_head) + b"\r\n\r\n" + encoded
    return head + b"\r\n\r\n" + delimiter.join(parts)[2:]


def _send_data(conn: smtplib.SMTP, data: bytes) -> tuple[int, bytes]:
    """``conn.data(data)`` for bytes, with ``dot_stuff``; raises ``SMTPDataError`` like it, and
    ``_ReplyLost`` when the message (with its final dot) went out but its reply did not come:
    only then may the server hold a message we do not know about."""
    conn.putcmd("data")
    code, reply = conn.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    conn.send(dot_stuff(data))
    try:
        return conn.getreply()
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        raise _ReplyLost(str(exc) or type(exc).__name__) from None


class _NothingSent(Exception):
    """A reused connection turned out dead before the server accepted anything."""


class SmtpPool:
    """One SMTP connection per worker thread, opened on first use and reused.

    After an error answer the session is reset (RSET) so the next message starts clean; a
    connection the server dropped is replaced on the next send. When a reused connection is
    found dead before MAIL FROM was accepted, the message is sent again at once on a new one:
    nothing of it had reached the server.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        settings.check()
        self.settings = settings
        self.destination = f"smtp://{settings.host}:{settings.port} ({settings.security})"
        self.ledger_status = "sent"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open_connections: set[smtplib.SMTP] = set()
        self._context = settings.ssl_context() if settings.security != "none" else None
        self._local_hostname = socket.gethostname() or "localhost"

    # -- connections ---------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        where = f"{s.host}:{s.port}"
        conn: smtplib.SMTP | None = None
        try:
            if s.security == "tls":
                conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=self._context,
                                        local_hostname=self._local_hostname)
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s, local_hostname=self._local_hostname)
            code, reply = conn.ehlo()
            if code != 250:
                code, reply = conn.helo()
                if code != 250:
                    raise classify_reply(code, reply, "HELO")
            if s.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise DeliveryError("the server does not offer STARTTLS (security = \"starttls\")", where=where)
                conn.starttls(context=self._context)
                conn.ehlo()
            if s.username:
                conn.login(s.username, s.password)
        except ssl.SSLCertVerificationError as exc:
            self._quietly_close(conn)
            raise DeliveryError(f"certificate refused: {exc.verify_message or exc}", where=where) from None
        except ssl.SSLError as exc:
            self._quietly_close(conn)
            raise DeliveryError(f"TLS failed: {exc}", where=where) from None
        except smtplib.SMTPAuthenticationError as exc:
            self._quietly_close(conn)
            raise SenderRefused(f"{where}: AUTH: login refused: {exc.smtp_code} {reply_text(exc.smtp_error)}",
                                code=exc.smtp_code) from None
        except smtplib.SMTPNotSupportedError as exc:
            self._quietly_close(conn)
            raise DeliveryError(f"the server does not support {exc}", where=where) from None
        except smtplib.SMTPResponseException as exc:
            self._quietly_close(conn)
            failure = classify_reply(exc.smtp_code, exc.smtp_error, "connect")
            if isinstance(failure, Throttled):
                raise Throttled(f"{where}: {failure.message}", code=exc.smtp_code, closed=True) from None
            if isinstance(failure, TemporaryFailure):
                raise ConnectionFailure(f"{where}: {failure.message}", code=exc.smtp_code) from None
            raise SenderRefused(f"{where}: {failure.message.split(' (the server refuses')[0]}",
                                code=exc.smtp_code) from None
        except DeliveryError:
            self._quietly_close(conn)
            raise
        except (OSError, smtplib.SMTPException) as exc:
            self._quietly_close(conn)
            raise ConnectionFailure(f"{where}: cannot connect: {exc}") from None
        with self._lock:
            self._open_connections.add(conn)
        return conn

    @staticmethod
    def _quietly_close(conn: smtplib.SMTP | None) -> None:
        if conn is None:
            return
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a broken socket may fail in any way
            pass

    def _discard(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                self._open_connections.discard(conn)
            self._quietly_close(conn)

    def _reset(self, conn: smtplib.SMTP) -> None:
        try:
            code, _ = conn.rset()
            if code != 250:
                self._discard()
        except (OSError, smtplib.SMTPException):
            self._discard()

    # -- sending -------------------------------------------------------------------------

    def send(self, sender: str, recipients: Sequence[str], data: bytes) -> str:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                return self._send_on(conn, sender, recipients, data)
            except _NothingSent:
                pass
        self._local.conn = self._connect()
        try:
            return self._send_on(self._local.conn, sender, recipients, data)
        except _NothingSent as exc:
            # A fresh connection dropped before it took anything: a server shedding load.
            raise Throttled(f"connection lost before MAIL FROM: {exc}", closed=True) from None

    def _send_on(self, conn: smtplib.SMTP, sender: str, recipients: Sequence[str], data: bytes) -> str:
        options: list[str] = []
        international = [a for a in (*recipients, sender) if not a.isascii()]
        if international:
            # smtplib would raise SMTPNotSupportedError from mail() before sending anything;
            # refused here, the message fails for good and the connection goes on.
            if not conn.has_extn("smtputf8"):
                raise self._no_smtputf8(international[0])
            options.append("SMTPUTF8")
        if not data.isascii():  # 8bit bodies (a reader's own issue) or SMTPUTF8 headers
            if conn.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")
            else:
                data = seven_bit(data)
        stage = "MAIL FROM"
        try:
            code, reply = conn.mail(sender, options)
            if code != 250:
                raise self._answered(conn, code, reply, stage)
            stage = "RCPT TO"
            refused: list[DeliveryError] = []
            for rcpt in recipients:
                code, reply = conn.rcpt(rcpt)
                if code not in (250, 251):
                    refused.append(classify_reply(code, reply, f"RCPT TO {rcpt}"))
            if len(refused) == len(recipients):
                if any(getattr(f, "code", None) == 421 for f in refused):
                    self._discard()
                else:
                    self._reset(conn)
                raise refused[0]
            stage = "DATA"
            code, reply = _send_data(conn, data)
            if code == -1:  # a garbled reply to a message that went out whole
                raise _ReplyLost(f"unreadable reply {reply_text(reply)!r}")
            if code != 250:
                raise self._answered(conn, code, reply, stage)
            return f"{code} {reply_text(reply)}"
        except smtplib.SMTPResponseException as exc:  # DATA refused before the message (not 354)
            raise self._answered(conn, exc.smtp_code, exc.smtp_error, stage) from None
        except smtplib.SMTPNotSupportedError:  # raised by mail() before a byte is sent
            raise self._no_smtputf8(international[0] if international else sender) from None
        except _ReplyLost as exc:
            self._discard()
            raise UncertainDelivery(f"DATA: the message was sent and the server's reply was lost ({exc}); it may "
                                    f"have been accepted") from None
        except (OSError, smtplib.SMTPException) as exc:
            self._discard()
            if stage == "MAIL FROM":
                raise _NothingSent(str(exc) or type(exc).__name__) from None
            # Before the message's final dot the server cannot have taken it: nothing is lost,
            # and a server hanging up mid-message is shedding load.
            raise Throttled(f"connection lost during {stage}: {exc or type(exc).__name__}", closed=True) from None

    @staticmethod
    def _no_smtputf8(address: str) -> PermanentFailure:
        """The server cannot take this message at all: it has no SMTPUTF8 (RFC 6531), which an
        address with non-ASCII characters needs. Not a bounce: the address may be fine."""
        return PermanentFailure(
            f"the server does not support SMTPUTF8, needed for the internationalised address {address}")

    def _answered(self, conn: smtplib.SMTP, code: int, reply: bytes | str, stage: str) -> DeliveryError:
        if code == 421:
            self._discard()  # the server is closing this connection
        else:
            self._reset(conn)
        return classify_reply(code, reply, stage)

    def close(self) -> None:
        with self._lock:
            conns, self._open_connections = list(self._open_connections), set()
        for conn in conns:
            try:
                conn.quit()
            except Exception:  # noqa: BLE001 - the server may be gone already
                self._quietly_close(conn)


def open_transport(config: Config, env: Mapping[str, str] | None = None) -> OutboxTransport | SmtpPool:
    """The outbox folder without ``[smtp] host``, the SMTP pool with it (password from ``env``,
    default the process environment)."""
    if config.smtp_enabled:
        return SmtpPool(SmtpSettings.from_config(config, env))
    return OutboxTransport(Path(config["delivery.outbox"]).expanduser())
