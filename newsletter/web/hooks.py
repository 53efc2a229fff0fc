"""ESP webhooks: bounces and complaints reported over HTTP by a sending service, verified before
anything changes, then acted on by the same rules as mail read from the bounce mailbox
(``newsletter.bounces.act``).

``POST /hooks/bounces``  generic, signed JSON
    ``X-Newsletter-Signature: t=UNIX_TIME,v1=HEX`` where HEX is HMAC-SHA256 of ``"{t}." + body``
    under the secret in the environment variable named by ``bounces.hook_secret_env``. The time
    must be within 5 minutes. Body: ``{"type": "hard"|"soft"|"complaint", "email": "...",
    "status": "5.1.1", "diagnostic": "...", "reporting_mta": "...", "token": "...",
    "message_id": "<...>"}`` (only ``type`` and ``email`` or ``token`` are required).
``POST /hooks/postmark``  Postmark's bounce and spam-complaint webhooks
    HTTP basic auth with ``user:password`` from the variable named by ``bounces.postmark_auth_env``.
``POST /hooks/ses``  Amazon SES notifications through SNS
    The SNS signature (SignatureVersion 1: SHA1, 2: SHA256, RSA PKCS#1 v1.5) is checked against the
    signing certificate fetched over HTTPS from ``SigningCertURL``, whose host must match
    ``bounces.ses_cert_host`` (default: ``sns.REGION.amazonaws.com``), trusting the system's CAs
    or ``bounces.ses_ca_file``; only the topic ``bounces.ses_topic_arn`` is accepted (unset: the
    hook answers 404); the ``Timestamp`` must be within an hour. Needs the ``cryptography`` package.

A hook whose secret is not set answers 404, as if it did not exist. Forged, stale or malformed
requests answer 4xx and change nothing; a replayed one (same body, Postmark ``ID`` or SNS
``MessageId``) is recognised by the store's record of reports acted on and changes nothing twice.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import ssl
import threading
import time
import urllib.request
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.bounces.act import Outcome, Rules, act_on
from newsletter.bounces.classify import COMPLAINT, HARD, SOFT, Recipient, Report
from newsletter.config import Config
from newsletter.api import Store
from newsletter.tokens import Signer, secret_key

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
GENERIC_WINDOW_S = 300
SNS_WINDOW_S = 3600
_SIGNATURE = re.compile(r"^t=(\d{1,12}),v1=([0-9a-f]{64})$")


class HookRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _report(kind: str, address: str, *, status: str = "", diagnostic: str = "", mta: str = "",
            tokens: tuple[str, ...] = (), message_ids: tuple[str, ...] = (), feedback_type: str = "") -> Report:
    address = address.strip().lower()
    recipients = (Recipient(address=address, kind=kind, status=status, action="failed" if kind == HARD else "",
                            diagnostic=diagnostic[:500]),) if address else ()
    return Report(kind, recipients=recipients, reporting_mta=mta[:200], feedback_type=feedback_type,
                  quoted_tokens=tokens, quoted_message_ids=message_ids,
                  complained_addresses=(address,) if kind == COMPLAINT and address else ())


# --- generic --------------------------------------------------------------------------------


def verify_generic(secret: str, header: str, body: bytes, now: float | None = None) -> None:
    match = _SIGNATURE.match(header.strip())
    if match is None:
        raise HookRefused(401, "missing or malformed X-Newsletter-Signature")
    stamp, presented = int(match.group(1)), match.group(2)
    expected = hmac.new(secret.encode("utf-8"), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, presented):
        raise HookRefused(401, "bad signature")
    if abs((now or time.time()) - stamp) > GENERIC_WINDOW_S:
        raise HookRefused(401, "stale signature (more than 5 minutes off)")


def generic_reports(body: bytes) -> list[Report]:
    data = _json(body)
    kind = str(data.get("type", "")).lower()
    if kind not in (HARD, SOFT, COMPLAINT):
        raise HookRefused(400, "type must be hard, soft or complaint")
    token = str(data.get("token", "") or "")
    message_id = str(data.get("message_id", "") or "")
    address = str(data.get("email", "") or "")
    if not address and not token:
        raise HookRefused(400, "email or token is required")
    return [_report(kind, address, status=str(data.get("status", "")), diagnostic=str(data.get("diagnostic", "")),
                    mta=str(data.get("reporting_mta", "")), tokens=(token.lower(),) if token else (),
                    message_ids=(message_id,) if message_id else ())]


# --- Postmark -------------------------------------------------------------------------------

POSTMARK_KINDS = {"HardBounce": HARD, "BadEmailAddress": HARD, "ManuallyDeactivated": HARD,
                  "SoftBounce": SOFT, "Transient": SOFT, "DnsError": SOFT, "MailboxFull": SOFT,
                  "SpamComplaint": COMPLAINT, "SpamNotification": COMPLAINT}


def verify_basic(expected: str, header: str) -> None:
    if not header.lower().startswith("basic "):
        raise HookRefused(401, "basic authentication required")
    try:
        presented = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise HookRefused(401, "malformed basic authentication") from None
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise HookRefused(401, "wrong user or password")


def postmark_reports(body: bytes) -> tuple[list[Report], str]:
    data = _json(body)
    kind = POSTMARK_KINDS.get(str(data.get("Type", "")))
    if data.get("RecordType") == "SpamComplaint":
        kind = COMPLAINT
    event_id = f"postmark:{data.get('ID', '')}:{data.get('RecordType', '')}"
    if kind is None:
        return [], event_id
    return [_report(kind, str(data.get("Email", "")), diagnostic=str(data.get("Details") or data.get("Description") or ""),
                    mta="postmark", feedback_type="abuse" if kind == COMPLAINT else "")], event_id


# --- Amazon SES through SNS -----------------------------------------------------------------

_SNS_FIELDS = {"Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
               "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                                            "Type"),
               "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                                           "Type")}


class SnsVerifier:
    """Checks SNS message signatures; signing certificates are fetched once per URL."""

    def __init__(self, cert_host: str, ca_file: str = "", topic_arn: str = "") -> None:
        self.cert_host = re.compile(cert_host)
        self.ca_file = ca_file
        self.topic_arn = topic_arn
        self._certs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def string_to_sign(self, message: dict[str, Any]) -> bytes:
        fields = _SNS_FIELDS.get(str(message.get("Type")))
        if fields is None:
            raise HookRefused(400, "unknown SNS message type")
        out = []
        for name in fields:
            if name in message and message[name] is not None:
                out.append(f"{name}\n{message[name]}\n")
            elif name != "Subject":
                raise HookRefused(400, f"SNS message without {name}")
        return "".join(out).encode("utf-8")

    def certificate(self, url: str) -> Any:
        parts = urlsplit(url)
        if parts.scheme != "https" or not self.cert_host.fullmatch(parts.netloc) or not parts.path.endswith(".pem"):
            raise HookRefused(401, "SigningCertURL is not an SNS certificate URL")
        with self._lock:
            cached = self._certs.get(url)
        if cached is not None:
            return cached
        from cryptography import x509

        context = ssl.create_default_context(cafile=self.ca_file or None)
        try:
            with urllib.request.urlopen(url, timeout=10, context=context) as response:  # noqa: S310 - https only
                pem = response.read(64 * 1024)
            cert = x509.load_pem_x509_certificate(pem)
        except (OSError, ValueError) as exc:
            raise HookRefused(401, f"cannot fetch the signing certificate: {exc}") from None
        with self._lock:
            self._certs[url] = cert
        return cert

    def confirm_subscription(self, message: dict[str, Any]) -> None:
        """Visit the SubscribeURL of a verified SubscriptionConfirmation: https, on an SNS host
        (the same pattern as the signing certificate's), ``Action=ConfirmSubscription``;
        anything else is refused without a request."""
        url = str(message.get("SubscribeURL", ""))
        parts = urlsplit(url)
        if (parts.scheme != "https" or not self.cert_host.fullmatch(parts.netloc)
                or "Action=ConfirmSubscription" not in parts.query):
            raise HookRefused(401, "SubscribeURL is not an SNS subscription URL")
        context = ssl.create_default_context(cafile=self.ca_file or None)
        try:
            with urllib.request.urlopen(url, timeout=10, context=context) as response:  # noqa: S310 - https only
                response.read(64 * 1024)
        except OSError as exc:
            raise HookRefused(502, f"cannot confirm the SNS subscription: {exc}") from None

    def verify(self, message: dict[str, Any], now: float | None = None) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        if self.topic_arn and message.get("TopicArn") != self.topic_arn:
            raise HookRefused(403, "not the configured SNS topic")
        version = str(message.get("SignatureVersion", ""))
        algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)
        if algorithm is None:
            raise HookRefused(401, "unknown SignatureVersion")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except binascii.Error:
            raise HookRefused(401, "malformed Signature") from None
        cert = self.certificate(str(message.get("SigningCertURL", "")))
        try:
            cert.public_key().verify(signature, self.string_to_sign(message), padding.PKCS1v15(), algorithm)
        except (InvalidSignature, TypeError, ValueError):
            raise HookRefused(401, "bad SNS signature") from None
        try:
            sent = datetime.fromisoformat(str(message.get("Timestamp", "")).replace("Z", "+00:00"))
        except ValueError:
            raise HookRefused(400, "malformed Timestamp") from None
        if abs((now or time.time()) - sent.astimezone(timezone.utc).timestamp()) > SNS_WINDOW_S:
            raise HookRefused(401, "stale SNS message (more than an hour off)")


def ses_reports(notification: dict[str, Any]) -> list[Report]:
    """SES's bounce or complaint notification (the SNS ``Message``) -> one report per recipient."""
    mail = notification.get("mail") or {}
    headers = {str(h.get("name", "")).lower(): str(h.get("value", "")) for h in mail.get("headers") or ()
               if isinstance(h, dict)}
    tokens = (headers["x-newsletter-token"].strip().lower(),) if headers.get("x-newsletter-token") else ()
    ids = (headers["message-id"].strip(),) if headers.get("message-id") else ()
    kind_name = notification.get("notificationType") or notification.get("eventType")
    if kind_name == "Bounce":
        bounce = notification.get("bounce") or {}
        kind = HARD if bounce.get("bounceType") == "Permanent" else SOFT
        mta = str(bounce.get("reportingMTA", "")).split(";", 1)[-1].strip()
        return [_report(kind, str(r.get("emailAddress", "")), status=str(r.get("status", "")),
                        diagnostic=str(r.get("diagnosticCode", "")), mta=mta, tokens=tokens, message_ids=ids)
                for r in bounce.get("bouncedRecipients") or () if isinstance(r, dict)]
    if kind_name == "Complaint":
        complaint = notification.get("complaint") or {}
        return [_report(COMPLAINT, str(r.get("emailAddress", "")), mta="amazonses.com", tokens=tokens, message_ids=ids,
                        feedback_type=str(complaint.get("complaintFeedbackType", "abuse")))
                for r in complaint.get("complainedRecipients") or () if isinstance(r, dict)]
    return []


# --- the endpoints --------------------------------------------------------------------------


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HookRefused(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise HookRefused(400, "the body is not a JSON object")
    return data


class Hooks:
    def __init__(self, config: Config, store: Store) -> None:
        self.config, self.store = config, store
        self.rules = Rules(soft_limit=config["bounces.soft_limit"], soft_days=config["bounces.soft_days"])
        self._signer: Signer | None = None
        self.sns = SnsVerifier(config["bounces.ses_cert_host"], config["bounces.ses_ca_file"],
                               config["bounces.ses_topic_arn"])

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            self._signer = Signer(secret_key(self.config, self.store))
        return self._signer

    def _act(self, reports: list[Report], event_key: str, source: str) -> list[Outcome]:
        outcomes = []
        signer = self.signer  # before the transaction: the key may be made and kept in its own
        for index, report in enumerate(reports):
            key = hashlib.sha256(f"{event_key}#{index}".encode()).hexdigest()
            with self.store.atomic() as conn:
                outcomes.append(act_on(conn, signer, report, message_key=key, source=source, rules=self.rules))
        return outcomes

    async def _body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            raise HookRefused(413, "body too large")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise HookRefused(413, "body too large")
        return body

    async def _handle(self, request: Request, kind: str) -> Response:
        try:
            body = await self._body(request)
            if kind == "generic":
                secret = os.environ.get(self.config["bounces.hook_secret_env"], "")
                if not secret:
                    return JSONResponse({"error": "not found"}, 404)
                verify_generic(secret, request.headers.get("x-newsletter-signature", ""), body)
                reports, key = generic_reports(body), "hook:" + hashlib.sha256(body).hexdigest()
            elif kind == "postmark":
                expected = os.environ.get(self.config["bounces.postmark_auth_env"], "")
                if not expected:
                    return JSONResponse({"error": "not found"}, 404)
                verify_basic(expected, request.headers.get("authorization", ""))
                reports, key = postmark_reports(body)
            else:
                if not self.config["bounces.ses_topic_arn"]:
                    return JSONResponse({"error": "not found"}, 404)
                message = _json(body)
                try:
                    await run_in_threadpool(self.sns.verify, message)
                except ImportError:
                    raise HookRefused(501, "the SES hook needs the cryptography package: "
                                           "pip install 'newsletter[ses]'") from None
                if message.get("Type") == "SubscriptionConfirmation":
                    # Signed by SNS for our topic: confirm it, so the operator has nothing to click.
                    await run_in_threadpool(self.sns.confirm_subscription, message)
                    log.info("SES hook: subscribed to %s", message.get("TopicArn"))
                    return JSONResponse({"ok": True, "acted": [], "subscribed": True})
                if message.get("Type") != "Notification":
                    log.warning("SES hook: %s for %s", message.get("Type"), message.get("TopicArn"))
                    return JSONResponse({"ok": True, "acted": []})
                try:
                    notification = json.loads(str(message.get("Message", "")))
                except ValueError:
                    raise HookRefused(400, "the SNS Message is not JSON") from None
                reports = ses_reports(notification if isinstance(notification, dict) else {})
                key = f"sns:{message.get('MessageId', '')}"
        except HookRefused as refused:
            log.warning("%s hook refused from %s: %s", kind, request.client.host if request.client else "?", refused)
            return JSONResponse({"error": str(refused)}, refused.status)
        outcomes = await run_in_threadpool(self._act, reports, key, f"hook:{kind}")
        return JSONResponse({"ok": True, "counted": [o.counted_as for o in outcomes],
                             "acted": [a for o in outcomes for a in o.actions]})

    async def generic(self, request: Request) -> Response:
        return await self._handle(request, "generic")

    async def postmark(self, request: Request) -> Response:
        return await self._handle(request, "postmark")

    async def ses(self, request: Request) -> Response:
        return await self._handle(request, "ses")


def hook_routes(config: Config, store: Store) -> list[BaseRoute]:
    hooks = Hooks(config, store)
    return [Route("/hooks/bounces", hooks.generic, methods=["POST"]),
            Route("/hooks/postmark", hooks.postmark, methods=["POST"]),
            Route("/hooks/ses", hooks.ses, methods=["POST"])]
