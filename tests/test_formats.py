"""IDX / CIFAR-10 readers round-trip tiny fixtures, reject bad files, and feed the image workloads."""

from __future__ import annotations

import gzip
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from trainlab.errors import UsageError
from trainlab.workloads.data import formats
from trainlab.workloads.data.formats import (
    load_cifar10_dir,
    load_mnist_dir,
    read_cifar10_batch,
    read_idx,
    write_cifar10_batch,
    write_idx,
)
from trainlab.workloads.image import CIFAR10ResNet, MNISTCNN

RNG = np.random.default_rng(0)


def _images(n: int, shape: tuple[int, ...]) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _labels(n: int) -> np.ndarray:
    return RNG.integers(0, 10, size=n).astype(np.int64)


def _mnist_dir(root: Path, n_train: int = 60, n_test: int = 20, gz: bool = False) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    data = {
        "train": (_images(n_train, (28, 28)), _labels(n_train)),
        "test": (_images(n_test, (28, 28)), _labels(n_test)),
    }
    suffix = ".gz" if gz else ""
    for split, (images, labels) in formats.MNIST_FILES.items():
        write_idx(root / f"{images}{suffix}", data[split][0])
        write_idx(root / f"{labels}{suffix}", data[split][1].astype(np.uint8))
    return data


def _cifar_dir(root: Path, n_per_batch: int = 12, n_test: int = 20) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    batches = [(_images(n_per_batch, (3, 32, 32)), _labels(n_per_batch)) for _ in range(5)]
    for name, (x, y) in zip(formats.CIFAR10_TRAIN_FILES, batches):
        write_cifar10_batch(root / name, x, y)
    test = (_images(n_test, (3, 32, 32)), _labels(n_test))
    write_cifar10_batch(root / formats.CIFAR10_TEST_FILE, *test)
    train = (np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches]))
    return {"train": train, "test": test}


# -- IDX ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_idx_round_trip(tmp_path, name, dtype):
    array = (RNG.standard_normal((30, 4, 5)) * 100).astype(dtype)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype) and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_idx_header_is_big_endian(tmp_path):
    write_idx(tmp_path / "a", np.array([1, 258], dtype=np.int32))
    assert (tmp_path / "a").read_bytes() == bytes.fromhex("00000c01 00000002 00000001 00000102")


def test_idx_gzip_detected_by_magic_without_gz_suffix(tmp_path):
    write_idx(tmp_path / "a.gz", _images(3, (28, 28)))
    (tmp_path / "a").write_bytes((tmp_path / "a.gz").read_bytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), read_idx(tmp_path / "a.gz"))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:-1], "corrupt"),  # one data byte short
        (lambda b: b + b"\x00", "corrupt"),  # one byte too many
        (lambda b: b"\x01" + b[1:], "bad magic"),
        (lambda b: b[:2] + b"\x42" + b[3:], "dtype code"),
        (lambda b: b[:6], "truncated"),
        (lambda b: b"", "bad magic"),
    ],
)
def test_corrupt_idx_is_a_usage_error(tmp_path, mutate, message):
    write_idx(tmp_path / "good", _images(2, (28, 28)))
    bad = tmp_path / "bad"
    bad.write_bytes(mutate((tmp_path / "good").read_bytes()))
    with pytest.raises(UsageError, match=message) as info:
        read_idx(bad)
    assert str(bad) in str(info.value)


def test_broken_gzip_and_missing_file_are_usage_errors(tmp_path):
    (tmp_path / "x.gz").write_bytes(gzip.compress(b"\x00" * 100)[:10])
    with pytest.raises(UsageError, match="gzip"):
        read_idx(tmp_path / "x.gz")
    with pytest.raises(UsageError, match="cannot read"):
        read_idx(tmp_path / "nope")


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_dir(tmp_path, gz):
    data = _mnist_dir(tmp_path, gz=gz)
    loaded = load_mnist_dir(tmp_path)
    for split in ("train", "test"):
        x, y = loaded[split]
        assert x.dtype == np.uint8 and y.dtype == np.int64
        np.testing.assert_array_equal(x, data[split][0])
        np.testing.assert_array_equal(y, data[split][1])


def test_mnist_missing_dir_or_file_lists_expected_names(tmp_path):
    with pytest.raises(UsageError, match="does not exist.*train-images-idx3-ubyte"):
        load_mnist_dir(tmp_path / "absent")
    _mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UsageError, match="lacks t10k-labels-idx1-ubyte.*train-images-idx3-ubyte"):
        load_mnist_dir(tmp_path)


def test_mnist_wrong_image_shape_is_a_usage_error(tmp_path):
    _mnist_dir(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", _images(60, (27, 28)))
    with pytest.raises(UsageError, match="28, 28"):
        load_mnist_dir(tmp_path)


# -- CIFAR-10 ------------------------------------------------------------------------------------


def test_cifar10_batch_round_trip_and_channel_layout(tmp_path):
    x, y = _images(30, (3, 32, 32)), _labels(30)
    write_cifar10_batch(tmp_path / "b", x, y)
    back_x, back_y = read_cifar10_batch(tmp_path / "b")
    assert back_x.dtype == np.uint8 and back_x.shape == (30, 3, 32, 32) and back_y.dtype == np.int64
    np.testing.assert_array_equal(back_x, x)
    np.testing.assert_array_equal(back_y, y)
    with (tmp_path / "b").open("rb") as f:  # the on-disk row: 1024 red, 1024 green, 1024 blue
        raw = pickle.load(f, encoding="bytes")
    assert isinstance(raw[b"labels"], list) and raw[b"data"].shape == (30, 3072)
    np.testing.assert_array_equal(raw[b"data"][0, 1024:2048], x[0, 1].ravel())


def test_cifar10_reads_python2_style_pickles(tmp_path):
    """The official files were pickled by Python 2: numpy.core globals and str (bytes) payloads."""
    x, y = _images(4, (3, 32, 32)), _labels(4)
    write_cifar10_batch(tmp_path / "b", x, y)
    data = (tmp_path / "b").read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (tmp_path / "b").write_bytes(data)
    np.testing.assert_array_equal(read_cifar10_batch(tmp_path / "b")[0], x)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": []}, protocol=2))
    with pytest.raises(UsageError, match="refusing global"):
        read_cifar10_batch(path)
    assert not marker.exists()


def test_codecs_encode_only_allows_latin1(tmp_path):
    payload = pickle.dumps({b"data": b"x", b"labels": []}, protocol=2).replace(b"latin1", b"utf-16")
    (tmp_path / "b").write_bytes(payload)
    with pytest.raises(UsageError, match="utf-16"):
        read_cifar10_batch(tmp_path / "b")


@pytest.mark.parametrize(
    "batch, message",
    [
        ([1, 2], "dict"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "labels for 2 images"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, "3072"),
    ],
)
def test_malformed_cifar10_batch_is_a_usage_error(tmp_path, batch, message):
    (tmp_path / "b").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UsageError, match=message):
        read_cifar10_batch(tmp_path / "b")
    (tmp_path / "c").write_bytes(b"not a pickle")
    with pytest.raises(UsageError, match="not a CIFAR-10"):
        read_cifar10_batch(tmp_path / "c")


def test_load_cifar10_dir_accepts_the_folder_or_its_parent(tmp_path):
    data = _cifar_dir(tmp_path / formats.CIFAR10_FOLDER)
    for directory in (tmp_path, tmp_path / formats.CIFAR10_FOLDER):
        loaded = load_cifar10_dir(directory)
        for split in ("train", "test"):
            np.testing.assert_array_equal(loaded[split][0], data[split][0])
            np.testing.assert_array_equal(loaded[split][1], data[split][1])


def test_cifar10_missing_dir_or_file_lists_expected_names(tmp_path):
    with pytest.raises(UsageError, match="does not exist.*data_batch_1.*test_batch"):
        load_cifar10_dir(tmp_path / "absent")
    _cifar_dir(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(UsageError, match="lacks data_batch_3.*test_batch"):
        load_cifar10_dir(tmp_path)


# -- workloads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, make_dir, holdout, shape",
    [
        (MNISTCNN, _mnist_dir, 60 // 6, (1, 28, 28)),
        (CIFAR10ResNet, _cifar_dir, 60 // 10, (3, 32, 32)),
    ],
)
def test_image_workload_on_tiny_fixture(tmp_path, cls, make_dir, holdout, shape):
    raw = make_dir(tmp_path / "data")
    workload = cls(data_dir=str(tmp_path / "data"))
    splits = workload.splits()
    sizes = {"train": 60 - holdout, "validation": holdout, "test": 20}
    for split, n in sizes.items():
        x, y = getattr(splits, split)
        assert x.shape == (n, *shape) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64
    # validation is exactly the last `holdout` training images, so disjoint from train
    x_raw, y_raw = raw["train"]
    torch.testing.assert_close(splits.validation[1], torch.from_numpy(y_raw[-holdout:]))
    train_rows = {row.tobytes() for row in x_raw[:-holdout]}
    assert not any(row.tobytes() in train_rows for row in x_raw[-holdout:])

    torch.manual_seed(0)
    model = workload.init_model()
    loss = workload.loss(model, splits.train)
    loss.backward()
    assert math.isfinite(loss.item())
    model.eval()
    result = workload.evaluate(model, splits.validation)
    assert 0.0 <= result["accuracy"] <= 1.0 and math.isfinite(result["loss"])


def test_normalization_matches_documented_constants(tmp_path):
    raw = _mnist_dir(tmp_path)
    x = MNISTCNN(data_dir=str(tmp_path)).splits().train[0]
    expected = (raw["train"][0][0].astype(np.float32) / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(x[0, 0].numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [MNISTCNN, CIFAR10ResNet])
def test_missing_data_dir_option_is_a_usage_error(cls):
    with pytest.raises(UsageError, match=f"--workload-option {cls.name}.data_dir=PATH"):
        cls().splits()


def test_class_attributes():
    assert (
        MNISTCNN.name,
        MNISTCNN.default_target,
        MNISTCNN.default_step_budget,
        MNISTCNN.default_batch_size,
        MNISTCNN.default_eval_every,
    ) == ("mnist_cnn", 0.99, 3000, 128, 250)
    assert (
        CIFAR10ResNet.name,
        CIFAR10ResNet.default_target,
        CIFAR10ResNet.default_step_budget,
        CIFAR10ResNet.default_batch_size,
        CIFAR10ResNet.default_eval_every,
    ) == ("cifar10_cnn", 0.85, 8000, 128, 500)
    assert MNISTCNN.metric == CIFAR10ResNet.metric == "accuracy" and MNISTCNN.higher_is_better
