"""What keeps the public pages safe: security headers on every response, a signed double-submit
CSRF token for the subscribe form, a per-client token bucket, and the loopback test that guards
the operator's preview.

Each piece is small and independent of Starlette's routing so it can be tested on its own.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from datetime import datetime, timezone
from typing import Any, Callable

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# not through the API: the rate limits' token buckets are the web app's own machinery, kept in the
# store so a limit holds across every `serve` process; nothing a user's script would call.
from newsletter.store.buckets import give_back_token, peek_tokens, prune_buckets, take_tokens

# No scripts anywhere; archived issues keep their inline styles and remote thumbnails, so styles
# may be inline and images may come from any https host. Forms may only post back to us.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' https: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    # same-origin, not no-referrer: the tokens in our URLs never leak to other sites, while a
    # browser still sends a real Origin (not "null") with our own form posts.
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)


# The operator's preview shows the issue in two iframes of its own pages: same-origin framing
# is allowed there, and only there.
PREVIEW_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' https: data:; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
)

PREVIEW_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", PREVIEW_CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"SAMEORIGIN"),
)


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response, whatever route or error produced it.

    Pure ASGI (not ``BaseHTTPMiddleware``) so it costs one list append per response and never
    buffers a body. A header the response already has is kept, so an inner layer (the preview)
    can set a variant.
    """

    def __init__(self, app: ASGIApp, headers: tuple[tuple[bytes, bytes], ...] = SECURITY_HEADERS) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in self.headers if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CsrfTokens:
    """Signed double-submit tokens: a random nonce in a cookie, its signature in the form.

    A cross-site page can make the browser send our cookie but can neither read it nor forge
    the signed copy, so a form that arrives with both matching was made by our own page. The
    signature (keyed by the newsletter's secret) also stops a subdomain that can plant cookies
    from picking a nonce whose form value it knows.
    """

    COOKIE = "nl_csrf"
    FIELD = "csrf_token"

    def __init__(self, key: str) -> None:
        self._serializer = URLSafeSerializer(key, salt="csrf-subscribe-form")

    def issue(self, cookie_nonce: str | None) -> tuple[str, str]:
        """(nonce for the cookie, token for the form); reuses a well-formed existing nonce so two
        open tabs keep working."""
        nonce = cookie_nonce if cookie_nonce and 16 <= len(cookie_nonce) <= 64 and cookie_nonce.isascii() else None
        nonce = nonce or secrets.token_urlsafe(24)
        return nonce, self._serializer.dumps(nonce)

    def is_valid(self, cookie_nonce: str | None, form_token: str | None) -> bool:
        if not cookie_nonce or not form_token:
            return False
        try:
            signed_nonce = self._serializer.loads(form_token)
        except BadSignature:
            return False
        return isinstance(signed_nonce, str) and hmac.compare_digest(signed_nonce, cookie_nonce)


class StoreTokenBucket:
    """Token buckets per key (a client, an address, a domain) kept in the store
    (``store/buckets.py``): ``capacity`` requests at once, then ``refill_per_s`` more per second.
    In the store, the limits hold across every ``serve`` process and host on it: a client cannot
    multiply its allowance by the number of processes. Each call is a short transaction: call it from a
    worker thread, not the event loop."""

    PRUNE_EVERY = 200  # takes between two clean-ups of refilled buckets

    def __init__(self, store: Any, prefix: str, capacity: float, refill_per_s: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.store = store
        self.prefix = f"web {prefix}:"
        self.capacity = float(capacity)
        self.refill_per_s = float(refill_per_s)
        self._clock = clock
        self._takes = 0

    def take(self, key: str) -> bool:
        """Spend one token for ``key``; False when the bucket is empty (the request is refused)."""
        now = self._clock()
        with self.store.atomic() as conn:
            granted, _ = take_tokens(conn, self.prefix + key, rate_per_second=self.refill_per_s,
                                     burst=self.capacity, want=1, now=now)
            self._takes += 1
            if self._takes % self.PRUNE_EVERY == 0 and self.refill_per_s > 0:
                prune_buckets(conn, self.prefix, full_after_s=self.capacity / self.refill_per_s, now=now)
        return granted == 1

    def available(self, key: str) -> bool:
        """True when ``take(key)`` would succeed now; spends nothing."""
        with self.store.atomic() as conn:
            return peek_tokens(conn, self.prefix + key, rate_per_second=self.refill_per_s,
                               burst=self.capacity, now=self._clock()) >= 1

    def give_back(self, key: str) -> None:
        """Return a token spent on a request that did nothing (a message that could not be sent)."""
        with self.store.atomic() as conn:
            give_back_token(conn, self.prefix + key, burst=self.capacity)


def client_key(host: str | None) -> str:
    """What a client is counted by: its IPv4 address, or the /64 network of its IPv6 address.

    One IPv6 host is normally given a whole /64 (18 quintillion addresses) and may pick a new one
    for every request, so counting single IPv6 addresses limits nothing. An IPv4-mapped IPv6
    address counts as the IPv4 address it holds."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address), 64), strict=False))
    return str(address)


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison; an empty expected token never matches."""
    return bool(expected) and bool(presented) and hmac.compare_digest(presented.encode(), expected.encode())
