"""kipd on a GPU: exactness, kernel throughput per implementation and block size, one KIP step.

One command for a fresh GPU machine whose JAX has the CUDA plugin (no network, kipd
not installed; run from the repository root):

    PYTHONPATH=src python3 bench/gpu.py --out $OUT          # <= ~8 minutes (--budget-s 420)
    python3 bench/gpu.py --smoke --out /tmp/gpusmoke        # each section on the CPU, tiny, ~1 min

What it measures, in order, each section in its own try/except (a failure is reported
in the table and the rest still runs) and with the results written after every section
(so a run that is cut off still leaves its file):

  a. environment   jax version, backend, devices, kipd's ``make`` keywords
  b. exactness     ConvNet NTK and NNGP in float32 on the GPU, ``implementation`` "xla" and
                   "pallas", against a float64 reference computed on the CPU by this script
                   in a subprocess (JAX_PLATFORMS=cpu, JAX_ENABLE_X64=1, started first, so
                   it runs while the GPU works): K(x1, x2) (4 x 3 images), K(x) (x2=None,
                   the symmetric path) and K(x, x); max |K - K_ref| / max |K_ref| separately
                   over the off-diagonal and the diagonal entries
  c. throughput    pairs/s of the NTK forward and forward+VJP (gradient of sum(K) w.r.t.
                   x1) on 64 x 64 pairs at 32x32x3 and 28x28x1, per implementation, first at
                   ``make``'s default block, then for ``pairs_per_block`` in 16, 64, 256, 1024
                   while the budget lasts (a size that runs out of memory ends its sweep);
                   compile seconds separately; the best block per implementation
  d. KIP step      100 support x 5000 targets at 32x32x3, ConvNet NTK, through
                   ``kipd.compute.value_and_grad`` with ``kipd.distill.krr_loss`` and a
                   ``LocalExecutor``: seconds per step after one warm-up step, for the
                   default implementation and for the best one of section c (when
                   ``KernelSpec`` takes ``implementation``); a step that would not fit the
                   budget is measured on fewer targets and scaled by its pairs (marked)
  e. tables        ``gpu.md`` (and ``gpu.json``, every raw number) in --out and in
                   ``bench/results/`` (not in --smoke mode)

The global deadline (--budget-s) is checked between sections and between measurements;
section c stops early enough to leave section d its reserve. Progress lines go to stdout
with timestamps.

Kernel API used: ``kipd.kernels.make(name, *, depth=None, pairs_per_block=None,
implementation="auto")`` and ``kernel(x1, x2=None, get=...)``; ``KernelSpec(...,
implementation=...)`` if that field exists. Where ``make`` has no ``implementation=``
keyword, "xla" falls back to the default ``make`` (the XLA path) and says so, and
"pallas" is reported as failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
ARCH = "convnet"
EXACT_TOLERANCE = 1e-5
"""A float32 kernel within this relative error of float64 is marked ok (kipd's CPU path is
at ~1e-7; a TF32 matmul or an approximate division would show as ~1e-3..1e-4)."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Shapes and sizes of a run (FULL for the GPU, SMOKE to test the script on a CPU)."""

    shapes: tuple[tuple[int, int, int], ...]
    depth: int | None  # ConvNet pooling blocks; None: make's default (3)
    exact_sizes: tuple[int, int]  # n1, n2 images of the exactness check
    side: int  # throughput on side x side pairs
    blocks: tuple[int, ...]  # pairs_per_block sweep
    implementations: tuple[str, ...]
    kip_shape: tuple[int, int, int]
    kip_support: int
    kip_targets: int
    repeats: int  # timed calls per throughput measurement
    first_guess_s: float  # expected seconds of a measurement before any was made
    kip_reserve_s: float  # budget section c leaves to sections d and e
    smoke: bool


FULL = Config(
    shapes=((32, 32, 3), (28, 28, 1)),
    depth=None,
    exact_sizes=(4, 3),
    side=64,
    blocks=(16, 64, 256, 1024),
    implementations=("xla", "pallas"),
    kip_shape=(32, 32, 3),
    kip_support=100,
    kip_targets=5000,
    repeats=3,
    first_guess_s=40.0,
    kip_reserve_s=150.0,
    smoke=False,
)
SMOKE = Config(
    shapes=((12, 12, 3), (12, 12, 1)),
    depth=1,
    exact_sizes=(4, 3),
    side=2,
    blocks=(4,),
    implementations=("xla", "pallas"),
    kip_shape=(12, 12, 3),
    kip_support=4,
    kip_targets=20,
    repeats=1,
    first_guess_s=5.0,
    kip_reserve_s=20.0,
    smoke=True,
)


# ----------------------------------------------------------------------------------------
# Small helpers: clock, log, errors, kernels.
# ----------------------------------------------------------------------------------------


class Clock:
    """Seconds since the start and until the global deadline."""

    def __init__(self, budget_s: float):
        self.start = time.monotonic()
        self.deadline = self.start + budget_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.deadline - time.monotonic()


CLOCK = Clock(420.0)


def log(message: str) -> None:
    """A progress line with wall time and seconds since the start (flushed: the device
    machine returns only the tail of the output, and a cut-off run should show where)."""
    print(f"[{time.strftime('%H:%M:%S')} +{CLOCK.elapsed():6.1f}s] {message}", flush=True)


def short_error(err: BaseException) -> str:
    """One line for a table: the exception type and the first line of its message."""
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(err).__name__}: {first}"[:200]


def is_out_of_memory(err: BaseException) -> bool:
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def shape_name(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def build_kernel(
    cfg: Config, implementation: str, pairs_per_block: int | None = None
) -> tuple[Callable, str]:
    """``kipd.kernels.make`` for one implementation; returns the kernel and a note.

    ``implementation`` is "xla", "pallas" or "auto" (no keyword). Where this kipd's
    ``make`` has no ``implementation=`` keyword, "xla" falls back to the default make
    (which is the XLA path there) and notes it; "pallas" raises.
    """
    import kipd.kernels

    kwargs: dict[str, Any] = {}
    if cfg.depth is not None:
        kwargs["depth"] = cfg.depth
    if pairs_per_block is not None:
        kwargs["pairs_per_block"] = pairs_per_block
    if implementation == "auto":
        return kipd.kernels.make(ARCH, **kwargs), ""
    try:
        return kipd.kernels.make(ARCH, implementation=implementation, **kwargs), ""
    except TypeError as err:
        if "implementation" not in str(err):
            raise
        if implementation == "xla":
            return kipd.kernels.make(
                ARCH, **kwargs
            ), "make() has no implementation=: default (XLA) path"
        raise RuntimeError("n/a: make() has no implementation= keyword") from err


def random_images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


# ----------------------------------------------------------------------------------------
# Report: everything measured, written as JSON and markdown after every section.
# ----------------------------------------------------------------------------------------


class Report:
    """The results so far; ``write`` puts gpu.json and gpu.md into every output folder."""

    def __init__(self, cfg: Config, out_dirs: list[Path], budget_s: float):
        self.cfg = cfg
        self.out_dirs = out_dirs
        self.data: dict[str, Any] = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "config": dataclasses.asdict(cfg),
            "budget_s": budget_s,
            "sections": {},
        }

    def section(self, name: str) -> dict:
        return self.data["sections"].setdefault(name, {})

    def write(self) -> None:
        self.data["elapsed_s"] = CLOCK.elapsed()
        text_json = json.dumps(self.data, indent=2, default=str)
        text_md = render_markdown(self.data)
        for folder in self.out_dirs:
            folder.mkdir(parents=True, exist_ok=True)
            for name, text in (("gpu.json", text_json), ("gpu.md", text_md)):
                tmp = folder / f".{name}.tmp"
                tmp.write_text(text)
                tmp.replace(folder / name)


def run_section(report: Report, name: str, fn: Callable[[dict], None], min_left_s: float) -> None:
    """Run one section into ``report``: skipped when the budget is short, failures caught."""
    result = report.section(name)
    if CLOCK.left() < min_left_s:
        result["status"] = (
            f"skipped: {CLOCK.left():.0f} s of the budget left, needs ~{min_left_s:.0f} s"
        )
        log(f"section {name}: {result['status']}")
        report.write()
        return
    log(f"section {name}: start ({CLOCK.left():.0f} s of the budget left)")
    started = time.monotonic()
    try:
        fn(result)
        result.setdefault("status", "ok")
    except Exception as err:  # noqa: BLE001 - any failure is a table entry, not an abort
        result["status"] = f"failed: {short_error(err)}"
        result["traceback"] = traceback.format_exc()[-4000:]
    result["seconds"] = time.monotonic() - started
    log(f"section {name}: {result['status']} ({result['seconds']:.1f} s)")
    report.write()


# ----------------------------------------------------------------------------------------
# a. environment
# ----------------------------------------------------------------------------------------


def section_environment(result: dict) -> None:
    import importlib.metadata
    import inspect

    import jax
    import jax.numpy as jnp

    import kipd
    import kipd.compute
    import kipd.kernels

    devices = jax.devices()
    jnp.ones(()).block_until_ready()  # initializes the backend here, not in a timed call
    result.update(
        python=sys.version.split()[0],
        jax=jax.__version__,
        packages={
            d.metadata["Name"]: d.version
            for d in importlib.metadata.distributions()
            if "jax" in (d.metadata["Name"] or "").lower()
        },
        backend=jax.default_backend(),
        devices=[f"{d.platform}:{d.id} {getattr(d, 'device_kind', '')}" for d in devices],
        device_kind=getattr(devices[0], "device_kind", devices[0].platform),
        kipd_file=kipd.__file__,
        make_parameters=list(inspect.signature(kipd.kernels.make).parameters),
        kernel_spec_fields=list(kipd.compute.KernelSpec._fields),
        cpu_count=os.cpu_count(),
    )
    stats = devices[0].memory_stats() if devices[0].platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        result["device_memory_gib"] = stats["bytes_limit"] / 2**30
    log(f"jax {jax.__version__}, backend {result['backend']}, devices {result['devices']}")


# ----------------------------------------------------------------------------------------
# b. exactness
# ----------------------------------------------------------------------------------------


def exactness_inputs(cfg: Config) -> dict[str, np.ndarray]:
    """x1 (n1 images) and x2 (n2 images) per shape; float32 values, so the float64
    reference sees exactly the numbers the GPU sees."""
    n1, n2 = cfg.exact_sizes
    out = {}
    for i, shape in enumerate(cfg.shapes):
        out[f"x1_{shape_name(shape)}"] = random_images(n1, shape, 10 + i)
        out[f"x2_{shape_name(shape)}"] = random_images(n2, shape, 20 + i)
    return out


def start_reference(cfg: Config, inputs: Path, output: Path) -> subprocess.Popen:
    """The float64 CPU reference in a subprocess (x64 is process-global in JAX; a separate
    process keeps it, and the CPU platform, away from the float32 GPU runs)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1")
    cmd = [
        sys.executable,
        __file__,
        "--reference",
        str(inputs),
        str(output),
        "--reference-depth",
        "" if cfg.depth is None else str(cfg.depth),
    ]
    # Output to files, not pipes: nobody reads a pipe until the GPU side is done, and a
    # full pipe would stall the reference.
    log_path = output.with_suffix(".log")
    with open(log_path, "w") as log_file:
        return subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True)


def reference_worker(inputs: str, output: str, depth: str) -> None:
    """K(x1, x2) and K(x1, x1), NNGP and NTK, in float64 on the CPU (subprocess side)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    cfg = dataclasses.replace(FULL, depth=int(depth) if depth else None)
    kernel, note = build_kernel(cfg, "xla")
    out = {}
    with np.load(inputs) as data:
        for key in [k for k in data.files if k.startswith("x1_")]:
            name = key[3:]
            x1 = jnp.asarray(data[key], jnp.float64)
            x2 = jnp.asarray(data[f"x2_{name}"], jnp.float64)
            for call, (a, b) in (("cross", (x1, x2)), ("self", (x1, x1))):
                nngp, ntk = kernel(a, b, get=("nngp", "ntk"))
                out[f"{name}_{call}_nngp"], out[f"{name}_{call}_ntk"] = (
                    np.asarray(nngp),
                    np.asarray(ntk),
                )
            assert out[f"{name}_cross_ntk"].dtype == np.float64
    np.savez(output, **out)
    print(json.dumps({"ok": True, "platform": jax.devices()[0].platform, "note": note}))


def relative_errors(ours: np.ndarray, ref: np.ndarray, square: bool) -> dict[str, float]:
    """max |ours - ref| / max |ref|, over the off-diagonal and (square) diagonal entries.

    NaN or inf in ``ours`` gives NaN / inf, so a broken kernel cannot look exact.
    """
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    diagonal = np.eye(*ref.shape, dtype=bool) if square else np.zeros(ref.shape, bool)
    out = {}
    for part, mask in (("off_diag", ~diagonal), ("diag", diagonal)):
        if mask.any():
            scale = np.abs(ref[mask]).max()
            out[part] = float(np.abs(ours[mask] - ref[mask]).max() / scale)
    return out


def device_kernels(kernel: Callable, x1: np.ndarray, x2: np.ndarray) -> dict[str, tuple]:
    """K(x1, x2), K(x1) and K(x1, x1) on the default device, float32, NNGP and NTK.

    One jit for the three (one compile, the budget is tight); if that fails, each call
    on its own, so that one broken call does not hide the others.
    """
    import jax

    get = ("nngp", "ntk")
    calls = {
        "K(x1, x2)": lambda a, b: kernel(a, b, get=get),
        "K(x) [x2=None]": lambda a, b: kernel(a, get=get),
        "K(x, x)": lambda a, b: kernel(a, a, get=get),
    }
    a, b = jax.device_put(x1), jax.device_put(x2)
    try:
        together = jax.jit(lambda a, b: {name: call(a, b) for name, call in calls.items()})
        values = jax.device_get(together(a, b))
        return {name: tuple(values[name]) for name in calls}  # in the order of calls
    except Exception as err:  # noqa: BLE001
        log(f"  the three calls in one jit failed ({short_error(err)}); one at a time")
    out: dict[str, Any] = {}
    for name, call in calls.items():
        try:
            out[name] = tuple(jax.device_get(jax.jit(call)(a, b)))
        except Exception as err:  # noqa: BLE001
            out[name] = err
    return out


def section_exactness(
    cfg: Config, reference: subprocess.Popen, ref_path: Path, inputs: dict[str, np.ndarray]
) -> Callable[[dict], None]:
    def run(result: dict) -> None:
        import jax

        # The GPU side first (the reference computes meanwhile), kept in memory.
        ours: dict[tuple[str, str], Any] = {}
        for shape in cfg.shapes:
            name = shape_name(shape)
            for impl in cfg.implementations:
                if CLOCK.left() < cfg.kip_reserve_s:
                    ours[name, impl] = RuntimeError("skipped: budget")
                    continue
                log(f"  exactness {name} {impl}")
                try:
                    kernel, note = build_kernel(cfg, impl)
                    ours[name, impl] = (
                        device_kernels(kernel, inputs[f"x1_{name}"], inputs[f"x2_{name}"]),
                        note,
                    )
                except Exception as err:  # noqa: BLE001
                    ours[name, impl] = err
        result["device"] = str(jax.devices()[0])

        log("  waiting for the float64 CPU reference")
        reference.wait(timeout=max(10.0, CLOCK.left() - cfg.kip_reserve_s / 2))
        output = ref_path.with_suffix(".log").read_text().strip().splitlines()
        if reference.returncode != 0:
            raise RuntimeError(f"float64 reference failed: {output[-1:]}")
        result["reference"] = json.loads([line for line in output if line.startswith('{"ok"')][-1])
        rows = []
        with np.load(ref_path) as ref:
            for (name, impl), value in ours.items():
                base = {"shape": name, "implementation": impl}
                if isinstance(value, BaseException):
                    rows.append(dict(base, call="all", status=f"failed: {short_error(value)}"))
                    continue
                values, note = value
                for call, got in values.items():
                    row = dict(base, call=call, note=note)
                    if isinstance(got, BaseException):
                        rows.append(dict(row, status=f"failed: {short_error(got)}"))
                        continue
                    ref_call = "cross" if call == "K(x1, x2)" else "self"
                    for kind, array in zip(("nngp", "ntk"), got):
                        errs = relative_errors(
                            array, ref[f"{name}_{ref_call}_{kind}"], ref_call == "self"
                        )
                        row.update({f"{kind}_{part}": err for part, err in errs.items()})
                    errors = [v for k, v in row.items() if k.startswith(("nngp_", "ntk_"))]
                    worst = float("nan") if np.isnan(errors).any() else max(errors)
                    row["status"] = (
                        "ok"
                        if worst < EXACT_TOLERANCE
                        else f"error {worst:.1e} (tolerance {EXACT_TOLERANCE:.0e})"
                    )
                    rows.append(row)
        result["rows"] = rows
        bad = [r for r in rows if r["status"] != "ok"]
        if bad:
            result["status"] = (
                f"ok: {len(rows) - len(bad)} of {len(rows)} rows within tolerance (see table)"
            )

    return run


# ----------------------------------------------------------------------------------------
# c. throughput
# ----------------------------------------------------------------------------------------


def measure(kernel: Callable, shape: tuple[int, ...], side: int, kind: str, repeats: int) -> dict:
    """Compile (ahead of time, timed on its own) and time the forward or forward+VJP."""
    import jax
    import jax.numpy as jnp

    x1 = jax.device_put(random_images(side, shape, 1))
    x2 = jax.device_put(random_images(side, shape, 2))
    if kind == "fwd":
        fn = jax.jit(lambda a, b: kernel(a, b, get="ntk"))
    else:  # the gradient of sum(K) w.r.t. x1: one VJP with a cotangent of ones
        fn = jax.jit(jax.grad(lambda a, b: jnp.sum(kernel(a, b, get="ntk"))))
    started = time.perf_counter()
    compiled = fn.lower(x1, x2).compile()
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    jax.block_until_ready(compiled(x1, x2))
    first_s = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(compiled(x1, x2))
        times.append(time.perf_counter() - started)
    pairs = side * side
    return {
        "compile_s": compile_s,
        "first_call_s": first_s,
        "times_s": times,
        "pairs": pairs,
        "pairs_per_s": pairs / statistics.median(times),
    }


def section_throughput(cfg: Config, report: Report) -> Callable[[dict], None]:
    def run(result: dict) -> None:
        entries: list[dict] = result.setdefault("entries", [])
        expected: dict[tuple[str, str], float] = {}  # (impl, kind) -> seconds of the last one
        stopped: dict[tuple[str, str, str], str] = {}  # (shape, impl, kind) -> why no more
        # Pass 1: make's default block for every shape and implementation (the numbers
        # that matter most come first); pass 2: the sweep, while the budget lasts.
        plan = [(shape, impl, None) for shape in cfg.shapes for impl in cfg.implementations]
        plan += [
            (shape, impl, block)
            for shape in cfg.shapes
            for impl in cfg.implementations
            for block in cfg.blocks
        ]
        for shape, impl, block in plan:
            name = shape_name(shape)
            for kind in ("fwd", "vjp"):
                entry = {
                    "shape": name,
                    "implementation": impl,
                    "pairs_per_block": block,
                    "kind": kind,
                }
                entries.append(entry)
                why = stopped.get((name, impl, kind))
                guess = expected.get((impl, kind), cfg.first_guess_s)
                if why:
                    entry["status"] = f"skipped: {why}"
                    continue
                if CLOCK.left() - cfg.kip_reserve_s < guess:
                    entry["status"] = f"skipped: budget (~{guess:.0f} s needed)"
                    continue
                started = time.monotonic()
                try:
                    kernel, note = build_kernel(cfg, impl, block)
                    entry.update(
                        measure(kernel, shape, cfg.side, kind, cfg.repeats), note=note, status="ok"
                    )
                    log(
                        f"  {name} {impl} block {block or 'default'} {kind}: "
                        f"{entry['pairs_per_s']:.0f} pairs/s, compile {entry['compile_s']:.1f} s"
                    )
                except Exception as err:  # noqa: BLE001
                    entry["status"] = f"failed: {short_error(err)}"
                    log(f"  {name} {impl} block {block or 'default'} {kind}: {entry['status']}")
                    if is_out_of_memory(err):
                        stopped[name, impl, kind] = f"block {block} ran out of memory"
                    elif block is None:
                        # Broken at the default block: the sweep would fail the same way.
                        stopped[name, impl, kind] = "failed at the default block"
                finally:
                    expected[impl, kind] = time.monotonic() - started
                    gc.collect()
                report.write()
        result["best"] = best_blocks(entries)
        done = sum(e.get("status") == "ok" for e in entries)
        if done == 0:
            skipped = all(e.get("status", "").startswith("skipped: budget") for e in entries)
            result["status"] = (
                "skipped: budget" if skipped else "failed: no measurement succeeded (see table)"
            )
        elif done < len(entries):
            result["status"] = (
                f"ok: {done} of {len(entries)} measurements (others failed or skipped, see table)"
            )

    return run


def best_blocks(entries: list[dict]) -> list[dict]:
    """Per shape and implementation: the block with the most pairs/s, fwd and fwd+VJP."""
    best: dict[tuple[str, str], dict] = {}
    for e in entries:
        if e.get("status") != "ok":
            continue
        row = best.setdefault(
            (e["shape"], e["implementation"]),
            {"shape": e["shape"], "implementation": e["implementation"]},
        )
        if e["pairs_per_s"] > row.get(f"{e['kind']}_pairs_per_s", 0.0):
            row[f"{e['kind']}_pairs_per_s"] = e["pairs_per_s"]
            row[f"{e['kind']}_block"] = e["pairs_per_block"] or "default"
    return list(best.values())


# ----------------------------------------------------------------------------------------
# d. KIP step
# ----------------------------------------------------------------------------------------


def kip_loss(k_ss: Any, k_ts: Any, support_labels: Any, target_labels: Any) -> tuple[Any, Any]:
    """kipd.distill.krr_loss in value_and_grad's argument order (module level, so that
    value_and_grad's cache of the compiled server step is reused between steps)."""
    from kipd import distill

    return distill.krr_loss(k_ts, k_ss, support_labels, target_labels)


def kip_step_seconds(spec: Any, cfg: Config, targets: int) -> float:
    """One step: forward blocks, loss and dL/dK on the server, VJP blocks, summed."""
    import jax

    from kipd import compute

    support = random_images(cfg.kip_support, cfg.kip_shape, 3)
    target_images = random_images(targets, cfg.kip_shape, 4)
    labels = np.eye(10, dtype=np.float32)[np.arange(cfg.kip_support + targets) % 10] - 0.1
    started = time.perf_counter()
    (loss, _), grads = compute.value_and_grad(
        kip_loss,
        spec,
        support,
        target_images,
        labels[: cfg.kip_support],
        labels[cfg.kip_support :],
        executor=compute.LocalExecutor(),
    )
    jax.block_until_ready((loss, grads))
    if not np.isfinite(float(loss)) or not np.all(np.isfinite(np.asarray(grads[0]))):
        raise FloatingPointError(f"non-finite loss or gradient (loss {float(loss)})")
    return time.perf_counter() - started


def kip_pairs(cfg: Config, targets: int) -> int:
    return targets * cfg.kip_support + cfg.kip_support**2


def predicted_step_s(
    throughput: dict, cfg: Config, impls: tuple[str, ...]
) -> tuple[float, float] | None:
    """(step seconds, compile seconds) predicted from section c's default-block numbers
    at the KIP image shape; the slowest of ``impls`` (the default implementation may be
    any of them, and overrunning the budget costs more than a smaller step)."""
    predictions = []
    for impl in impls:
        rates: dict[str, dict] = {}
        for e in throughput.get("entries", []):
            if (
                e.get("status") == "ok"
                and e["shape"] == shape_name(cfg.kip_shape)
                and e["implementation"] == impl
                and e["pairs_per_block"] is None
            ):
                rates[e["kind"]] = e
        if set(rates) == {"fwd", "vjp"}:
            pairs = kip_pairs(cfg, cfg.kip_targets)
            step = pairs / rates["fwd"]["pairs_per_s"] + pairs / rates["vjp"]["pairs_per_s"]
            # The executor compiles a forward block and two VJP blocks (ss and ts).
            compile_s = 1.2 * (rates["fwd"]["compile_s"] + 2 * rates["vjp"]["compile_s"])
            predictions.append((step, compile_s))
    return max(predictions) if predictions else None


def run_kip(spec: Any, cfg: Config, prediction: tuple[float, float] | None) -> dict:
    """Warm-up step + one timed step at the largest target count that fits the budget.

    Without a prediction, a probe (one target block) is measured first to get one.
    """
    out: dict[str, Any] = {"spec": spec._asdict()}
    if prediction is None:
        probe = min(cfg.kip_targets, 32)
        log(f"  KIP {spec}: no throughput numbers to plan with; probe of {probe} targets")
        warm = kip_step_seconds(spec, cfg, probe)
        step = kip_step_seconds(spec, cfg, probe)
        if probe == cfg.kip_targets:  # the probe was the whole step
            return dict(
                out, targets=probe, warmup_s=warm, step_s=step, step_s_full=step, how="measured"
            )
        out["probe"] = {"targets": probe, "warmup_s": warm, "step_s": step}
        prediction = (step * kip_pairs(cfg, cfg.kip_targets) / kip_pairs(cfg, probe), warm - step)
    step_s, compile_s = prediction
    out["predicted_step_s"], out["predicted_compile_s"] = step_s, compile_s
    available = CLOCK.left() - 10.0
    targets = cfg.kip_targets
    if compile_s + 2 * step_s > available:
        # Fewer targets, scaled: per-pair time is what a step is made of.
        per_pair = step_s / kip_pairs(cfg, cfg.kip_targets)
        fit = int(((available - compile_s) / 2 / per_pair - cfg.kip_support**2) / cfg.kip_support)
        targets = max(1, min(cfg.kip_targets, fit))
        if fit < 1:
            raise RuntimeError(f"skipped: budget ({available:.0f} s left, step ~{step_s:.0f} s)")
    log(
        f"  KIP {spec}: {cfg.kip_support} support x {targets} targets (predicted step "
        f"{step_s:.1f} s)"
    )
    out["targets"] = targets
    out["warmup_s"] = kip_step_seconds(spec, cfg, targets)
    out["step_s"] = kip_step_seconds(spec, cfg, targets)
    scale = kip_pairs(cfg, cfg.kip_targets) / kip_pairs(cfg, targets)
    out["step_s_full"] = out["step_s"] * scale
    out["how"] = (
        "measured" if targets == cfg.kip_targets else f"scaled from {targets} targets by pairs"
    )
    log(f"  KIP step {out['step_s_full']:.2f} s ({out['how']}), warm-up {out['warmup_s']:.1f} s")
    return out


def section_kip(cfg: Config, report: Report) -> Callable[[dict], None]:
    def run(result: dict) -> None:
        from kipd.compute import KernelSpec

        throughput = report.section("throughput")
        kip_shape = shape_name(cfg.kip_shape)
        best = [
            b
            for b in throughput.get("best", [])
            if b["shape"] == kip_shape and "vjp_pairs_per_s" in b
        ]
        best_impl = (
            max(best, key=lambda b: b["vjp_pairs_per_s"])["implementation"] if best else None
        )
        result["best_implementation"] = best_impl
        # The best implementation first (the number that matters if the budget runs
        # short), then KernelSpec's default ("auto", which may well be the same one).
        runs: list[tuple[str, Any, tuple[str, ...]]] = []
        if best_impl is not None:
            if "implementation" in KernelSpec._fields:
                spec = KernelSpec(ARCH, get="ntk", depth=cfg.depth, implementation=best_impl)
                runs.append((f"best: {best_impl}", spec, (best_impl,)))
            else:
                result["best_note"] = "n/a: KernelSpec has no implementation field"
        runs.append(
            ("default (auto)", KernelSpec(ARCH, get="ntk", depth=cfg.depth), cfg.implementations)
        )
        rows = result.setdefault("rows", [])
        for label, spec, rate_impls in runs:
            row = {"implementation": label}
            rows.append(row)
            try:
                row.update(
                    run_kip(spec, cfg, predicted_step_s(throughput, cfg, rate_impls)), status="ok"
                )
            except Exception as err:  # noqa: BLE001
                message = str(err)
                row["status"] = (
                    message if message.startswith("skipped") else f"failed: {short_error(err)}"
                )
                row["traceback"] = traceback.format_exc()[-3000:]
            report.write()
        if rows and all(r["status"] != "ok" for r in rows):
            result["status"] = rows[0]["status"]

    return run


# ----------------------------------------------------------------------------------------
# e. markdown
# ----------------------------------------------------------------------------------------


def _num(value: Any, fmt: str = ".1f") -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return format(value, fmt)
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(data: dict) -> str:
    sections = data["sections"]
    env = sections.get("environment", {})
    cfg = data["config"]
    lines = [
        f"# kipd on {env.get('device_kind', '?')}: exactness, throughput, KIP step",
        "",
        f"{data['date']}; jax {env.get('jax', '?')}, backend {env.get('backend', '?')}, "
        f"devices {', '.join(env.get('devices', []))}; kipd `make` keywords: "
        f"{', '.join(env.get('make_parameters', []))}; {data.get('elapsed_s', 0):.0f} s of a "
        f"{data['budget_s']:.0f} s budget. `PYTHONPATH=src python3 bench/gpu.py`"
        + (
            " --smoke (CPU, tiny shapes: tests the script, measures nothing)"
            if cfg["smoke"]
            else ""
        ),
        "",
    ]
    lines += _table(
        ["section", "status", "seconds"],
        [
            [name, s.get("status", "running"), _num(s.get("seconds"))]
            for name, s in sections.items()
        ],
    )

    exact = sections.get("exactness", {})
    if exact.get("rows"):
        n1, n2 = cfg["exact_sizes"]
        lines += [
            "",
            "## Exactness: float32 on the device vs float64 on the CPU",
            "",
            f"max |K - K_ref| / max |K_ref| over the off-diagonal and the diagonal entries "
            f"(K(x1, x2): all entries, in the off-diag columns); "
            f"x1 {n1} images, x2 {n2}; K(x) is `kernel(x1)` (x2=None, the symmetric path), "
            f"K(x, x) is `kernel(x1, x1)`. ok: below {EXACT_TOLERANCE:.0e}.",
            "",
        ]
        lines += _table(
            [
                "shape",
                "implementation",
                "call",
                "NTK off-diag",
                "NTK diag",
                "NNGP off-diag",
                "NNGP diag",
                "status",
            ],
            [
                [
                    r["shape"],
                    r["implementation"],
                    r["call"],
                    _num(r.get("ntk_off_diag"), ".1e"),
                    _num(r.get("ntk_diag"), ".1e"),
                    _num(r.get("nngp_off_diag"), ".1e"),
                    _num(r.get("nngp_diag"), ".1e"),
                    r["status"] + (f" ({r['note']})" if r.get("note") else ""),
                ]
                for r in exact["rows"]
            ],
        )

    throughput = sections.get("throughput", {})
    if throughput.get("entries"):
        side = cfg["side"]
        lines += [
            "",
            f"## Throughput: ConvNet NTK, {side} x {side} = {side * side} pairs per call",
            "",
            "fwd+VJP: the gradient of sum(K) with respect to x1. Block: `pairs_per_block` of "
            "`make` (default: make's own choice). Median of the timed calls after one warm-up.",
            "",
        ]
        merged: dict[tuple, dict] = {}
        # Grouped by shape and implementation (the run order interleaves them), default first.
        order = {name: i for i, name in enumerate(shape_name(tuple(s)) for s in cfg["shapes"])}
        impls = {name: i for i, name in enumerate(cfg["implementations"])}
        entries = sorted(
            throughput["entries"],
            key=lambda e: (
                order.get(e["shape"], 99),
                impls.get(e["implementation"], 99),
                e["pairs_per_block"] or 0,
            ),
        )
        for e in entries:
            key = (e["shape"], e["implementation"], e["pairs_per_block"])
            merged.setdefault(key, {})[e["kind"]] = e
        rows = []
        for (shape, impl, block), kinds in merged.items():
            fwd, vjp = kinds.get("fwd", {}), kinds.get("vjp", {})
            problems: dict[str, list[str]] = {}  # status -> kinds, so a shared reason shows once
            for k, e in kinds.items():
                if e.get("status") != "ok":
                    problems.setdefault(e.get("status", "running"), []).append(
                        "fwd+VJP" if k == "vjp" else k
                    )
            status = "; ".join(f"{', '.join(ks)}: {st}" for st, ks in problems.items()) or "ok"
            rows.append(
                [
                    shape,
                    impl,
                    block or "default",
                    _num(fwd.get("pairs_per_s"), ",.0f"),
                    _num(vjp.get("pairs_per_s"), ",.0f"),
                    _num(fwd.get("compile_s")),
                    _num(vjp.get("compile_s")),
                    status,
                ]
            )
        lines += _table(
            [
                "shape",
                "implementation",
                "block",
                "fwd pairs/s",
                "fwd+VJP pairs/s",
                "fwd compile s",
                "fwd+VJP compile s",
                "status",
            ],
            rows,
        )
        if throughput.get("best"):
            lines += ["", "Best block per implementation:", ""]
            lines += _table(
                [
                    "shape",
                    "implementation",
                    "fwd: best block",
                    "fwd pairs/s",
                    "fwd+VJP: best block",
                    "fwd+VJP pairs/s",
                ],
                [
                    [
                        b["shape"],
                        b["implementation"],
                        b.get("fwd_block", ""),
                        _num(b.get("fwd_pairs_per_s"), ",.0f"),
                        b.get("vjp_block", ""),
                        _num(b.get("vjp_pairs_per_s"), ",.0f"),
                    ]
                    for b in throughput["best"]
                ],
            )

    kip = sections.get("kip_step", {})
    if kip.get("rows"):
        shape = "x".join(str(s) for s in cfg["kip_shape"])
        lines += [
            "",
            f"## One KIP step: {cfg['kip_support']} support x {cfg['kip_targets']} targets, "
            f"{shape}, ConvNet NTK",
            "",
            "`kipd.compute.value_and_grad` (forward blocks, `kipd.distill.krr_loss` and dL/dK, "
            "VJP blocks) on a `LocalExecutor`; seconds of one step after one warm-up step."
            + (f" {kip['best_note']}." if kip.get("best_note") else ""),
            "",
        ]
        lines += _table(
            [
                "implementation",
                "step s",
                "how",
                "warm-up s (compile + step)",
                "predicted step s",
                "status",
            ],
            [
                [
                    r["implementation"],
                    _num(r.get("step_s_full"), ".2f"),
                    r.get("how", ""),
                    _num(r.get("warmup_s")),
                    _num(r.get("predicted_step_s")),
                    r["status"],
                ]
                for r in kip["rows"]
            ],
        )

    failures = [(name, s) for name, s in sections.items() if "traceback" in s]
    for name, s in failures:
        lines += ["", f"### {name} failed", "", "```", s["traceback"].strip()[-1500:], "```"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    global CLOCK
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="also write gpu.md and gpu.json here")
    parser.add_argument(
        "--budget-s", type=float, default=420.0, help="global deadline, seconds (default 420)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="every section on the CPU with tiny shapes (tests the script); writes to --out only",
    )
    parser.add_argument("--reference", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--reference-depth", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference:
        reference_worker(*args.reference, args.reference_depth)
        return

    CLOCK = Clock(args.budget_s)
    cfg = SMOKE if args.smoke else FULL
    if args.smoke:
        os.environ["JAX_PLATFORMS"] = "cpu"  # before jax is imported (sections import it)
    out_dirs = [args.out] if args.out else []
    if not args.smoke:
        out_dirs.append(RESULTS_DIR)
    elif not out_dirs:
        out_dirs.append(Path(tempfile.gettempdir()) / "kipd-gpu-smoke")
    log(f"bench/gpu.py: budget {args.budget_s:.0f} s, writing to {', '.join(map(str, out_dirs))}")
    report = Report(cfg, out_dirs, args.budget_s)

    with tempfile.TemporaryDirectory() as tmp:
        # The float64 reference starts first: it runs on the CPU while the GPU works.
        inputs = exactness_inputs(cfg)
        inputs_path, ref_path = Path(tmp) / "inputs.npz", Path(tmp) / "reference.npz"
        np.savez(inputs_path, **inputs)
        reference = start_reference(cfg, inputs_path, ref_path)
        try:
            run_section(report, "environment", section_environment, 0.0)
            run_section(
                report,
                "exactness",
                section_exactness(cfg, reference, ref_path, inputs),
                cfg.kip_reserve_s,
            )
            run_section(report, "throughput", section_throughput(cfg, report), cfg.kip_reserve_s)
            run_section(report, "kip_step", section_kip(cfg, report), 10.0)
        finally:
            if reference.poll() is None:
                reference.kill()
                reference.wait()
    report.write()
    log(
        f"done in {CLOCK.elapsed():.0f} s; tables in "
        f"{', '.join(str(d / 'gpu.md') for d in out_dirs)}"
    )


if __name__ == "__main__":
    main()
