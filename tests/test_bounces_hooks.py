"""ESP webhooks on the real web app (uvicorn on loopback): the generic signed hook, Postmark's
basic-auth hook, and Amazon SES through SNS, whose signing certificate is served over HTTPS by a
loopback server with a certificate from a throwaway CA made here. Forged, stale, replayed or
misaddressed requests change nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import ssl
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from newsletter.bounces.verp import make_token
from newsletter.store.subscribers import get_subscriber
from newsletter.tokens import Signer, secret_key
from newsletter.web.app import create_app
from newsletter.web.server import serve_in_background
from test_bounces import site  # noqa: F401 - a fixture

SECRET = "hook-secret-0123456789"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-bounces"


def _status(store, address: str) -> str:  # type: ignore[no-untyped-def]
    with store.atomic() as conn:
        return get_subscriber(conn, address).status


def signed(body: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    stamp = int(at if at is not None else time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Newsletter-Signature": f"t={stamp},v1={mac}", "Content-Type": "application/json"}


@pytest.fixture
def web(site, monkeypatch):  # type: ignore[no-untyped-def]
    _, config, store = site
    monkeypatch.setenv("NEWSLETTER_HOOK_SECRET", SECRET)
    monkeypatch.setenv("NEWSLETTER_POSTMARK_HOOK_AUTH", "postmark:pm-password")
    with serve_in_background(create_app(config, store)) as server:
        yield server.url, config, store


def test_generic_hook_acts_once_and_refuses_forgeries(web) -> None:  # type: ignore[no-untyped-def]
    url, config, store = web
    body = json.dumps({"type": "hard", "email": "gone@example.net", "status": "5.1.1",
                       "diagnostic": "550 5.1.1 no such user", "reporting_mta": "mx.example.net"}).encode()
    forged = httpx.post(f"{url}/hooks/bounces", content=body, headers=signed(body, "wrong-secret"))
    assert forged.status_code == 401
    stale = httpx.post(f"{url}/hooks/bounces", content=body, headers=signed(body, at=time.time() - 3600))
    assert stale.status_code == 401
    altered = httpx.post(f"{url}/hooks/bounces", content=body.replace(b"gone@", b"ada@"), headers=signed(body))
    assert altered.status_code == 401
    unsigned = httpx.post(f"{url}/hooks/bounces", content=body)
    assert unsigned.status_code == 401
    assert _status(store, "gone@example.net") == "active" and _status(store, "ada@example.org") == "active"
    headers = signed(body)
    ok = httpx.post(f"{url}/hooks/bounces", content=body, headers=headers)
    assert ok.status_code == 200 and ok.json()["acted"] == ["gone@example.net: bounced"]
    assert _status(store, "gone@example.net") == "bounced"
    replay = httpx.post(f"{url}/hooks/bounces", content=body, headers=headers)
    assert replay.status_code == 200 and replay.json() == {"ok": True, "counted": ["already_done"], "acted": []}
    # A token names the reader; a forged token names no one.
    signer = Signer(secret_key(config, store))
    with store.atomic() as conn:
        ada = get_subscriber(conn, "ada@example.org")
    for token, expected in (("b" * 26, "active"), (make_token(signer, 1, ada.id), "complained")):
        body = json.dumps({"type": "complaint", "token": token}).encode()
        assert httpx.post(f"{url}/hooks/bounces", content=body, headers=signed(body)).status_code == 200
        assert _status(store, "ada@example.org") == expected


def test_hooks_without_a_secret_do_not_exist(site, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, config, store = site
    monkeypatch.delenv("NEWSLETTER_HOOK_SECRET", raising=False)
    monkeypatch.delenv("NEWSLETTER_POSTMARK_HOOK_AUTH", raising=False)
    with serve_in_background(create_app(config, store)) as server:
        for path in ("/hooks/bounces", "/hooks/postmark", "/hooks/ses"):
            assert httpx.post(server.url + path, content=b"{}").status_code == 404


def test_postmark_hook_needs_its_basic_auth(web) -> None:  # type: ignore[no-untyped-def]
    url, _, store = web
    body = json.dumps({"RecordType": "SpamComplaint", "Type": "SpamComplaint", "ID": 42,
                       "Email": "annoyed@example-isp.com"}).encode()
    wrong = httpx.post(f"{url}/hooks/postmark", content=body, auth=("postmark", "guess"))
    assert wrong.status_code == 401 and _status(store, "annoyed@example-isp.com") == "active"
    ok = httpx.post(f"{url}/hooks/postmark", content=body, auth=("postmark", "pm-password"))
    assert ok.status_code == 200 and _status(store, "annoyed@example-isp.com") == "complained"
    soft = json.dumps({"RecordType": "Bounce", "Type": "SoftBounce", "ID": 43, "Email": "full@example.org",
                       "Details": "mailbox full"}).encode()
    assert httpx.post(f"{url}/hooks/postmark", content=soft, auth=("postmark", "pm-password")).json()["counted"] == ["soft"]
    assert _status(store, "full@example.org") == "active"


# --- Amazon SES through SNS -----------------------------------------------------------------


def _key():  # type: ignore[no-untyped-def]
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cert(subject: str, key, issuer_name: str, issuer_key, *, ca: bool = False, ip: str | None = None):  # type: ignore[no-untyped-def]
    now = datetime.now(timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        import ipaddress

        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert) -> bytes:  # type: ignore[no-untyped-def]
    return cert.public_bytes(serialization.Encoding.PEM)


SNS_VISITS: list[str] = []  # what the last SNS server was asked for


@pytest.fixture
def sns(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A throwaway CA, an HTTPS server on loopback with its certificate, serving an SNS-style
    signing certificate at /SimpleNotificationService-test.pem; yields (cert URL, signing key, CA file)."""
    ca_key = _key()
    ca = _cert("Throwaway Test CA", ca_key, "Throwaway Test CA", ca_key, ca=True)
    server_key = _key()
    server_cert = _cert("127.0.0.1", server_key, "Throwaway Test CA", ca_key, ip="127.0.0.1")
    signing_key = _key()
    signing_cert = _cert("sns.amazonaws.com", signing_key, "Throwaway Test CA", ca_key)
    ca_file, chain, key_file = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca_file.write_bytes(_pem(ca))
    chain.write_bytes(_pem(server_cert))
    key_file.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    served = _pem(signing_cert)

    SNS_VISITS.clear()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            SNS_VISITS.append(self.path)
            if self.path.startswith("/?Action=ConfirmSubscription"):
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            elif self.path == "/SimpleNotificationService-test.pem":
                self.send_response(200)
                self.send_header("Content-Length", str(len(served)))
                self.end_headers()
                self.wfile.write(served)
            else:
                self.send_error(404)

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key_file)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}/SimpleNotificationService-test.pem", signing_key, ca_file
    httpd.shutdown()
    httpd.server_close()


def sns_message(notification: dict, cert_url: str, key, *, message_id: str = "m-1", topic: str = TOPIC) -> dict:  # type: ignore[no-untyped-def]
    message = {"Type": "Notification", "MessageId": message_id, "TopicArn": topic,
               "Message": json.dumps(notification), "Timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
               "SignatureVersion": "2", "SigningCertURL": cert_url}
    text = "".join(f"{name}\n{message[name]}\n" for name in ("Message", "MessageId", "Timestamp", "TopicArn", "Type"))
    message["Signature"] = base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return message


def test_ses_notifications_are_verified_against_the_signing_certificate(site, sns) -> None:  # type: ignore[no-untyped-def]
    _, config, store = site
    cert_url, signing_key, ca_file = sns
    config = config.with_overrides({"bounces.ses_topic_arn": TOPIC, "bounces.ses_cert_host": r"127\.0\.0\.1:\d+",
                                    "bounces.ses_ca_file": str(ca_file)})
    bounce = {"notificationType": "Bounce",
              "bounce": {"bounceType": "Permanent", "reportingMTA": "dns; a48-30.smtp-out.amazonses.com",
                         "bouncedRecipients": [{"emailAddress": "retired@example.edu", "status": "5.1.1",
                                                "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
              "mail": {"messageId": "0100018b-ses", "headers": []}}
    with serve_in_background(create_app(config, store)) as server:
        hook = f"{server.url}/hooks/ses"
        message = sns_message(bounce, cert_url, signing_key)
        # Forged: the message changed after signing; signed by another key; a certificate URL
        # elsewhere; another topic. None of them changes anything.
        tampered = {**message, "Message": message["Message"].replace("retired@", "ada@")}
        assert httpx.post(hook, json=tampered).status_code == 401
        assert httpx.post(hook, json=sns_message(bounce, cert_url, _key(), message_id="m-2")).status_code == 401
        elsewhere = sns_message(bounce, "https://sns.evil.example/SimpleNotificationService-x.pem", signing_key)
        assert httpx.post(hook, json=elsewhere).status_code == 401
        other_topic = sns_message(bounce, cert_url, signing_key, topic="arn:aws:sns:eu-west-1:1:other")
        assert httpx.post(hook, json=other_topic).status_code == 403
        assert _status(store, "retired@example.edu") == "active" and _status(store, "ada@example.org") == "active"
        ok = httpx.post(hook, json=message)
        assert ok.status_code == 200, ok.text
        assert ok.json()["acted"] == ["retired@example.edu: bounced"]
        assert _status(store, "retired@example.edu") == "bounced"
        replay = httpx.post(hook, json=message)
        assert replay.json()["counted"] == ["already_done"]
        complaint = {"notificationType": "Complaint", "complaint": {"complaintFeedbackType": "abuse",
                     "complainedRecipients": [{"emailAddress": "annoyed@example-isp.com"}]}, "mail": {}}
        assert httpx.post(hook, json=sns_message(complaint, cert_url, signing_key, message_id="m-3")).status_code == 200
        assert _status(store, "annoyed@example-isp.com") == "complained"


def subscription_confirmation(cert_url: str, key, subscribe_url: str) -> dict:  # type: ignore[no-untyped-def]
    message = {"Type": "SubscriptionConfirmation", "MessageId": "c-1", "TopicArn": TOPIC, "Token": "tok",
               "Message": "You have chosen to subscribe to the topic.", "SubscribeURL": subscribe_url,
               "Timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
               "SignatureVersion": "2", "SigningCertURL": cert_url}
    text = "".join(f"{name}\n{message[name]}\n" for name in
                   ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"))
    message["Signature"] = base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return message


def test_a_signed_sns_subscription_confirmation_is_confirmed(site, sns) -> None:  # type: ignore[no-untyped-def]
    """SNS asks the endpoint to confirm its subscription: a signed request for our topic is
    confirmed by visiting its SubscribeURL; one whose URL is not an SNS host is refused unvisited."""
    _, config, store = site
    cert_url, signing_key, ca_file = sns
    config = config.with_overrides({"bounces.ses_topic_arn": TOPIC, "bounces.ses_cert_host": r"127\.0\.0\.1:\d+",
                                    "bounces.ses_ca_file": str(ca_file)})
    base = cert_url.rsplit("/", 1)[0]
    with serve_in_background(create_app(config, store)) as server:
        hook = f"{server.url}/hooks/ses"
        elsewhere = subscription_confirmation(cert_url, signing_key,
                                              "https://sns.evil.example/?Action=ConfirmSubscription&Token=tok")
        assert httpx.post(hook, json=elsewhere).status_code == 401
        assert not any(v.startswith("/?Action") for v in SNS_VISITS)
        good = subscription_confirmation(cert_url, signing_key, f"{base}/?Action=ConfirmSubscription&Token=tok")
        answer = httpx.post(hook, json=good)
        assert answer.status_code == 200 and answer.json()["subscribed"] is True, answer.text
    assert "/?Action=ConfirmSubscription&Token=tok" in SNS_VISITS
