"""TLS and login against a real aiosmtpd server with a throwaway certificate authority made here:
STARTTLS and implicit TLS with certificate checks, the password from the environment, a wrong
certificate refused, and clear text allowed only to a loopback host."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from conftest import free_port
from newsletter.config import load_config
from newsletter.deliver.sender import SendOptions, deliver_issue
from newsletter.deliver.transports import OutboxTransport, SmtpPool, SmtpSettings, open_transport
from newsletter.errors import ConfigError
from newsletter.store.schema import deliveries
from test_deliver_support import RecordingHandler, SmtpServer, build_message, make_certificates, seed

FAST = SendOptions(concurrency=2, rate_per_second=0, retry_delay_s=0.01, max_retry_delay_s=0.05)
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class Logins:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == PASSWORD.encode()
        self.seen.append((auth_data.login.decode(), bool(session.ssl)))
        return AuthResult(success=ok, handled=False)


def starttls_server(certs: dict[str, Path], cert: str = "server_cert", key: str = "server_key"):  # type: ignore[no-untyped-def]
    logins = Logins()
    server = SmtpServer(RecordingHandler(), free_port(),
                        tls_context=server_context(certs[cert], certs[key]), require_starttls=True,
                        authenticator=logins, auth_required=True, auth_require_tls=True).start()
    return server, logins


def write_config(tmp_path: Path, port: int, security: str, ca: Path) -> Path:
    path = tmp_path / "newsletter.toml"
    path.write_text(f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "{security}"\n'
                    f'username = "digest"\nca_file = "{ca}"\ntimeout_s = 5\n', encoding="utf-8")
    return path


def test_starttls_with_a_trusted_certificate_and_login_from_the_environment(store, certs, tmp_path) -> None:
    emails = seed(store, 12)
    server, logins = starttls_server(certs)
    try:
        config = load_config(write_config(tmp_path, server.port, "starttls", certs["ca"]), env={})
        transport = open_transport(config, env={"NEWSLETTER_SMTP_PASSWORD": PASSWORD})
        assert isinstance(transport, SmtpPool)
        report = deliver_issue(store, 1, "2026-W48", build_message, transport, FAST)
    finally:
        server.stop()
    assert (report.sent, report.failed) == (12, 0)
    got = server.handler.recipients()
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}
    # Logged in over TLS, once per connection (two workers).
    assert logins.seen and all(login == "digest" and over_tls for login, over_tls in logins.seen)
    assert len(logins.seen) <= 2


def test_a_certificate_nobody_trusts_is_refused_and_nothing_is_sent(store, certs) -> None:
    seed(store, 4)
    server, logins = starttls_server(certs, cert="rogue_cert", key="rogue_key")
    try:
        transport = SmtpPool(SmtpSettings(host="127.0.0.1", port=server.port, security="starttls",
                                          username="digest", password=PASSWORD, ca_file=str(certs["ca"]),
                                          timeout_s=5))
        report = deliver_issue(store, 1, "2026-W48", build_message, transport, FAST)
    finally:
        server.stop()
    assert (report.sent, report.failed, report.deferred) == (0, 0, 4)
    assert "certificate refused" in report.errors[0] and f"127.0.0.1:{server.port}" in report.errors[0]
    assert server.handler.messages == [] and logins.seen == []  # the password never left
    with store.atomic() as conn:
        assert {r.status for r in conn.execute(select(deliveries))} == {"pending"}


def test_system_trust_alone_refuses_a_private_ca(store, certs) -> None:
    seed(store, 2)
    server, _ = starttls_server(certs)
    try:
        transport = SmtpPool(SmtpSettings(host="127.0.0.1", port=server.port, security="starttls",
                                          username="digest", password=PASSWORD, timeout_s=5))
        report = deliver_issue(store, 1, "2026-W48", build_message, transport, FAST)
    finally:
        server.stop()
    assert report.sent == 0 and "certificate refused" in report.errors[0]


def test_implicit_tls(store, certs) -> None:
    emails = seed(store, 5)
    server = SmtpServer(RecordingHandler(), free_port(),
                        ssl_context=server_context(certs["server_cert"], certs["server_key"])).start()
    try:
        transport = SmtpPool(SmtpSettings(host="127.0.0.1", port=server.port, security="tls",
                                          ca_file=str(certs["ca"]), timeout_s=5))
        report = deliver_issue(store, 1, "2026-W48", build_message, transport, FAST)
    finally:
        server.stop()
    assert report.sent == 5 and sorted(server.handler.recipients()) == sorted(emails)


def test_clear_text_is_refused_for_a_host_that_is_not_loopback(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.toml"
    path.write_text('[smtp]\nhost = "smtp.example.org"\nsecurity = "none"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="only for a loopback host"):
        open_transport(load_config(path, env={}), env={})
    with pytest.raises(ConfigError, match="NEWSLETTER_SMTP_PASSWORD"):
        SmtpSettings(host="smtp.example.org", username="digest").check()
    assert SmtpSettings(host="127.0.0.1", security="none").check() is None
    assert SmtpSettings(host="localhost", security="none").check() is None


def test_without_smtp_the_transport_is_the_outbox(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.toml"
    path.write_text(f'[delivery]\noutbox = "{tmp_path / "out"}"\n', encoding="utf-8")
    transport = open_transport(load_config(path, env={}), env={})
    assert isinstance(transport, OutboxTransport) and transport.destination == str(tmp_path / "out")
