"""Docs are tested: README.md stays short and names every command, every command shown in README
or docs/ exists with the options it is shown with, every link resolves, every page is reachable,
and docs/configuration.md is what docs/make_configuration.py writes."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from newsletter.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_PATH = ROOT / "README.md"
README = README_PATH.read_text(encoding="utf-8")
PAGES = [README_PATH, *sorted(DOCS.glob("*.md")), ROOT / "bench" / "README.md"]
TEST_COMMAND = "python3 -m pytest -q -p no:cacheprovider"


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


# --- README ------------------------------------------------------------------------------------

def test_the_readme_fits_on_a_screen_or_two() -> None:
    size = len(README.encode("utf-8"))
    assert size <= 12_288, f"README.md is {size} bytes; move reference material to docs/"


def test_the_readme_test_command_is_the_one_ci_runs() -> None:
    assert f'pip install ".[test]" && {TEST_COMMAND}\n' in README
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.rstrip().splitlines()[-1] == TEST_COMMAND


def test_the_cli_has_the_agreed_verbs() -> None:
    names = {path for path, _ in all_commands()}
    for verb in ("init", "ingest", "papers", "preview", "send", "resend", "issues", "check", "run", "serve",
                 "subscribers", "subscribers add", "subscribers remove", "subscribers unsubscribe",
                 "subscribers list", "subscribers import", "subscribers export", "subscribers stats"):
        assert verb in names


@pytest.mark.parametrize(("path", "command"), all_commands(), ids=[p for p, _ in all_commands()])
def test_every_command_has_help_with_an_example_and_is_in_the_readme(path: str, command: click.Command) -> None:
    result = CliRunner().invoke(main, [*path.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`newsletter {path} --help` has no Example block"
    assert f"`newsletter {path}" in README, f"`newsletter {path}` is not in README.md's command list"


# --- commands shown in code blocks ---------------------------------------------------------------

FENCE = re.compile(r"^[ \t]*```([\w-]*)\n(.*?)^[ \t]*```", flags=re.S | re.M)
SEPARATORS = {"&&", "||", ";", "|", "&"}


def _shell_lines(text: str) -> list[str]:
    """The command lines of the sh, bash and console blocks (console: the `$ ` lines only)."""
    lines: list[str] = []
    for language, body in FENCE.findall(text):
        if language not in ("sh", "bash", "console"):
            continue
        body = re.sub(r"\\\n\s*", " ", body)  # continuation lines
        for line in body.splitlines():
            line = line.strip()
            if language == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if line:
                lines.append(line)
    return lines


def _newsletter_calls(line: str) -> list[list[str]]:
    """Each `newsletter ...` in one shell line: its words after `newsletter`, up to a separator or
    redirection; `NAME=value` and `sudo -u USER` before it are skipped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    segments: list[list[str]] = [[]]
    for token in lexer:
        if token in SEPARATORS:
            segments.append([])
        else:
            segments[-1].append(token)
    calls = []
    for words in segments:
        redirect = next((i for i, w in enumerate(words) if set(w) <= set("<>&")), len(words))
        words = words[:redirect]
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            words = words[1:]
        if words[:1] == ["sudo"]:
            words = words[3:] if words[1:2] == ["-u"] else words[1:]
        if words and os.path.basename(words[0]) == "newsletter":
            calls.append(words[1:])
    return calls


def _shown_invocations() -> list[tuple[str, list[str]]]:
    shown = []
    for page in PAGES:
        for line in _shell_lines(page.read_text(encoding="utf-8")):
            for argv in _newsletter_calls(line):
                shown.append((page.relative_to(ROOT).as_posix(), argv))
    return shown


def test_the_docs_show_commands() -> None:
    pages = {page for page, _ in _shown_invocations()}
    assert "README.md" in pages and "docs/deliver.md" in pages and "docs/operations.md" in pages, pages


@pytest.mark.parametrize(("page", "argv"), _shown_invocations(), ids=lambda v: " ".join(v)[:60] if isinstance(v, list) else v)
def test_every_command_shown_parses(page: str, argv: list[str], tmp_path: Path) -> None:
    """Each command in a code block names real commands and options: it parses with `--help`
    appended (checked first by hand, so a missing option value can never run a command)."""
    where = f"{page}: newsletter {' '.join(argv)}"
    command: click.Command = main
    words = iter(argv)
    for word in words:
        if word in ("--config", "--db"):  # the global options take a value
            next(words, None)
        elif isinstance(command, click.Group) and not word.startswith("-"):
            assert word in command.commands, f"{where}: {command.name} has no command {word!r}"
            command = command.commands[word]
    options = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}
    options |= {opt for param in main.params for opt in [*param.opts, *param.secondary_opts]}
    for word in argv:
        if word.startswith("-"):
            assert word.split("=", 1)[0] in options, f"{where}: unknown option {word}"
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        result = runner.invoke(main, [*argv, "--help"])
    assert result.exit_code == 0 and result.output.startswith("Usage:"), f"{where}\n{result.output}"


# --- links and pages -----------------------------------------------------------------------------

def _prose(text: str) -> str:
    """The text without code blocks and inline code, where a link is only an example."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def _links(text: str) -> list[str]:
    prose = _prose(text)
    return re.findall(r"\]\(([^)\s]+)\)", prose) + re.findall(r'(?:src|href)="([^"]+)"', prose)


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", page.read_text(encoding="utf-8")), flags=re.M):
        text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for link in _links(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.is_file():
            broken.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{link}: no heading with that anchor in {path.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_readme_or_another_page() -> None:
    linked = set()
    for page in PAGES:
        for link in _links(page.read_text(encoding="utf-8")):
            target = link.partition("#")[0]
            if target and not re.match(r"[a-z][a-z0-9+.-]*:", target):
                linked.add(((page.parent / target).resolve(), page.resolve()))
    for doc in sorted(DOCS.glob("*.md")):
        sources = {source for target, source in linked if target == doc.resolve() and source != doc.resolve()}
        assert sources, f"docs/{doc.name} is linked from no other page"


def test_the_readme_shows_the_screenshots() -> None:
    for name in ("issue-phone.png", "issue-desktop.png"):
        assert f'src="docs/images/{name}"' in README
        assert (DOCS / "images" / name).stat().st_size < 200_000, f"{name} is large: clip it"


# --- the configuration reference ----------------------------------------------------------------

def test_the_configuration_reference_is_what_the_script_writes() -> None:
    spec = importlib.util.spec_from_file_location("make_configuration", DOCS / "make_configuration.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.render()
    assert (DOCS / "configuration.md").read_text(encoding="utf-8") == expected, \
        "docs/configuration.md is out of date: run python3 docs/make_configuration.py"
