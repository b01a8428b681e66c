"""The import contract: trainlab's packages import one way, from the command line down to torch.

    cli -> reports -> tuning -> benchmark -> {store, algorithms, workloads} -> {optim, schedules, memory,
    scoring} -> {errors, utils}

A package may import its own modules and anything in a lower layer; within a layer only along the
order written in LAYERS. Every `import` counts, function-level ones included. A back-arrow fails
this test, and the second test shows the checker catches one."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "trainlab"
# (layer, rank within the layer): a package may import those with a smaller pair.
LAYERS = {
    "errors": (0, 0),
    "utils": (0, 1),
    "optim": (1, 0),
    "schedules": (1, 0),
    "memory": (1, 0),
    "scoring": (1, 0),
    "store": (2, 0),
    "algorithms": (2, 0),
    "workloads": (2, 0),
    "benchmark": (3, 0),
    "tuning": (3, 1),
    "reports": (3, 2),
    "cli": (4, 0),
}
MAX_LINES = 400  # a module over this holds more than one concept: split it


def _dynamic_target(node: ast.Call) -> str | None:
    """The module a literal `importlib.import_module("...")`, `import_module("...")` or
    `__import__("...")` names (a computed name, such as a user's workload file, cannot be read)."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def imported_packages(source: str, module: tuple[str, ...] = ()) -> list[tuple[int, str]]:
    """(line, trainlab subpackage) for every import of trainlab in `source`: module-level and
    function-level statements, relative ones (resolved from `module`, the importing module's path
    inside trainlab, e.g. ("tuning", "outcomes")), and dynamic imports of a literal name."""
    found = []
    package = ["trainlab", *module[:-1]]  # the package a relative import starts from
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if not module:
                    raise ValueError("a relative import needs the importing module's path")
                base = package[: len(package) - (node.level - 1)]
                parts = base + (node.module.split(".") if node.module else [])
            elif node.module:
                parts = node.module.split(".")
            else:
                continue
            if parts[0] != "trainlab":
                continue
            names = [a.name for a in node.names] if len(parts) == 1 else [parts[1]]
            found += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[1]) for a in node.names if a.name.startswith("trainlab.")]
        elif isinstance(node, ast.Call) and (target := _dynamic_target(node)) and target.startswith("trainlab."):
            found.append((node.lineno, target.split(".")[1]))
    return found


def back_arrows(package: str, source: str, where: str, module: tuple[str, ...] = ()) -> list[str]:
    own = LAYERS[package]
    return [
        f"{where}:{line} {package} imports {target}"
        for line, target in imported_packages(source, module)
        if target in LAYERS and target != package and LAYERS[target] >= own
    ]


def test_every_import_points_down():
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if len(parts) > 1:
            assert parts[0] in LAYERS, f"package {parts[0]!r} has no layer: add it to LAYERS"
            module = (*parts[:-1], path.stem)
            problems += back_arrows(parts[0], path.read_text(), str(path.relative_to(ROOT.parent)), module)
    assert not problems, "imports that point up:\n" + "\n".join(problems)


def test_a_planted_back_arrow_is_caught():
    planted = "import torch\n\ndef f():\n    from trainlab.cli.main import main\n    return main\n"
    assert back_arrows("optim", planted, "trainlab/optim/x.py") == ["trainlab/optim/x.py:4 optim imports cli"]
    assert back_arrows("tuning", "from trainlab import reports\n", "t.py") == ["t.py:1 tuning imports reports"]
    assert back_arrows("reports", "from trainlab.tuning import outcomes\n", "r.py") == []
    # relative imports, resolved from the importing module
    assert back_arrows("optim", "from ..cli import main\n", "o.py", ("optim", "x")) == ["o.py:1 optim imports cli"]
    assert back_arrows("tuning", "from .. import reports\n", "t.py", ("tuning", "x")) == [
        "t.py:1 tuning imports reports"
    ]
    assert back_arrows("optim", "from . import lion\nfrom .base import X\n", "o.py", ("optim", "x")) == []
    assert back_arrows("reports", "from ..tuning.plan import P\n", "r.py", ("reports", "x")) == []
    # dynamic imports of a literal name, at any depth
    dynamic = "import importlib\n\ndef f():\n    return importlib.import_module('trainlab.cli.main')\n"
    assert back_arrows("optim", dynamic, "o.py") == ["o.py:4 optim imports cli"]
    assert back_arrows("tuning", "m = __import__('trainlab.reports')\n", "t.py") == ["t.py:1 tuning imports reports"]
    assert back_arrows("optim", "import_module(name)\n", "o.py") == []  # a computed name cannot be read


def test_schedules_do_not_import_optimizers():
    for path in (ROOT / "schedules").glob("*.py"):
        assert all(t != "optim" for _, t in imported_packages(path.read_text())), path


def test_no_module_grows_past_the_ceiling():
    big = {
        str(p.relative_to(ROOT.parent)): n
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big, big


# ---- no import cycles, module by module ----------------------------------------------------------


def module_sources() -> dict[str, str]:
    """{dotted module name: source} for every module of trainlab (a package is its __init__)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path.read_text()
    return out


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the trainlab modules it imports: every `import`, at any depth (function-level and
    TYPE_CHECKING ones included: a cycle hidden in a function still couples the two modules, and
    breaks when the import moves up). `from PKG import NAME` counts as PKG.NAME where that is a
    module, else as PKG."""
    graph: dict[str, set[str]] = {}
    for name, source in sources.items():
        targets = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "trainlab":
                targets |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in sources else node.module
                    for a in node.names
                }
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "trainlab"}
        graph[name] = {t for t in targets if t in sources and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_back():
    found = cycles(import_graph(module_sources()))
    assert not found, "import cycles (function-level imports included):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_a_cycle_behind_a_function_level_import_is_caught():
    """The cycle trainlab had before issue 27: registry -> submission -> search_space -> registry, the
    last import inside a function."""
    planted = {
        "trainlab.algorithms": "from trainlab.algorithms.registry import make_algorithm\n",
        "trainlab.algorithms.registry": "from trainlab.algorithms.submission import race_point\n",
        "trainlab.algorithms.submission": "def f():\n    from trainlab.algorithms.search_space import load\n",
        "trainlab.algorithms.search_space": "def g():\n    from trainlab.algorithms.registry import parse_name\n",
        "trainlab.memory.adaptive": "if TYPE_CHECKING:\n    from trainlab.memory.activations import C\n",
        "trainlab.memory.activations": "from trainlab.memory import adaptive\n",
        "trainlab.memory": "",
    }
    assert cycles(import_graph(planted)) == [
        ["trainlab.algorithms.registry", "trainlab.algorithms.search_space", "trainlab.algorithms.submission"],
        ["trainlab.memory.activations", "trainlab.memory.adaptive"],
    ]
