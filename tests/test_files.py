"""kipd.files: atomic writes leave the old file or the new one, with the umask's mode; .npz
files carry a content hash and a damaged one is reported by name; a lock has one holder."""

import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from kipd import files


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "config.json"
    files.write_json(path, {"a": 1})

    def fail(f):
        f.write(b"{half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.atomic_write(path, fail)
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_npz_round_trip_and_hash(tmp_path):
    path = tmp_path / "a.npz"
    arrays = {"x": np.arange(6.0).reshape(2, 3), "name": np.array("kip")}
    files.write_npz(path, arrays)
    back = files.read_npz(path)
    assert back.keys() == arrays.keys()
    np.testing.assert_array_equal(back["x"], arrays["x"])
    assert files.HASH_KEY in np.load(path).files


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda b: b"", "empty"),
        (lambda b: b[: len(b) // 2], "not an .npz archive"),
        (lambda b: b"\x93NUMPY random bytes" * 10, "not an .npz archive"),
    ],
)
def test_a_damaged_npz_names_the_file(tmp_path, damage, problem):
    path = tmp_path / "a.npz"
    files.write_npz(path, {"x": np.arange(1000)})
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(files.DamagedFileError, match=f"{path.name} is damaged: .*{problem}"):
        files.read_npz(path)


def test_changed_arrays_fail_their_hash(tmp_path):
    path = tmp_path / "a.npz"
    files.write_npz(path, {"x": np.arange(1000)})
    stored = dict(np.load(path))
    stored["x"] = stored["x"] + 1  # a valid archive whose arrays no longer match their hash
    np.savez(path, **stored)
    with pytest.raises(files.DamagedFileError, match="content hash"):
        files.read_npz(path)


def test_files_without_a_hash_are_read_as_they_are(tmp_path):
    path = tmp_path / "released.npz"
    np.savez(path, images=np.zeros((2, 4, 4, 1)))
    assert files.read_npz(path)["images"].shape == (2, 4, 4, 1)
    with pytest.raises(FileNotFoundError, match="no file"):
        files.read_npz(tmp_path / "missing.npz")


def test_a_full_disk_names_the_file(tmp_path):
    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=f"no space left on the device while writing {tmp_path}"):
        files.atomic_write(tmp_path / "summary.json", full)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        files.write_json(tmp_path / "card.json", {"a": 1})
        files.write_npz(tmp_path / "distilled.npz", {"x": np.arange(3)})
        files.atomic_write(tmp_path / "raw", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == dict.fromkeys(
        ["card.json", "distilled.npz", "raw"], mode
    )


def test_a_lock_has_one_holder_which_it_names(tmp_path):
    lock = tmp_path / "run.lock"
    hold = (
        "import sys, time\nfrom kipd import files\n"
        "with files.exclusive_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        held = f"run.lock is held by process {holder.pid}"
        with pytest.raises(files.LockedError, match=held) as err, files.exclusive_lock(lock):
            pass
        assert err.value.pid == holder.pid and lock.read_text() == f"{holder.pid}\n"
    finally:
        holder.kill()
        holder.wait()
    # The lock died with its process; the file it left is taken over, and removed after.
    with files.exclusive_lock(lock):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert not lock.exists()
