"""The README's leaderboard section (and the claims table of docs/claims.md) is generated: rescoring the
committed store reproduces its blocks byte for byte, and the prose around them carries no figure the
generated report lacks."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

BOARD = ROOT / "docs" / "leaderboard"


def _section(readme: str) -> str:
    start = readme.index("## The leaderboard")
    return readme[start : readme.index("\n## ", start + 1)]


def _without_blocks(text: str) -> str:
    return re.sub(r"<!-- leaderboard:(\w+) -->.*?<!-- /leaderboard:\1 -->", "", text, flags=re.S)


def test_hand_written_leaderboard_prose_has_no_figure_the_report_lacks():
    readme = (ROOT / "README.md").read_text()
    prose = _without_blocks(_section(readme))
    prose = re.sub(r"\[[^\]]*\]\([^)]*\)|`[^`]*`", "", prose)  # links and code name files, not figures
    generated = " ".join((BOARD / name).read_text() for name in ("report.md", "notes.md", "summary.md"))
    figures = set(re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", prose))
    missing = sorted(f for f in figures if not re.search(rf"(?<![\d.]){re.escape(f)}(?![\d])", generated))
    assert not missing, f"README leaderboard prose has figures the generated report lacks: {missing}"


@pytest.mark.slow
def test_rescoring_the_committed_store_reproduces_the_readme_blocks(tmp_path):
    copy = tmp_path / "repo"
    (copy / "docs").mkdir(parents=True)
    (copy / "scripts").mkdir()
    shutil.copy(ROOT / "README.md", copy / "README.md")
    shutil.copy(ROOT / "docs" / "claims.md", copy / "docs" / "claims.md")
    shutil.copy(ROOT / "scripts" / "readme-leaderboard", copy / "scripts" / "readme-leaderboard")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainlab",
            "leaderboard",
            "--score-only",
            "--store",
            str(BOARD / "leaderboard.db"),
            "--out",
            str(copy / "docs" / "leaderboard"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    for name in ("summary.md", "notes.md"):
        assert (copy / "docs" / "leaderboard" / name).read_text() == (BOARD / name).read_text(), name
    done = subprocess.run(
        [sys.executable, str(copy / "scripts" / "readme-leaderboard")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (copy / "README.md").read_text() == (ROOT / "README.md").read_text()
    assert (copy / "docs" / "claims.md").read_text() == (ROOT / "docs" / "claims.md").read_text()
