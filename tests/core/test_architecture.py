"""The shape of the code (docs/contracts.md, DESIGN section 2): one-way imports, small modules, names of things.

Read from the source with ``ast``: imports inside functions (lazy imports) count like the others, and
importing ``a.b.c`` also runs ``a`` and ``a.b`` (their ``__init__``), so those count too.
"""

import ast
import re
from pathlib import Path

import pytest

from biodiv_core.settings import REPO_ROOT

PACKAGES = ("biodiv_core", "azureml_steps", "biodiv_dagster")
MAX_MODULE_LINES = 400


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


MODULES = _modules()


def _imported(name: str, path: Path) -> set[str]:
    """Project modules ``name`` imports anywhere in its file, with the packages each import runs."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    found = set()
    for target in targets:
        parts = target.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in MODULES)
    found.discard(name)
    return found


GRAPH = {name: _imported(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_the_cycle_finder_finds_a_cycle_through_a_package_init():
    graph = {"p": {"p.a"}, "p.a": {"p.b"}, "p.b": {"p"}, "q": set()}
    assert _cycles(graph) == [["p", "p.a", "p.b"]]


def test_no_import_cycle_in_the_three_packages():
    assert _cycles(GRAPH) == []


def test_arrows_point_one_way_between_packages_and_stages():
    """biodiv_core never imports the orchestrator; steps never import Dagster; stages sit on top of the core."""
    layers = ["data", "training", "evaluation", "serving", "stages"]  # each may import only those before it
    for name, imported in GRAPH.items():
        if name.startswith(("biodiv_core", "azureml_steps")):
            assert not {m for m in imported if m.startswith("biodiv_dagster")}, name
        parts = name.split(".")
        if parts[0] == "biodiv_core" and len(parts) > 2 and parts[1] in layers:
            allowed = set(layers[: layers.index(parts[1]) + 1])
            above = {m for m in imported if m.split(".")[0] == "biodiv_core" and len(m.split(".")) > 1}
            above = {m for m in above if m.split(".")[1] in layers and m.split(".")[1] not in allowed}
            assert not above, f"{name} imports {sorted(above)} from a later stage"
    for path in [*(REPO_ROOT / "biodiv_core").rglob("*.py"), *(REPO_ROOT / "azureml_steps").rglob("*.py")]:
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) (dagster|azure\.ai)\b", text, re.M), path


def test_biodiv_core_is_grouped_by_stage():
    subpackages = {p.parent.name for p in (REPO_ROOT / "biodiv_core").glob("*/__init__.py")}
    assert {"data", "training", "evaluation", "serving"} <= subpackages


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_400_lines(name):
    assert len(MODULES[name].read_text().splitlines()) <= MAX_MODULE_LINES


def test_code_names_what_it_holds_not_the_work_item():
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for path in MODULES.values()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"issue[\s_-]*\d", line, re.I)
    ]
    assert offenders == []
