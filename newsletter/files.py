"""Files and folders that hold secrets or readers' addresses (the store with its signing key, the
outbox, previews): created readable by their owner only, whatever the umask.

A SQLite file created by the driver gets 0644 under the usual umask, so anyone with a shell on
the host could read every address and the key that signs unsubscribe links. Folders and files
the operator made themselves are left as they are (a preview written into ``.`` must not change
``.``); one they made readable to others is worth a warning (``readable_by_others``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TextIO

PRIVATE_FILE_MODE = 0o600
PRIVATE_FOLDER_MODE = 0o700


def private_folder(path: str | Path) -> Path:
    """``path`` as a folder, created (with its missing parents) readable by its owner only
    when it does not exist yet."""
    folder = Path(path)
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=PRIVATE_FOLDER_MODE, exist_ok=True)
    return folder


def create_private_file(path: str | Path) -> bool:
    """Create ``path`` empty and readable by its owner only, unless it exists; True if created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def _open_private(path: str | Path) -> int:
    """A descriptor to write ``path`` from its start, the file left readable by its owner only
    (one of ours written before with wider permissions is narrowed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    os.fchmod(fd, PRIVATE_FILE_MODE)
    return fd


def write_private_file(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path``, readable by its owner only."""
    with os.fdopen(_open_private(path), "wb") as handle:
        handle.write(data)


def open_private_text(path: str | Path) -> TextIO:
    """``path`` opened to write UTF-8 text (``newline=""``, as the csv module wants), readable by
    its owner only."""
    return os.fdopen(_open_private(path), "w", newline="", encoding="utf-8")


def not_regular_file(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a file, or None. Opening a FIFO waits for a writer, and
    ``/dev/zero`` (or a symlink to it) never ends: both are refused before they are opened."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing or unreadable: opening it says so, as it always did
    if stat.S_ISREG(mode):
        return None
    kind = ("a folder" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")
    return f"is {kind}, not a regular file"


def readable_by_others(path: str | Path) -> bool:
    """True when users other than the owner (its group, or anyone) may read ``path``."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH))
