"""``newsletter init``: a commented configuration, the templates to edit, a subscribers file.

The configuration file is generated from ``config.SETTINGS``, so it always lists every key with
its default and meaning. Nothing that already exists is ever overwritten.
"""

from __future__ import annotations

import json

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.config import SECTIONS, SETTINGS
from newsletter.errors import NewsletterError
from newsletter.render.templates import default_templates_dir

CONFIG_NAME = "newsletter.toml"
TEMPLATES_NAME = "templates"
SUBSCRIBERS_NAME = "subscribers.csv"
_EXAMPLE_SUBSCRIBERS = Path(__file__).resolve().parent.parent.parent / "subscribers.example.csv"

# Keys written as live values (the rest stay commented, showing their defaults).
_LIVE = {"newsletter.name", "newsletter.from", "newsletter.postal_address", "newsletter.templates"}
# Sections whose mere presence changes behaviour are written commented out.
_COMMENTED_SECTIONS = {"smtp"}


@dataclass(frozen=True)
class ScaffoldEntry:
    path: Path
    written: bool  # False: it existed and was left alone


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)  # a JSON string or list is valid TOML


def config_text() -> str:
    """The commented ``newsletter.toml``: every setting, its meaning, its default."""
    lines = [
        "# newsletter configuration. Every key is optional: a commented key shows its default.",
        "# Any key can also be set in the environment as NEWSLETTER_<SECTION>_<KEY>,",
        "# e.g. NEWSLETTER_SMTP_HOST. Passwords and secrets come only from the environment.",
    ]
    for section in SECTIONS:
        prefix = "# " if section in _COMMENTED_SECTIONS else ""
        lines += ["", f"{prefix}[{section}]"]
        if section in _COMMENTED_SECTIONS:
            lines.append(f"# (uncomment [{section}] and its host to use it)")
        for setting in (s for s in SETTINGS if s.section == section):
            lines.append(f"# {setting.help}")
            default = TEMPLATES_NAME if setting.name == "newsletter.templates" else setting.default
            live = setting.name in _LIVE and section not in _COMMENTED_SECTIONS
            lines.append(f"{'' if live else '# '}{setting.key} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


def subscribers_text() -> str:
    """Our subscribers CSV: the project's example file, else its header and one row."""
    if _EXAMPLE_SUBSCRIBERS.is_file():
        return _EXAMPLE_SUBSCRIBERS.read_text(encoding="utf-8")
    from newsletter.subscribers.formats import OUR_COLUMNS

    row = {"email": "ada@example.org", "name": "Ada Lovelace", "status": "active", "attributes": "{}"}
    return ",".join(OUR_COLUMNS) + "\n" + ",".join(row.get(c, "") for c in OUR_COLUMNS) + "\n"


def _write(path: Path, data: bytes) -> ScaffoldEntry:
    if path.exists():
        return ScaffoldEntry(path, written=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("xb") as handle:  # "x": never overwrite, even in a race
            handle.write(data)
    except FileExistsError:
        return ScaffoldEntry(path, written=False)
    except OSError as exc:
        raise NewsletterError(f"cannot write: {exc.strerror}", where=str(path)) from None
    return ScaffoldEntry(path, written=True)


def scaffold(directory: Path) -> list[ScaffoldEntry]:
    """Write ``newsletter.toml``, ``templates/*`` and ``subscribers.csv`` into ``directory``."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NewsletterError("not a folder", where=str(directory))
    entries = [_write(directory / CONFIG_NAME, config_text().encode("utf-8"))]
    source = default_templates_dir()
    for template in sorted(source.iterdir()):
        if template.is_file() and not template.name.startswith(("_", ".")) and template.suffix != ".py":
            entries.append(_write(directory / TEMPLATES_NAME / template.name, template.read_bytes()))
    entries.append(_write(directory / SUBSCRIBERS_NAME, subscribers_text().encode("utf-8")))
    return entries
