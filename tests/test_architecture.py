"""The package's shape (ARCHITECTURE.md): import rules, no import cycles, modules of a readable size."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import grimp

import wasmrun
import wasmrun.agent  # its logger exists, as in a whole test session

PACKAGE_DIR = Path(wasmrun.__file__).resolve().parent
REPO = PACKAGE_DIR.parent

#: A module longer than this must say at its top why it is not split.
MAX_LINES = 500
LONG_MODULE_NOTE = "This module is long because"


def test_import_contracts_hold() -> None:
    """The contracts in pyproject.toml: layers, images independent of each other, nobody imports the CLI.

    import-linter runs in a child process: its entry point configures logging with `dictConfig`, which
    disables every logger that exists already (``wasmrun.agent``'s, so later tests' ``caplog`` saw
    nothing), and puts the working directory on `sys.path`.
    """
    lint = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    done = subprocess.run([sys.executable, "-c", lint], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Contracts: [1-9]\d* kept, 0 broken", done.stdout), done.stdout
    assert not logging.getLogger("wasmrun.agent").disabled


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.find_modules_directly_imported_by(node) & modules):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or through others (imports under TYPE_CHECKING aside)."""
    graph = grimp.build_graph("wasmrun", exclude_type_checking_imports=True, cache_dir=None)
    assert _cycles(graph, set(graph.modules)) == []


def test_cycle_detection_finds_a_cycle() -> None:
    """The check above can fail: a graph with a cycle is reported."""
    graph = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph, set(graph.modules)) == [["p.a", "p.b", "p.c"]]


def test_long_modules_say_why() -> None:
    """One concept per module: a module over ~500 lines explains at its top why it stays whole."""
    unexplained = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_LINES and LONG_MODULE_NOTE not in "\n".join(lines[:40]):
            unexplained.append(f"{path.relative_to(REPO)}: {len(lines)} lines")
    assert unexplained == []
