"""CLI commands of this area; see newsletter.cli for the conventions."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
