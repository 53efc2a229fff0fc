"""The editor's note: Markdown text from the config, or from a file the config names."""

from __future__ import annotations

from pathlib import Path

from newsletter.config import Config
from newsletter.errors import ConfigError

_MARKDOWN_SUFFIXES = (".md", ".markdown", ".txt")


def load_editor_note(config: Config) -> str:
    """The Markdown source of the note, or "" for none.

    ``newsletter.editor_note`` is taken as a path when it names an existing file or ends in
    ``.md``/``.markdown``/``.txt`` (so a mistyped path is an error rather than a note that
    reads "notes/week48.md"); a relative path is relative to the configuration file.
    """
    value = (config["newsletter.editor_note"] or "").strip()
    if not value or "\n" in value:
        return value
    base = config.path.parent if config.path is not None else Path.cwd()
    candidate = Path(value).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    if candidate.is_file():
        try:
            return candidate.read_text(encoding="utf-8-sig").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"newsletter.editor_note: cannot read the note: {exc}", where=str(candidate)) from None
    if value.lower().endswith(_MARKDOWN_SUFFIXES):
        raise ConfigError("newsletter.editor_note: no such file", where=str(candidate))
    return value
