"""The Jinja2 environment: the operator's templates in front of the packaged defaults.

Layering (datasette's way): a file in ``newsletter.templates`` replaces the default of the same
name; ``{% extends "default:issue.html.j2" %}`` reaches the default behind an override.
``StrictUndefined`` turns a misspelt variable into an error instead of an empty string, and HTML
templates autoescape so a paper title can never become markup.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import jinja2

from newsletter.config import Config
from newsletter.errors import RenderError

TEMPLATE_FILES: tuple[str, ...] = ("issue.html.j2", "issue.txt.j2", "subject.txt.j2", "style.css", "responsive.css")


def default_templates_dir() -> Path:
    """Where the default templates are: inside the installed wheel, else ``<repo>/templates``."""
    try:
        # Joining a file name works for a regular and a namespace package alike (the folder
        # ships without __init__.py, so operators' copies stay plain template folders).
        packaged = Path(str(resources.files("newsletter.default_templates") / "issue.html.j2"))
        if packaged.is_file():
            return packaged.parent
    except (ModuleNotFoundError, TypeError, ValueError):
        pass
    source = Path(__file__).resolve().parent.parent.parent / "templates"
    if (source / "issue.html.j2").is_file():
        return source
    raise RenderError("the default templates are missing from this installation", where=str(source))


def operator_templates_dir(config: Config) -> Path | None:
    """``newsletter.templates`` as a path (one from newsletter.toml is already relative to that
    file: ``load_config``)."""
    value = (config["newsletter.templates"] or "").strip()
    return Path(value).expanduser() if value else None


def _autoescape(name: str | None) -> bool:
    return bool(name) and name.endswith((".html.j2", ".html", ".htm"))  # type: ignore[union-attr]


def make_environment(templates_dir: str | Path | None = None) -> jinja2.Environment:
    """An environment that looks in ``templates_dir`` (if given) first, then the defaults."""
    defaults = jinja2.FileSystemLoader(str(default_templates_dir()))
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir:
        folder = Path(templates_dir).expanduser()
        if not folder.is_dir():
            raise RenderError("newsletter.templates: no such folder", where=str(folder))
        loaders.append(jinja2.FileSystemLoader(str(folder)))
    loaders.append(jinja2.PrefixLoader({"default": defaults}, delimiter=":"))
    loaders.append(defaults)
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=_autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # auto_reload: the preview server re-renders on each request and must see edits.
        auto_reload=True,
    )
