"""The operator's preview of the next issue (and past ones), re-rendered on every request.

``preview_routes(config, store)`` is mounted by the web app under ``/preview`` (behind its
loopback-or-token gate) and served on its own by ``newsletter preview --serve``. Links are built
from the mount point (``root_path``), so the same routes work in both places.

    GET /                          the next issue: phone (375px) and desktop side by side
    GET /issues/{key}/             the same for a past issue
    GET /issues/{key}/email.html   the HTML part as the sample reader gets it
    GET /issues/{key}/email.txt    the plain-text part
    GET /issues/{key}/message.eml  the whole message
"""

from __future__ import annotations

import html
from datetime import datetime

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from newsletter import api
from newsletter.config import Config
from newsletter.errors import NewsletterError
from newsletter.models import RenderedIssue
from newsletter.render.messages import MessageFactory
from newsletter.render.preview import SAMPLE_READER
from newsletter.api import Store
# not through the API: the operator's preview opens a frozen issue by its key, which newsletter.api
# does not offer (it builds and renders the next issue, which the preview also shows).
from newsletter.store.issues import get_issue, is_frozen, list_issues
from newsletter.tokens import Signer, secret_key

NEXT = "next"
PHONE_WIDTH_PX = 375
DESKTOP_WIDTH_PX = 800
_NO_STORE = {"cache-control": "no-store"}


class _Previewer:
    """Renders on each request, so a template edited on disk shows on the next reload."""

    def __init__(self, config: Config, store: Store, now: datetime | None = None) -> None:
        self.config = config
        self.store = store
        self.now = now

    def rendered(self, key: str) -> RenderedIssue | None:

        if key == NEXT:
            issue = api.next_issue(self.store, self.config, now=self.now)
        else:
            with self.store.atomic() as conn:
                issue = get_issue(conn, key)
            if issue is None or not is_frozen(issue):
                return None
        if issue is None:
            return None
        return api.render(self.store, self.config, issue)

    def parts(self, key: str) -> tuple[RenderedIssue, str, str, bytes] | None:

        rendered = self.rendered(key)
        if rendered is None:
            return None
        factory = MessageFactory(rendered, self.config, Signer(secret_key(self.config, self.store)), now=self.now)
        page_html, text = factory.personalised_parts(SAMPLE_READER)
        return rendered, page_html, text, factory.build(SAMPLE_READER).data

    def past(self) -> list[tuple[str, int, str]]:

        with self.store.atomic() as conn:
            return [(i.key, i.number, i.title) for i in list_issues(conn) if is_frozen(i)]


def _page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; margin: 0; background: #eef0f3; color: #1f2933; }}
header {{ padding: 12px 20px; background: #1f2933; color: #ffffff; }}
header a {{ color: #8ab4f8; margin-right: 16px; }}
main {{ padding: 16px 20px; }}
.frames {{ display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }}
.frames figure {{ margin: 0; }}
.frames figcaption {{ font-size: 14px; margin-bottom: 6px; color: #52606d; }}
iframe {{ border: 1px solid #c5cbd3; background: #ffffff; height: 1400px; }}
pre {{ white-space: pre-wrap; background: #ffffff; padding: 16px; max-width: 80ch; }}
</style></head>
<body><header><strong>Preview</strong> &middot; {html.escape(title)}</header><main>{body}</main></body></html>"""


def preview_routes(config: Config, store: Store, *, now: datetime | None = None) -> list[Route]:
    """The preview's routes, relative to wherever they are mounted."""
    previewer = _Previewer(config, store, now)

    def base(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    async def issue_page(request: Request) -> Response:
        key = request.path_params.get("key", NEXT)
        try:
            parts = await run_in_threadpool(previewer.parts, key)
            past = await run_in_threadpool(previewer.past)
        except NewsletterError as exc:
            return HTMLResponse(_page("Cannot render", f"<p>{html.escape(str(exc))}</p>"), 500, headers=_NO_STORE)
        root = base(request)
        links = [f'<a href="{root}/">Next issue</a>'] + [
            f'<a href="{root}/issues/{html.escape(k)}/">#{n} ({html.escape(k)})</a>' for k, n, _ in past]
        nav = "<p>" + " ".join(links) + "</p>"
        if parts is None:
            message = ("No papers for the next issue yet: run <code>newsletter ingest</code>, then reload."
                       if key == NEXT else "No sent issue with this key.")
            return HTMLResponse(_page("Nothing to preview", nav + f"<p>{message}</p>"),
                                200 if key == NEXT else 404, headers=_NO_STORE)
        rendered = parts[0]
        src = f"{root}/issues/{html.escape(rendered.issue.key if key != NEXT else NEXT)}"
        body = (nav + f"<h1>{html.escape(rendered.subject)}</h1>"
                f'<p><a href="{src}/email.txt">Plain-text part</a> &middot; '
                f'<a href="{src}/message.eml">Message (.eml)</a> &middot; '
                f'{len(parts[1].encode()) // 1000} KB HTML</p>'
                '<div class="frames">'
                f'<figure><figcaption>Phone, {PHONE_WIDTH_PX}px</figcaption>'
                f'<iframe id="phone" title="Phone width" src="{src}/email.html" width="{PHONE_WIDTH_PX}"></iframe></figure>'
                f'<figure><figcaption>Desktop, {DESKTOP_WIDTH_PX}px</figcaption>'
                f'<iframe id="desktop" title="Desktop width" src="{src}/email.html" width="{DESKTOP_WIDTH_PX}"></iframe></figure>'
                "</div>")
        return HTMLResponse(_page(rendered.subject, body), headers=_NO_STORE)

    async def part(request: Request) -> Response:
        key, which = request.path_params["key"], request.path_params["part"]
        try:
            parts = await run_in_threadpool(previewer.parts, key)
        except NewsletterError as exc:
            return PlainTextResponse(str(exc), 500, headers=_NO_STORE)
        if parts is None:
            return PlainTextResponse("nothing to preview", 404, headers=_NO_STORE)
        if which == "email.html":
            return HTMLResponse(parts[1], headers=_NO_STORE)
        if which == "email.txt":
            return PlainTextResponse(parts[2], headers=_NO_STORE)
        if which == "message.eml":
            return Response(parts[3], media_type="message/rfc822", headers=_NO_STORE)
        return PlainTextResponse("not found", 404, headers=_NO_STORE)

    return [
        Route("/", issue_page, methods=["GET", "HEAD"]),
        Route("/issues/{key}/", issue_page, methods=["GET", "HEAD"]),
        Route("/issues/{key}/{part}", part, methods=["GET", "HEAD"]),
    ]


def create_preview_app(config: Config, store: Store, *, now: datetime | None = None) -> Starlette:
    """The preview on its own, for ``newsletter preview --serve``."""
    return Starlette(routes=preview_routes(config, store, now=now))
