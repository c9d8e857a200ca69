"""The layers of docs/ARCHITECTURE.md, checked on the source: imports go one way, no cycles.

Every ``import`` and ``from … import`` of a ``darktrigger`` module counts, at module level or
inside a function, under ``TYPE_CHECKING`` too: a lazy import that dodges a cycle at run
time is still a cycle in the design.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

import darktrigger

ROOT = Path(darktrigger.__file__).parent
#: rank of each layer: a module may import its own layer and those of lower rank
LAYERS = {"replay": 0, "models": 1, "monitoring": 1, "firmware": 2, "daq": 3}
#: monitoring is a leaf: it imports nothing of the other layers
LEAVES = {"monitoring"}


def _modules() -> dict[str, Path]:
    out = {}
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(["darktrigger", *parts])] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The darktrigger modules that module ``name`` imports (its own parent packages left out)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                if node.level else (node.module or "")
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for target in targets:
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if target in MODULES and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    return module.split(".")[1]


def test_every_layer_has_modules() -> None:
    assert {_layer(m) for m in MODULES} == set(LAYERS)
    assert len(MODULES) > 50


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layers_import_one_way(layer: str) -> None:
    wrong = sorted(
        f"{m} imports {d}" for m, deps in GRAPH.items() if _layer(m) == layer for d in deps
        if _layer(d) != layer and (layer in LEAVES or LAYERS[_layer(d)] >= LAYERS[layer]
                                   or (_layer(d) in LEAVES and layer != "daq")))
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_command_line_and_the_stages_start_without_torch_or_tensorflow() -> None:
    """Scorers register on first look-up, backends are named by entry points: building the
    parser, reading a menu and a topology, and importing the stages load no framework."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from darktrigger.daq.cli import build_parser\n"
            "build_parser()\n"
            "import darktrigger.daq.launch, darktrigger.daq.runner, darktrigger.daq.stages\n"
            "from darktrigger.daq.trigger.menus import example_menu\n"
            "from darktrigger.daq.trigger.menu import Menu\n"
            "Menu.from_yaml(example_menu())\n"
            "from darktrigger.models import BACKENDS\n"
            "assert BACKENDS.names() == ['emulator', 'firmware', 'onnxruntime', 'torch'], BACKENDS.names()\n"
            "loaded = sorted({'torch', 'tensorflow', 'onnxruntime', 'numba'} & set(sys.modules))\n"
            "assert not loaded, loaded\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
