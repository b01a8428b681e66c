"""Readers (and tiny-fixture writers) for the two image formats users already have on disk.

* IDX, the format of Yann LeCun's MNIST distribution: a 4-byte big-endian header (two zero bytes,
  a dtype code, the number of dimensions), one big-endian uint32 per dimension, then the values
  big-endian in row-major order. Files may be gzip-compressed (the usual `*.gz` downloads).
* The CIFAR-10 "python version": pickled dicts with b'data' (N x 3072 uint8; 1024 red, then 1024
  green, then 1024 blue values, each a 32 x 32 image in row-major order) and b'labels' (N ints).
  A pickle can run arbitrary code, so batches are read with an unpickler that only rebuilds numpy
  arrays and refuses every other global.

Everything a user can get wrong (missing file, bad header, truncated data) is a `UsageError` that
names the file and the problem. Images come back as uint8 and labels as int64.
"""

from __future__ import annotations

import codecs
import gzip
import pickle
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.errors import UsageError

PathLike = str | Path
Arrays = tuple[np.ndarray, np.ndarray]

GZIP_MAGIC = b"\x1f\x8b"
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_FOLDER = "cifar-10-batches-py"


# -- IDX ---------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in .gz or the content starts with gzip magic."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix == ".gz" or raw[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise UsageError(f"{path} is not a valid gzip file ({exc}); re-download it") from None
    return raw


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a native-endian numpy array."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise UsageError(f"{path} is not an IDX file: bad magic number {data[:4].hex() or 'empty'}")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise UsageError(f"{path} is not an IDX file: unknown dtype code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UsageError(f"{path} is truncated: header declares {ndim} dimensions")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise UsageError(f"{path} is corrupt: dimensions {dims} need {expected} data bytes, found {len(data) - header}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: PathLike, array: np.ndarray) -> None:
    """Write `array` as an IDX file (gzip-compressed when `path` ends in .gz); for fixtures."""
    path = Path(path)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    dtype = np.dtype(array.dtype).newbyteorder("=")
    if dtype not in codes:
        raise UsageError(f"IDX cannot store dtype {array.dtype}; use one of {', '.join(str(d) for d in codes)}")
    if not 1 <= array.ndim <= 255:
        raise UsageError(f"IDX stores 1 to 255 dimensions, not {array.ndim}")
    code = codes[dtype]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _require_dir(directory: PathLike, what: str, expected: list[str]) -> Path:
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise UsageError(f"{what} directory {directory} does not exist; it must hold {', '.join(expected)}")
    return directory


def load_mnist_dir(directory: PathLike) -> dict[str, Arrays]:
    """MNIST from a folder of the four standard IDX files (plain or .gz).

    Returns {'train': (x, y), 'test': (x, y)}: x uint8 [N, 28, 28], y int64 [N].
    """
    expected = [name for pair in MNIST_FILES.values() for name in pair]
    directory = _require_dir(directory, "MNIST", expected)
    found = {name: path for name in expected if (path := _find(directory, name)) is not None}
    missing = [name for name in expected if name not in found]
    if missing:
        raise UsageError(
            f"MNIST directory {directory} lacks {', '.join(missing)} (plain or .gz); it must hold {', '.join(expected)}"
        )
    return {split: _mnist_pair(found[images], found[labels]) for split, (images, labels) in MNIST_FILES.items()}


def _mnist_pair(images_path: Path, labels_path: Path) -> Arrays:
    x, y = read_idx(images_path), read_idx(labels_path)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
        raise UsageError(f"{images_path} holds {x.dtype} {x.shape}, not uint8 [N, 28, 28] images")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise UsageError(
            f"{labels_path} holds shape {y.shape}, expected [{x.shape[0]}] labels to match {images_path.name}"
        )
    return x, y.astype(np.int64)


# -- CIFAR-10 -------------------------------------------------------------------------------------


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """What Python 3 pickles of `bytes` (protocol < 3) call; only the latin-1 form is allowed."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1", errors)


# numpy's pickled arrays name their rebuild function under numpy.core (numpy 1) or numpy._core
# (numpy 2); take it from an array's own __reduce__ so no deprecated module is imported.
_RECONSTRUCT: Callable[..., Any] = np.ndarray.__reduce__(np.zeros(0))[0]  # type: ignore[assignment]
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays, dicts, lists and scalars; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}") from None


def _unpickle(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            return _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # any malformed or hostile pickle is the user's file, not our bug
        raise UsageError(
            f"{path} is not a CIFAR-10 python batch ({exc}); use the files of cifar-10-python.tar.gz"
        ) from None


def read_cifar10_batch(path: PathLike) -> Arrays:
    """One CIFAR-10 python batch as (x uint8 [N, 3, 32, 32] in NCHW order, y int64 [N])."""
    path = Path(path)
    batch = _unpickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise UsageError(f"{path} is not a CIFAR-10 python batch: expected a dict with b'data' and b'labels'")
    data = np.asarray(batch[b"data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UsageError(f"{path}: b'data' is {data.dtype} {data.shape}, not uint8 [N, 3072]")
    try:
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (TypeError, ValueError):
        raise UsageError(f"{path}: b'labels' is not a list of integers") from None
    if labels.shape != (data.shape[0],):
        raise UsageError(f"{path}: {labels.shape} labels for {data.shape[0]} images")
    return data.reshape(-1, 3, 32, 32), labels


def write_cifar10_batch(path: PathLike, x: np.ndarray, labels: Any) -> None:
    """Write uint8 NCHW images [N, 3, 32, 32] and N labels as a CIFAR-10 python batch; for fixtures."""
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.shape[1:] != (3, 32, 32):
        raise UsageError(f"CIFAR-10 batches hold uint8 [N, 3, 32, 32] images, not {x.dtype} {x.shape}")
    labels = [int(label) for label in labels]
    if len(labels) != x.shape[0]:
        raise UsageError(f"{len(labels)} labels for {x.shape[0]} images")
    batch = {b"data": np.ascontiguousarray(x).reshape(x.shape[0], -1), b"labels": labels}
    with Path(path).open("wb") as f:
        pickle.dump(batch, f, protocol=2)


def load_cifar10_dir(directory: PathLike) -> dict[str, Arrays]:
    """CIFAR-10 from `cifar-10-batches-py` (or a folder containing it).

    Returns {'train': (x, y), 'test': (x, y)}: x uint8 [N, 3, 32, 32] (NCHW), y int64 [N]; the
    train split concatenates data_batch_1 .. data_batch_5 in order.
    """
    expected = [*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE]
    directory = _require_dir(directory, "CIFAR-10", expected)
    if not (directory / CIFAR10_TEST_FILE).is_file() and (directory / CIFAR10_FOLDER).is_dir():
        directory = directory / CIFAR10_FOLDER
    missing = [name for name in expected if not (directory / name).is_file()]
    if missing:
        raise UsageError(
            f"CIFAR-10 directory {directory} lacks {', '.join(missing)}; it must hold "
            f"{', '.join(expected)} (the contents of cifar-10-python.tar.gz)"
        )
    train = [read_cifar10_batch(directory / name) for name in CIFAR10_TRAIN_FILES]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return {"train": (x_train, y_train), "test": read_cifar10_batch(directory / CIFAR10_TEST_FILE)}
