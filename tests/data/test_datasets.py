"""kipd.data.load: built-in datasets from every distribution format, the search order,
user data (.npz, image folders), and a clear error for every bad input."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest

import kipd.data as kd
from kipd.data import _datasets

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not FASHION_DIR.is_dir(),
    reason=f"{FASHION_DIR} is absent: apt install dataset-fashion-mnist (CI installs it)",
)
def test_fashion_mnist_from_debian_package(monkeypatch, tmp_path):
    monkeypatch.delenv("KIPD_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # proves no download happens
    kd.load("fashion_mnist")  # first load: files now in the page cache
    start = time.process_time()
    ds = kd.load("Fashion-MNIST")
    seconds = time.process_time() - start
    assert seconds < 2.0, f"second load took {seconds:.2f} s of CPU"
    assert ds.name == "fashion_mnist"
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.num_classes == 10 and ds.class_names[0] == "T-shirt/top"
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "raw-idx"])
def test_idx_files_gzipped_or_not(isolated, tmp_path, files, gz):
    rng = np.random.default_rng(0)
    truth = files.write_mnist_like(tmp_path / "d", rng, gz=gz)
    ds = kd.load("mnist", data_dir=tmp_path / "d", download=False)
    np.testing.assert_array_equal(ds.x_train[..., 0], truth["x_train"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, truth["y_train"])
    np.testing.assert_array_equal(ds.y_test, truth["y_test"])
    assert ds.x_train.shape == (20, 28, 28, 1) and ds.class_names == tuple("0123456789")


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
@pytest.mark.parametrize("extracted", [False, True], ids=["tar.gz", "extracted"])
def test_cifar_archive_or_extracted_folder(isolated, tmp_path, files, variant, extracted):
    truth = files.write_cifar(
        tmp_path / variant, np.random.default_rng(1), variant, extracted=extracted
    )
    ds = kd.load(variant, data_dir=tmp_path, download=False)  # found in data_dir/<name>/
    np.testing.assert_array_equal(ds.x_train, truth["x_train"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, truth["y_train"])
    np.testing.assert_array_equal(ds.x_test, truth["x_test"] / np.float32(255))
    assert ds.num_classes == (10 if variant == "cifar10" else 100)
    assert ds.class_names[1] == ("class1" if variant == "cifar10" else "fine1")


def test_svhn_mat_maps_label_10_to_digit_0(isolated, tmp_path, files):
    truth = files.write_svhn(tmp_path / "svhn", np.random.default_rng(2))
    ds = kd.load("svhn", data_dir=tmp_path / "svhn", download=False)
    np.testing.assert_array_equal(ds.x_train, truth["x_train"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, truth["y_train"])
    assert ds.y_train.min() == 0 and ds.image_shape == (32, 32, 3)


def test_search_order(isolated, tmp_path, files, monkeypatch):
    """Without data_dir: $KIPD_DATA_DIR, then system folders, then the cache."""
    places = {
        "env": tmp_path / "env" / "fashion_mnist",
        "system": tmp_path / "system" / "fashion-mnist",
        "cache": isolated / "fashion_mnist",
    }
    first_label = {}
    for i, (place, folder) in enumerate(places.items()):
        truth = files.write_mnist_like(folder, np.random.default_rng(i), n_train=10 + i)
        first_label[place] = len(truth["x_train"])
    monkeypatch.setenv("KIPD_DATA_DIR", str(tmp_path / "env"))

    def found_in() -> str:
        ds = kd.load("fashion_mnist", download=False)
        return next(p for p, n in first_label.items() if n == len(ds.x_train))

    for place, folder in places.items():
        assert found_in() == place
        for file in folder.iterdir():
            file.unlink()
    with pytest.raises(kd.DatasetError, match="not found and download=False"):
        found_in()


def test_data_dir_is_the_only_place_searched(isolated, tmp_path, files, monkeypatch):
    """A given data_dir wins, and one without the files (missing, empty, incomplete) is
    refused instead of silently reading another copy."""
    files.write_mnist_like(tmp_path / "full", np.random.default_rng(0))
    monkeypatch.setenv("KIPD_DATA_DIR", str(tmp_path / "full"))
    explicit = tmp_path / "explicit"
    files.write_mnist_like(explicit, np.random.default_rng(1), n_train=7)
    assert len(kd.load("mnist", data_dir=explicit, download=False).x_train) == 7
    (explicit / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "empty").mkdir()
    for folder in (explicit, tmp_path / "empty"):
        with pytest.raises(kd.DatasetError, match="does not hold .*t10k-labels-idx1-ubyte.gz"):
            kd.load("mnist", data_dir=folder, download=False)
    with pytest.raises(kd.DatasetError, match="--data-dir .*nonexistent is not a folder"):
        kd.load("mnist", data_dir=tmp_path / "nonexistent", download=False)


def test_labels_that_leave_classes_empty_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 10
    labels[0] = 57  # a typo: 10 classes become 58, 47 of them empty
    path = tmp_path / "typo.npz"
    np.savez(
        path,
        x_train=rng.random((40, 4, 4, 1)),
        y_train=labels,
        x_test=rng.random((10, 4, 4, 1)),
        y_test=np.arange(10),
    )
    with pytest.raises(kd.DatasetError, match="47 of 58 classes have no train images.*57"):
        kd.load(path)


def test_missing_files_error_says_how_to_get_them(isolated):
    with pytest.raises(kd.DatasetError) as err:
        kd.load("fashion_mnist", download=False)
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/" in message
    assert "KIPD_DATA_DIR" in message and "apt install dataset-fashion-mnist" in message


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda b: b[: len(b) // 2], "truncated or corrupt gzip"),
        (lambda b: gzip.compress(gzip.decompress(b)[:-100]), "truncated or corrupt: header"),
        (lambda b: gzip.compress(b"\x00\x01" + gzip.decompress(b)[2:]), "not an IDX file"),
        (lambda b: gzip.compress(gzip.decompress(b)[:10]), "IDX header is incomplete"),
    ],
    ids=["truncated-gzip", "truncated-idx", "bad-magic", "short-header"],
)
def test_damaged_idx_names_the_file(isolated, tmp_path, files, damage, match):
    files.write_mnist_like(tmp_path, np.random.default_rng(0))
    target = tmp_path / "train-images-idx3-ubyte.gz"
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(kd.DatasetError, match=match) as err:
        kd.load("mnist", data_dir=tmp_path, download=False)
    assert str(target) in str(err.value)


def test_damaged_cifar_and_svhn(isolated, tmp_path, files):
    files.write_cifar(tmp_path / "c", np.random.default_rng(0), "cifar10")
    archive = tmp_path / "c" / "cifar-10-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[:5000])
    with pytest.raises(kd.DatasetError, match="cifar-10-python.tar.gz"):
        kd.load("cifar10", data_dir=tmp_path / "c", download=False)

    files.write_svhn(tmp_path / "s", np.random.default_rng(0))
    mat = tmp_path / "s" / "test_32x32.mat"
    mat.write_bytes(mat.read_bytes()[:300])
    with pytest.raises(kd.DatasetError, match="test_32x32.mat"):
        kd.load("svhn", data_dir=tmp_path / "s", download=False)


def test_cifar_pickle_may_not_run_code(isolated, tmp_path, files):
    root = tmp_path / "cifar10"
    files.write_cifar(root, np.random.default_rng(0), "cifar10", extracted=True)
    # A pickle that would call os.system on load.
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(kd.DatasetError, match="refusing to unpickle os.system"):
        kd.load("cifar10", data_dir=root, download=False)


@pytest.mark.parametrize("layout", ["uint8-hw", "uint8-hwc", "float-hwc"])
def test_npz(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(8, 6, 5, 3), dtype=np.uint8)
    expected = x / np.float32(255)
    if layout == "uint8-hw":
        x, expected = x[..., 0], expected[..., :1]
    elif layout == "float-hwc":
        x = expected.astype(np.float64)
    path = tmp_path / "mine.npz"
    np.savez(
        path,
        x_train=x,
        y_train=np.arange(8)[:, None] % 4,
        x_test=x[:3],
        y_test=np.arange(3),
        class_names=np.array(["a", "b", "c", "d"]),
    )
    ds = kd.load(path)
    assert ds.name == "mine" and ds.num_classes == 4 and ds.class_names == ("a", "b", "c", "d")
    np.testing.assert_allclose(ds.x_train, expected, atol=1e-7)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.y_train.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


@pytest.mark.parametrize(
    "arrays, match",
    [
        (dict(x_train=np.zeros((2, 4, 4))), "lacks the arrays"),
        (
            dict(
                x_train=np.full((2, 4, 4), 2.0),
                y_train=[0, 1],
                x_test=np.zeros((1, 4, 4)),
                y_test=[0],
            ),
            r"float values in \[2.0, 2.0\]",
        ),
        (
            dict(
                x_train=np.zeros((2, 4, 4)), y_train=[0, 1], x_test=[[[np.inf] * 4] * 4], y_test=[0]
            ),
            r"x_test holds 16 infinite values, in 1 of its 1 images \(indices 0\)",
        ),
        (
            dict(
                x_train=np.zeros((2, 4, 4), np.int16),
                y_train=[0, 1],
                x_test=np.zeros((1, 4, 4), np.int16),
                y_test=[0],
            ),
            "dtype int16",
        ),
        (
            dict(
                x_train=np.zeros((2, 4, 4)),
                y_train=[0.0, 1.0],
                x_test=np.zeros((1, 4, 4)),
                y_test=[0],
            ),
            "integer class ids",
        ),
        (
            dict(
                x_train=np.zeros((2, 4, 4)),
                y_train=[0, 1, 1],
                x_test=np.zeros((1, 4, 4)),
                y_test=[0],
            ),
            r"expected \(2,\)",
        ),
        (
            dict(
                x_train=np.zeros((2, 4, 4)), y_train=[0, 1], x_test=np.zeros((1, 5, 4)), y_test=[0]
            ),
            "test images",
        ),
    ],
    ids=["missing-key", "float-range", "nan", "int16", "float-labels", "label-count", "shapes"],
)
def test_bad_npz(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(kd.DatasetError, match=match):
        kd.load(path)


def test_not_an_npz(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(kd.DatasetError, match="broken.npz"):
        kd.load(path)


def test_unknown_name():
    with pytest.raises(kd.DatasetError, match="neither a built-in dataset"):
        kd.load("imagenet")


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.mark.parametrize("channels", [1, 3])
def test_image_folder(tmp_path, channels):
    pytest.importorskip("PIL")
    rng = np.random.default_rng(0)
    shape = (7, 5) if channels == 1 else (7, 5, 3)
    written = {}
    for split, count in (("train", 3), ("test", 1)):
        for cls in ("cat", "dog"):
            for i in range(count):
                image = rng.integers(0, 256, size=shape, dtype=np.uint8)
                _write_png(tmp_path / "pets" / split / cls / f"{i}.png", image)
                written[(split, cls, i)] = image
    (tmp_path / "pets" / "train" / "cat" / "notes.txt").write_text("ignored")
    ds = kd.load(tmp_path / "pets")
    assert ds.name == "pets" and ds.class_names == ("cat", "dog")
    assert ds.x_train.shape == (6, 7, 5, channels) and ds.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(
        ds.x_train[3].reshape(shape), written[("train", "dog", 0)] / np.float32(255)
    )


def test_image_folder_errors(tmp_path):
    pytest.importorskip("PIL")
    root = tmp_path / "imgs"
    _write_png(root / "train" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(kd.DatasetError, match="train/<class>/ and test/<class>/"):
        kd.load(root)
    _write_png(root / "test" / "a" / "0.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(kd.DatasetError, match="all images must share one size"):
        kd.load(root)
    _write_png(root / "test" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    (root / "test" / "a" / "1.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(kd.DatasetError, match="cannot read the image .*1.png"):
        kd.load(root)
    (root / "test" / "a" / "1.png").unlink()
    _write_png(root / "test" / "b" / "0.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(kd.DatasetError, match=r"classes \['b'\]"):
        kd.load(root)


def test_dataset_repr_is_short(isolated, tmp_path, files):
    files.write_mnist_like(tmp_path, np.random.default_rng(0))
    ds = kd.load("mnist", data_dir=tmp_path, download=False)
    assert repr(ds) == (
        "Dataset(name='mnist', train=20, test=10, image_shape=(28, 28, 1), num_classes=10)"
    )


def test_builtin_table_is_consistent():
    for name, spec in _datasets.BUILTINS.items():
        assert spec.name == name and _datasets.builtin_name(spec.title) in (name, None)
        for remote in spec.files:
            assert len(remote.sha256) == 64 and int(remote.sha256, 16) >= 0
            assert (
                remote.size > 0
                and remote.urls
                and all(u.endswith(remote.name) for u in remote.urls)
            )
