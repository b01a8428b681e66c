"""MNIST-1D (Greydanus & Kobak, 2020/2024), generated offline and cached as .npz.

The `mnist1d` package's `get_dataset` downloads a pickle; we only ever call its procedural generator
`make_dataset`, which is deterministic given its arguments (it seeds NumPy's global generator, so we
save and restore that state around it). The package version is pinned in pyproject.toml because the
generated data, and therefore every target, depends on it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from trainlab.workloads.data.paths import data_dir


@dataclass(frozen=True)
class MNIST1DSpec:
    """How many samples to draw and how to split them (train / validation / test, disjoint)."""

    num_train: int = 20_000
    num_validation: int = 5_000
    num_test: int = 5_000
    seed: int = 42

    @property
    def num_samples(self) -> int:
        return self.num_train + self.num_validation + self.num_test

    def cache_key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _generate(spec: MNIST1DSpec) -> tuple[np.ndarray, np.ndarray]:
    os.environ.setdefault("MPLBACKEND", "Agg")  # mnist1d imports pyplot; never open a window
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    # make_dataset draws num_samples // 10 per class; round up so every split is filled.
    args.num_samples = -(-spec.num_samples // 10) * 10
    args.train_split = 1.0
    args.seed = spec.seed
    saved_state = np.random.get_state()
    try:
        dataset = make_dataset(args)
    finally:
        np.random.set_state(saved_state)
    x = np.concatenate([dataset["x"], dataset["x_test"]]).astype(np.float32)
    y = np.concatenate([dataset["y"], dataset["y_test"]]).astype(np.int64)
    return x[: spec.num_samples], y[: spec.num_samples]


def load_mnist1d(spec: MNIST1DSpec = MNIST1DSpec()) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return {'train'|'validation'|'test': (x [N, 40] float32, y [N] int64)}, generating once."""
    path = data_dir() / f"mnist1d-{spec.cache_key()}.npz"
    if path.exists():
        with np.load(path) as stored:
            x, y = stored["x"], stored["y"]
    else:
        x, y = _generate(spec)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, path)  # atomic: a killed generation never leaves a half-written cache
    a = spec.num_train
    b = a + spec.num_validation
    return {"train": (x[:a], y[:a]), "validation": (x[a:b], y[a:b]), "test": (x[b:], y[b:])}
