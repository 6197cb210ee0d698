"""Find or make the neural-tangents reference Python and run ``_nt_reference.py`` with it.

neural-tangents 0.6.5 needs jax 0.4.30 and does not import next to kipd's JAX, so the
reference side of the kernel benchmark runs in its own virtual environment, as a
subprocess. This module imports nothing beyond the standard library.

    from nt_env import nt_python, run_reference
    py = nt_python()                      # $KIPD_NT_PYTHON, or .bench-venv/ntref (made once)
    res = run_reference("convnet", (32, 32, 3), 4, 4, "in.npz", "nt_k.npz", 2, False)
    res["fwd_pairs_per_s"], res["vjp_pairs_per_s"], res["peak_rss_mib"]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_SCRIPT = Path(__file__).resolve().parent / "_nt_reference.py"
DEFAULT_VENV = REPO_ROOT / ".bench-venv" / "ntref"

#: What the reference environment gets (tested with numpy 2.4.6, tensorflow 2.21.0 on
#: Python 3.11; jaxlib 0.4.30 has wheels for Python 3.9 - 3.12 only).
NT_PINS = ("jax[cpu]==0.4.30", "jaxlib==0.4.30", "neural-tangents==0.6.5", "tf2jax==0.3.6")

_READY_MARKER = ".kipd-ntref-ready"


class NTReferenceError(RuntimeError):
    """The neural-tangents reference environment or run failed."""


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _check_python(py: str | os.PathLike, origin: str) -> str:
    p = Path(py)
    if not (p.is_file() and os.access(p, os.X_OK)):
        raise NTReferenceError(f"{origin} names {py}, which is not an executable Python")
    return str(p)


def _tail(text: str, lines: int = 30) -> str:
    """Last lines of a stderr, without TensorFlow's start-up chatter (absl 'I0000 ...')."""
    keep = [
        line
        for line in text.strip().splitlines()
        if not line.startswith(("WARNING: All log messages before absl", "I0000 ", "W0000 "))
    ]
    return "\n".join(keep[-lines:])


def _create_venv(venv: Path, base_python: str) -> None:
    """python -m venv + pip install NT_PINS; a marker file says the install finished."""
    if venv.exists():  # a half-made one from an interrupted earlier attempt
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"nt_env: creating the neural-tangents reference venv {venv} with {base_python} "
        f"(pip install {' '.join(NT_PINS)}; takes a few minutes once)",
        file=sys.stderr,
    )
    steps = [
        [base_python, "-m", "venv", str(venv)],
        [str(_venv_python(venv)), "-m", "pip", "install", "--quiet", *NT_PINS],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise NTReferenceError(
                f"making the neural-tangents venv failed at: {' '.join(cmd)}\n"
                f"{_tail(proc.stdout + proc.stderr)}\n"
                "Set KIPD_NT_PYTHON to an existing Python that has neural-tangents 0.6.5, "
                "or KIPD_NT_BASE_PYTHON to a Python 3.9-3.12 to build the venv from."
            )
    (venv / _READY_MARKER).write_text(" ".join(NT_PINS) + "\n")


def nt_python(path: str | os.PathLike | None = None) -> str:
    """Path of a Python that has neural-tangents 0.6.5.

    In order: ``$KIPD_NT_PYTHON`` if set; else ``path`` if given; else
    ``<repo>/.bench-venv/ntref/bin/python``, which is created (``python3 -m venv`` +
    ``pip install`` of :data:`NT_PINS`) when it is missing or was left half-made. The
    base interpreter for that is ``$KIPD_NT_BASE_PYTHON``, default ``python3``.
    """
    env = os.environ.get("KIPD_NT_PYTHON")
    if env:
        return _check_python(env, "$KIPD_NT_PYTHON")
    if path is not None:
        return _check_python(path, "the given path")
    venv = DEFAULT_VENV
    py = _venv_python(venv)
    if not (venv / _READY_MARKER).is_file() or not py.is_file():
        _create_venv(venv, os.environ.get("KIPD_NT_BASE_PYTHON", "python3"))
    return str(py)


def run_reference(
    arch: str,
    shape: Sequence[int] | None,
    n1: int | None,
    n2: int | None,
    inputs_path: str | os.PathLike | None = None,
    kernels_path: str | os.PathLike | None = None,
    repeats: int = 2,
    x64: bool = False,
    *,
    seed: int = 0,
    get: str = "ntk",
    vjp: bool = True,
    depth: int | None = None,
    w_std: float | None = None,
    b_std: float | None = None,
    python: str | os.PathLike | None = None,
    timeout: float | None = None,
) -> dict:
    """Time neural-tangents on one (n1, n2) block; the parsed JSON of ``_nt_reference.py``.

    ``inputs_path``: .npz with x1 [and x2] that NT reads instead of drawing random inputs
    (then ``shape``/``n1``/``n2`` may be None; given, they are checked against it).
    ``kernels_path``: where NT writes its nngp and ntk (n1, n2) matrices. ``x64``: float64.
    Keys include fwd_pairs_per_s, fwd_compile_s, vjp_pairs_per_s, vjp_compile_s,
    peak_rss_mib (see the docstring of _nt_reference.py). Raises NTReferenceError with
    the tail of NT's stderr when the run fails.
    """
    py = nt_python(python)
    cmd = [
        py,
        str(REFERENCE_SCRIPT),
        "--arch",
        arch,
        "--repeats",
        str(int(repeats)),
        "--x64" if x64 else "--no-x64",
        "--seed",
        str(int(seed)),
        "--get",
        get,
    ]
    if shape is not None:
        cmd += ["--shape", ",".join(str(int(s)) for s in shape)]
    if n1 is not None:
        cmd += ["--n1", str(int(n1))]
    if n2 is not None:
        cmd += ["--n2", str(int(n2))]
    if inputs_path is not None:
        cmd += ["--inputs", str(inputs_path)]
    if kernels_path is not None:
        cmd += ["--save-kernels", str(kernels_path)]
    if not vjp:
        cmd += ["--no-vjp"]
    for flag, val in (("--depth", depth), ("--W-std", w_std), ("--b-std", b_std)):
        if val is not None:
            cmd += [flag, repr(val)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    # The reference venv must not pick up the caller's packages.
    env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise NTReferenceError(
            f"neural-tangents reference timed out after {timeout} s: {' '.join(cmd)}\n{_tail(err)}"
        ) from None
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise NTReferenceError(
            f"neural-tangents reference failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"--- stderr tail ---\n{_tail(proc.stderr)}"
        )
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise NTReferenceError(
            f"neural-tangents reference printed no JSON ({e}): {lines[-1][:200]!r}\n"
            f"--- stderr tail ---\n{_tail(proc.stderr)}"
        ) from None


if __name__ == "__main__":  # python bench/nt_env.py  -> prints the NT python
    print(nt_python())
