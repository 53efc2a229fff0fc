"""The welcome message a reader gets when their subscription is confirmed.

``templates/welcome.txt.j2`` (required) and ``templates/welcome.html.j2`` (optional: without it
the message is plain text) say what the reader signed up for, when issues arrive, where the
latest one is and how to leave. Every header goes through ``set_header`` on a ``new_message``
(so a reader's name or the configured name can never add a line); the bytes have CRLF line ends.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import jinja2

from newsletter.config import Config
from newsletter.errors import RenderError
from newsletter.render.context import sender
from newsletter.render.headers import header_text, new_message, one_address, set_header
from newsletter.render.inline import inline_css
from newsletter.render.issue import render_template as _render
from newsletter.render.templates import make_environment, operator_templates_dir

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def cadence_words(config: Config) -> str:
    """``every Monday at 08:00 (UTC)`` from ``schedule.send`` and ``schedule.timezone``."""
    spec = " ".join(config["schedule.send"].split())
    zone = config["schedule.timezone"]
    m = re.fullmatch(r"(?i)(every\s+)?(\w+)\s+at\s+(\d{1,2}:\d{2})", spec)
    if m and m.group(2).lower() in _DAYS:
        return f"every {m.group(2).capitalize()} at {m.group(3)} ({zone})"
    if m and m.group(2).lower() == "daily":
        return f"every day at {m.group(3)} ({zone})"
    return f"on the schedule \u201c{spec}\u201d ({zone})"


def welcome_context(config: Config, *, name: str, latest_url: str, latest_title: str,
                    unsubscribe_url: str, preferences_url: str) -> dict:
    base_url = config["newsletter.base_url"].rstrip("/")
    sender_name, sender_address = sender(config)
    return {
        "newsletter": {"name": config["newsletter.name"], "base_url": base_url,
                       "archive_url": f"{base_url}/archive" if base_url else "",
                       "postal_address": config["newsletter.postal_address"], "sender_name": sender_name,
                       "sender_address": sender_address, "accent": config["newsletter.accent"] or "#1a56db",
                       "cadence": cadence_words(config), "max_papers": config["issue.max_papers"]},
        "subscriber": {"name": header_text(name, max_chars=80) or "there",
                       "unsubscribe_url": unsubscribe_url, "preferences_url": preferences_url},
        "latest": {"url": latest_url, "title": latest_title} if latest_url else None,
    }


def build_welcome(config: Config, address: str, name: str, *, unsubscribe_url: str, preferences_url: str = "",
                  latest_url: str = "", latest_title: str = "",
                  env: jinja2.Environment | None = None) -> EmailMessage:
    """The welcome message for ``address``, ready for ``as_bytes()`` (CRLF)."""
    env = env or make_environment(operator_templates_dir(config))
    context = welcome_context(config, name=name, latest_url=latest_url, latest_title=latest_title,
                              unsubscribe_url=unsubscribe_url, preferences_url=preferences_url)
    subject = " ".join(_render(env, "welcome-subject.txt.j2", context).split())
    if not subject:
        raise RenderError("the subject came out empty", where="welcome-subject.txt.j2")
    context["subject"] = subject
    text = _render(env, "welcome.txt.j2", context)
    try:
        env.get_template("welcome.html.j2")
        html: str | None = inline_css(_render(env, "welcome.html.j2", context))
    except jinja2.TemplateNotFound:
        html = None
    from_address = one_address(config["newsletter.from"], "newsletter.from")
    message = new_message(utf8=not address.isascii())
    username, _, domain = address.rpartition("@")
    set_header(message, "From", from_address)
    set_header(message, "To", Address(display_name=header_text(name, max_chars=80), username=username, domain=domain))
    set_header(message, "Subject", subject)
    set_header(message, "Date", format_datetime(datetime.now(timezone.utc), usegmt=True))
    set_header(message, "Message-ID", make_msgid(domain=from_address.domain or None))
    set_header(message, "Auto-Submitted", "auto-generated")
    if config["newsletter.reply_to"]:
        set_header(message, "Reply-To", one_address(config["newsletter.reply_to"], "newsletter.reply_to"))
    set_header(message, "List-Unsubscribe", f"<{unsubscribe_url}>")
    if unsubscribe_url.startswith("https://"):
        set_header(message, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    message.set_content(text, subtype="plain", charset="utf-8", cte="base64")
    if html is not None:
        message.add_alternative(html, subtype="html", charset="utf-8", cte="base64")
    return message
