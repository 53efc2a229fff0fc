"""One exception root for everything the library reports to a user.

Each error knows *where* the problem is (a file and line, a source, an entry, an address) so the
CLI can print ``where: what is wrong`` without guessing; the CLI adds what to do next.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base of every error a user may see. ``str()`` reads ``where: what is wrong``."""

    def __init__(self, message: str, *, where: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.where = where
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.where and self.line is not None:
            return f"{self.where}:{self.line}: {self.message}"
        if self.where:
            return f"{self.where}: {self.message}"
        return self.message


class ConfigError(NewsletterError):
    """A wrong key or value in newsletter.toml, the environment or a flag."""


class ConfigErrors(ConfigError):
    """Several wrong keys or values at once; ``str()`` has one ``where: what`` line for each."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} problems in the configuration")

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)


class SourceError(NewsletterError):
    """A source (file or URL) that cannot be read or parsed at all."""


class StoreError(NewsletterError):
    """The store cannot be opened, migrated or written."""


class SubscriberError(NewsletterError):
    """A bad address or subscriber row; ``where`` is ``FILE:LINE`` or the address."""


class ImportRowsError(SubscriberError):
    """An import refused as a whole; ``errors`` lists every bad row."""

    def __init__(self, message: str, errors: list[SubscriberError]) -> None:
        self.errors = errors
        super().__init__(message)


class RenderError(NewsletterError):
    """A template that fails to render, or a message that cannot be built."""


class DeliveryError(NewsletterError):
    """A transport that cannot deliver at all (misconfigured, unreachable)."""


class LockedError(NewsletterError):
    """Another process holds the lock (scheduler, send) on this store."""


class NothingToSendError(NewsletterError):
    """No papers for an issue, or no subscribers to send to: not a failure, but nothing happens."""


class IssueFrozenError(NewsletterError):
    """The editor tried to change an issue that has already gone out to someone."""
