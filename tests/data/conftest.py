"""Writers of small synthetic dataset files in every supported format (the ``files``
fixture), and an isolated search environment (the ``isolated`` fixture)."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest

from kipd.data import _datasets


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Load with nothing but what a test puts in place: returns the cache root."""
    monkeypatch.delenv("KIPD_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(_datasets, "SYSTEM_DATA_DIRS", (tmp_path / "system",))
    return tmp_path / "xdg-cache" / "kipd"


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def random_split(rng: np.random.Generator, n: int, shape: tuple[int, ...], classes: int):
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    y = np.arange(n) % classes
    return x, y


def write_mnist_like(
    folder: Path, rng: np.random.Generator, *, gz: bool = True, n_train: int = 20, n_test: int = 10
) -> dict[str, np.ndarray]:
    """The four (Fashion-)MNIST IDX files with 28x28 images, gzipped or raw."""
    folder.mkdir(parents=True, exist_ok=True)
    x_train, y_train = random_split(rng, n_train, (28, 28), 10)
    x_test, y_test = random_split(rng, n_test, (28, 28), 10)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", x_train, gz)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", y_train, gz)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", x_test, gz)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", y_test, gz)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _pickled(obj: dict) -> bytes:
    # Protocol 2, as the official CIFAR files (written by Python 2).
    return pickle.dumps(obj, protocol=2)


def write_cifar(
    folder: Path,
    rng: np.random.Generator,
    variant: str,
    *,
    extracted: bool = False,
    per_batch: int = 6,
) -> dict[str, np.ndarray]:
    """A miniature of the official CIFAR python distribution (archive or folder)."""
    classes = 10 if variant == "cifar10" else 100
    if variant == "cifar10":
        root = "cifar-10-batches-py"
        train_members = [f"data_batch_{i}" for i in range(1, 6)]
        test_members = ["test_batch"]
        label_key, meta_name = b"labels", "batches.meta"
        meta = {b"label_names": [f"class{i}".encode() for i in range(classes)]}
    else:
        root = "cifar-100-python"
        train_members, test_members = ["train"], ["test"]
        label_key, meta_name = b"fine_labels", "meta"
        meta = {
            b"fine_label_names": [f"fine{i}".encode() for i in range(classes)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        }
    members, xs = {}, {"train": [], "test": []}
    ys = {"train": [], "test": []}
    for split, names in (("train", train_members), ("test", test_members)):
        for name in names:
            x_hwc = rng.integers(0, 256, size=(per_batch, 32, 32, 3), dtype=np.uint8)
            y = list(rng.integers(0, classes, size=per_batch))
            batch = {
                b"data": x_hwc.transpose(0, 3, 1, 2).reshape(per_batch, -1),
                label_key: y,
                b"batch_label": name.encode(),
            }
            if variant == "cifar100":
                batch[b"coarse_labels"] = [0] * per_batch
            members[name] = _pickled(batch)
            xs[split].append(x_hwc)
            ys[split].extend(y)
    members[meta_name] = _pickled(meta)
    folder.mkdir(parents=True, exist_ok=True)
    if extracted:
        (folder / root).mkdir()
        for name, data in members.items():
            (folder / root / name).write_bytes(data)
    else:
        archive = folder / (
            "cifar-10-python.tar.gz" if variant == "cifar10" else "cifar-100-python.tar.gz"
        )
        with tarfile.open(archive, "w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(f"{root}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return {
        "x_train": np.concatenate(xs["train"]),
        "y_train": np.array(ys["train"]),
        "x_test": np.concatenate(xs["test"]),
        "y_test": np.array(ys["test"]),
    }


def write_svhn(folder: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """train_32x32.mat and test_32x32.mat with the digit 0 labelled 10, as published."""
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", 12), ("test", 5)):
        x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        y = np.arange(n) % 10
        savemat(
            folder / f"{split}_32x32.mat",
            {"X": x.transpose(1, 2, 3, 0), "y": np.where(y == 0, 10, y)[:, None]},
        )
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    return out


@pytest.fixture
def files() -> types.SimpleNamespace:
    """The writers above, for tests (a fixture, since conftest is not importable)."""
    return types.SimpleNamespace(
        idx_bytes=idx_bytes,
        random_split=random_split,
        write_idx=write_idx,
        write_mnist_like=write_mnist_like,
        write_cifar=write_cifar,
        write_svhn=write_svhn,
    )
