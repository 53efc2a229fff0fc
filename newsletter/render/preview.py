"""Writing one subscriber's copy of an issue to files a person can open: HTML, text and .eml."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

from newsletter.config import Config
from newsletter.errors import RenderError
from newsletter.files import private_folder, write_private_file
from newsletter.models import Pick, RenderedIssue, Subscriber
from newsletter.render.issue import html_size_bytes, size_warning
from newsletter.render.messages import MessageFactory
from newsletter.render.personal import CardSet
from newsletter.render.personal_messages import PersonalMessages
from newsletter.tokens import Signer

SAMPLE_READER = Subscriber(email="reader@example.org", name="Reader")


@dataclass(frozen=True)
class PreviewFiles:
    """Where the preview went, and what the user should know about it."""

    issue_key: str
    subject: str
    html: Path
    text: Path
    eml: Path
    html_bytes: int
    recipient: str
    warning: str | None = None


def write_preview(rendered: RenderedIssue, config: Config, signer: Signer, out_dir: Path,
                  subscriber: Subscriber = SAMPLE_READER, *, now: datetime | None = None,
                  cards: CardSet | None = None, picks: Sequence[Pick] | None = None) -> PreviewFiles:
    """Write ``<key>.html``, ``<key>.txt`` and ``<key>.eml`` for ``subscriber`` into ``out_dir``:
    the shared issue, or with ``cards`` and ``picks`` the reader's own."""
    factory = MessageFactory(rendered, config, signer, now=now)
    subject = rendered.subject
    if cards is not None and picks:
        own = PersonalMessages(factory, cards)
        html, text = factory.personalised_parts(subscriber, picks)
        message = own.build(subscriber, picks)
        subject = cards.head_values(picks)[0]
    else:
        html, text = factory.personalised_parts(subscriber)
        message = factory.build(subscriber)
    out_dir = Path(out_dir)
    try:
        # A preview holds a reader's address and working unsubscribe/preferences links.
        private_folder(out_dir)
        key = rendered.issue.key
        paths = (out_dir / f"{key}.html", out_dir / f"{key}.txt", out_dir / f"{key}.eml")
        write_private_file(paths[0], html.encode("utf-8"))
        write_private_file(paths[1], text.encode("utf-8"))
        write_private_file(paths[2], message.data)
    except OSError as exc:
        raise RenderError(f"cannot write the preview: {exc.strerror}", where=str(out_dir)) from None
    return PreviewFiles(issue_key=key, subject=subject, html=paths[0], text=paths[1], eml=paths[2],
                        html_bytes=html_size_bytes(rendered), recipient=subscriber.email,
                        warning=size_warning(rendered))
