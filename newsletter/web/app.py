"""The web app: ``create_app(config, store)`` returns a Starlette application.

Routes (all pages are Jinja2 templates with autoescape; every response carries the security
headers of ``newsletter.web.security``):

    GET  /                     subscribe form and the latest sent issue
    POST /subscribe            double opt-in request: same answer whatever the address's state
    GET  /confirm/TOKEN        the link in the confirmation message: a page with one button; changes nothing
    POST /confirm/TOKEN        that button (CSRF-protected like the subscribe form): activates
    GET  /unsubscribe/TOKEN    what will happen, and a button; changes nothing
    POST /unsubscribe/TOKEN    the button or RFC 8058 one-click: unsubscribes, 200 (202 when the
                               store was busy and the request was spooled), no cookie
    GET  /preferences/TOKEN    the reader's page: address, name, status, what they follow, their
                               ratings (each with a take-back button), unsubscribe
    POST /preferences/TOKEN    its form: name and what they follow (CSRF-protected like the subscribe form)
    GET  /rate/TOKEN/up|down   "more / less like this" from a paper card: records the rating (the one
                               GET that changes something: see newsletter.web.ratings), then a page
                               with Undo; HEAD and GET /rate/TOKEN/undo only show it
    POST /rate/TOKEN/up|down|undo   the buttons of those pages and of the preferences page (CSRF)
    GET  /archive              sent issues
    GET  /archive/KEY          one sent issue, without personal data
    GET  /feed.xml             Atom feed of the newsletter
         /preview/...          the operator's preview: loopback, or the preview token

No GET or HEAD changes anything (mail providers' link scanners open every link), except the rating
links' GET, which is one click from the email by design and guarded against scanners
(``newsletter.web.ratings``). GET pages read through ``newsletter.store.access.ReadOnlyStore``, so they never wait for the store's write
lock. Redirects (a path with or without its trailing slash) point at ``newsletter.base_url``
(or are relative), never at the request's Host header.

The handlers only translate HTTP to calls of ``newsletter.web.subscriptions`` and
``newsletter.web.archive``, ``newsletter.web.preferences`` and ``newsletter.web.ratings`` and back;
the rules live there, and they reach the store through ``newsletter.api``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import unquote_to_bytes, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, Headers
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send
from sqlalchemy.exc import OperationalError

from newsletter.config import Config
from newsletter.net import is_loopback
from newsletter.errors import ConfigError, DeliveryError, NewsletterError, SubscriberError
from newsletter.api import ProfileError, Store
from newsletter.tokens import Signer, secret_key
from newsletter.web import archive
from newsletter.web.pages import Pages
from newsletter.web.preview import preview_routes
from newsletter.web.preferences import (PROFILE_FIELDS, PreferencesOutcome, PreferencesView, preferences_for_token,
                                        save_by_token)
from newsletter.web.ratings import DIRECTIONS, RatingOutcome, RatingView, rate_by_token, view_by_token
from newsletter.web.security import (
    PREVIEW_SECURITY_HEADERS,
    CsrfTokens,
    SecurityHeadersMiddleware,
    StoreTokenBucket,
    client_key,
    token_matches,
)
# not through the API: the web's own ways into the store (reads that never wait for the write lock,
# an unsubscribe that waits only a little), which the API functions then take as their store.
from newsletter.store.access import QuickWriteStore, ReadOnlyStore
from newsletter.web.subscriptions import (
    CONFIRM_MAX_AGE_S,
    ConfirmOutcome,
    UnsubscribeOutcome,
    address_for_unsubscribe,
    form_address,
    form_name,
    confirm_page,
    confirm_subscription,
    send_welcome,
    request_subscription,
    unsubscribe_by_token,
)

log = logging.getLogger("newsletter.web")

MAX_FORM_BYTES = 16 * 1024
# The preferences form holds a reader's liked papers (up to 500 ids, pasted) and free text.
MAX_PREFERENCES_BYTES = 64 * 1024
MULTI_LINE_FIELDS = ("interests", "authors", "mutes", "likes")  # the preferences form's textareas
# What one client may change per burst, then per second: profile saves and ratings (a reader
# rating a whole issue's cards in a minute stays far below; a loop writing the store does not).
WRITES_BURST = 100
WRITES_PER_S = 0.5
MAX_FORM_FIELDS = 10
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
NOT_UTF8 = ("The form could not be read: its text was not UTF-8, so nothing was changed. "
            "Please send it again from this page.")
# The order methods are listed in an Allow header (RFC 9110, 15.5.6).
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
NO_STORE = {"Cache-Control": "no-store"}

Endpoint = Callable[[Request], Awaitable[Response]]


class FormProblem(Exception):
    """A subscribe form that cannot be used: shown back to the person, in words."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class NotUtf8Form(Exception):
    """A form whose text (raw bytes or percent-escapes) is not UTF-8: refused, never guessed at."""


class WebApp:
    """The state the routes share: config, store, signer, templates, CSRF and rate limits."""

    def __init__(self, config: Config, store: Store, *, subscribe_burst: float, subscribe_refill_per_s: float,
                 address_burst: float, address_refill_per_s: float, confirm_max_age_s: int) -> None:
        self.config = config
        self.store = store
        key = secret_key(config, store)
        self.signer = Signer(key)
        self.csrf = CsrfTokens(key)
        self.pages = Pages(config)
        # GET pages read without waiting for the write lock; an unsubscribe waits only a little.
        self.reads = ReadOnlyStore(store)
        self.unsubscribe_writes = QuickWriteStore(store, config["web.unsubscribe_wait_s"])
        # Per client (IPv4 address or IPv6 /64).
        # Every limit is kept in the store, so it holds across all `serve` processes and hosts.
        self.ip_limit = StoreTokenBucket(store, "client", subscribe_burst, subscribe_refill_per_s)
        # Per target address, per domain and in all, so nobody can make us mail-bomb one mailbox,
        # one organisation or the world from many networks.
        self.address_limit = StoreTokenBucket(store, "address", address_burst, address_refill_per_s)
        per_domain = config["web.confirmations_per_domain_per_hour"]
        self.domain_limit = StoreTokenBucket(store, "domain", per_domain, per_domain / 3600)
        in_all = config["web.confirmations_per_hour"]
        self.total_limit = StoreTokenBucket(store, "all", in_all, in_all / 3600)
        self.write_limit = StoreTokenBucket(store, "writes", WRITES_BURST, WRITES_PER_S)
        self.confirm_max_age_s = confirm_max_age_s
        self.routes: list[BaseRoute] = []  # the app's own, set by create_app (for slash redirects)
        self._spool_lock = threading.Lock()
        self._spool_thread: threading.Thread | None = None

    # -- helpers -------------------------------------------------------------------------------

    def base_url(self, request: Request) -> str:
        """Where links point: the configured public URL, else how we were reached."""
        return (self.config["newsletter.base_url"] or str(request.base_url)).rstrip("/")

    def mail_base_url(self, request: Request) -> str:
        """Where links *in messages* point. Without ``newsletter.base_url`` the Host header would
        decide, and anyone can send any Host: a confirmation mailed to a stranger must never
        point at the sender's site. So the Host counts only when it names this machine."""
        if self.config["newsletter.base_url"]:
            return self.config["newsletter.base_url"].rstrip("/")
        host = (request.url.hostname or "").strip("[]").lower()
        if host == "localhost" or is_loopback(host):
            return str(request.base_url).rstrip("/")
        raise ConfigError("newsletter.base_url is not set, so no link can be mailed to a request "
                          f"that arrived for {host or 'an unnamed host'}")

    def notice(self, heading: str, message: str, status_code: int = 200, *, is_error: bool = False,
               show_home: bool = True) -> HTMLResponse:
        return self.pages.render("notice.html", status_code, headers=NO_STORE, heading=heading,
                                 message=message, is_error=is_error, show_home=show_home)

    def form_page(self, request: Request, *, error: str = "", email: str = "", name: str = "",
                  status_code: int = 200) -> HTMLResponse:
        """The subscribe page, with a fresh CSRF pair (cookie + hidden field)."""
        nonce, form_token = self.csrf.issue(request.cookies.get(CsrfTokens.COOKIE))
        latest = archive.latest_sent_issue(self.reads)
        response = self.pages.render("index.html", status_code, headers=NO_STORE, error=_printable(error),
                                     email=_printable(email), name=_printable(name), csrf_token=form_token,
                                     latest=latest)
        self.set_csrf_cookie(request, response, nonce)
        return response

    def set_csrf_cookie(self, request: Request, response: Response, nonce: str) -> None:
        secure = self.base_url(request).startswith("https://") or request.url.scheme == "https"
        response.set_cookie(CsrfTokens.COOKIE, nonce, httponly=True, samesite="strict",
                            secure=secure, path="/")

    def preferences_form(self, request: Request, token: str, view: PreferencesView, *, error: str = "",
                         typed: dict[str, str] | None = None, saved: bool = False,
                         status_code: int = 200) -> HTMLResponse:
        """The reader's page, with a fresh CSRF pair for its forms. ``typed``: what the reader sent
        (shown back in place of the stored values when the form is refused)."""
        nonce, form_token = self.csrf.issue(request.cookies.get(CsrfTokens.COOKIE))
        subscriber = view.subscriber
        assert subscriber is not None
        values = {"name": subscriber.name, **view.form_values()}
        values.update({key: _printable(value, lines=key in MULTI_LINE_FIELDS)
                       for key, value in (typed or {}).items() if key in values})
        # A refused profile entry reads "field: what is wrong": that field is marked for the reader.
        error_field = error.partition(": ")[2].partition(":")[0] if error else ""
        response = self.pages.render(
            "preferences.html", status_code, headers=NO_STORE, token=token, subscriber=subscriber,
            status_words=view.status_words, can_unsubscribe=view.can_unsubscribe,
            unsubscribe_token=view.unsubscribe_token, csrf_token=form_token, error=_printable(error),
            error_field=error_field if error_field in PROFILE_FIELDS else "", values=values,
            profile=view.profile, ratings=view.ratings, ratings_left_out=view.ratings_left_out, saved=saved)
        self.set_csrf_cookie(request, response, nonce)
        return response

    def rating_page(self, request: Request, token: str, view: RatingView, *, error: str = "",
                    status_code: int = 200) -> HTMLResponse:
        """The page a rating link (or a rating button) answers with: what was recorded, and the
        buttons to undo or rate again, with a fresh CSRF pair."""
        if view.outcome is RatingOutcome.INVALID:
            return self.notice("This link is not valid",
                               "The rating link is incomplete or was altered, so nothing was recorded. Use the "
                               "links in the latest issue.", 400, is_error=True)
        if view.outcome is RatingOutcome.NOT_ON_LIST:
            return self.notice("Thank you, but this was not kept",
                               f"This address no longer receives {self.config['newsletter.name']}, so ratings "
                               "are not recorded for it. To receive it again, subscribe on the home page.", 410)
        nonce, form_token = self.csrf.issue(request.cookies.get(CsrfTokens.COOKIE))
        response = self.pages.render("rating.html", status_code, headers=NO_STORE, token=token, view=view,
                                     outcome=view.outcome.value, csrf_token=form_token, error=error)
        self.set_csrf_cookie(request, response, nonce)
        return response

    def took_a_write(self, request: Request) -> bool:
        """Spend one of the client's writes (profile saves, ratings); False when none is left."""
        return self.write_limit.take(client_key(request.client.host if request.client else None))

    def too_many_writes(self) -> HTMLResponse:
        response = self.notice("Please slow down", "Too many changes from your network just now; nothing was "
                               "changed. Please wait a minute and try again.", 429, is_error=True)
        response.headers["Retry-After"] = "60"
        return response

    def origin_allowed(self, request: Request) -> bool:
        """A browser's Origin (when it sends one) must be ours: the public URL or the host asked.

        ``null`` (privacy settings, some redirects) proves nothing either way; the signed
        double-submit token then decides alone.
        """
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            return True
        own = {f"{request.url.scheme}://{request.headers.get('host', '')}".lower()}
        if self.config["newsletter.base_url"]:
            parts = urlsplit(self.config["newsletter.base_url"])
            own.add(f"{parts.scheme}://{parts.netloc}".lower())
        return origin.lower() in own

    # -- routes --------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return await run_in_threadpool(self.form_page, request)

    async def subscribe(self, request: Request) -> Response:
        try:
            form = await read_small_form(request)
        except FormProblem as problem:
            return await run_in_threadpool(self.form_page, request, error=problem.message,
                                           status_code=problem.status_code)
        email, name, token = (_text_field(form, field) for field in ("email", "name", CsrfTokens.FIELD))
        if email is None or name is None or token is None:
            return await run_in_threadpool(self.form_page, request, status_code=400,
                                           error="The form could not be read: a field was sent as a file.")
        echo = {"email": email[:300], "name": name[:300]}
        if not self.origin_allowed(request) or not self.csrf.is_valid(request.cookies.get(CsrfTokens.COOKIE), token):
            return await run_in_threadpool(
                self.form_page, request, status_code=403, **echo,
                error="This form has expired or was sent from another site. Please press Subscribe again.")
        client = client_key(request.client.host if request.client else None)
        if not await run_in_threadpool(self.ip_limit.take, client):
            response = await run_in_threadpool(
                self.form_page, request, status_code=429, **echo,
                error="Too many subscribe requests from your network. Please wait a few minutes and try again.")
            response.headers["Retry-After"] = "60"
            return response
        try:
            address = form_address(email)
        except SubscriberError as exc:
            return await run_in_threadpool(self.form_page, request, status_code=400, **echo,
                                           error=f"Please check the email address: {exc}")
        try:
            form_name(name)
        except SubscriberError as exc:
            return await run_in_threadpool(self.form_page, request, status_code=400, **echo,
                                           error=f"Please check the name: {exc}.")
        limits = await run_in_threadpool(self.confirmation_limits, address)
        if limits and not await run_in_threadpool(lambda: all(bucket.available(key) for bucket, key in limits[1:])):
            response = await run_in_threadpool(
                self.form_page, request, status_code=429, **echo,
                error="We are sending too many confirmation messages just now. Please try again in an hour.")
            response.headers["Retry-After"] = "3600"
            return response
        if limits and await run_in_threadpool(lambda: all(bucket.take(key) for bucket, key in limits)):
            try:
                await run_in_threadpool(request_subscription, self.store, self.config, self.signer,
                                        address, name, base_url=self.mail_base_url(request))
            except SubscriberError as exc:
                await run_in_threadpool(self.give_back, limits)
                return await run_in_threadpool(self.form_page, request, status_code=400, **echo,
                                               error=f"Please check the address: {exc}")
            except (DeliveryError, ConfigError) as exc:
                await run_in_threadpool(self.give_back, limits)
                log.error("confirmation not sent: %s", exc)
                return self.notice("Please try again later",
                                   "We could not send the confirmation message just now. Nothing was kept: "
                                   "please try again in a few minutes.", 503, is_error=True)
        # The same words whatever the address's state, and whether or not a message went out.
        return self.notice("Check your inbox",
                           f"If {address} can receive {self.config['newsletter.name']}, a message with a "
                           "confirmation link is on its way. Open the link to start your subscription.")

    def confirmation_limits(self, address: str) -> list[tuple[StoreTokenBucket, str]]:
        """The buckets a confirmation to ``address`` spends from: the address's own first (when it
        is empty the request is answered as usual and nothing is sent, so the page tells nobody
        anything), then its domain's and the global one (when one of those is empty, 429).
        Empty only when the address's own bucket is."""
        key = address.lower()
        if not self.address_limit.available(key):
            return []
        return [(self.address_limit, key), (self.domain_limit, key.rpartition("@")[2]), (self.total_limit, "")]

    @staticmethod
    def give_back(limits: list[tuple[StoreTokenBucket, str]]) -> None:
        """A confirmation that was not sent costs nobody their allowance."""
        for bucket, key in limits:
            bucket.give_back(key)

    async def confirm_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        outcome, email = await run_in_threadpool(confirm_page, self.reads, self.signer, token,
                                                 max_age_s=self.confirm_max_age_s)
        if outcome is not ConfirmOutcome.CONFIRMED:
            return self.confirm_outcome(outcome)
        return await run_in_threadpool(self.confirm_form, request, token, email or "")

    def confirm_form(self, request: Request, token: str, email: str, *, error: str = "",
                     status_code: int = 200) -> HTMLResponse:
        """The page a confirmation link opens: one button, with a fresh CSRF pair."""
        nonce, form_token = self.csrf.issue(request.cookies.get(CsrfTokens.COOKIE))
        response = self.pages.render("confirm.html", status_code, headers=NO_STORE, token=token, email=email,
                                     csrf_token=form_token, error=error)
        self.set_csrf_cookie(request, response, nonce)
        return response

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        # The token first: a forged link learns nothing, whatever else the request holds.
        outcome, email = await run_in_threadpool(confirm_page, self.reads, self.signer, token,
                                                 max_age_s=self.confirm_max_age_s)
        if outcome is not ConfirmOutcome.CONFIRMED:
            return self.confirm_outcome(outcome)
        try:
            form = await read_small_form(request)
        except FormProblem as problem:
            return await run_in_threadpool(self.confirm_form, request, token, email or "", error=problem.message,
                                           status_code=problem.status_code)
        csrf_token = _text_field(form, CsrfTokens.FIELD)
        if not self.origin_allowed(request) or not self.csrf.is_valid(request.cookies.get(CsrfTokens.COOKIE),
                                                                      csrf_token):
            return await run_in_threadpool(
                self.confirm_form, request, token, email or "", status_code=403,
                error="This form has expired or was sent from another site. Nothing was changed; "
                      "please press the button again.")
        outcome = await run_in_threadpool(confirm_subscription, self.store, self.signer, token,
                                          max_age_s=self.confirm_max_age_s)
        if outcome is ConfirmOutcome.CONFIRMED and email:
            try:
                await run_in_threadpool(send_welcome, self.reads, self.config, self.signer, email,
                                        base_url=self.mail_base_url(request))
            except NewsletterError as exc:  # the subscription stands; only the greeting is lost
                log.warning("welcome message to %s not sent: %s", email, exc)
        return self.confirm_outcome(outcome)

    def confirm_outcome(self, outcome: ConfirmOutcome) -> HTMLResponse:
        name = self.config["newsletter.name"]
        if outcome is ConfirmOutcome.CONFIRMED:
            return self.notice("You are subscribed", f"Thank you: {name} will arrive with its next issue.")
        if outcome is ConfirmOutcome.ALREADY_ACTIVE:
            return self.notice("You are subscribed", f"This address already receives {name}.")
        if outcome is ConfirmOutcome.EXPIRED:
            return self.notice("This link has expired",
                               "Confirmation links work for a few days only. Please subscribe again to get a new one.",
                               410, is_error=True)
        if outcome is ConfirmOutcome.STALE:
            return self.notice("This link is no longer valid",
                               "This address unsubscribed after the link was sent. To subscribe again, "
                               "ask for a new link on the subscribe page.", 410, is_error=True)
        return self.notice("This link is not valid",
                           "The confirmation link is incomplete or was altered. Copy the whole link from "
                           "the message, or subscribe again.", 400, is_error=True)

    async def unsubscribe_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        outcome, email = await run_in_threadpool(address_for_unsubscribe, self.reads, self.signer, token,
                                                 spool=self.unsubscribe_writes.unsubscribe_spool)
        if outcome is UnsubscribeOutcome.INVALID:
            return self._invalid_unsubscribe()
        if outcome is UnsubscribeOutcome.UNKNOWN:
            return self._unknown_unsubscribe()
        return self.pages.render("unsubscribe.html", headers=NO_STORE, token=token, email=email,
                                 already=outcome is UnsubscribeOutcome.ALREADY)

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            how = await _unsubscribe_how(request)
        except NotUtf8Form:
            return self.notice("The form could not be read",
                               "The request's text was not UTF-8, so nothing was changed.", 400, is_error=True,
                               show_home=False)
        outcome = await run_in_threadpool(unsubscribe_by_token, self.unsubscribe_writes, self.signer, token,
                                          how=how, reads=self.reads)
        if outcome is UnsubscribeOutcome.INVALID:
            return self._invalid_unsubscribe()
        if outcome is UnsubscribeOutcome.UNKNOWN:
            return self._unknown_unsubscribe()
        if outcome is UnsubscribeOutcome.SPOOLED:
            self.apply_spool_soon()
        # 202 when spooled: recorded for good, applied to the store before anything is sent again.
        return self.notice("You are unsubscribed",
                           f"Nothing more from {self.config['newsletter.name']} will be sent to this address.",
                           202 if outcome is UnsubscribeOutcome.SPOOLED else 200, show_home=False)

    def apply_spool_soon(self) -> None:
        """Apply spooled unsubscribes as soon as the store's lock is free, rather than waiting for
        the next writer: one background thread at a time, retrying while the store stays busy."""
        with self._spool_lock:
            if self._spool_thread is not None and self._spool_thread.is_alive():
                return
            self._spool_thread = threading.Thread(target=self._apply_spool, name="unsubscribe-spool", daemon=True)
            self._spool_thread.start()

    def _apply_spool(self, retry_s: float = 1.0) -> None:
        while True:
            try:
                with self.store.atomic():
                    return  # every transaction applies the spool first (newsletter.store.spool)
            except OperationalError:
                time.sleep(retry_s)  # still busy after the store's own busy timeout
            except Exception:  # noqa: BLE001 - a thread with nobody to report to: log it
                log.exception("spooled unsubscribes not applied; the next writer will apply them")
                return

    async def _preferences_view(self, token: str) -> tuple[Any, Response | None]:
        """The subscription a preferences token opens, or the page answering a forged token or
        a removed address (then nothing else of the request is looked at)."""
        view = await run_in_threadpool(preferences_for_token, self.reads, self.signer, token)
        if view.outcome is PreferencesOutcome.INVALID:
            return view, self._invalid_preferences()
        if view.outcome is PreferencesOutcome.UNKNOWN:
            return view, self._unknown_unsubscribe()
        return view, None

    async def preferences_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        view, refused = await self._preferences_view(token)
        return refused or await run_in_threadpool(self.preferences_form, request, token, view)

    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        # The token first: a forged link learns nothing, whatever else the request holds.
        view, refused = await self._preferences_view(token)
        if refused is not None:
            return refused
        try:
            form = await read_small_form(request, MAX_PREFERENCES_BYTES)
        except FormProblem as problem:
            return await run_in_threadpool(self.preferences_form, request, token, view, error=problem.message,
                                           status_code=problem.status_code)
        sent = {key: _text_field(form, key) for key in ("name", CsrfTokens.FIELD, *PROFILE_FIELDS) if key in form}
        if any(value is None for value in sent.values()):
            return await run_in_threadpool(self.preferences_form, request, token, view, status_code=400,
                                           error="The form could not be read: a field was sent as a file.")
        typed: dict[str, str] = {key: value for key, value in sent.items() if value is not None}
        csrf_token = typed.pop(CsrfTokens.FIELD, None)
        if not self.origin_allowed(request) or not self.csrf.is_valid(request.cookies.get(CsrfTokens.COOKIE),
                                                                      csrf_token):
            return await run_in_threadpool(
                self.preferences_form, request, token, view, typed=typed, status_code=403,
                error="This form has expired or was sent from another site. Nothing was changed; "
                      "please press Save again.")
        if not await run_in_threadpool(self.took_a_write, request):
            return self.too_many_writes()
        name = typed.get("name")
        try:
            saved = await run_in_threadpool(save_by_token, self.store, self.signer, token, name,
                                            {key: typed[key] for key in PROFILE_FIELDS if key in typed})
        except ProfileError as exc:
            return await run_in_threadpool(self.preferences_form, request, token, view, typed=typed,
                                           status_code=400, error=f"Please check what you follow: {exc}.")
        except SubscriberError as exc:
            return await run_in_threadpool(self.preferences_form, request, token, view, typed=typed,
                                           status_code=400, error=f"Please check the name: {exc}.")
        if saved.outcome is PreferencesOutcome.UNKNOWN:
            return self._unknown_unsubscribe()
        return await run_in_threadpool(self.preferences_form, request, token, saved, saved=True)

    async def rating_link(self, request: Request) -> Response:
        """A GET of a rating link records it (one click from the email); HEAD, and a GET of the
        undo link, only show where the rating stands."""
        token, direction = request.path_params["token"], request.path_params["direction"]
        if direction not in DIRECTIONS:
            return self.notice("Not found", "There is no page at this address.", 404, is_error=True)
        if request.method == "HEAD" or direction == "undo":
            view = await run_in_threadpool(view_by_token, self.reads, self.signer, token)
            return await run_in_threadpool(self.rating_page, request, token, view)
        if self.signer.verify_rating(token) is None:  # a forged link spends nobody's allowance
            return await run_in_threadpool(self.rating_page, request, token, RatingView(RatingOutcome.INVALID))
        if not await run_in_threadpool(self.took_a_write, request):
            return self.too_many_writes()
        view = await run_in_threadpool(rate_by_token, self.store, self.signer, token, direction, from_link=True)
        return await run_in_threadpool(self.rating_page, request, token, view)

    async def rating_button(self, request: Request) -> Response:
        """The Undo / rate-again buttons of the rating page and the take-back buttons of the
        preferences page: a form with the CSRF pair, like every other."""
        token, direction = request.path_params["token"], request.path_params["direction"]
        if direction not in DIRECTIONS:
            return self.notice("Not found", "There is no page at this address.", 404, is_error=True)
        # The token first: a forged link learns nothing, whatever else the request holds.
        view = await run_in_threadpool(view_by_token, self.reads, self.signer, token)
        if view.outcome is not RatingOutcome.SHOWN:
            return await run_in_threadpool(self.rating_page, request, token, view)
        try:
            form = await read_small_form(request)
        except FormProblem as problem:
            return await run_in_threadpool(self.rating_page, request, token, view, error=problem.message,
                                           status_code=problem.status_code)
        if not self.origin_allowed(request) or not self.csrf.is_valid(request.cookies.get(CsrfTokens.COOKIE),
                                                                      _text_field(form, CsrfTokens.FIELD)):
            return await run_in_threadpool(
                self.rating_page, request, token, view, status_code=403,
                error="This form has expired or was sent from another site. Nothing was changed; "
                      "please press the button again.")
        if not await run_in_threadpool(self.took_a_write, request):
            return self.too_many_writes()
        view = await run_in_threadpool(rate_by_token, self.store, self.signer, token, direction, from_link=False)
        return await run_in_threadpool(self.rating_page, request, token, view)

    def _invalid_preferences(self) -> HTMLResponse:
        return self.notice("This link is not valid",
                           "The link to your subscription page is incomplete or was altered, so nothing was "
                           "shown or changed. Use the link at the bottom of the latest issue.", 400,
                           is_error=True)

    def _invalid_unsubscribe(self) -> HTMLResponse:
        return self.notice("This unsubscribe link is not valid",
                           "The link is incomplete or was altered, so nothing was changed. Use the link in "
                           "the latest message, or reply to it and ask to be removed.", 400, is_error=True,
                           show_home=False)

    def _unknown_unsubscribe(self) -> HTMLResponse:
        return self.notice("Not on the list",
                           "This address is no longer on our list: nothing will be sent to it.", 404,
                           show_home=False)

    async def archive_index(self, request: Request) -> Response:
        issues = await run_in_threadpool(archive.sent_issues, self.reads)
        return self.pages.render("archive.html", issues=issues)

    async def archive_issue(self, request: Request) -> Response:
        key = request.path_params["key"]
        html = await run_in_threadpool(archive.public_issue_html, self.reads, key,
                                       home_url=self.base_url(request) + "/")
        if html is None:
            return self.notice("No such issue", "There is no sent issue with this name.", 404, is_error=True)
        return HTMLResponse(html)

    async def feed(self, request: Request) -> Response:
        issues = await run_in_threadpool(archive.sent_issues, self.reads)
        body = archive.atom_feed(issues, name=self.config["newsletter.name"], base_url=self.base_url(request))
        return Response(body, media_type="application/atom+xml; charset=utf-8")

    async def not_found(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        if status == 405:
            response = self.notice("Not allowed", "This address does not take that kind of request.", 405,
                                   is_error=True)
            # RFC 9110: a 405 must say what the address does take (Starlette's Route puts it in
            # the exception's headers, as an unordered set).
            allow = (getattr(exc, "headers", None) or {}).get("Allow", "")
            methods = {m.strip().upper() for m in allow.split(",") if m.strip()}
            response.headers["Allow"] = ", ".join(sorted(methods, key=_method_rank))
            return response
        if status == 413:
            return self.notice("Too large", "The request was larger than this site accepts.", 413, is_error=True)
        if status == 404 and request.method in ("GET", "HEAD"):
            redirect = self.slash_redirect(request)
            if redirect is not None:
                return redirect
        return self.notice("Not found", "There is no page at this address.", status, is_error=True)


    def slash_redirect(self, request: Request) -> Response | None:
        """A GET of a path that exists only with (or without) a trailing slash: a redirect there,
        built from ``newsletter.base_url``, or relative without it. Never from the Host header,
        which is whatever the sender wrote (Starlette's own slash redirect copies it)."""
        path = request.url.path
        other = path.rstrip("/") if path.endswith("/") else path + "/"
        if not other or other == path:
            return None
        # A mount on the way updated the scope in place (root_path): match from the app's root.
        root = request.scope.get("app_root_path", "")
        scope = {**request.scope, "path": other, "root_path": root}
        if not any(route.matches(scope)[0] is not Match.NONE for route in self.routes):
            return None
        location = self.config["newsletter.base_url"].rstrip("/") + other
        if request.url.query:
            location += "?" + request.url.query
        return RedirectResponse(location, status_code=308)


def _printable(text: str, *, lines: bool = False) -> str:
    """What may be echoed into the form page (values, error words quoting them): autoescape handles
    markup, not control characters (a NUL or an ESC is not valid in HTML), so those are dropped;
    with ``lines`` (a textarea's text) line breaks are kept, as ``\n``."""
    if lines:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(ch for ch in text if ch.isprintable() or ch == " " or (lines and ch == "\n"))


def _method_rank(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def _text_field(form: FormData, name: str) -> str | None:
    """A text field's value ('' when absent); None when a file was sent in its place."""
    value = form.get(name, "")
    return value if isinstance(value, str) else None


async def read_small_form(request: Request, max_bytes: int = MAX_FORM_BYTES) -> FormData:
    """A form of ours, refusing what a browser would never send: another content type, no
    length, a body over ``max_bytes``, a body python-multipart cannot parse."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in FORM_TYPES:
        raise FormProblem("The form must be sent from this page (as a web form); "
                          f"{content_type or 'a body without a type'} was received.", 415)
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise FormProblem("The form arrived without a length; please send it again from this page.", 411)
    if int(length) > max_bytes:
        raise FormProblem(f"The form is too large (more than {max_bytes // 1024} KB), so nothing was changed; "
                          "please shorten what you typed.", 413)
    try:
        return await read_form(request, content_type, max_bytes)
    except NotUtf8Form:
        raise FormProblem(NOT_UTF8, 400) from None
    except (HTTPException, MultiPartException, UnicodeDecodeError, ValueError) as exc:
        raise FormProblem(f"The form could not be read ({getattr(exc, 'detail', exc)}).", 400) from None


async def read_form(request: Request, content_type: str, max_bytes: int = MAX_FORM_BYTES) -> FormData:
    """A urlencoded or multipart body read as UTF-8 text, strictly (as the WHATWG URL standard
    reads urlencoded forms: percent-escapes decoded to bytes, then UTF-8). Starlette's own parsers
    fall back to Latin-1 for bytes that are not UTF-8 and replace bad percent-escapes with U+FFFD,
    which would store and mail something nobody typed; here either raises NotUtf8Form.

    At most ``max_bytes``, ``MAX_FORM_FIELDS`` fields and no files; more raise
    MultiPartException (whether or not the request said its length)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise MultiPartException(f"Form exceeded maximum size of {max_bytes // 1024}KB.")
    if content_type == "application/x-www-form-urlencoded":
        items: list[tuple[str, str]] = []
        for piece in bytes(body).split(b"&"):
            if not piece:
                continue
            if len(items) >= MAX_FORM_FIELDS:
                raise MultiPartException(f"Too many fields. Maximum number of fields is {MAX_FORM_FIELDS}.")
            name, _, value = piece.partition(b"=")
            try:
                items.append((unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8"),
                              unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8")))
            except UnicodeDecodeError:
                raise NotUtf8Form() from None
        return FormData(items)
    # Multipart: no files are taken, so the whole body is text, and text that is UTF-8 as a
    # whole is UTF-8 in every part. Starlette's parser decodes the parts with the charset the
    # Content-Type names (Latin-1 for one it does not know), so it is given the header without
    # one: UTF-8, what the app's pages send and say with accept-charset.
    try:
        bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise NotUtf8Form() from None

    async def replay() -> AsyncIterator[bytes]:
        yield bytes(body)

    params = [p.strip() for p in request.headers.get("content-type", "").split(";")[1:]]
    utf8_type = "; ".join(["multipart/form-data", *(p for p in params if not p.lower().startswith("charset="))])
    parser = MultiPartParser(Headers({"content-type": utf8_type}), replay(), max_files=0,
                             max_fields=MAX_FORM_FIELDS, max_part_size=max_bytes)
    return await parser.parse()


async def _unsubscribe_how(request: Request) -> str:
    """How the unsubscribe arrived, for the event log. The body is optional: the URL's token is
    what authorises, so an unreadable body never blocks an unsubscribe. A form whose text is not
    UTF-8 raises NotUtf8Form: refused like every other form, nothing changed."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type in FORM_TYPES:
        try:
            form = await read_form(request, content_type)
        except NotUtf8Form:
            raise
        except Exception:  # noqa: BLE001 - any other unreadable body is simply ignored
            return "web POST"
        if form.get("via") == "page":
            return "unsubscribe page"
        if form.get("List-Unsubscribe") == "One-Click":
            return "one-click"
    return "web POST"


def by_method(get: Endpoint, *, post: Endpoint) -> Endpoint:
    """One endpoint for a path that takes GET (and HEAD) and POST: the route has already refused
    any other method with a 405."""

    async def endpoint(request: Request) -> Response:
        return await (post(request) if request.method == "POST" else get(request))

    endpoint.__name__ = get.__name__
    return endpoint


def guarded(app: WebApp, endpoint: Endpoint) -> Endpoint:
    """Any unexpected failure becomes a plain error page (logged), never a traceback, and still
    passes through the security headers middleware."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except NewsletterError as exc:
            log.error("%s %s: %s", request.method, request.url.path, exc)
            return app.notice("Something went wrong", "The request could not be completed; please try again later.",
                              503, is_error=True)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return app.notice("Something went wrong", "The request could not be completed; please try again later.",
                              500, is_error=True)

    return wrapper


class PreviewGate:
    """Lets a request through to the preview only from loopback or with the preview token
    (``Authorization: Bearer TOKEN``, ``X-Preview-Token: TOKEN`` or ``?token=TOKEN``)."""

    def __init__(self, app: ASGIApp, token: str, refuse: Callable[[], Response]) -> None:
        self.app = app
        self.token = token
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.allowed(Request(scope)):
            await self.refuse()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def allowed(self, request: Request) -> bool:
        if is_loopback(request.client.host if request.client else None):
            return True
        presented = request.headers.get("x-preview-token") or request.query_params.get("token")
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            presented = authorization[7:].strip()
        return token_matches(presented, self.token)


def _preview_routes(config: Config, store: Store) -> list[BaseRoute]:
    """The render area's preview routes."""
    return list(preview_routes(config, store))


def create_app(config: Config, store: Store, *, subscribe_burst: float | None = None,
               subscribe_refill_per_s: float | None = None, address_burst: float | None = None,
               address_refill_per_s: float | None = None,
               confirm_max_age_s: int = CONFIRM_MAX_AGE_S, preview_token: str | None = None) -> Starlette:
    """Build the web app for ``config`` and ``store``.

    The per-client and per-address token buckets hold ``web.subscribe_per_client_per_hour`` and
    ``web.confirmations_per_address_per_hour`` and refill over the hour; the keyword arguments
    (``subscribe_*``, ``address_*``) override them, as does ``confirm_max_age_s`` the confirmation
    link's lifetime; ``preview_token`` defaults to the environment variable named by
    ``web.preview_token_env`` (empty: the preview answers only on loopback).

    Unsubscribes spooled while the store was busy are applied now, before anything is served.
    """
    per_client = config["web.subscribe_per_client_per_hour"]
    per_address = config["web.confirmations_per_address_per_hour"]
    web = WebApp(config, store,
                 subscribe_burst=per_client if subscribe_burst is None else subscribe_burst,
                 subscribe_refill_per_s=per_client / 3600 if subscribe_refill_per_s is None else subscribe_refill_per_s,
                 address_burst=per_address if address_burst is None else address_burst,
                 address_refill_per_s=per_address / 3600 if address_refill_per_s is None else address_refill_per_s,
                 confirm_max_age_s=confirm_max_age_s)
    with store.atomic():
        pass  # every transaction applies the spool first (newsletter.store.spool)
    g = functools.partial(guarded, web)
    routes: list[BaseRoute] = [
        Route("/", g(web.index), methods=["GET", "HEAD"]),
        Route("/subscribe", g(web.subscribe), methods=["POST"]),
        Route("/confirm/{token}", g(by_method(web.confirm_page, post=web.confirm)),
              methods=["GET", "HEAD", "POST"]),
        # One route per path, so a 405's Allow lists every method the path takes.
        Route("/unsubscribe/{token}", g(by_method(web.unsubscribe_page, post=web.unsubscribe)),
              methods=["GET", "HEAD", "POST"]),
        Route("/preferences/{token}", g(by_method(web.preferences_page, post=web.preferences)),
              methods=["GET", "HEAD", "POST"]),
        Route("/rate/{token}/{direction}", g(by_method(web.rating_link, post=web.rating_button)),
              methods=["GET", "HEAD", "POST"]),
        Route("/archive", g(web.archive_index), methods=["GET", "HEAD"]),
        Route("/archive/{key}", g(web.archive_issue), methods=["GET", "HEAD"]),
        Route("/feed.xml", g(web.feed), methods=["GET", "HEAD"]),
    ]
    preview = _preview_routes(config, store)
    token = preview_token if preview_token is not None else os.environ.get(config["web.preview_token_env"], "")
    refuse = functools.partial(web.notice, "Preview not available",
                               "The preview answers only on this machine or with the preview token.", 403,
                               is_error=True)
    preview_app = SecurityHeadersMiddleware(Router(preview, redirect_slashes=False), PREVIEW_SECURITY_HEADERS)
    routes.append(Mount("/preview", app=PreviewGate(preview_app, token, refuse)))
    from newsletter.web.hooks import hook_routes  # ESP bounce and complaint webhooks

    routes.extend(hook_routes(config, store))
    web.routes = routes
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeadersMiddleware)],
        exception_handlers={404: web.not_found, 405: web.not_found, 413: web.not_found},
    )
    app.router.redirect_slashes = False  # WebApp.slash_redirect does it, without the Host header
    return app

