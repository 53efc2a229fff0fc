"""The shape of the code, checked: no import cycle among the package's modules, the
configuration importable without the scheduler, no long function without a reason beside it,
SQL driver details only in the store."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "newsletter"
LONG_LINES = 80


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _top_level_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``path`` imports at module level (not inside functions or under
    TYPE_CHECKING): what runs when it is imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, (ast.Try, ast.If)) else [node]:
            if isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                base = sub.module
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in sub.names)
            elif isinstance(sub, ast.Import):
                names.update(alias.name for alias in sub.names)
    return {n for n in names if n in modules}


def test_no_import_cycle_among_the_packages_modules() -> None:
    modules = _modules()
    graph = {name: _top_level_imports(path, modules) - {name} for name, path in modules.items()}
    # A package imports its own submodules by design (``newsletter.store`` re-exports): an edge
    # from a package to its own child is not a cycle of meaning.
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in sorted(graph[name]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [name, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, f"import cycles: {cycles}"


def test_the_configuration_is_imported_without_the_scheduler() -> None:
    code = "import sys, newsletter.config; print(sorted(m for m in sys.modules if m.startswith('newsletter')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "newsletter.scheduler" not in out and "newsletter.pipeline" not in out, out


def test_no_function_over_80_lines_without_a_reason_beside_it() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                above = lines[max(0, node.lineno - 1 - len(node.decorator_list) - 3):node.lineno - 1]
                if size > LONG_LINES and not any(line.strip().startswith("# Long:") for line in above):
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({size} lines)")
    assert not long, "functions over 80 lines with no '# Long:' reason above them: " + ", ".join(long)


def test_driver_connections_are_opened_only_in_the_store() -> None:
    """SQL driver details (raw DBAPI connections, engine connections, PRAGMAs) live in store/."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(PACKAGE / "store"):
            continue
        text = path.read_text(encoding="utf-8")
        for marker in ("dbapi_connection", "engine.connect(", "PRAGMA ", "exec_driver_sql("):
            if marker in text:
                offenders.append(f"{path.relative_to(ROOT)}: {marker}")
    assert not offenders, offenders
