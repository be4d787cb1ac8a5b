"""The package's structure (docs/architecture.md): no import cycles, standalone layers, every
exception in errors.py, no cross-module private imports, short functions.

Measured over the source with ``ast``: module-level imports (outside ``TYPE_CHECKING``) form the
import graph; an import inside a function is counted when it names a vitzoo module.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import vitzoo

ROOT = Path(vitzoo.__file__).parent
PACKAGE = "vitzoo"
MAX_FUNCTION_IMPORTS = 5
MAX_FUNCTION_LINES = 80


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    is_package: bool
    imports: set[str] = field(default_factory=set)
    """vitzoo modules imported at module level."""
    function_imports: list[str] = field(default_factory=list)
    private_imports: list[str] = field(default_factory=list)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _record(module: Module, node: ast.Import | ast.ImportFrom, names: set[str],
            in_function: bool, in_type_checking: bool) -> None:
    if isinstance(node, ast.Import):
        targets = [(a.name, []) for a in node.names if a.name.split(".")[0] == PACKAGE]
    else:
        target = _absolute(module, node)
        targets = [(target, [a.name for a in node.names])] if target.split(".")[0] == PACKAGE \
            else []
    for target, imported in targets:
        where = f"{module.name}:{node.lineno} {ast.unparse(node)}"
        for n in imported:
            if n.startswith("_") and not n.startswith("__") and f"{target}.{n}" not in names:
                module.private_imports.append(where)
        if in_function:
            module.function_imports.append(where)
            continue
        if in_type_checking:
            continue
        submodules = [n for n in imported if f"{target}.{n}" in names]
        module.imports.update(f"{target}.{n}" for n in submodules)
        if target in names and len(submodules) < max(len(imported), 1):
            module.imports.add(target)  # "from . import submodule" needs no more of the package


def _walk(module: Module, node: ast.AST, names: set[str], in_function: bool,
          in_type_checking: bool) -> None:
    for child in ast.iter_child_nodes(node):
        function = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
        type_checking = in_type_checking or _is_type_checking(child)
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            _record(module, child, names, in_function, in_type_checking)
        _walk(module, child, names, function, type_checking)


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        name = _module_name(path)
        found[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8")),
                             path.name == "__init__.py")
    for module in found.values():
        _walk(module, module.tree, set(found), False, False)
        module.imports.discard(module.name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return groups


def test_there_are_no_import_cycles(modules):
    assert _cycles({name: m.imports for name, m in modules.items()}) == []


def test_at_most_five_vitzoo_imports_inside_functions(modules):
    inside = [where for m in modules.values() for where in m.function_imports]
    assert len(inside) <= MAX_FUNCTION_IMPORTS, "\n".join(inside)


def test_no_module_imports_another_modules_private_name(modules):
    assert [where for m in modules.values() for where in m.private_imports] == []


def test_every_exception_and_warning_class_is_in_errors_py(modules):
    outside = []
    for module in modules.values():
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.ClassDef) or module.name == f"{PACKAGE}.errors":
                continue
            bases = [ast.unparse(b) for b in node.bases]
            if any(k in b for b in bases for k in ("Error", "Exception", "Warning", "Interrupt")):
                outside.append(f"{module.name}:{node.lineno} {node.name}({', '.join(bases)})")
    assert outside == []
    errors = vars(vitzoo.errors)
    public = {n for n, v in errors.items() if isinstance(v, type) and issubclass(v, BaseException)
              and not n.startswith("_")}
    assert public == set(vitzoo.errors.__all__)


def test_the_layers_import_nothing_of_vitzoo_but_errors(modules):
    allowed = {f"{PACKAGE}.errors"}
    for name, module in modules.items():
        if not name.startswith(f"{PACKAGE}.layers"):
            continue
        outside = {i for i in module.imports if not i.startswith(f"{PACKAGE}.layers")}
        assert outside <= allowed, (name, outside)


# docs/architecture.md's order; modules at one rank may import each other.
LAYERS_ORDER = [("errors", "_utils", "_version"), ("layers",), ("config",), ("models",),
                ("pretrained",), ("registry",), ("io", "_torchscript", "adapters"),
                ("loading",), ("reference",),
                ("convert",), ("hub",), ("factory",), ("info",),
                ("export", "explain", "optimize"), ("data",), ("train",), ("benchmark",), ("cli",)]


def test_dependencies_point_one_way_as_the_architecture_page_says(modules):
    rank = {name: i for i, group in enumerate(LAYERS_ORDER) for name in group}
    top = {name: name.split(".")[1] for name in modules if name.count(".") >= 1}
    assert set(top.values()) <= set(rank) | {"__main__"}
    backwards = [f"{name} -> {dep}" for name, module in modules.items() if name in top
                 for dep in module.imports if dep in top and top[dep] != top[name]
                 and rank.get(top[dep], -1) > rank.get(top[name], len(rank))]
    assert backwards == []


def _module_map() -> set[str]:
    """The files docs/architecture.md's module map names, as paths under ``src/vitzoo``: a line
    starts with a file (or a comma-separated list of them) or a directory, whose files may be
    listed in parentheses, alone (``pretrained/ ... (vit.py, deit.py, hybrid.py)``); the indentation
    says which directory a file is in."""
    text = (ROOT.parents[1] / "docs" / "architecture.md").read_text()
    block = text.split("```text\nsrc/vitzoo/\n", 1)[1].split("```", 1)[0]
    named: set[str] = set()
    stack: list[str] = []
    for line in block.splitlines():
        entry = re.match(r"^( +)(\S+)", line)
        if entry is None:
            continue
        depth = (len(entry.group(1)) - 2) // 2
        files = re.match(r"^ +((?:\w+\.py,?\s*)+)", line)
        if entry.group(2).endswith("/"):
            stack = [*stack[:depth], entry.group(2).rstrip("/")]
            names = [f for group in re.findall(r"\(((?:\w+\.py(?:, )?)+)\)", line)
                     for f in group.split(", ")]
        elif files is not None:
            stack = stack[:depth]
            names = re.findall(r"\w+\.py", files.group(1))
        else:
            continue
        named |= {"/".join([*stack, f]) for f in names}
    return named


def test_the_module_map_names_every_module():
    # new modules (models/features.py, data/pipeline.py ...) must be on the architecture page
    modules = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")}
    unnamed = sorted(m for m in modules if not m.endswith("__init__.py") or m == "__init__.py"
                     if m not in _module_map())
    assert unnamed == []
    assert _module_map() - modules == set()  # and names no module that is gone


def test_no_function_is_longer_than_80_lines(modules):
    long = [f"{m.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for m in modules.values() for node in ast.walk(m.tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_the_checks_see_the_whole_package(modules):
    # the measurements above are only as good as the module list they run over
    assert {"vitzoo.loading", "vitzoo.layers.block", "vitzoo.cli.main"} <= set(modules)
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
