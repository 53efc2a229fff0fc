"""Where bounces are read from, and how a message is marked once acted on.

A source is a maildir folder (``cur/``, ``new/``, ``tmp/``), an mbox file, a ``.eml`` file or a
folder of them, ``imaps://user@host[:port]/FOLDER`` (``imap://`` only for a loopback host) or
``pop3s://user@host[:port]`` (``pop3://`` likewise); the password comes from
``NEWSLETTER_BOUNCES_PASSWORD``. Each reader yields ``(key, bytes)`` and marks a processed
message as ``[bounces] processed`` says:

==========  ======================================  ======================  ==================
processed   maildir                                 mbox / .eml             IMAP
==========  ======================================  ======================  ==================
move:NAME   to the Maildir++ subfolder ``.NAME``    to ``NAME/`` beside it  MOVE (or COPY +
                                                    (mbox: ``FILE.NAME``)   delete) to NAME
delete      removed                                 removed                 \\Deleted, expunged
flag        ``S`` and ``F`` flags (read again,      left (the store knows   \\Seen + keyword
            known by its digest)                    it by its digest)       ``$NewsletterDone``
==========  ======================================  ======================  ==================

POP3 has neither folders nor flags: ``delete`` removes, anything else leaves the message, and the
store's digest of each message acted on keeps a second run from counting it again.
"""

from __future__ import annotations

import imaplib
import mailbox as stdlib_mailbox
import os
import poplib
import ssl
from pathlib import Path
from typing import Iterator, Protocol
from urllib.parse import unquote, urlsplit

from newsletter.errors import NewsletterError

PASSWORD_ENV = "NEWSLETTER_BOUNCES_PASSWORD"
IMAP_KEYWORD = "$NewsletterDone"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class BounceSourceError(NewsletterError):
    """A bounce source that cannot be opened or read."""


class Source(Protocol):
    name: str

    def messages(self) -> Iterator[tuple[str, bytes]]: ...
    def mark_processed(self, key: str) -> None: ...
    def close(self) -> None: ...


def _processed(spec: str) -> tuple[str, str]:
    if spec.startswith("move:"):
        return "move", spec[5:]
    return spec, ""


class MaildirSource:
    def __init__(self, path: Path, processed: str) -> None:
        self.path, self.name = path, str(path)
        self.how, self.folder = _processed(processed)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for sub in ("new", "cur"):
            box = self.path / sub
            if not box.is_dir():
                continue
            for entry in sorted(os.scandir(box), key=lambda e: e.name):
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                try:
                    data = Path(entry.path).read_bytes()
                except OSError:
                    continue  # delivered-then-removed by someone else meanwhile
                yield f"{sub}/{entry.name}", data

    def mark_processed(self, key: str) -> None:
        source = self.path / key
        base, _, flags = source.name.partition(":2,")
        if self.how == "delete":
            source.unlink(missing_ok=True)
        elif self.how == "move":
            target = self.path / f".{self.folder}"
            for sub in ("cur", "new", "tmp"):
                (target / sub).mkdir(parents=True, exist_ok=True)
            (target / "maildirfolder").touch()
            os.replace(source, target / "cur" / f"{base}:2,{''.join(sorted(set(flags) | {'S'}))}")
        else:  # flag: seen and flagged (a mail client shows it read and starred), in cur/ as maildir wants.
            # Not trashed (T): clients expunge that. Read again next time, known by its digest.
            target = self.path / "cur" / f"{base}:2,{''.join(sorted(set(flags) | {'F', 'S'}))}"
            if target != source:
                os.replace(source, target)

    def close(self) -> None:
        pass


class FilesSource:
    """One ``.eml`` file, or every file in a folder that is not a maildir."""

    def __init__(self, path: Path, processed: str) -> None:
        self.path, self.name = path, str(path)
        self.how, self.folder = _processed(processed)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        files = [self.path] if self.path.is_file() else sorted(p for p in self.path.iterdir()
                                                                if p.is_file() and not p.name.startswith("."))
        for file in files:
            yield str(file), file.read_bytes()

    def mark_processed(self, key: str) -> None:
        path = Path(key)
        if self.how == "delete":
            path.unlink(missing_ok=True)
        elif self.how == "move":
            target = path.parent / self.folder
            target.mkdir(exist_ok=True)
            os.replace(path, target / path.name)

    def close(self) -> None:
        pass


class MboxSource:
    def __init__(self, path: Path, processed: str) -> None:
        self.path, self.name = path, str(path)
        self.how, self.folder = _processed(processed)
        self.box = stdlib_mailbox.mbox(path, create=False)
        self.box.lock()
        self.done: list[str] = []

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for key in list(self.box.keys()):
            yield str(key), self.box.get_bytes(key)

    def mark_processed(self, key: str) -> None:
        self.done.append(key)

    def close(self) -> None:
        try:
            if self.done and self.how in ("move", "delete"):
                if self.how == "move":
                    target = stdlib_mailbox.mbox(self.path.with_name(f"{self.path.name}.{self.folder}"))
                    target.lock()
                    for key in self.done:
                        target.add(self.box.get_message(int(key)))
                    target.flush()
                    target.unlock()
                for key in self.done:
                    self.box.remove(int(key))
                self.box.flush()
        finally:
            self.box.unlock()
            self.box.close()


def _password() -> str:
    password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise BounceSourceError(f"set {PASSWORD_ENV} to the mailbox's password")
    return password


def _check_plain(scheme: str, host: str, url: str) -> None:
    if scheme in ("imap", "pop3") and host not in _LOOPBACK:
        raise BounceSourceError(f"{scheme}:// sends the password in clear: use {scheme}s:// (plain only for a "
                                "loopback host)", where=url)


class ImapSource:
    def __init__(self, url: str, processed: str, *, ca_file: str = "") -> None:
        parts = urlsplit(url)
        self.name = f"{parts.scheme}://{parts.username}@{parts.hostname}{parts.path or ''}"
        self.how, self.folder = _processed(processed)
        host = parts.hostname or ""
        _check_plain(parts.scheme, host, self.name)
        self.mailbox_name = unquote(parts.path.lstrip("/")) or "INBOX"
        try:
            if parts.scheme == "imaps":
                context = ssl.create_default_context(cafile=ca_file or None)
                self.imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(host, parts.port or 993, ssl_context=context, timeout=30)
            else:
                self.imap = imaplib.IMAP4(host, parts.port or 143, timeout=30)
            self.imap.login(unquote(parts.username or ""), _password())
            status, _ = self.imap.select(_quote(self.mailbox_name))
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
            raise BounceSourceError(f"cannot read the mailbox: {exc}", where=self.name) from None
        if status != "OK":
            raise BounceSourceError(f"no folder {self.mailbox_name!r}", where=self.name)
        self.done: list[str] = []

    def messages(self) -> Iterator[tuple[str, bytes]]:
        status, data = self.imap.uid("SEARCH", None, "UNKEYWORD", IMAP_KEYWORD, "UNDELETED")  # type: ignore[arg-type]
        if status != "OK":
            raise BounceSourceError(f"SEARCH failed: {data!r}", where=self.name)
        for uid in (data[0] or b"").split():
            status, fetched = self.imap.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
            if status != "OK":
                continue
            for item in fetched:
                if isinstance(item, tuple):
                    yield uid.decode(), item[1]
                    break

    def mark_processed(self, key: str) -> None:
        self.imap.uid("STORE", key, "+FLAGS", f"(\\Seen {IMAP_KEYWORD})")
        if self.how == "move":
            self.imap.create(_quote(self.folder))  # NO when it exists: fine
            if "MOVE" in self.imap.capabilities:
                self.imap.uid("MOVE", key, _quote(self.folder))
                return
            self.imap.uid("COPY", key, _quote(self.folder))
            self.imap.uid("STORE", key, "+FLAGS", "(\\Deleted)")
            self.done.append(key)
        elif self.how == "delete":
            self.imap.uid("STORE", key, "+FLAGS", "(\\Deleted)")
            self.done.append(key)

    def close(self) -> None:
        try:
            if self.done:
                self.imap.expunge()
            self.imap.close()
            self.imap.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Pop3Source:
    def __init__(self, url: str, processed: str, *, ca_file: str = "") -> None:
        parts = urlsplit(url)
        self.name = f"{parts.scheme}://{parts.username}@{parts.hostname}"
        self.how, _ = _processed(processed)
        host = parts.hostname or ""
        _check_plain(parts.scheme, host, self.name)
        try:
            if parts.scheme == "pop3s":
                context = ssl.create_default_context(cafile=ca_file or None)
                self.pop: poplib.POP3 = poplib.POP3_SSL(host, parts.port or 995, context=context, timeout=30)
            else:
                self.pop = poplib.POP3(host, parts.port or 110, timeout=30)
            self.pop.user(unquote(parts.username or ""))
            self.pop.pass_(_password())
        except (OSError, poplib.error_proto, ssl.SSLError) as exc:
            raise BounceSourceError(f"cannot read the mailbox: {exc}", where=self.name) from None

    def messages(self) -> Iterator[tuple[str, bytes]]:
        _, listing, _ = self.pop.list()
        for line in listing:
            number = line.split()[0].decode()
            _, lines, _ = self.pop.retr(int(number))
            yield number, b"\r\n".join(lines) + b"\r\n"

    def mark_processed(self, key: str) -> None:
        if self.how == "delete":
            self.pop.dele(int(key))

    def close(self) -> None:
        try:
            self.pop.quit()  # deletions happen here
        except (OSError, poplib.error_proto):
            pass


def open_source(spec: str, processed: str, *, ca_file: str = "") -> Source:
    """The reader for ``spec``: a URL, a maildir, an mbox file, or .eml files."""
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if scheme in ("imap", "imaps"):
        return ImapSource(spec, processed, ca_file=ca_file)
    if scheme in ("pop3", "pop3s"):
        if processed.startswith("move:") or processed == "flag":
            processed = "keep"
        return Pop3Source(spec, processed, ca_file=ca_file)
    if scheme:
        raise BounceSourceError("expected a path, imaps://user@host/FOLDER or pop3s://user@host", where=spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise BounceSourceError("no such file or folder", where=spec)
    if path.is_dir():
        if (path / "cur").is_dir() or (path / "new").is_dir():
            return MaildirSource(path, processed)
        return FilesSource(path, processed)
    with path.open("rb") as f:
        first = f.read(5)
    if first == b"From ":
        return MboxSource(path, processed)
    return FilesSource(path, processed)

