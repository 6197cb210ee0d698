"""Build and load the C++ kernel (``cpu_band.cc``) and register its XLA FFI handlers.

On first use the source is compiled with ``g++`` (flags :data:`_FLAGS`; no fast-math, no
FMA contraction: every operation is one IEEE float32 operation, in the order written, so
the diagonal pass and the grid's offset-0 plane agree bit for bit) into
``$KIPD_CACHE_DIR`` (default ``~/.cache/kipd``), under a name keyed by a hash of the
source, the flags, the JAX version and the CPU (``-march=native``); a changed source is
thus built anew. The file is written to a temporary name and renamed, so concurrent
processes never load a half-written library. It is loaded with ``ctypes`` and its
handlers registered with ``jax.ffi.register_ffi_target`` under the names of
:data:`_TARGETS` (the names ``cpu.py`` calls). :func:`available` says whether that worked;
nothing happens at import time.
"""

from __future__ import annotations

import ctypes
import hashlib
import platform
import subprocess
import threading
from pathlib import Path

import jax

from kipd import files

_SOURCE = Path(__file__).with_name("cpu_band.cc")
# -ffp-contract=off: no a*b+c -> FMA, which would round differently from XLA's path and,
# worse, differently in two loops that must agree bit for bit. -fno-math-errno only drops
# the errno store of sqrt (so sqrt vectorizes); the results stay IEEE.
_FLAGS = (
    "-O3",
    "-march=native",
    "-std=c++17",
    "-fno-fast-math",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fPIC",
    "-shared",
    "-pthread",
)
_COMPILER = "g++"
_TARGETS = {
    # FFI target name: the handler's symbol in the library.
    "kipd_cpu_band_forward": "KipdCpuBandForward",
    "kipd_cpu_band_backward": "KipdCpuBandBackward",
    "kipd_cpu_diagonal_backward": "KipdCpuDiagonalBackward",
    "kipd_cpu_variances": "KipdCpuVariances",
    "kipd_cpu_band_on_band_forward": "KipdCpuBandOnBandForward",
    "kipd_cpu_band_on_band_backward": "KipdCpuBandOnBandBackward",
}

_lock = threading.Lock()
_state: dict = {}  # "library": the loaded ctypes.CDLL (kept alive), or "error": why not


def _cpu_fingerprint() -> str:
    """What ``-march=native`` depends on, so a shared cache never serves another CPU."""
    cpuinfo = Path("/proc/cpuinfo")
    # Without /proc (not Linux) the machine and processor names are all there is to key on.
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((line for line in lines if line.startswith("model name")), "")
    flags = next((line for line in lines if line.startswith("flags")), "")
    return f"{platform.machine()}\n{platform.processor()}\n{model}\n{flags}"


def _library_path() -> Path:
    key = hashlib.sha256()
    for part in (
        _SOURCE.read_bytes(),
        " ".join(_FLAGS).encode(),
        _COMPILER.encode(),
        jax.__version__.encode(),
        jax.lib.__version__.encode(),
        _cpu_fingerprint().encode(),
    ):
        key.update(part)
        key.update(b"\0")
    return files.cache_dir() / f"kipd_cpu_band-{key.hexdigest()[:20]}.so"


def _build(path: Path) -> None:
    """Compile the source to ``path`` via a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(path) as temporary:
        command = [
            _COMPILER,
            *_FLAGS,
            f"-I{jax.ffi.include_dir()}",
            str(_SOURCE),
            "-o",
            str(temporary),
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except FileNotFoundError:
            raise RuntimeError(
                f"no C++ compiler: {_COMPILER!r} is not on the PATH (the C++ CPU kernel is "
                "compiled on first use; install g++, or use the XLA path)"
            ) from None
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr}"
            )


def _load() -> ctypes.CDLL | None:
    """Build (once per cache key), load and register the library; None if impossible."""
    with _lock:
        if "library" in _state or "error" in _state:
            return _state.get("library")
        try:
            path = _library_path()
            if not path.exists():
                _build(path)
            library = ctypes.CDLL(str(path))
            for target, symbol in _TARGETS.items():
                jax.ffi.register_ffi_target(
                    target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu"
                )
        except Exception as error:  # no compiler, unwritable cache, bad build: report it
            _state["error"] = f"{type(error).__name__}: {error}"
            return None
        _state["library"] = library
        return library


def available() -> bool:
    """Whether the C++ kernel is usable here (compiled, loaded and registered).

    The first call compiles it if the cache holds no build for this source, these flags,
    this JAX and this CPU (a few seconds to a minute). Never raises: without ``g++`` (or
    with a failed build) it returns False, and :func:`build_error` says why.
    """
    return _load() is not None


def build_error() -> str | None:
    """Why :func:`available` is False (the compiler's error, say), or None if it is True."""
    return None if available() else _state.get("error")


def require() -> None:
    """Raise a RuntimeError that says why, unless :func:`available`."""
    if not available():
        raise RuntimeError(f"the C++ CPU kernel is unavailable: {_state.get('error')}")
