"""The ``subscribers`` commands are thin over ``newsletter.api``: their modules never import the
store (at the top, inside a function or for type checking), every command calls the API, and
the API functions they use have docstrings and typed signatures."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import click

from conftest import ROOT
from newsletter import api
from newsletter.cli import main

SUBSCRIBER_CLI_MODULES = [ROOT / "newsletter" / "cli" / "subscribers.py", ROOT / "newsletter" / "cli" / "readers.py"]


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_subscribers_cli_modules_do_not_import_the_store() -> None:
    for path in SUBSCRIBER_CLI_MODULES:
        store = sorted(n for n in _imported_modules(path) if n == "newsletter.store" or n.startswith("newsletter.store."))
        assert not store, f"{path.relative_to(ROOT)} imports {store}: call newsletter.api instead"


def test_the_check_finds_a_store_import(tmp_path: Path) -> None:
    """The check above can fail: it sees an import inside a function too."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from newsletter.store import subscribers\n", encoding="utf-8")
    assert "newsletter.store.subscribers" in _imported_modules(sample)


def _api_calls(function: object) -> set[str]:
    tree = ast.parse(inspect.getsource(function).lstrip())  # type: ignore[arg-type]
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "api"}


def test_every_subscribers_command_calls_the_api() -> None:
    group = main.commands["subscribers"]
    assert isinstance(group, click.Group)
    expected = {"add", "remove", "unsubscribe", "list", "show", "set", "rate", "import", "export", "stats"}
    assert expected <= set(group.commands)
    for name, command in group.commands.items():
        callback = inspect.unwrap(command.callback)  # type: ignore[arg-type]
        calls = _api_calls(callback)
        assert calls, f"subscribers {name} calls no newsletter.api function"
        assert calls <= set(api.__all__), f"subscribers {name} calls {calls - set(api.__all__)}, not in api.__all__"


def test_the_api_functions_of_the_subscribers_commands_are_documented_and_typed() -> None:
    used = set().union(*(_api_calls(inspect.unwrap(c.callback))  # type: ignore[arg-type]
                         for c in main.commands["subscribers"].commands.values()))  # type: ignore[attr-defined]
    for name in sorted(used):
        function = getattr(api, name)
        assert inspect.getdoc(function), f"api.{name} has no docstring"
        signature = inspect.signature(function)
        untyped = [p for p in signature.parameters.values() if p.annotation is inspect.Parameter.empty]
        assert not untyped and signature.return_annotation is not inspect.Signature.empty, f"api.{name} is not typed"
