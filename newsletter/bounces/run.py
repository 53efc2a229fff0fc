"""Read every message of the bounce sources, act on each in its own transaction, mark what was
ours as processed, and say what happened (``newsletter bounces``, the scheduler's job)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

from newsletter.bounces.act import OUTCOMES, Outcome, Rules, act_on
from newsletter.bounces.classify import classify
from newsletter.bounces.mailboxes import BounceSourceError, open_source
from newsletter.config import Config
from newsletter.errors import NewsletterError
from newsletter.store import Store
from newsletter.tokens import Signer, secret_key


@dataclass
class BounceRun:
    """What one read of the bounce sources did. ``counts`` has every key of ``OUTCOMES``."""

    counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in OUTCOMES})
    actions: list[str] = field(default_factory=list)      # "ada@example.org: bounced"
    errors: list[str] = field(default_factory=list)       # a source that could not be read
    sources: list[str] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line for the scheduler's log."""
        c = self.counts
        text = (f"{self.messages} message(s): {c['hard']} hard, {c['soft']} soft, {c['complaint']} complaint(s), "
                f"{c['auto_reply']} auto-replies, {c['not_ours']} not ours, {c['unreadable']} unreadable; "
                f"{len(self.actions)} address(es) changed status")
        return text + (f"; {len(self.errors)} error(s): {'; '.join(self.errors[:3])}" if self.errors else "")


def configured_sources(config: Config) -> list[str]:
    """``[bounces] mailbox``, a relative path taken from the file that set it."""
    spec = config["bounces.mailbox"]
    if not spec:
        return []
    origin = config.origin("bounces.mailbox")
    if "://" not in spec and config.path is not None and not origin.startswith(("environment", "command")) \
            and origin != "default" and not Path(spec).expanduser().is_absolute():
        spec = str(config.path.parent / spec)
    return [spec]


def process_bounces(store: Store, config: Config, sources: Sequence[str] | None = None, *,
                    now: datetime | None = None,
                    on_message: Callable[[str, Outcome], None] | None = None) -> BounceRun:
    sources = list(sources) if sources else configured_sources(config)
    if not sources:
        raise NewsletterError("no bounce source: name one (a maildir, an mbox file, .eml files, imaps://...) or set "
                              "[bounces] mailbox", where="bounces.mailbox")
    signer = Signer(secret_key(config, store))
    rules = Rules(soft_limit=config["bounces.soft_limit"], soft_days=config["bounces.soft_days"])
    run = BounceRun()
    for spec in sources:
        try:
            source = open_source(spec, config["bounces.processed"], ca_file=config["smtp.ca_file"])
        except BounceSourceError as exc:
            run.errors.append(str(exc))
            continue
        except OSError as exc:
            run.errors.append(f"{spec}: {exc.strerror or exc}")
            continue
        run.sources.append(source.name)
        try:
            for key, data in source.messages():
                outcome = _one(store, signer, rules, data, source.name, now)
                run.counts[outcome.counted_as] += 1
                run.actions.extend(outcome.actions)
                if outcome.is_processed:
                    try:
                        source.mark_processed(key)
                    except OSError as exc:
                        run.errors.append(f"{source.name}: {key}: cannot mark processed: {exc.strerror or exc}")
                if on_message is not None:
                    on_message(key, outcome)
        except (OSError, BounceSourceError) as exc:
            run.errors.append(f"{source.name}: {exc}")
        finally:
            source.close()
    return run


def _one(store: Store, signer: Signer, rules: Rules, data: bytes, source: str, now: datetime | None) -> Outcome:
    report = classify(data)
    message_key = hashlib.sha256(data).hexdigest()
    with store.atomic() as conn:  # one message, one transaction: a later failure keeps this one's action
        return act_on(conn, signer, report, message_key=message_key, source=source, rules=rules, now=now)
