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


def imported_packages(source: str) -> list[tuple[int, str]]:
    """(line, trainlab subpackage) for every import of trainlab in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "trainlab":
            parts = node.module.split(".")
            names = [a.name for a in node.names] if len(parts) == 1 else [parts[1]]
            found += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[1]) for a in node.names if a.name.startswith("trainlab.")]
    return found


def back_arrows(package: str, source: str, where: str) -> list[str]:
    own = LAYERS[package]
    return [
        f"{where}:{line} {package} imports {target}"
        for line, target in imported_packages(source)
        if target in LAYERS and target != package and LAYERS[target] >= own
    ]


def test_every_import_points_down():
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if len(parts) > 1:
            assert parts[0] in LAYERS, f"package {parts[0]!r} has no layer: add it to LAYERS"
            problems += back_arrows(parts[0], path.read_text(), str(path.relative_to(ROOT.parent)))
    assert not problems, "imports that point up:\n" + "\n".join(problems)


def test_a_planted_back_arrow_is_caught():
    planted = "import torch\n\ndef f():\n    from trainlab.cli.main import main\n    return main\n"
    assert back_arrows("optim", planted, "trainlab/optim/x.py") == ["trainlab/optim/x.py:4 optim imports cli"]
    assert back_arrows("tuning", "from trainlab import reports\n", "t.py") == ["t.py:1 tuning imports reports"]
    assert back_arrows("reports", "from trainlab.tuning import outcomes\n", "r.py") == []


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
