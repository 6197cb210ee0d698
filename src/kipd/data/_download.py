"""Checksummed downloads that never leave a half-written file where a complete one goes.

A download streams into a hidden temporary file beside the destination
(``.<name>.<random>.part``), is checked against the expected size and sha256, and only
then is renamed onto the destination (``os.replace``, atomic on one filesystem). Any
failure, an interrupt included, deletes the temporary file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from kipd import files
from kipd.data._errors import DatasetError

_CHUNK = 1 << 20
_USER_AGENT = "kipd (dataset download)"


class _AttemptError(Exception):
    """One URL's download failed; the message says why."""


def fetch(
    urls: Sequence[str],
    dest: str | os.PathLike,
    sha256: str,
    size: int | None = None,
    *,
    timeout: float = 60.0,
) -> Path:
    """Downloads a file from the first URL that delivers it intact.

    Args:
      urls: mirrors of one file, tried in order.
      dest: where the verified file goes; its folder is created if needed.
      sha256: the file's expected SHA-256, lowercase hex.
      size: the file's expected size in bytes, or None to skip that check.
      timeout: seconds to wait on a stalled connection.

    Returns:
      ``dest`` as a Path, which now holds the verified file.

    Raises:
      DatasetError: every URL failed (no network, HTTP error, truncated transfer, size
        or checksum mismatch); the message lists each URL's failure. Nothing is left at
        ``dest`` and no temporary file remains.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            _fetch_one(url, dest, sha256.lower(), size, timeout)
            return dest
        except _AttemptError as err:
            failures.append(f"{url}: {err}")
    raise DatasetError(f"could not download {dest.name}:\n  " + "\n  ".join(failures))


def _fetch_one(url: str, dest: Path, sha256: str, size: int | None, timeout: float) -> None:
    with files.atomic_path(dest) as tmp:
        digest = hashlib.sha256()
        received = 0
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        with open(tmp, "wb") as out:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    header = response.headers.get("Content-Length")
                    announced = int(header) if header is not None else None
                    with tqdm(
                        total=announced or size,
                        unit="B",
                        unit_scale=True,
                        desc=dest.name,
                        leave=False,
                        disable=None,  # no bar when stderr is not a terminal
                    ) as bar:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
            except (OSError, http.client.HTTPException, ValueError) as err:
                # OSError covers URLError, HTTPError, timeouts and refused connections.
                raise _AttemptError(f"{type(err).__name__}: {err}") from err
            out.flush()
            os.fsync(out.fileno())
        # http.client returns a short body without error when the server closes the
        # connection early, so the length is checked here.
        if announced is not None and received != announced:
            raise _AttemptError(f"truncated transfer: received {received} of {announced} bytes")
        if size is not None and received != size:
            raise _AttemptError(f"wrong size: received {received} bytes, expected {size}")
        actual = digest.hexdigest()
        if actual != sha256:
            raise _AttemptError(f"checksum mismatch: sha256 {actual}, expected {sha256}")
