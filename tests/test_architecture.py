"""The layout's rules (DESIGN.md, "Layout"), read off the source: who may import whom, no import
cycles, and no switch on a kernel's kind outside the kernel-kind registry."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compiler", "simulator", "wsebench")
# what the simulator may import of the compiler: its public surface
COMPILER_SURFACE = {"compiler", "compiler.ir", "compiler.plan", "compiler.target", "compiler.errors",
                    "compiler.kernels", "compiler.cost", "compiler.schedule", "compiler.estimate",
                    "compiler.evaluate",
                    "compiler.op_names"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function, relative ones resolved."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    return {name: {m for m in _imports(path) if m in modules and m != name}
            for name, path in modules.items()}


GRAPH = _graph()
ALL_IMPORTS = {name: _imports(p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
               for name in [_module_name(p)]}


def _top(names) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_there_are_no_import_cycles():
    """Depth-first search over the project's modules, lazy (function-level) imports included."""
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(GRAPH[node]):
            # importing a module first imports its packages: a package importing its own
            # submodules is not a cycle
            if node.startswith(nxt + ".") or state.get(nxt) == "done":
                continue
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
                continue
            visit(nxt, path + [nxt])
        state[node] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles[:3]


def test_the_compiler_imports_neither_simulator_nor_wsebench_and_only_its_frontend_torch():
    for name, imports in ALL_IMPORTS.items():
        if name.startswith("compiler"):
            assert not _top(imports) & {"simulator", "wsebench", "cupy", "ipywidgets", "matplotlib"}, name
            if name != "compiler.frontend":
                assert "torch" not in _top(imports), name


def test_the_simulator_imports_only_the_compilers_public_surface():
    for name, imports in ALL_IMPORTS.items():
        if name.startswith("simulator"):
            assert "wsebench" not in _top(imports), name
            compiler = {m for m in imports if m.split(".")[0] == "compiler"}
            modules = {m for m in compiler if m in GRAPH or m == "compiler"}
            assert modules <= COMPILER_SURFACE, (name, modules - COMPILER_SURFACE)
            assert not _top(imports) & {"torch", "ipywidgets", "matplotlib"}, name


def test_only_the_backend_imports_cupy():
    users = {name for name, imports in ALL_IMPORTS.items() if {"cupy", "cupyx"} & _top(imports)}
    assert users <= {"simulator.backend"}, users


def test_the_widgets_import_only_wsebench():
    for name, imports in ALL_IMPORTS.items():
        if name.startswith("wsebench.widgets"):
            assert not _top(imports) & {"compiler", "simulator"}, name


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_import_only_wsebench(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert not re.search(r"^\s*(from|import)\s+(compiler|simulator)\b", code, re.M)


KIND_SWITCH = re.compile(r"""\.kind\s*[!=]=\s*["'](matmul|attention|generated)["']|"""
                         r"""["'](matmul|attention|generated)["']\s*[!=]=\s*\w+\.kind""")


def test_no_switch_on_a_kernels_kind_outside_the_registry():
    """Only `compiler/kernels/` knows the kinds; everything else asks `kind_of(kernel)`."""
    found = []
    for pkg in PACKAGES + ("bench",):
        for path in (ROOT / pkg).rglob("*.py"):
            if path.is_relative_to(ROOT / "compiler" / "kernels"):
                continue
            found += [f"{path.relative_to(ROOT)}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1)
                      if KIND_SWITCH.search(line)]
    assert not found, found
