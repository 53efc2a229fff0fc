"""The web app reaches the store through ``newsletter.api``: no module of ``newsletter/web/``
imports ``newsletter.store`` (at the top or inside a function) unless a comment right above the
import says why, starting "not through the API:"."""

from __future__ import annotations

import ast

from conftest import ROOT

WEB = ROOT / "newsletter" / "web"
REASON = "not through the API:"


def _store_imports(tree: ast.AST) -> list[ast.stmt]:
    found: list[ast.stmt] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        else:
            continue
        if any(name == "newsletter.store" or name.startswith("newsletter.store.") for name in names):
            found.append(node)
    return found


def unexplained_store_imports(source: str) -> list[int]:
    """The lines of store imports with no reason above them. The reason is a comment holding
    ``REASON`` in the run of comment lines and store imports directly above (one reason may
    head a group of imports)."""
    lines = source.splitlines()
    store_lines = {node.lineno for node in _store_imports(ast.parse(source))}
    bad = []
    for lineno in sorted(store_lines):
        index = lineno - 2
        explained = False
        while index >= 0:
            text = lines[index].strip()
            if text.startswith("#"):
                if REASON in text:
                    explained = True
                    break
            elif index + 1 not in store_lines:
                break
            index -= 1
        if not explained:
            bad.append(lineno)
    return bad


def test_web_modules_import_the_store_only_with_a_reason_written() -> None:
    offenders = {}
    for path in sorted(WEB.rglob("*.py")):
        bad = unexplained_store_imports(path.read_text(encoding="utf-8"))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders, f"newsletter.store imported in newsletter/web without '# {REASON} why': {offenders}"


def test_the_rules_behind_the_subscription_pages_call_the_api_not_the_store() -> None:
    for name in ("subscriptions.py", "preferences.py", "ratings.py"):
        tree = ast.parse((WEB / name).read_text(encoding="utf-8"))
        imported = {alias.name for node in _store_imports(tree) for alias in node.names}
        assert imported <= {"Transactions", "UnsubscribeSpool"}, (name, imported)


def test_the_check_catches_an_import_without_a_reason() -> None:
    assert unexplained_store_imports("import os\nfrom newsletter.store.subscribers import get_subscriber\n") == [2]
    assert unexplained_store_imports("def f():\n    from newsletter import store\n") == [2]
    assert unexplained_store_imports("import newsletter.store.papers\n") == [1]
    assert unexplained_store_imports("# the store, for its type\nfrom newsletter.store import Store\n") == [2]
    explained = f"# {REASON} a reason\nfrom newsletter.store.access import Transactions\nfrom newsletter.store.spool import S\n"
    assert unexplained_store_imports(explained) == []
    assert unexplained_store_imports(f"# {REASON} a reason\nimport os\nfrom newsletter.store import Store\n") == [3]
