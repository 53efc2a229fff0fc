"""The web pages' templates: Jinja2 with autoescape on and StrictUndefined, so every value a user
or a feed supplied is escaped and a misspelt variable fails loudly in the tests, not silently in
production.

The page templates ship inside the package (``newsletter/web/templates``); an operator's own
templates folder (``newsletter.templates``) may override one by putting a file of the same name
under ``web/`` in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from newsletter.config import Config

PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "templates"


def page_environment(config: Config) -> Environment:
    loaders = []
    if config["newsletter.templates"]:
        own = Path(config["newsletter.templates"]).expanduser() / "web"
        if own.is_dir():
            loaders.append(FileSystemLoader(str(own)))
    loaders.append(FileSystemLoader(str(PACKAGED_TEMPLATES)))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["newsletter_name"] = config["newsletter.name"]
    env.globals["postal_address"] = config["newsletter.postal_address"]
    logo = config["newsletter.logo_url"]
    env.globals["logo_url"] = logo if logo.startswith("https://") else ""
    env.globals["accent"] = config["newsletter.accent"] or "#1a56db"
    return env


class Pages:
    """Renders a named page template into an HTMLResponse."""

    def __init__(self, config: Config) -> None:
        self.env = page_environment(config)

    def render(self, template: str, status_code: int = 200, /, headers: dict[str, str] | None = None,
               **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code, headers=headers)
