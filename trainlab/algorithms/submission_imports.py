"""A submission's imports of its own files, by whatever absolute path its authors' repository had.

Published submissions import their bundled helpers by the module path they had in the repository
they were written in (Shampoo: `submissions.submissions_algorithms_v0_5.AlgoPerf_Team_21.
external_tuning.shampoo_submission.optimizers.distributed_shampoo...`), a path that exists nowhere
else. Rather than asking users to recreate that tree or set PYTHONPATH, `SubmissionFinder` resolves
an import whose trailing components name a file or package inside the submission's folder to that
file. It is scoped: it answers only names the submission's own files import (read from their
source, function-level imports included), only after Python's own finders found nothing, and only
with files under that folder; every other import behaves as usual.

`diagnose` turns a failed import into one line: which import (file:line), and either the package
to install (with trainlab's extra, or the requirements file beside the submission that lists it)
or what trainlab looked for under the folder.
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType

from trainlab.errors import UsageError

# import name -> distribution name, for the packages trainlab's `algoperf` extra installs
EXTRA_PACKAGES = {"absl": "absl-py"}
EXTRA_HINT = "pip install 'trainlab[algoperf]'"
_DISTRIBUTION = {**EXTRA_PACKAGES, "yaml": "pyyaml", "sklearn": "scikit-learn", "PIL": "pillow"}


def imported_names(path: Path) -> set[str]:
    """Every absolute module name `path` imports (`from a.b import c` gives a.b and a.b.c)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except SyntaxError:
        return set()  # its import reports the syntax error itself
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names if a.name != "*")
    return names


class _EmptyPackage(importlib.abc.Loader):
    """A parent package of the authors' path that has no file here (`submissions`, ...)."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        pass


class SubmissionFinder(importlib.abc.MetaPathFinder):
    """Resolves the imports a submission's files make of files under its folder (see module doc)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.wanted: set[str] = set()

    def read(self, path: Path) -> None:
        self.wanted |= imported_names(path)

    def candidates(self, name: str) -> list[Path]:
        """Where `name` could live under the folder, most specific first: its trailing components
        as a package or a .py file, and the folder itself when the name ends with its name."""
        parts = name.split(".")
        found = [self.folder] if parts[-1] == self.folder.name else []
        for k in range(len(parts)):
            base = self.folder.joinpath(*parts[k:])
            found += [base, base.with_name(base.name + ".py")]
        return found

    def resolve(self, name: str) -> Path | None:
        for path in self.candidates(name):
            if path.is_file() or path.is_dir():
                return path
        return None

    def _leads_here(self, name: str) -> bool:
        prefix = name + "."
        return any(w.startswith(prefix) and self.resolve(w) is not None for w in self.wanted)

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.wanted and not any(w.startswith(fullname + ".") for w in self.wanted):
            return None
        found = self.resolve(fullname)
        if found is None:
            if not self._leads_here(fullname):
                return None
            spec = importlib.machinery.ModuleSpec(fullname, _EmptyPackage(), is_package=True)
            spec.submodule_search_locations = []
            return spec
        if found.is_dir():
            init = found / "__init__.py"
            if not init.is_file():  # a namespace-style folder: a package with no code of its own
                spec = importlib.machinery.ModuleSpec(fullname, _EmptyPackage(), is_package=True)
                spec.submodule_search_locations = [str(found)]
                return spec
            self.read(init)
            return importlib.util.spec_from_file_location(fullname, init, submodule_search_locations=[str(found)])
        self.read(found)
        return importlib.util.spec_from_file_location(fullname, found)


_FINDERS: dict[Path, SubmissionFinder] = {}


def finder_for(submission: Path) -> SubmissionFinder:
    """The (one, lasting) finder of a submission's folder, after Python's own finders, its
    wanted names read from the submission file."""
    folder = submission.parent
    finder = _FINDERS.get(folder)
    if finder is None:
        finder = _FINDERS[folder] = SubmissionFinder(folder)
        sys.meta_path.append(finder)
    finder.read(submission)
    _check_clash(finder)
    return finder


def _check_clash(finder: SubmissionFinder) -> None:
    """Refuse a module name another submission's folder already gave (one process holds one module
    per name: the second submission would run the first one's helper)."""
    for name in sorted(finder.wanted):
        file = getattr(sys.modules.get(name), "__file__", None)
        if not file or finder.resolve(name) is None or finder.folder in Path(file).parents:
            continue
        owners = [f for f in _FINDERS if f in Path(file).parents]
        if owners:
            owner = max(owners, key=lambda f: len(f.parts))  # the innermost submission folder holding it
            raise UsageError(
                f"AlgoPerf submissions in {owner} and {finder.folder} both import their own module {name!r}: "
                "one process holds one module per name; race them in separate runs"
            )


def _failed_import(exc: BaseException, folder: Path) -> tuple[str, str]:
    """(`file:line`, the import statement) of the innermost frame in the submission's folder."""
    where, statement = "", ""
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename)
        if folder == path.parent or folder in path.parents:
            where = f"{path.relative_to(folder)}:{frame.lineno}"
            statement = (frame.line or "").split("#")[0].strip()
    return where, statement


def _requirements(folder: Path) -> dict[str, tuple[str, str]]:
    """Normalised distribution name -> (its name, the requirements file beside the submission
    that lists it)."""
    listed: dict[str, tuple[str, str]] = {}
    for path in sorted(folder.glob("requirements*.txt")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
            if match and not line.lstrip().startswith("#"):
                listed.setdefault(_normal(match.group(1)), (match.group(1), path.name))
    return listed


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def diagnose(exc: ModuleNotFoundError, submission: Path, source: str) -> str:
    """One line for an import the submission (or a file of its folder) could not make."""
    folder = submission.parent
    missing = exc.name or str(exc)
    top = missing.split(".")[0]
    where, statement = _failed_import(exc, folder)
    at = f"`{statement}` ({where})" if statement else f"import of {missing!r}"
    head = f"cannot import AlgoPerf submission {source!r}: {at} failed"
    if top in ("algoperf", "algorithmic_efficiency"):
        return f"{head}: trainlab provides {top}.spec, .pytorch_utils and .random_utils, not {missing}"
    distribution = _DISTRIBUTION.get(top, top)
    listed = _requirements(folder).get(_normal(distribution))
    if top in EXTRA_PACKAGES:
        return f"{head}: package {distribution!r} is not installed: {EXTRA_HINT}"
    if listed:
        name, where = listed
        return f"{head}: package {name!r} (listed in {where} beside it) is not installed: pip install {name}"
    finder = _FINDERS.get(folder)
    named = re.match(r"(?:from|import)\s+([\w.]+)", statement)
    full = named.group(1) if named and named.group(1).startswith(missing) else missing
    looked = finder.candidates(full) if finder else []
    shown = ", ".join(f"{p.relative_to(folder.parent)}[.py]" for p in looked if p != folder and p.suffix != ".py")
    return (
        f"{head}: no module {full!r} is installed, and no trailing components of it name a file or "
        f"package under {folder} (looked for {shown or full})"
    )
