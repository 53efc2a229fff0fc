"""Docs are tested: every command has help with an example and is shown in README.md, and the
commands README.md shows use only verbs and options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from newsletter.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def all_commands() -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []

    def walk(prefix: str, group: click.Group) -> None:
        for name, command in sorted(group.commands.items()):
            path = f"{prefix} {name}".strip()
            found.append((path, command))
            if isinstance(command, click.Group):
                walk(path, command)

    walk("", main)
    return found


def test_the_cli_has_the_agreed_verbs() -> None:
    names = {path for path, _ in all_commands()}
    for verb in ("init", "ingest", "papers", "preview", "send", "resend", "issues", "subscribers",
                 "subscribers add", "subscribers remove", "subscribers unsubscribe", "subscribers list",
                 "subscribers import", "subscribers export", "subscribers stats", "run", "serve"):
        assert verb in names


@pytest.mark.parametrize(("path", "command"), all_commands(), ids=[p for p, _ in all_commands()])
def test_every_command_has_help_with_an_example_and_is_in_the_readme(path: str, command: click.Command) -> None:
    result = CliRunner().invoke(main, [*path.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`newsletter {path} --help` has no Example block"
    assert f"newsletter {path}" in README, f"`newsletter {path}` is not shown in README.md"


def _readme_invocations() -> list[list[str]]:
    """Every `newsletter ...` invocation inside README's shell code blocks."""
    calls: list[list[str]] = []
    for block in re.findall(r"```(?:sh|bash|console)\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0] if not line.lstrip().startswith("#!") else ""
            for part in re.split(r"&&|\|\||;|\|", line):
                words = shlex.split(part, posix=True) if part.strip() else []
                if words[:1] == ["newsletter"]:
                    calls.append(words[1:])
    return calls


@pytest.mark.parametrize("argv", _readme_invocations(), ids=lambda a: " ".join(a)[:60])
def test_readme_commands_parse(argv: list[str]) -> None:
    """Each README command names real verbs and options: --help after it must succeed."""
    ctx_words: list[str] = []
    command: click.Command = main
    for word in argv:
        if isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
            ctx_words.append(word)
    assert ctx_words or not argv, f"unknown command in README: newsletter {' '.join(argv)}"
    options = {opt for param in command.params for opt in getattr(param, "opts", []) + getattr(param, "secondary_opts", [])}
    options |= {opt for param in main.params for opt in getattr(param, "opts", [])}
    options |= {"--help", "-h", "--version"}
    for word in argv:
        if word.startswith("--"):
            assert word.split("=", 1)[0] in options, f"README uses unknown option {word} of newsletter {' '.join(ctx_words)}"
