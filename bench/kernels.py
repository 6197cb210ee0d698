"""Kernel throughput: kipd, its previous release and neural-tangents 0.6.5, same machine, same run.

Prints one table: pairs/s of the NTK forward and forward+VJP (gradient of sum(K) with
respect to x1), compile times, peak memory (RSS of a fresh process per library and
setting), and each kipd's max relative error against neural-tangents on fresh random
inputs (not the test fixtures). Per setting the rows are

  kipd                 this tree (``src/``)
  kipd f566d4e         the previous release, same interpreter and JAX: its ``src/`` is
                       extracted once with ``git archive`` into ``.bench-venv/kipd-<commit>/``
                       and put first on PYTHONPATH of its worker process
  neural-tangents      in its own virtual environment (``bench/nt_env.py``:
                       ``$KIPD_NT_PYTHON``, or ``.bench-venv/ntref`` made on first use)
  kipd K(x) symmetric  this tree only: the forward of ``kernel(x)`` (n x n, counted as
                       n*n pairs), the symmetric path, next to ``kernel(x, x')``

and the ratios kipd / f566d4e and kipd / NT. Below the table, the arithmetic limit of
this CPU for each setting: the measured float32 elementwise throughput of JAX (a fused
multiply-add chain on a cache-resident array, all cores) divided by the operations per
pair of kipd's forward (XLA's cost analysis: flops + transcendentals).

    python bench/kernels.py                      # the README table (~10 minutes on 2 cores)
    python bench/kernels.py --only convnet_32x32x3 --kipd-only --no-baseline
    python bench/kernels.py --baseline-commit <sha> --json kernels.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nt_env import run_reference  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
BASELINE_COMMIT = "f566d4e"
"""The previous release, measured beside this tree (``--baseline-commit``)."""

# (name, architecture, image shape, kipd n1 x n2 (both releases), neural-tangents n1 x n2)
SETTINGS = [
    ("convnet_28x28x1", "convnet", (28, 28, 1), (16, 16), (4, 4)),
    ("convnet_32x32x3", "convnet", (32, 32, 3), (16, 16), (4, 4)),
    ("convvec8_32x32x3", "convvec8", (32, 32, 3), (32, 32), (8, 8)),
]
SMOKE_SHAPES = ((2, 2), (2, 2))
"""--smoke: kipd and neural-tangents n1 x n2, to test the script, not to measure."""

COST_SIDE = 4
"""m of the cost analysis: forwards of m x m, m x 2m and 2m x 2m pairs (see _ops_per_pair)."""


# ----------------------------------------------------------------------------------------
# Worker side: runs in a fresh process whose ``import kipd`` is the release being measured.
# ----------------------------------------------------------------------------------------


def _timed(compiled: Callable, *args: Any, repeats: int) -> tuple[float, float]:
    """Median wall and process-CPU seconds of ``repeats`` steady calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        compiled(*args).block_until_ready()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return statistics.median(wall), statistics.median(cpu)


def _measure(prefix: str, fn: Callable, args: tuple, pairs: int, repeats: int) -> dict:
    """Compile ``fn`` ahead of time (so compile and run are separate), then time it."""
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    out = {f"{prefix}_compile_s": time.perf_counter() - start}
    compiled(*args).block_until_ready()
    wall, cpu = _timed(compiled, *args, repeats=repeats)
    out[f"{prefix}_pairs_per_s"] = pairs / wall
    out[f"{prefix}_pairs_per_cpu_s"] = pairs / cpu
    return out


def _make(arch: str, **kwargs: Any) -> tuple[Callable, dict]:
    """``kipd.kernels.make(arch, **kwargs)``, dropping keywords this release lacks.

    Returns the kernel and the keywords it was actually made with, so that the JSON
    says which ones the release honoured (the previous release has no
    ``implementation=``).
    """
    import kipd.kernels

    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    while True:
        try:
            return kipd.kernels.make(arch, **kwargs), kwargs
        except TypeError as err:
            dropped = [k for k in kwargs if f"'{k}'" in str(err)]
            if not dropped:
                raise
            for k in dropped:
                kwargs.pop(k)


def _cost(compiled: Any) -> float:
    """flops + transcendentals of a compiled computation (a dict, or a list of one dict
    per computation in some JAX versions)."""
    analysis = compiled.cost_analysis()
    parts = analysis if isinstance(analysis, (list, tuple)) else [analysis]
    return float(sum(p.get("flops", 0.0) + p.get("transcendentals", 0.0) for p in parts if p))


def _ops_per_pair(arch: str, shape: tuple[int, ...], m: int) -> dict:
    """Operations per pair of the forward, from XLA's cost analysis.

    XLA counts a loop body once, not once per trip, so the forward is compiled as ONE
    block (``pairs_per_block >= 4 m^2``) on small inputs, and the per-image diagonal
    passes and constants are removed with a mixed second difference: for a cost
    ``C(a, b) = f(a) + g(b) + p*a*b``, ``p = (C(2m,2m) - 2 C(m,2m) + C(m,m)) / m^2``.
    """
    import jax
    import jax.numpy as jnp

    kernel, used = _make(arch, pairs_per_block=4 * m * m, implementation="xla")
    forward = jax.jit(lambda a, b: kernel(a, b, get="ntk"))
    costs, has_loop = {}, False
    for a, b in ((m, m), (m, 2 * m), (2 * m, 2 * m)):
        compiled = forward.lower(
            jnp.zeros((a, *shape), jnp.float32), jnp.zeros((b, *shape), jnp.float32)
        ).compile()
        costs[f"{a}x{b}"] = _cost(compiled)
        has_loop = has_loop or " while(" in compiled.as_text()
    c11, c12, c22 = costs[f"{m}x{m}"], costs[f"{m}x{2 * m}"], costs[f"{2 * m}x{2 * m}"]
    return {
        "ops_per_pair": (c22 - 2 * c12 + c11) / (m * m),
        "cost_ops": costs,
        "cost_make_kwargs": used,
        # A loop left in the HLO means XLA counted its body once: the number is too low.
        "cost_has_loop": has_loop,
    }


def kipd_worker(config: dict) -> dict:
    """Time the kipd that ``import kipd`` finds in this (fresh) process.

    ``config``: arch, shape, n1, n2, inputs (.npz of the neural-tangents inputs, for the
    error column), repeats, symmetric (also time ``kernel(x)``), cost_side (0: skip the
    cost analysis), make_kwargs. Returns the same timing fields as the NT reference.
    """
    import inspect

    import jax
    import jax.numpy as jnp

    import kipd
    import kipd.kernels

    arch, shape, n1, n2 = config["arch"], tuple(config["shape"]), config["n1"], config["n2"]
    kernel, used = _make(arch, **config.get("make_kwargs", {}))
    out: dict[str, Any] = {
        "kipd_file": kipd.__file__,
        "jax": jax.__version__,
        "make_kwargs": used,
        "make_parameters": list(inspect.signature(kipd.kernels.make).parameters),
        "pairs": n1 * n2,
        "n1": n1,
        "n2": n2,
    }
    key1, key2 = jax.random.split(jax.random.PRNGKey(123))
    x1 = jax.random.normal(key1, (n1, *shape), jnp.float32)
    x2 = jax.random.normal(key2, (n2, *shape), jnp.float32)

    forward = jax.jit(lambda a, b: kernel(a, b, get="ntk"))
    backward = jax.jit(jax.grad(lambda a, b: kernel(a, b, get="ntk").sum()))
    out.update(_measure("fwd", forward, (x1, x2), n1 * n2, config["repeats"]))
    out.update(_measure("vjp", backward, (x1, x2), n1 * n2, config["repeats"]))

    # The same inputs neural-tangents saw, for the error column.
    with np.load(config["inputs"]) as data:
        nngp, ntk = kernel(jnp.asarray(data["x1"]), jnp.asarray(data["x2"]), get=("nngp", "ntk"))
    out["nngp"], out["ntk"] = np.asarray(nngp).tolist(), np.asarray(ntk).tolist()
    # Peak RSS of the comparable part (fwd, fwd+VJP, errors), before the extras below.
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if config.get("symmetric"):
        # kernel(x) with x2=None: each unordered pair once where the release has a
        # symmetric path; n1*n1 pairs of output either way.
        symmetric = jax.jit(lambda a: kernel(a, get="ntk"))
        out.update(_measure("sym_fwd", symmetric, (x1,), n1 * n1, config["repeats"]))
    if config.get("cost_side"):
        out.update(_ops_per_pair(arch, shape, config["cost_side"]))
    out["peak_rss_final_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _chain(x: Any, chains: int, steps: int) -> Any:
    """``chains`` independent multiply-add chains of ``steps`` each, summed.

    Independent chains keep the FMA units busy (one chain is latency bound); distinct
    constants keep XLA from folding steps together. XLA fuses it all into one loop.
    """
    values = [x + 0.01 * j for j in range(chains)]
    for s in range(steps):
        values = [v * (0.999 - 1e-4 * j - 1e-6 * s) + 1e-3 * (j + 1) for j, v in enumerate(values)]
    return sum(values[1:], values[0])


def limit_worker(config: dict) -> dict:
    """This CPU's float32 elementwise throughput in JAX, Gop/s, on 1 thread and on all.

    The array (``size`` floats, L2-resident) is small enough that memory is not the
    limit (about 500 operations per element loaded); each call does ~30 Mop, so the
    dispatch overhead (~10 us) is under 1%. Concurrent calls from Python threads (JAX
    releases the GIL while it executes) use the other cores. Best of ``trials``.
    """
    import jax
    import jax.numpy as jnp

    chains, steps, size = 8, 32, config.get("size", 65536)
    # Per element: chains initial adds, 2 ops per step and chain, chains - 1 final adds.
    ops_per_call = size * (chains + 2 * chains * steps + chains - 1)
    x = jnp.linspace(0.0, 1.0, size, dtype=jnp.float32)
    compiled = jax.jit(lambda a: _chain(a, chains, steps)).lower(x).compile()
    compiled(x).block_until_ready()
    calls = max(3, int(config.get("seconds", 0.3) * 50e9 / ops_per_call))

    def work() -> None:
        for _ in range(calls):
            compiled(x).block_until_ready()

    threads_all = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    )
    out = {
        "size": size,
        "ops_per_call": ops_per_call,
        "xla_flops_per_call": _cost(compiled),
        "threads_all": threads_all,
        "calls_per_thread": calls,
    }
    for label, threads in (("1", 1), ("all", threads_all)):
        best = 0.0
        for _ in range(config.get("trials", 3)):
            workers = [threading.Thread(target=work) for _ in range(threads)]
            start = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            best = max(best, threads * calls * ops_per_call / (time.perf_counter() - start))
        out[f"gops_{label}"] = best / 1e9
    return out


# ----------------------------------------------------------------------------------------
# Driver side.
# ----------------------------------------------------------------------------------------


def materialize_baseline(commit: str) -> Path:
    """The previous release's ``src/``, extracted once into ``.bench-venv/kipd-<commit>/``.

    ``git archive`` of the repository itself (no worktree needed); a marker file holding
    the full commit id says the extraction finished, so an interrupted one is redone.
    """
    full = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", f"{commit}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if full.returncode != 0:
        raise SystemExit(
            f"bench/kernels.py: baseline commit {commit!r} not found: {full.stderr.strip()}"
        )
    sha = full.stdout.strip()
    root = REPO_ROOT / ".bench-venv" / f"kipd-{commit}"
    marker = root / ".kipd-baseline-commit"
    if marker.is_file() and marker.read_text().strip() == sha and (root / "src" / "kipd").is_dir():
        return root
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", sha, "src"], capture_output=True
    )
    if archive.returncode != 0:
        raise SystemExit(
            f"bench/kernels.py: git archive {sha} failed: {archive.stderr.decode()[-500:]}"
        )
    if root.exists():
        shutil.rmtree(root)
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        try:
            tar.extractall(partial, filter="data")
        except TypeError:  # Python < 3.11.4 has no extraction filters; git's own archive
            tar.extractall(partial)
    (partial / marker.name).write_text(sha + "\n")
    partial.rename(root)
    print(f"# previous release {sha[:12]} extracted into {root}", file=sys.stderr)
    return root


def _run_worker(flag: str, config: dict, src: Path | None = None) -> dict:
    """Run this script's ``flag`` worker in a fresh process, so its peak RSS is its own.

    ``src``: a ``src/`` directory put first on PYTHONPATH, so that ``import kipd`` is
    that release; the worker's ``kipd.__file__`` is checked against it.
    """
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, __file__, flag, json.dumps(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{flag} worker failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if src is not None and not Path(out["kipd_file"]).resolve().is_relative_to(src.resolve()):
        raise RuntimeError(f"worker imported {out['kipd_file']}, not the kipd under {src}")
    return out


def _relative_error(ours: Any, reference: Any) -> float:
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def _write_inputs(path: str, shape: tuple[int, ...], n1: int, n2: int) -> None:
    rng = np.random.default_rng(2026)
    np.savez(
        path,
        x1=rng.standard_normal((n1, *shape), dtype=np.float32),
        x2=rng.standard_normal((n2, *shape), dtype=np.float32),
    )


def run_setting(setting: tuple, args: argparse.Namespace, baseline: Path | None) -> dict:
    """One setting: this tree, the previous release, neural-tangents; errors vs NT."""
    name, arch, shape, (n1, n2), (nt_n1, nt_n2) = setting
    if args.smoke:
        (n1, n2), (nt_n1, nt_n2) = SMOKE_SHAPES
    cost_side = 2 if args.smoke else COST_SIDE
    row: dict[str, Any] = {"setting": name, "arch": arch, "shape": list(shape)}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = os.path.join(tmp, "inputs.npz")
        _write_inputs(inputs, shape, nt_n1, nt_n2)
        config = dict(
            arch=arch,
            shape=list(shape),
            n1=n1,
            n2=n2,
            inputs=inputs,
            repeats=args.repeats,
            cost_side=cost_side,
        )
        row["kipd"] = _run_worker("--worker", dict(config, symmetric=True), REPO_ROOT / "src")
        print(f"# {name}: kipd {row['kipd']['fwd_pairs_per_s']:.1f} fwd pairs/s", file=sys.stderr)
        # The same tree with its XLA stage: what the layer maps alone give (float64, or no g++).
        row["kipd_xla"] = _run_worker(
            "--worker",
            dict(config, make_kwargs={"implementation": "xla"}, cost_side=0),
            REPO_ROOT / "src",
        )
        if baseline is not None:
            row["baseline"] = _run_worker("--worker", config, baseline / "src")
            print(
                f"# {name}: kipd {args.baseline_commit} "
                f"{row['baseline']['fwd_pairs_per_s']:.1f} fwd pairs/s",
                file=sys.stderr,
            )
        if not args.kipd_only:
            nt_kernels = os.path.join(tmp, "nt.npz")
            row["nt"] = run_reference(
                arch, shape, None, None, inputs, nt_kernels, repeats=max(1, args.repeats - 1)
            )
            with np.load(nt_kernels) as nt:
                for key in ("kipd", "kipd_xla", "baseline"):
                    if key in row:
                        row[key]["max_rel_err_ntk"] = _relative_error(row[key]["ntk"], nt["ntk"])
                        row[key]["max_rel_err_nngp"] = _relative_error(row[key]["nngp"], nt["nngp"])
    for key in ("kipd", "kipd_xla", "baseline"):
        if key in row:  # the kernel values were only needed for the errors
            row[key].pop("nngp", None)
            row[key].pop("ntk", None)
    return row


def arithmetic_limit(rows: list[dict], throughput: dict) -> list[dict]:
    """Per setting: Gop/s (all cores) / ops per pair of this tree's forward = pairs/s."""
    limits = []
    for row in rows:
        ours = row["kipd"]
        if "ops_per_pair" not in ours or ours["ops_per_pair"] <= 0:
            continue
        pairs_per_s = throughput["gops_all"] * 1e9 / ours["ops_per_pair"]
        limits.append(
            {
                "setting": row["setting"],
                "gops": throughput["gops_all"],
                "mops_per_pair": ours["ops_per_pair"] / 1e6,
                "pairs_per_s": pairs_per_s,
                "kipd_fwd_fraction": ours["fwd_pairs_per_s"] / pairs_per_s,
                "cost_has_loop": ours["cost_has_loop"],
            }
        )
    return limits


def _fmt_ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def print_table(rows: list[dict], baseline_label: str) -> None:
    header = (
        "| setting | library | fwd pairs/s | fwd+VJP pairs/s | fwd compile s | fwd+VJP compile s "
        "| peak RSS MiB | max rel err (NTK, NNGP) vs NT |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for row in rows:
        s = row["setting"]
        for library, key in (
            ("kipd", "kipd"),
            ("kipd, XLA stage", "kipd_xla"),
            (baseline_label, "baseline"),
            ("neural-tangents", "nt"),
        ):
            if key not in row:
                continue
            r = row[key]
            error = (
                f"{r['max_rel_err_ntk']:.1e}, {r['max_rel_err_nngp']:.1e}"
                if "max_rel_err_ntk" in r
                else ""
            )
            print(
                f"| {s} | {library} | {r['fwd_pairs_per_s']:.1f} | {r['vjp_pairs_per_s']:.1f} "
                f"| {r['fwd_compile_s']:.1f} | {r['vjp_compile_s']:.1f} | {r['peak_rss_mib']:.0f} "
                f"| {error} |"
            )
        ours = row["kipd"]
        if "sym_fwd_pairs_per_s" in ours:
            n = ours["n1"]
            print(
                f"| {s} | kipd K(x) symmetric, {n}x{n} | {ours['sym_fwd_pairs_per_s']:.1f} | "
                f"| {ours['sym_fwd_compile_s']:.1f} | | | |"
            )
            speedup = ours["sym_fwd_pairs_per_s"] / ours["fwd_pairs_per_s"]
            print(f"| {s} | **K(x) / K(x, x')** | **{_fmt_ratio(speedup)}** | | | | | |")
        for label, key in ((f"kipd / {baseline_label[5:]}", "baseline"), ("kipd / NT", "nt")):
            if key in row:
                fwd = ours["fwd_pairs_per_s"] / row[key]["fwd_pairs_per_s"]
                vjp = ours["vjp_pairs_per_s"] / row[key]["vjp_pairs_per_s"]
                print(
                    f"| {s} | **ratio {label}** | **{_fmt_ratio(fwd)}** | **{_fmt_ratio(vjp)}** | "
                    "| | | |"
                )


def print_sources(rows: list[dict], baseline_label: str) -> None:
    """Which kipd each row imported (checked in the worker) and the JAX they ran on."""
    if not rows:
        return
    print()
    for label, key in (("kipd", "kipd"), (baseline_label, "baseline")):
        if key in rows[0]:
            r = rows[0][key]
            src = Path(r["kipd_file"]).resolve().parent.parent
            if src.is_relative_to(REPO_ROOT):
                src = src.relative_to(REPO_ROOT)
            print(
                f"{label}: {src}/kipd (jax {r['jax']}; make keywords "
                f"{', '.join(r['make_parameters'][1:])})"
            )


def print_limits(limits: list[dict], throughput: dict) -> None:
    print()
    print(
        f"float32 elementwise throughput of JAX here: {throughput['gops_all']:.1f} Gop/s on "
        f"{throughput['threads_all']} threads ({throughput['gops_1']:.1f} Gop/s on 1); "
        "ops per pair from XLA's cost analysis of kipd's forward (flops + transcendentals)"
    )
    for lim in limits:
        warning = (
            " (XLA counted a loop body once: ops undercounted)" if lim["cost_has_loop"] else ""
        )
        print(
            f"arithmetic limit here: {lim['gops']:.1f} Gop/s / {lim['mops_per_pair']:.2f} Mop per "
            "pair "
            f"= {lim['pairs_per_s']:,.0f} pairs/s  [{lim['setting']}: kipd fwd at "
            f"{100 * lim['kipd_fwd_fraction']:.0f}%]{warning}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", help="run only these settings (repeatable)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
    parser.add_argument("--kipd-only", action="store_true", help="skip neural-tangents")
    parser.add_argument("--no-baseline", action="store_true", help="skip the previous release")
    parser.add_argument(
        "--baseline-commit",
        default=BASELINE_COMMIT,
        help=f"the previous release (default {BASELINE_COMMIT})",
    )
    parser.add_argument(
        "--json",
        help="also write every number (rows, CPU throughput, arithmetic limit) to this JSON file",
    )
    parser.add_argument(
        "--smoke", action="store_true", help=argparse.SUPPRESS
    )  # 2x2 blocks: tests the script
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--limit-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(kipd_worker(json.loads(args.worker))))
        return
    if args.limit_worker:
        print(json.dumps(limit_worker(json.loads(args.limit_worker))))
        return
    unknown = set(args.only or ()) - {s[0] for s in SETTINGS}
    if unknown:
        parser.error(f"unknown --only {sorted(unknown)}; settings: {[s[0] for s in SETTINGS]}")

    baseline = None if args.no_baseline else materialize_baseline(args.baseline_commit)
    baseline_label = f"kipd {args.baseline_commit}"
    rows = [run_setting(s, args, baseline) for s in SETTINGS if not args.only or s[0] in args.only]
    limit_config = {"seconds": 0.05, "trials": 2} if args.smoke else {}
    throughput = _run_worker("--limit-worker", limit_config)
    limits = arithmetic_limit(rows, throughput)

    print()
    print_table(rows, baseline_label)
    print_sources(rows, baseline_label)
    print_limits(limits, throughput)
    if args.json:
        meta = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "baseline_commit": args.baseline_commit,
            "baseline_src": None if baseline is None else str(baseline / "src"),
            "smoke": args.smoke,
            "repeats": args.repeats,
        }
        result = {"meta": meta, "throughput": throughput, "arithmetic_limit": limits, "rows": rows}
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
