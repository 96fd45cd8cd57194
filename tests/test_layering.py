"""The package's layers, read from the source: no import cycle, and each layer imports only the layers below it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rgbxseg

SOURCE = Path(rgbxseg.__file__).parent
GROUND = ("classes", "errors", "inputs", "io", "metadata", "runtime", "version")

LAYERS = {
    "ground": 0,
    "models": 1,
    "data": 1,
    "engine": 2,
    "inference": 2,
    "export": 3,
    "bench": 4,
    "demo": 5,
    "cli": 6,
}
"""A module may import modules of its own part and of parts of a lower rank; data and models are independent."""


def _module_names() -> dict[str, Path]:
    modules = {}
    for path in SOURCE.rglob("*.py"):
        parts = ("rgbxseg", *path.relative_to(SOURCE).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _module_names()


def _imports(module: str, path: Path) -> set[str]:
    """Package modules that ``module`` imports anywhere (top level, functions, type-checking blocks)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else base)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _part(module: str) -> str:
    top = module.split(".")[1] if "." in module else "rgbxseg"
    return "ground" if top in GROUND else top


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components of the import graph: each must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while (member := stack.pop()) != module:
                component.append(member)
            if component:
                cycles.append(sorted([module, *component]))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_every_layer_imports_only_the_layers_below() -> None:
    offending = []
    for module, targets in GRAPH.items():
        if module in ("rgbxseg", "rgbxseg.__main__"):
            continue
        for target in targets:
            source, dest = _part(module), _part(target)
            if dest == "rgbxseg" or (dest != source and LAYERS[dest] >= LAYERS[source]):
                offending.append(f"{module} → {target}")
    assert not offending, "imports against the layering:\n" + "\n".join(sorted(offending))


def test_the_command_line_package_itself_imports_no_engine() -> None:
    """``rgbxseg.cli`` only dispatches: its error handling needs the ground floor, not the training engine."""
    assert not {t for t in GRAPH["rgbxseg.cli"] if t.startswith("rgbxseg.engine")}


@pytest.mark.parametrize(
    ("module", "not_loaded"),
    [
        ("rgbxseg.data.writer", ("rgbxseg.models", "rgbxseg.engine", "rgbxseg.inference")),
        ("rgbxseg.models", ("rgbxseg.data", "rgbxseg.engine", "rgbxseg.inference", "rgbxseg.cli")),
        ("rgbxseg.version", ("rgbxseg.models", "rgbxseg.data", "torch")),
    ],
)
def test_importing_one_part_loads_only_what_it_needs(module: str, not_loaded: tuple[str, ...]) -> None:
    """The package root loads its public API lazily, so importing a module (which imports its parent packages)
    pulls in only that module's own imports."""
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith({not_loaded!r})))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert completed.stdout.strip() == "[]"


def test_the_graph_sees_relative_nested_and_package_imports() -> None:
    """The walk must see what it checks: relative imports, imports in nested blocks, names of subpackages."""
    assert "rgbxseg.models.base" in GRAPH["rgbxseg.models.asymformer"]
    assert "rgbxseg.metadata" in GRAPH["rgbxseg.models.base"]  # under `if TYPE_CHECKING:`
    assert "rgbxseg.version" in GRAPH["rgbxseg.data.writer"]
    assert "rgbxseg.models.weights" in GRAPH["rgbxseg.models"]
    assert {"rgbxseg.inference", "rgbxseg.models"} <= GRAPH["rgbxseg"]


def test_every_public_name_of_the_package_root_resolves() -> None:
    assert all(getattr(rgbxseg, name) is not None for name in rgbxseg.__all__)
    assert {*rgbxseg.__all__} == {"__version__", *rgbxseg._MODULE_OF}
