"""The documentation site's generated pages (scripts/docs_hooks.py, run by `mkdocs build`): every
registered optimizer has its page and the page states its registration's defaults, race defaults and
search space; the README keeps the quickstart and stays short. (`make test` builds the site itself
with `mkdocs build --strict`.)"""

from __future__ import annotations

import ast
import importlib.util
import json
import re

import pytest

import trainlab.optim as optim
from conftest import ROOT
from trainlab.optim.registration import Registration


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts" / "docs_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = _hooks()
PAGES = HOOKS.pages()


def _table(page: str) -> dict[str, tuple[str, str]]:
    """The Hyperparameters table: name -> (default cell, race default cell), code spans unwrapped."""
    section = page[page.index("## Hyperparameters") : page.index("## Search space")]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 3 and cells[0].startswith("`"):
            key = cells[0].split("`")[1]
            rows[key] = (cells[1].strip("`").replace("\\|", "|"), cells[2].strip("`").replace("\\|", "|"))
    return rows


@pytest.mark.parametrize("name", optim.available())
def test_every_registered_optimizer_has_a_page_that_agrees_with_its_registration(name):
    reg = optim.entry(name)
    page = PAGES.get(f"optimizers/{name}.md")
    assert page is not None, f"no page for registered optimizer {name!r}"
    rows = _table(page)
    for key, value in reg.hyperparameters().items():
        assert rows[key][0] == repr(value), (name, key)
    for key, value in reg.race_defaults.items():
        assert ast.literal_eval(rows[key][1]) == value, (name, key)
    assert set(rows) == set(reg.hyperparameters()) | set(reg.race_defaults)
    if reg.search_space:
        space = page[page.index("```json") + len("```json") : page.index("```", page.index("```json") + 3)]
        assert json.loads(space) == json.loads(json.dumps(reg.search_space))
    assert reg.citation.rstrip(".") in page and reg.summary.rstrip(".") in page and reg.state_bytes in page
    assert reg.reference in page  # what it is checked against, where the registration states it
    assert f"::: {reg.factory.__module__}.{reg.factory.__qualname__}" in page  # its docstring, via mkdocstrings


def test_a_newly_registered_optimizer_gets_its_page_with_no_docs_edit(monkeypatch):
    from trainlab.optim import registry

    extra = Registration("brand_new", optim.Lion, "A test optimizer", "Nobody 2099", race_defaults={"lr": 1e-4})
    monkeypatch.setitem(registry._REGISTRY, "brand_new", extra)
    page = HOOKS.pages()["optimizers/brand_new.md"]
    assert _table(page)["lr"] == (repr(optim.Lion.__init__.__defaults__[0]), "0.0001")
    assert "Not on the leaderboard yet" in page
    assert "[`brand_new`](optimizers/brand_new.md)" in HOOKS.optimizer_table()


def test_leaderboard_rows_come_from_the_committed_summary():
    summary = (ROOT / "docs" / "leaderboard" / "summary.md").read_text()
    for name in optim.available():
        row = HOOKS.leaderboard_row(name)
        if f"| {name} |" in summary:
            assert row.splitlines()[-1] in summary.splitlines()


def test_readme_is_short_and_opens_with_the_quickstart():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    first_block = re.search(r"```\w*\n(.*?)```", readme, re.S)
    assert first_block is not None and first_block.group(1) == "make race\nmake test\n"
