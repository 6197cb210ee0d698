"""Durable files: atomic writes and verified reads, the one implementation every layer uses.

A file is written to a temporary name beside its destination and renamed onto it
(``os.replace``, atomic on one filesystem), so a reader sees the old file or the new one,
never half of one. An ``.npz`` written here carries the SHA-256 of its arrays; reading it
back recomputes the hash, so a file cut short by a full disk or damaged later is reported
as :class:`DamagedFileError` (naming the file), never as a traceback from ``zipfile``.

Files get the mode the process's umask gives a new file (0644 under the usual 022), like
any file a program creates: exports are meant to be read by others. A lock file
(:func:`exclusive_lock`) keeps a second process from writing what the first one writes.

This module imports nothing from kipd: data, kernels, distill and analysis all sit above it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

HASH_KEY = "__sha256__"
"""Name of the array holding an ``.npz``'s content hash (hex string)."""

__all__ = [
    "HASH_KEY",
    "DamagedFileError",
    "LockedError",
    "atomic_path",
    "cache_dir",
    "atomic_write",
    "exclusive_lock",
    "read_npz",
    "stored_hash",
    "write_json",
    "write_npz",
]


class DamagedFileError(ValueError):
    """A file exists but cannot be read back as written (truncated, corrupted, or not the
    expected format). ``path`` names it; the message says what is wrong with it."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        super().__init__(f"{self.path} is damaged: {problem}")


class LockedError(Exception):
    """Another process holds a lock (:func:`exclusive_lock`). ``path`` names the lock file,
    ``pid`` the process holding it (``None`` if it has not written its id yet)."""

    def __init__(self, path: str | os.PathLike, pid: int | None):
        self.path, self.pid = Path(path), pid
        holder = "another process" if pid is None else f"process {pid}"
        super().__init__(f"{self.path} is held by {holder}")


def cache_dir() -> Path:
    """kipd's one cache folder (downloads, the compiled C++ kernel, kernel timings):
    ``$KIPD_CACHE_DIR``, else ``$XDG_CACHE_HOME/kipd``, else ``~/.cache/kipd``."""
    if os.environ.get("KIPD_CACHE_DIR"):
        return Path(os.environ["KIPD_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kipd"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` that becomes ``path`` when the block completes.

    If the block raises, the temporary file is removed and ``path`` is left as it was.

    Example:
      >>> import tempfile
      >>> folder = Path(tempfile.mkdtemp())
      >>> with atomic_path(folder / "a.txt") as tmp:
      ...     _ = tmp.write_text("done")
      >>> (folder / "a.txt").read_text(), sorted(p.name for p in folder.iterdir())
      ('done', ['a.txt'])
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.part"
    # Created as open() creates a file (0o666 less the umask), not 0600 as tempfile.mkstemp
    # would: os.replace keeps the temporary's mode, and others are meant to read the file.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> None:
    """Calls ``write(file)`` on a temporary binary file beside ``path``, syncs it to disk,
    then renames it onto ``path``.

    Args:
      path: destination; its folder must exist.
      write: writes the whole content to the binary file it is given.
    """
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        # The bare "[Errno 28]" names no file; the old file (if any) is still in place.
        raise OSError(
            errno.ENOSPC,
            f"no space left on the device while writing {path} (the previous "
            "version, if any, is intact): free some space and run the command again",
        ) from err


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Writes ``value`` as indented JSON with sorted keys, atomically."""
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike) -> Iterator[None]:
    """Holds an exclusive lock on the file ``path`` for the block: one holder at a time.

    The lock is ``fcntl.flock`` on ``path`` (created if needed, holding this process's id),
    so it dies with its process, however that ends; the file is removed when the block
    ends, and one left by a killed process is simply taken over.

    Raises:
      LockedError: another process holds it (nothing is changed).

    Example:
      >>> import tempfile
      >>> lock = Path(tempfile.mkdtemp()) / "run.lock"
      >>> with exclusive_lock(lock):
      ...     with exclusive_lock(lock):  # doctest: +ELLIPSIS
      ...         pass
      Traceback (most recent call last):
      kipd.files.LockedError: .../run.lock is held by process ...
      >>> lock.exists()
      False
    """
    path = Path(path)
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 32).decode(errors="replace").strip()
            os.close(handle)
            raise LockedError(path, int(holder) if holder.isdigit() else None) from None
        # A holder removes the file as it lets go: a lock won on a file removed meanwhile
        # locks nothing anyone else opens, so take the one now at ``path``.
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(handle), os.stat(path)):
                break
        os.close(handle)
    try:
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # still held: no one can have taken it in between
        os.close(handle)


def _content_hash(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_npz(path: str | os.PathLike, arrays: Mapping[str, Any]) -> None:
    """Writes named arrays as an uncompressed ``.npz`` with their content hash, atomically.

    Example:
      >>> import tempfile
      >>> path = Path(tempfile.mkdtemp()) / "a.npz"
      >>> write_npz(path, {"x": np.arange(3)})
      >>> read_npz(path)["x"]
      array([0, 1, 2])
    """
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    if HASH_KEY in arrays:
        raise ValueError(f"{HASH_KEY!r} is reserved for the content hash")
    hashed: dict[str, Any] = {**arrays, HASH_KEY: _content_hash(arrays)}
    atomic_write(path, lambda f: np.savez(f, **hashed))


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``, verified against its content hash when it has one.

    Files written elsewhere (no hash, e.g. the paper's released sets) are read as they are.

    Raises:
      FileNotFoundError: there is no file at ``path``.
      DamagedFileError: the file is not a readable ``.npz`` (truncated, not a zip archive,
        holds pickled objects) or its arrays do not match their hash.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    if path.stat().st_size == 0:
        raise DamagedFileError(path, "it is empty (0 bytes)")
    if not zipfile.is_zipfile(path):
        raise DamagedFileError(path, "it is not an .npz archive (no zip directory: cut short?)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
    except ValueError as err:
        if "allow_pickle" not in str(err):
            raise DamagedFileError(path, f"an array cannot be read ({err})") from err
        raise DamagedFileError(
            path, "it holds Python objects (pickled arrays), which kipd does not load"
        ) from err
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as err:
        raise DamagedFileError(
            path, f"the archive cannot be read ({type(err).__name__}: {err})"
        ) from err
    stored = arrays.pop(HASH_KEY, None)
    if stored is not None and str(stored) != _content_hash(arrays):
        raise DamagedFileError(path, "its arrays do not match the content hash stored with them")
    return arrays


def stored_hash(path: str | os.PathLike) -> str | None:
    """The content hash an ``.npz`` carries (:data:`HASH_KEY`), or ``None`` for a file
    written elsewhere; :func:`read_npz` is what checks it against the arrays (read the
    file with it first: this reads the hash alone).
    """
    with np.load(path, allow_pickle=False) as f:
        return str(f[HASH_KEY]) if HASH_KEY in f.files else None
