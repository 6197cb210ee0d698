"""Kernel throughput, kipd vs neural-tangents 0.6.5, same machine, same run.

Prints one table: pairs/s of the NTK forward and forward+VJP (gradient of sum(K) with
respect to x1), compile times, peak memory (RSS of a fresh process per library and
setting), and kipd's max relative error against neural-tangents on fresh random inputs
(not the test fixtures). neural-tangents runs in its own virtual environment
(``bench/nt_env.py``: ``$KIPD_NT_PYTHON``, or ``.bench-venv/ntref`` made on first use).

    python bench/kernels.py                      # the README table (~5 minutes on 2 cores)
    python bench/kernels.py --only convnet_32x32x3 --kipd-only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nt_env import run_reference  # noqa: E402

# (name, architecture, image shape, kipd block n1 x n2, neural-tangents block n1 x n2)
SETTINGS = [
    ("convnet_28x28x1", "convnet", (28, 28, 1), (16, 16), (4, 4)),
    ("convnet_32x32x3", "convnet", (32, 32, 3), (16, 16), (4, 4)),
    ("convvec8_32x32x3", "convvec8", (32, 32, 3), (32, 32), (8, 8)),
]


def _timed(compiled, *args, repeats):
    wall, cpu = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        compiled(*args).block_until_ready()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return statistics.median(wall), statistics.median(cpu)


def kipd_worker(arch: str, shape: tuple[int, ...], n1: int, n2: int, inputs: str, repeats: int) -> dict:
    """Time kipd in this (fresh) process; returns the same fields as the NT reference."""
    import jax
    import jax.numpy as jnp

    import kipd.kernels

    kernel = kipd.kernels.make(arch)
    key1, key2 = jax.random.split(jax.random.PRNGKey(123))
    x1 = jax.random.normal(key1, (n1, *shape), jnp.float32)
    x2 = jax.random.normal(key2, (n2, *shape), jnp.float32)

    forward = jax.jit(lambda a, b: kernel(a, b, get="ntk"))
    backward = jax.jit(jax.grad(lambda a, b: kernel(a, b, get="ntk").sum()))
    out = {"pairs": n1 * n2}
    for name, fn in (("fwd", forward), ("vjp", backward)):
        start = time.perf_counter()
        compiled = fn.lower(x1, x2).compile()
        out[f"{name}_compile_s"] = time.perf_counter() - start
        compiled(x1, x2).block_until_ready()
        wall, cpu = _timed(compiled, x1, x2, repeats=repeats)
        out[f"{name}_pairs_per_s"] = n1 * n2 / wall
        out[f"{name}_pairs_per_cpu_s"] = n1 * n2 / cpu

    # The same inputs neural-tangents saw, for the error column.
    with np.load(inputs) as data:
        nngp, ntk = kernel(jnp.asarray(data["x1"]), jnp.asarray(data["x2"]), get=("nngp", "ntk"))
    out["nngp"], out["ntk"] = np.asarray(nngp).tolist(), np.asarray(ntk).tolist()
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _run_kipd(arch, shape, n1, n2, inputs, repeats) -> dict:
    """kipd in a fresh subprocess, so its peak RSS is its own."""
    cmd = [sys.executable, __file__, "--worker", json.dumps([arch, list(shape), n1, n2, inputs, repeats])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"kipd worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _relative_error(ours, reference) -> float:
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", help="run only these settings (repeatable)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
    parser.add_argument("--kipd-only", action="store_true", help="skip neural-tangents")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(kipd_worker(*json.loads(args.worker))))
        return

    rows = []
    for name, arch, shape, (n1, n2), (nt_n1, nt_n2) in SETTINGS:
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            rng = np.random.default_rng(2026)
            inputs = os.path.join(tmp, "inputs.npz")
            np.savez(
                inputs,
                x1=rng.standard_normal((nt_n1, *shape), dtype=np.float32),
                x2=rng.standard_normal((nt_n2, *shape), dtype=np.float32),
            )
            ours = _run_kipd(arch, shape, n1, n2, inputs, args.repeats)
            row = {"setting": name, "kipd": ours}
            if not args.kipd_only:
                nt_kernels = os.path.join(tmp, "nt.npz")
                reference = run_reference(
                    arch, shape, None, None, inputs, nt_kernels, repeats=max(1, args.repeats - 1)
                )
                with np.load(nt_kernels) as nt:
                    row["max_rel_err_ntk"] = _relative_error(ours["ntk"], nt["ntk"])
                    row["max_rel_err_nngp"] = _relative_error(ours["nngp"], nt["nngp"])
                row["nt"] = reference
            rows.append(row)
            _print_row(row)

    print()
    _print_table(rows)
    if args.json:
        for row in rows:
            row["kipd"].pop("nngp", None)
            row["kipd"].pop("ntk", None)
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str))


def _print_row(row) -> None:
    print(f"# {row['setting']}: kipd {row['kipd']['fwd_pairs_per_s']:.1f} fwd pairs/s", file=sys.stderr)


def _print_table(rows) -> None:
    header = (
        "| setting | library | fwd pairs/s | fwd+VJP pairs/s | fwd compile s | fwd+VJP compile s "
        "| peak RSS MiB | max rel err (NTK, NNGP) vs NT |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for row in rows:
        for library, key in (("kipd", "kipd"), ("neural-tangents", "nt")):
            if key not in row:
                continue
            r = row[key]
            error = (
                f"{row['max_rel_err_ntk']:.1e}, {row['max_rel_err_nngp']:.1e}"
                if library == "kipd" and "max_rel_err_ntk" in row
                else ""
            )
            print(
                f"| {row['setting']} | {library} | {r['fwd_pairs_per_s']:.1f} | {r['vjp_pairs_per_s']:.1f} "
                f"| {r['fwd_compile_s']:.1f} | {r['vjp_compile_s']:.1f} | {r['peak_rss_mib']:.0f} | {error} |"
            )
        if "nt" in row:
            fwd = row["kipd"]["fwd_pairs_per_s"] / row["nt"]["fwd_pairs_per_s"]
            vjp = row["kipd"]["vjp_pairs_per_s"] / row["nt"]["vjp_pairs_per_s"]
            print(f"| {row['setting']} | **ratio kipd / NT** | **{fwd:.0f}x** | **{vjp:.0f}x** | | | | |")


if __name__ == "__main__":
    main()
