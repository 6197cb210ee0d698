"""The Dataset type, the table of built-in datasets, and ``load``.

Files of a built-in dataset are searched for in this order (docs/design.md, "Data
conventions"): the explicit ``data_dir``, ``$KIPD_DATA_DIR``, the system dataset folders
(Debian's ``dataset-fashion-mnist`` installs ``/usr/share/datasets/fashion-mnist``), the
download cache (``kipd.files.cache_dir()``: ``$KIPD_CACHE_DIR``, ``$XDG_CACHE_HOME/kipd`` or
``~/.cache/kipd``), and finally a download
from the official source into the cache, checked against the sha256 in the table below.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kipd import files
from kipd.data import _formats
from kipd.data._download import fetch
from kipd.data._errors import DatasetError
from kipd.data._formats import RawSplits

# Folders holding system-wide dataset packages; each dataset is looked up in a
# sub-folder named by one of its ``folders`` (Debian: /usr/share/datasets/fashion-mnist).
SYSTEM_DATA_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """An image classification dataset in memory.

    Attributes:
      name: the built-in name (``"cifar10"``) or the stem of the user's file or folder.
      x_train: (n_train, H, W, C) float32 pixels in [0, 1], before any preprocessing.
      y_train: (n_train,) int32 class ids in [0, num_classes).
      x_test: (n_test, H, W, C) float32 pixels in [0, 1].
      y_test: (n_test,) int32 class ids.
      num_classes: the number of classes C.
      class_names: C human-readable class names.
      x_val: (n_val, H, W, C) validation images held out of train by
        :func:`split_validation`, else None.
      y_val: (n_val,) int32 validation labels, else None.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        height, width, channels = self.x_train.shape[1:]
        return (height, width, channels)

    def __repr__(self) -> str:
        # The default repr would print every pixel.
        val = "" if self.x_val is None else f", val={len(self.x_val)}"
        return (
            f"Dataset(name={self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}"
            f"{val}, image_shape={self.image_shape}, num_classes={self.num_classes})"
        )


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file of a built-in dataset as its publisher distributes it.

    Attributes:
      name: the file name as published, also its name in the download cache.
      sha256: SHA-256 of the published file.
      size: size in bytes of the published file.
      urls: official source first, then mirrors serving the identical file.
      local_names: other names accepted when the file is found on disk: the
        un-gzipped IDX file some distributions ship, the extracted CIFAR folder.
    """

    name: str
    sha256: str
    size: int
    urls: tuple[str, ...]
    local_names: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class BuiltinDataset:
    """How to find, fetch and read one built-in dataset."""

    name: str
    title: str
    folders: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    read: Callable[[dict[str, Path]], RawSplits]
    num_classes: int
    class_names: tuple[str, ...] | None
    apt_package: str | None = None


def _idx_file(base_urls: tuple[str, ...], name: str, sha256: str, size: int) -> RemoteFile:
    return RemoteFile(
        name, sha256, size, tuple(u + name for u in base_urls), local_names=(name[:-3],)
    )


def _read_idx_splits(paths: dict[str, Path]) -> RawSplits:
    return RawSplits(
        _formats.read_idx(paths["train-images-idx3-ubyte.gz"]),
        _formats.read_idx(paths["train-labels-idx1-ubyte.gz"]),
        _formats.read_idx(paths["t10k-images-idx3-ubyte.gz"]),
        _formats.read_idx(paths["t10k-labels-idx1-ubyte.gz"]),
        None,
    )


def _read_svhn_splits(paths: dict[str, Path]) -> RawSplits:
    x_train, y_train = _formats.read_svhn_mat(paths["train_32x32.mat"])
    x_test, y_test = _formats.read_svhn_mat(paths["test_32x32.mat"])
    return RawSplits(x_train, y_train, x_test, y_test, None)


# yann.lecun.com no longer serves MNIST reliably; the two mirrors serve identical files.
_MNIST_URLS = (
    "http://yann.lecun.com/exdb/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
_FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_DIGITS = tuple(str(d) for d in range(10))

# Checksums are the publishers' (Fashion-MNIST's README) or those that tensorflow-
# datasets, torchvision and Keras pin for the same files. Debian's Fashion-MNIST files are
# re-gzipped (no file name in the gzip header), so their sha256 differs; that is fine,
# because only downloads are checked against this table.
BUILTINS: dict[str, BuiltinDataset] = {
    "mnist": BuiltinDataset(
        name="mnist",
        title="MNIST",
        folders=("mnist",),
        files=(
            _idx_file(
                _MNIST_URLS,
                "train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                9912422,
            ),
            _idx_file(
                _MNIST_URLS,
                "train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                28881,
            ),
            _idx_file(
                _MNIST_URLS,
                "t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                1648877,
            ),
            _idx_file(
                _MNIST_URLS,
                "t10k-labels-idx1-ubyte.gz",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                4542,
            ),
        ),
        read=_read_idx_splits,
        num_classes=10,
        class_names=_DIGITS,
    ),
    "fashion_mnist": BuiltinDataset(
        name="fashion_mnist",
        title="Fashion-MNIST",
        folders=("fashion-mnist", "fashion_mnist"),
        files=(
            _idx_file(
                _FASHION_URLS,
                "train-images-idx3-ubyte.gz",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                26421880,
            ),
            _idx_file(
                _FASHION_URLS,
                "train-labels-idx1-ubyte.gz",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                29515,
            ),
            _idx_file(
                _FASHION_URLS,
                "t10k-images-idx3-ubyte.gz",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                4422102,
            ),
            _idx_file(
                _FASHION_URLS,
                "t10k-labels-idx1-ubyte.gz",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                5148,
            ),
        ),
        read=_read_idx_splits,
        num_classes=10,
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        apt_package="dataset-fashion-mnist",
    ),
    "svhn": BuiltinDataset(
        name="svhn",
        title="SVHN (cropped digits)",
        folders=("svhn",),
        files=(
            RemoteFile(
                "train_32x32.mat",
                "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",
                182040794,
                ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",),
            ),
            RemoteFile(
                "test_32x32.mat",
                "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",
                64275384,
                ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",),
            ),
        ),
        read=_read_svhn_splits,
        num_classes=10,
        class_names=_DIGITS,
    ),
    "cifar10": BuiltinDataset(
        name="cifar10",
        title="CIFAR-10",
        folders=("cifar10", "cifar-10"),
        files=(
            RemoteFile(
                "cifar-10-python.tar.gz",
                "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                170498071,
                ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                local_names=("cifar-10-batches-py",),
            ),
        ),
        read=lambda paths: _formats.read_cifar(paths["cifar-10-python.tar.gz"], "cifar10"),
        num_classes=10,
        class_names=None,  # read from the archive's batches.meta
    ),
    "cifar100": BuiltinDataset(
        name="cifar100",
        title="CIFAR-100",
        folders=("cifar100", "cifar-100"),
        files=(
            RemoteFile(
                "cifar-100-python.tar.gz",
                "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
                169001437,
                ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                local_names=("cifar-100-python",),
            ),
        ),
        read=lambda paths: _formats.read_cifar(paths["cifar-100-python.tar.gz"], "cifar100"),
        num_classes=100,
        class_names=None,  # read from the archive's meta
    ),
}


def builtin_name(name: str) -> str | None:
    """The canonical built-in name for ``name`` ("Fashion-MNIST" -> "fashion_mnist"),
    or None when it names no built-in dataset."""
    key = name.strip().lower().replace("-", "_")
    return key if key in BUILTINS else None


def load(
    name: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
) -> Dataset:
    """Loads a built-in dataset or a user's own data.

    Args:
      name: a built-in name (``"mnist"``, ``"fashion_mnist"``, ``"svhn"``, ``"cifar10"``,
        ``"cifar100"``; case and ``-``/``_`` do not matter), or a path to an ``.npz`` file
        (``x_train``, ``y_train``, ``x_test``, ``y_test``; uint8 0-255 or float [0, 1]
        images, (n, H, W) or (n, H, W, C)) or to an image folder
        (``root/{train,test}/<class>/*.png``). A built-in name wins over a same-named
        path; write ``./mnist`` to mean the path.
      data_dir: a folder holding a built-in dataset's files, directly or in a sub-folder
        named after the dataset (``data_dir/cifar10/``). When given it is the only place
        searched: a missing folder, or one without the files, is an error rather than a
        silent fall-back to another copy.
      download: fetch missing built-in files into the cache. With False a missing file
        is an error.

    Returns:
      A :class:`Dataset` with float32 NHWC images in [0, 1] and int32 labels (the CIFAR-100
      labels are the 100 fine labels).

    Raises:
      DatasetError: the name is unknown, a file is missing, truncated or corrupt, or the
        download failed; the message names the file and how to get it.

    Example:
      >>> ds = kipd.data.load("fashion_mnist")  # doctest: +SKIP
      >>> ds.x_train.shape, ds.num_classes  # doctest: +SKIP
      ((60000, 28, 28, 1), 10)

    Paper: appendix A, "Datasets".
    """
    if data_dir is not None and not Path(data_dir).is_dir():
        raise DatasetError(
            f"--data-dir {data_dir} is not a folder: pass the folder that holds the dataset's "
            "files, or leave --data-dir out to search $KIPD_DATA_DIR, the system dataset "
            "folders and the download cache"
        )
    builtin = builtin_name(str(name)) if isinstance(name, str) else None
    if builtin is not None:
        spec = BUILTINS[builtin]
        raw = spec.read(_locate(spec, data_dir, download))
        return _to_dataset(spec.name, raw, spec.num_classes, spec.class_names or raw.class_names)
    path = Path(name)
    if path.is_file() and path.suffix == ".npz":
        raw = _formats.read_npz(path)
    elif path.is_dir():
        raw = _formats.read_image_folder(path)
    else:
        raise DatasetError(
            f"{str(name)!r} is neither a built-in dataset ({', '.join(BUILTINS)}) nor an "
            ".npz file or image folder on disk"
        )
    return _to_dataset(path.stem, raw, None, raw.class_names)


def _search_dirs(spec: BuiltinDataset, data_dir: str | os.PathLike | None) -> list[Path]:
    dirs = []
    for base in (data_dir, os.environ.get("KIPD_DATA_DIR")):
        if base:
            dirs.append(Path(base))
            dirs.extend(Path(base) / folder for folder in spec.folders)
    dirs.extend(root / folder for root in SYSTEM_DATA_DIRS for folder in spec.folders)
    dirs.append(files.cache_dir() / spec.name)
    return dirs


def _find(directory: Path, remote: RemoteFile) -> Path | None:
    for candidate in (remote.name, *remote.local_names):
        if (directory / candidate).exists():
            return directory / candidate
    return None


def _locate(
    spec: BuiltinDataset, data_dir: str | os.PathLike | None, download: bool
) -> dict[str, Path]:
    """Paths of all of ``spec``'s files, from the first folder that has them all, else
    from the cache after downloading what it lacks."""
    dirs = _search_dirs(spec, data_dir)
    if data_dir is not None:  # the given folder and its sub-folders only
        dirs = dirs[: 1 + len(spec.folders)]
    for directory in dirs:
        found = {remote.name: _find(directory, remote) for remote in spec.files}
        if all(found.values()):
            return found  # type: ignore[return-value]
    if data_dir is not None:
        missing = ", ".join(remote.name for remote in spec.files)
        raise DatasetError(
            f"{spec.title}: --data-dir {data_dir} does not hold {missing} (looked in it and in "
            f"its sub-folders {', '.join(spec.folders)}): pass the folder that holds them, or "
            "leave --data-dir out to search the usual places and the download cache"
        )
    cache = files.cache_dir() / spec.name
    paths = {}
    for remote in spec.files:
        path = _find(cache, remote)
        if path is None:
            if not download:
                raise DatasetError(
                    f"{spec.title}: {remote.name} not found and download=False.\n"
                    + _how_to_get(spec, dirs)
                )
            try:
                path = fetch(remote.urls, cache / remote.name, remote.sha256, remote.size)
            except DatasetError as err:
                raise DatasetError(f"{spec.title}: {err}\n{_how_to_get(spec, dirs)}") from err
        paths[remote.name] = path
    return paths


def _how_to_get(spec: BuiltinDataset, searched: list[Path]) -> str:
    lines = ["Searched (none had every file):", *(f"  {d}" for d in searched)]
    lines.append("To get the files, download")
    lines.extend(f"  {r.urls[0]}  (sha256 {r.sha256})" for r in spec.files)
    lines.append(
        f"into $KIPD_DATA_DIR/{spec.name}/ or a folder passed as data_dir"
        + (f", or run `apt install {spec.apt_package}`." if spec.apt_package else ".")
    )
    return "\n".join(lines)


def _to_dataset(
    name: str,
    raw: RawSplits,
    num_classes: int | None,
    class_names: tuple[str, ...] | None,
) -> Dataset:
    """Checks raw arrays and converts them to float32 [0, 1] NHWC images, int32 labels."""
    x_train = _unit_float_images(raw.x_train, f"{name}: x_train")
    x_test = _unit_float_images(raw.x_test, f"{name}: x_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(
            f"{name}: train images are {x_train.shape[1:]} but test images {x_test.shape[1:]}"
        )
    y_train = _labels(raw.y_train, len(x_train), f"{name}: y_train")
    y_test = _labels(raw.y_test, len(x_test), f"{name}: y_test")
    largest = int(max(y_train.max(initial=0), y_test.max(initial=0)))
    # A user's data declares its classes only through its labels: a gap means a typo.
    inferred = num_classes is None
    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else largest + 1
    if largest >= num_classes:
        raise DatasetError(f"{name}: label {largest} is out of range for {num_classes} classes")
    empty = np.setdiff1d(np.arange(num_classes), y_train) if inferred else np.zeros(0)
    if empty.size:
        shown = ", ".join(map(str, empty[:8])) + (", ..." if empty.size > 8 else "")
        raise DatasetError(
            f"{name}: {empty.size} of {num_classes} classes have no train images (class ids "
            f"{shown}; the largest label is {largest}): labels must be the class ids 0..C-1 "
            "with every class present; relabel the data to consecutive ids"
        )
    if class_names is None:
        class_names = tuple(str(c) for c in range(num_classes))
    if len(class_names) != num_classes:
        raise DatasetError(f"{name}: {len(class_names)} class names for {num_classes} classes")
    return Dataset(name, x_train, y_train, x_test, y_test, num_classes, tuple(class_names))


def _unit_float_images(x: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or 0 in x.shape:
        raise DatasetError(f"{where} has shape {x.shape}; expected (n, H, W) or (n, H, W, C)")
    if x.dtype == np.uint8:
        # One pass, one float32 allocation (astype then divide would make two).
        return np.divide(x, np.float32(255), dtype=np.float32)
    if not np.issubdtype(x.dtype, np.floating):
        raise DatasetError(f"{where} has dtype {x.dtype}; expected uint8 0-255 or float 0-1")
    x = x.astype(np.float32, copy=False)
    low, high = float(np.min(x)), float(np.max(x))
    if not (np.isfinite(low) and np.isfinite(high)):
        raise DatasetError(_non_finite_message(x, where))
    if low < 0.0 or high > 1.0:
        raise DatasetError(
            f"{where} holds float values in [{low}, {high}]; kipd expects pixels in "
            "[0, 1] (or uint8 0-255) before preprocessing"
        )
    return x


def _non_finite_message(x: np.ndarray, where: str) -> str:
    """What is wrong with images holding NaN or infinite values, and how to fix it."""
    per_image = (~np.isfinite(x)).reshape(len(x), -1).sum(axis=1)
    images = np.flatnonzero(per_image)
    shown = ", ".join(map(str, images[:8])) + (", ..." if len(images) > 8 else "")
    nan, total = int(np.isnan(x).sum()), int(per_image.sum())
    kinds = ", ".join(
        f"{count:,} {kind}" for kind, count in (("NaN", nan), ("infinite", total - nan)) if count
    )
    return (
        f"{where} holds {kinds} values, in {len(images):,} of its {len(x):,} images (indices "
        f"{shown}); kipd expects pixels in [0, 1] (or uint8 0-255): fill those pixels (e.g. "
        "np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0)) or drop those images and their "
        "labels before loading"
    )


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise DatasetError(f"{where} has shape {y.shape}; expected ({n},) class ids")
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{where} has dtype {y.dtype}; expected integer class ids")
    if n and y.min() < 0:
        raise DatasetError(f"{where} holds negative class ids")
    return y.astype(np.int32)
