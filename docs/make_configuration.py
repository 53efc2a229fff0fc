"""Write docs/configuration.md from the settings declared in newsletter/config.py.

    python3 docs/make_configuration.py

Run it after adding or changing a setting; tests/test_docs.py fails while the page differs from
what this script writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter import config  # noqa: E402  (after the path is set)

PAGE = ROOT / "docs" / "configuration.md"

INTRO = """\
# Configuration

<!-- Written by docs/make_configuration.py from newsletter/config.py: edit those, not this page. -->

Every setting is optional: with none at all, `newsletter` runs on the defaults below and writes
mail to the `outbox/` folder. `newsletter init` writes a `newsletter.toml` that lists every
setting with its meaning and default, the ones you need to change first left uncommented.

Where a value comes from, last one wins:

1. the defaults below;
2. `newsletter.toml` in the current folder, or the file given by `--config PATH`;
3. the environment: `NEWSLETTER_<SECTION>_<KEY>`, as in the table (a list is comma-separated or
   a JSON list);
4. command-line flags, such as `--db URL` (for `store.url`) or `send --rate N`.

A relative path in `newsletter.toml` (a setting whose values say "a path", and the SQLite file of
`store.url`) is relative to the folder of that file, so `--config ../site/newsletter.toml` uses
the site's store and outbox; one given by `--db` or the environment is relative to the current
folder.

Secrets never go in the file. The SMTP password comes only from `NEWSLETTER_SMTP_PASSWORD`; the
key that signs links from `NEWSLETTER_SECRET_KEY` (another variable if `newsletter.secret_key_env`
names one; without it a random key is made once and kept in the store); the preview's token from
`NEWSLETTER_PREVIEW_TOKEN` (or the variable `web.preview_token_env` names).

A wrong key or value stops the command before it does anything, with one line per problem
naming its place, for example `newsletter.toml:12: issue.max_papers: must be at least 1, got 0`.
A `NEWSLETTER_*` variable that is no setting (a misspelt `NEWSLETTER_SMTP_HOSTNAME`) is named in
a warning, with the setting it probably meant. Exit status of every command: 0 done, 1 something
failed (the output says what), 2 bad usage.
"""

# The pages that explain each section's settings at length.
SECTION_PAGES = {
    "newsletter": ("render.md", "deliver.md", "web.md"),
    "sources": ("ingest.md",),
    "issue": ("render.md",),
    "store": ("operations.md", "subscribers.md"),
    "smtp": ("deliver.md", "operations.md"),
    "delivery": ("deliver.md",),
    "schedule": ("scheduler.md",),
    "web": ("web.md",),
}


def toml_value(value: object) -> str:
    """A default as it would be written in newsletter.toml."""
    return json.dumps(value, ensure_ascii=False)


def allowed(setting: config.Setting) -> str:
    """What values the setting accepts, in a few words."""
    if setting.choices:
        return ", ".join(f"`{choice}`" for choice in setting.choices)
    if setting.check is config.duration_problem:
        return "a duration: `90s`, `5m`, `24h`, `2d`"
    if setting.check is config.timezone_problem:
        return "an IANA timezone name"
    if setting.check is config.schedule_problem:
        return "a schedule, see [scheduler.md](scheduler.md)"
    words = {str: "text", int: "a whole number", float: "a number", list: "a list", bool: "true or false"}
    if setting.path == "sqlite_url":
        return "`sqlite:///FILE` or `postgresql://...`"
    kind = "a path" if setting.path == "path" else words.get(setting.type, setting.type.__name__)
    if setting.minimum is not None and setting.maximum is not None:
        return f"{kind}, {setting.minimum:g} to {setting.maximum:g}"
    if setting.minimum is not None:
        return f"{kind}, at least {setting.minimum:g}"
    return kind


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def section_table(section: str) -> str:
    pages = SECTION_PAGES.get(section, ())
    lines = [f"## `[{section}]`", ""]
    if pages:
        links = ", ".join(f"[{page}]({page})" for page in pages)
        lines += [f"Explained in {links}.", ""]
    lines += ["| setting | default | environment | values | meaning |", "|---|---|---|---|---|"]
    for setting in config.SETTINGS:
        if setting.section == section:
            lines.append(f"| `{setting.name}` | `{cell(toml_value(setting.default))}` | `{setting.env}` "
                         f"| {cell(allowed(setting))} | {cell(setting.help)} |")
    return "\n".join(lines) + "\n"


def render() -> str:
    """The whole page, as it should be on disk."""
    return "\n".join([INTRO] + [section_table(section) for section in config.SECTIONS])


if __name__ == "__main__":
    PAGE.write_text(render(), encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
