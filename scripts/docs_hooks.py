"""MkDocs hooks (`mkdocs.yml` names this file): the pages generated from the code and the repository.

- `optimizers/NAME.md`, one per registered optimizer, from its `Registration`, its docstring
  (rendered by mkdocstrings) and its row of the leaderboard (`docs/leaderboard/summary.md`): a new
  optimizer gets its page with no docs edit. `tests/test_docs_site.py` checks them against the registry.
- `index.md` is README.md and `contributing.md` is CONTRIBUTING.md, with their links rewritten for the
  site, so neither text is kept twice.
- In a page, `<!-- optimizer-table -->` becomes the table of registered optimizers.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = ROOT / "docs" / "leaderboard" / "summary.md"


def registrations() -> list[Any]:
    import trainlab.optim as optim

    return [optim.entry(name) for name in optim.available()]


def _code(value: Any) -> str:
    return "`" + repr(value).replace("|", "\\|") + "`"


def _factory_path(reg: Any) -> str:
    return f"{reg.factory.__module__}.{reg.factory.__qualname__}"


def is_matrix_method(reg: Any) -> bool:
    """Methods with whole-matrix rules subclass `OwnerUpdates` (trainlab/optim/owners.py)."""
    from trainlab.optim.owners import OwnerUpdates

    return isinstance(reg.factory, type) and issubclass(reg.factory, OwnerUpdates)


def distributed_behaviour(reg: Any) -> str:
    note = getattr(reg.factory, "distributed_note", None)  # a class that is neither kind says how it runs
    if note:
        return f"{note} See [Distributed training](../distributed.md)."
    if is_matrix_method(reg):
        return (
            "A whole-matrix method: with several ranks (DDP or FSDP2) each matrix it treats is updated by "
            "one owner rank, which alone holds its state, and the new matrix is broadcast (DDP) or its rows "
            'scattered back (FSDP2); its elementwise part stays shard-local. `distributed="replicated"` '
            "gathers every matrix on every rank instead. See [Distributed training](../distributed.md)."
        )
    return (
        "Elementwise: under DDP and FSDP2 each rank updates its own shards with the same kernels as on one "
        "process, no communication, state sharded with the parameters. "
        "See [Distributed training](../distributed.md)."
    )


def _tests_of(reg: Any) -> list[str]:
    """The optimizer test modules that test this one by name: a test function named after it, a case
    keyed by its name, or its class imported; each with the module docstring's first sentence."""
    found = []
    for path in sorted((ROOT / "tests").glob("test_optim_*.py")):
        text = path.read_text()
        named = re.search(rf"def test_\w*{re.escape(reg.name)}|^\s*[\"']{re.escape(reg.name)}[\"']\s*:", text, re.M)
        imported = re.search(rf"^from trainlab\.optim[\w.]* import .*\b{re.escape(reg.factory.__name__)}\b", text, re.M)
        if named or imported:
            doc = ast.get_docstring(ast.parse(text)) or ""
            first = " ".join(doc.split()).split(". ")[0].rstrip(".")
            found.append(f"`tests/{path.name}`" + (f": {first}" if first else ""))
    return found


def checked_against(reg: Any) -> str:
    """The registration's `reference` where it states one; else the source its module names and the
    test modules that test it. Every optimizer also races and trains distributed in the tests."""
    parts = []
    if getattr(reg, "reference", ""):
        parts.append(reg.reference)
    else:
        module_doc = inspect.getdoc(sys.modules[reg.factory.__module__]) or ""
        source = re.search(r"\bSources?: (.*?\.)(?:\s|$)", " ".join(module_doc.split()))
        if source:
            parts.append("Written from " + source.group(1).rstrip("."))
    lines = [f"- {part}." for part in parts + _tests_of(reg)]
    lines.append(
        "- `tests/test_every_optimizer_races.py` (a race on every default workload) and "
        "`tests/test_distributed.py` (DDP and FSDP2 against one process)."
    )
    return "\n".join(lines)


def leaderboard_row(name: str, summary: Path = SUMMARY) -> str:
    """This optimizer's row of the leaderboard's summary table, under its header; "" if it has none."""
    if not summary.exists():
        return ""
    lines = [line for line in summary.read_text().splitlines() if line.startswith("|")]
    rows = [line for line in lines[2:] if line.split("|")[1].strip() == name]
    return "\n".join(lines[:2] + rows) + "\n" if rows else ""


def optimizer_page(reg: Any) -> str:
    defaults = reg.hyperparameters()
    race = dict(reg.race_defaults)
    lines = [
        f"# {reg.name}",
        "",
        reg.summary.rstrip(".") + ".",
        "",
        f"*Citation*: {reg.citation.rstrip('.')}.  ",
        f"*Class*: `{_factory_path(reg)}` (`trainlab.optim.create({reg.name!r}, params, ...)`).  ",
        f"*Default schedule in a race*: `{reg.schedule}`.  ",
        f"*Update linear in the gradient* (batch-size scaling, refinement): {'yes' if reg.linear_update else 'no'}.",
        "",
        "## Hyperparameters",
        "",
        "Defaults are the constructor's (and trainlab's overrides); race defaults are what a race uses where "
        "nothing was tuned for the workload ([where a race's hyperparameters come from]"
        "(../races.md#where-a-races-hyperparameters-come-from)).",
        "",
        "| hyperparameter | default | race default |",
        "|---|---|---|",
    ]
    for key, value in defaults.items():
        lines.append(f"| `{key}` | {_code(value)} | {_code(race.pop(key)) if key in race else ''} |")
    for key, value in race.items():  # race-only settings (the schedule's warm-up, ...)
        lines.append(f"| `{key}` (schedule) | | {_code(value)} |")
    lines += ["", "## Search space", ""]
    if reg.search_space:
        lines += [
            "AlgoPerf's format; sources in [search spaces](../search_spaces.md).",
            "",
            "```json",
            "{",
            ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in reg.search_space.items()),
            "}",
            "```",
        ]
    else:
        lines.append("None registered: `trainlab tune` needs `--search-space NAME=FILE.json`.")
    lines += [
        "",
        "## Optimizer state",
        "",
        f"{reg.state_bytes or 'not stated'} (counted by `trainlab.optim.state_bytes` and tested against this formula).",
        "",
        "## Distributed training",
        "",
        distributed_behaviour(reg),
        "",
        "## Checked against",
        "",
        checked_against(reg),
        "",
        "## On the leaderboard",
        "",
    ]
    row = leaderboard_row(reg.name)
    if row:
        lines += [
            "Its row of the [leaderboard](../index.md#the-leaderboard) (generated from "
            "`docs/leaderboard/leaderboard.db`):",
            "",
            row,
        ]
    else:
        lines.append("Not on the leaderboard yet: `make leaderboard ALGORITHMS=" + reg.name + "` adds it.")
    lines += [
        "## Update rule and docstring",
        "",
        f"::: {_factory_path(reg)}",
        "    options:",
        "      show_root_heading: false",
        "      show_source: false",
        "      members: false",
        "",
    ]
    return "\n".join(lines)


def optimizer_table() -> str:
    lines = ["| name | what | state (fp32) | paper |", "|---|---|---|---|"]
    for reg in registrations():
        cells = [f"[`{reg.name}`](optimizers/{reg.name}.md)", reg.summary, reg.state_bytes, reg.citation]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def site_links(text: str, prefix: str) -> str:
    """A repository file's links, for the site: `docs/X` -> `X`; other repository paths -> code."""

    def fix(match: re.Match[str]) -> str:
        label, target = match.group(1), match.group(2)
        if re.match(r"[a-z]+:|#", target):
            return match.group(0)
        if target.startswith("docs/"):
            inside = target[5:]
            if inside.endswith("/"):  # a folder: its report when it has one, else its path
                if not (ROOT / target / "report.md").exists():
                    return f"{label} (`{target}`)" if not label.startswith("`") else label
                inside += "report.md"
            return f"[{label}]({prefix}{inside})"
        if target == "CONTRIBUTING.md":
            return f"[{label}]({prefix}contributing.md)"
        if target == "README.md":
            return f"[{label}]({prefix}index.md)"
        return label if label.startswith("`") else f"{label} (`{target}`)"

    text = re.sub(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)", fix, text)
    return re.sub(r"!\[([^\]]*)\]\(docs/([^)\s]+)\)", rf"![\1]({prefix}\2)", text)


def pages() -> dict[str, str]:
    """Every generated page: path under docs/ -> Markdown."""
    found = {f"optimizers/{reg.name}.md": optimizer_page(reg) for reg in registrations()}
    found["index.md"] = site_links((ROOT / "README.md").read_text(), "")
    found["contributing.md"] = site_links((ROOT / "CONTRIBUTING.md").read_text(), "")
    return found


def on_config(config: Any) -> Any:
    """The generated optimizer pages join the nav under "Optimizers", after its hand-written page."""
    names = [f"optimizers/{reg.name}.md" for reg in registrations()]
    for i, item in enumerate(config["nav"]):
        if isinstance(item, dict) and "Optimizers" in item and isinstance(item["Optimizers"], str):
            config["nav"][i] = {"Optimizers": [{"Overview": item["Optimizers"]}, *names]}
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path, text in pages().items():
        files.append(File.generated(config, path, content=text))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return markdown.replace("<!-- optimizer-table -->", optimizer_table())
