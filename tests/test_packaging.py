"""The wheel ships every package, the default templates and the bundled sample."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "newsletter").rglob("__init__.py")}
    assert on_disk - listed == set(), "packages missing from pyproject.toml"
    assert config["package-dir"]["newsletter.default_templates"] == "templates"
    assert (ROOT / "templates" / "issue.html.j2").is_file()
    assert (ROOT / "newsletter" / "data" / "sample-papers.json").is_file()
