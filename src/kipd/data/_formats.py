"""Readers for the on-disk formats of image datasets.

Each reader takes paths and returns raw arrays (uint8 or float images, NHWC or NHW, and
integer labels) or raises :class:`DatasetError` naming the file. Turning raw arrays into a
:class:`~kipd.data.Dataset` (float32 in [0, 1], int32 labels) is ``_datasets``'s job.
"""

from __future__ import annotations

import codecs
import gzip
import os
import pickle
import struct
import tarfile
import zlib
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from kipd import files
from kipd.data._errors import DatasetError


class RawSplits(NamedTuple):
    """Train and test arrays as read from disk, before conversion to float32."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...] | None


# IDX type byte -> big-endian numpy dtype (the format's own table).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_maybe_gzip(path: Path) -> bytes:
    """Whole file contents, gunzipped when the file starts with the gzip magic bytes.

    Sniffing the bytes, not the suffix, accepts both the official ``.gz`` files and the
    un-gzipped copies some distributions ship, whatever they are named.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DatasetError(f"cannot read {path}: {err}") from err
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as err:
        raise DatasetError(
            f"{path} is a truncated or corrupt gzip file ({err}); delete it and get a fresh copy"
        ) from err


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (the MNIST / Fashion-MNIST format), gzipped or not.

    Args:
      path: the IDX file.

    Returns:
      An array with the file's dimensions and dtype, e.g. (60000, 28, 28) uint8 images
      or (60000,) uint8 labels.

    Raises:
      DatasetError: the file is not IDX, or holds fewer or more bytes than its header
        says (truncated or corrupt).
    """
    path = Path(path)
    raw = _read_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated: its IDX header is incomplete")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != count * dtype.itemsize:
        raise DatasetError(
            f"{path} is truncated or corrupt: header says {dims} values "
            f"({count * dtype.itemsize} bytes) but {len(raw) - header} bytes follow"
        )
    # frombuffer is a zero-copy view; the caller's dtype conversion makes the copy.
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)


# CIFAR pickles hold dicts of lists, bytes and numpy arrays. Unpickling only the few
# callables those need keeps a tampered archive from running code.
def _numpy_pickle_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # numpy 1.26
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], object] = {}
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = getattr(numeric, "_frombuffer")  # private
    # Python 3's protocol-2 pickles spell bytes objects as _codecs.encode(str, "latin1").
    allowed[("_codecs", "encode")] = codecs.encode
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    _allowed = _numpy_pickle_globals()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}: not part of the CIFAR format"
            ) from None


def _unpickle(stream: IO[bytes], where: str) -> dict:
    try:
        obj = _ArrayUnpickler(stream, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, zlib.error, OSError) as err:
        raise DatasetError(f"{where} is truncated, corrupt or not a CIFAR pickle ({err})") from err
    if not isinstance(obj, dict):
        raise DatasetError(f"{where} is not a CIFAR batch (expected a dict)")
    return obj


_CIFAR_LAYOUT = {
    # variant: (train members, test members, meta member, label key, class-name key)
    "cifar10": (
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        b"labels",
        b"label_names",
    ),
    "cifar100": (("train",), ("test",), "meta", b"fine_labels", b"fine_label_names"),
}


def read_cifar(path: str | os.PathLike, variant: str) -> RawSplits:
    """Reads CIFAR-10 or CIFAR-100 from the official python-pickle distribution.

    Args:
      path: the ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` archive, or the
        directory it extracts to (``cifar-10-batches-py`` / ``cifar-100-python``).
      variant: ``"cifar10"`` or ``"cifar100"`` (fine labels).

    Returns:
      RawSplits with (50000, 32, 32, 3) / (10000, 32, 32, 3) uint8 images.

    Raises:
      DatasetError: a member is missing, truncated or not in the CIFAR format.
    """
    path = Path(path)
    train_names, test_names, meta_name, label_key, names_key = _CIFAR_LAYOUT[variant]
    wanted = (*train_names, *test_names, meta_name)
    batches = _read_cifar_dir(path, wanted) if path.is_dir() else _read_cifar_tar(path, wanted)

    def stack(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for name in names:
            batch = batches[name]
            try:
                data = np.asarray(batch[b"data"], dtype=np.uint8)
                labels = np.asarray(batch[label_key], dtype=np.int64)
            except KeyError as err:
                raise DatasetError(f"{path}: member {name} lacks the key {err}") from err
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
                raise DatasetError(
                    f"{path}: member {name} has data of shape {data.shape} and "
                    f"{len(labels)} labels; expected (n, 3072) and n labels"
                )
            # Rows are channel-major (1024 red, 1024 green, 1024 blue); NHWC wants HWC.
            xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(labels)
        return np.concatenate(xs), np.concatenate(ys)

    x_train, y_train = stack(train_names)
    x_test, y_test = stack(test_names)
    names = batches[meta_name].get(names_key)
    class_names = None if names is None else tuple(n.decode() for n in names)
    return RawSplits(x_train, y_train, x_test, y_test, class_names)


def _read_cifar_tar(path: Path, wanted: tuple[str, ...]) -> dict[str, dict]:
    batches: dict[str, dict] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted:
                    stream = archive.extractfile(member)
                    assert stream is not None  # a regular file member always has one
                    batches[base] = _unpickle(stream, f"{path}:{member.name}")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DatasetError(
            f"{path} is a truncated or corrupt archive ({err}); delete it and get a fresh copy"
        ) from err
    missing = [name for name in wanted if name not in batches]
    if missing:
        raise DatasetError(f"{path} lacks the CIFAR members {missing}")
    return batches


def _read_cifar_dir(path: Path, wanted: tuple[str, ...]) -> dict[str, dict]:
    missing = [name for name in wanted if not (path / name).is_file()]
    if missing:
        raise DatasetError(f"{path} lacks the CIFAR files {missing}")
    batches = {}
    for name in wanted:
        with open(path / name, "rb") as stream:
            batches[name] = _unpickle(stream, str(path / name))
    return batches


def read_svhn_mat(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split of SVHN cropped digits (``train_32x32.mat`` / ``test_32x32.mat``).

    Args:
      path: the MATLAB file, with ``X`` of shape (32, 32, 3, n) and ``y`` of shape (n, 1).

    Returns:
      (images, labels): (n, 32, 32, 3) uint8 and (n,) int64 in 0..9. The file labels the
      digit 0 as 10; it is mapped back to 0.

    Raises:
      DatasetError: the file is truncated, corrupt or lacks ``X`` / ``y``.
    """
    from scipy.io import loadmat  # scipy is heavy; only SVHN needs it

    path = Path(path)
    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except Exception as err:  # scipy raises many types (ValueError, MatReadError, ...)
        raise DatasetError(
            f"{path} is not a readable SVHN .mat file ({type(err).__name__}: {err}); "
            "delete it and get a fresh copy"
        ) from err
    if "X" not in mat or "y" not in mat:
        raise DatasetError(f"{path} lacks the variables X and y of the SVHN format")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y):
        raise DatasetError(
            f"{path}: X has shape {x.shape} and y {len(y)} labels; expected (32, 32, 3, n)"
        )
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), y.astype(np.int64) % 10


def read_npz(path: str | os.PathLike) -> RawSplits:
    """Reads a user's own arrays from an ``.npz`` file.

    Args:
      path: an ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (images
        uint8 0-255 or float in [0, 1], shaped (n, H, W) or (n, H, W, C); labels integer
        class ids shaped (n,) or (n, 1)) and optionally ``class_names`` (strings).

    Returns:
      RawSplits with the arrays as stored (labels flattened to (n,)).

    Raises:
      DatasetError: the file is unreadable or a key is missing.
    """
    path = Path(path)
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        npz = files.read_npz(path)
    except files.DamagedFileError as err:
        raise DatasetError(
            f"{err}: a dataset .npz holds x_train, y_train, x_test, y_test (numpy.savez)"
        ) from err
    missing = [k for k in keys if k not in npz]
    if missing:
        raise DatasetError(f"{path} lacks the arrays {missing}; it has {sorted(npz)}")
    arrays = {k: npz[k] for k in keys}
    names = npz.get("class_names")
    for key in ("y_train", "y_test"):
        if arrays[key].ndim == 2 and arrays[key].shape[1] == 1:
            arrays[key] = arrays[key][:, 0]
    class_names = None if names is None else tuple(str(n) for n in names)
    return RawSplits(**arrays, class_names=class_names)


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# PIL modes of 8-bit images with one gray channel; other 8-bit modes are read as RGB.
_GRAY_MODES = {"1", "L", "LA"}


def read_image_folder(root: str | os.PathLike) -> RawSplits:
    """Reads an image-folder tree ``root/{train,test}/<class>/<image>``.

    Classes are the sub-folders of ``root/train`` in sorted order; ``root/test`` may use
    a subset of them. All images must share one size; they are read as grayscale when
    every image is grayscale, else as RGB.

    Args:
      root: the tree's root folder.

    Returns:
      RawSplits with uint8 images (n, H, W, 1) or (n, H, W, 3) and the class names.

    Raises:
      DatasetError: Pillow is missing, the tree is malformed, an image is unreadable or
        has another size.
    """
    try:
        from PIL import Image
    except ImportError as err:
        raise DatasetError(
            "reading an image folder needs Pillow; install it with `pip install pillow`"
        ) from err
    root = Path(root)
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir() or not test_dir.is_dir():
        raise DatasetError(
            f"{root} is not an image-folder dataset: it needs train/<class>/ and "
            "test/<class>/ sub-folders"
        )
    class_names = tuple(sorted(p.name for p in train_dir.iterdir() if p.is_dir()))
    if not class_names:
        raise DatasetError(f"{train_dir} has no class sub-folders")
    unknown = sorted(p.name for p in test_dir.iterdir() if p.is_dir() and p.name not in class_names)
    if unknown:
        raise DatasetError(f"{test_dir} has classes {unknown} that {train_dir} lacks")

    def list_split(split_dir: Path) -> list[tuple[Path, int]]:
        return [
            (file, label)
            for label, name in enumerate(class_names)
            if (split_dir / name).is_dir()
            for file in sorted((split_dir / name).iterdir())
            if file.suffix.lower() in _IMAGE_SUFFIXES
        ]

    files = {"train": list_split(train_dir), "test": list_split(test_dir)}
    for split, entries in files.items():
        if not entries:
            raise DatasetError(f"{root / split} holds no images ({sorted(_IMAGE_SUFFIXES)})")

    images: dict[str, list] = {"train": [], "test": []}
    size = None
    gray = True
    for split, entries in files.items():
        for file, _ in entries:
            try:
                with Image.open(file) as img:
                    img.load()
            except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ...
                raise DatasetError(f"cannot read the image {file} ({err})") from err
            if img.mode.startswith(("I", "F")):
                # PIL's conversion of 16-bit or float pixels to 8 bits clips, not scales.
                raise DatasetError(
                    f"{file} has {img.mode!r} pixels; only 8-bit images are supported"
                )
            if size is None:
                size = img.size
            elif img.size != size:
                raise DatasetError(
                    f"{file} is {img.size[0]}x{img.size[1]} pixels but earlier images are "
                    f"{size[0]}x{size[1]}; all images must share one size"
                )
            gray = gray and img.mode in _GRAY_MODES
            images[split].append(img)
    mode = "L" if gray else "RGB"

    def to_array(split: str) -> tuple[np.ndarray, np.ndarray]:
        x = np.stack([np.asarray(img.convert(mode), dtype=np.uint8) for img in images[split]])
        y = np.array([label for _, label in files[split]], dtype=np.int64)
        return (x[..., None] if gray else x), y

    x_train, y_train = to_array("train")
    x_test, y_test = to_array("test")
    return RawSplits(x_train, y_train, x_test, y_test, class_names)
