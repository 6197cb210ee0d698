"""kipd on a GPU: this release against commit a9282db (kipd 0.4.1), in one command.

For each of the two trees, in fresh worker processes (``PYTHONPATH=<tree>/src``, so
``import kipd`` is that tree's; run one after the other on the same device):

  kernels      the devices used (``kipd.compute.device_summary``), this tree's chunk
               calibration (``kipd.compute.calibrate_chunk_sizes``: once per machine,
               cached; it runs before anything of this tree is timed); ConvNet NTK and
               NNGP in float32 on the device against float64 on the CPU (a reference
               process started first, ``JAX_PLATFORMS=cpu``, this tree's XLA path): K(x1, x2),
               K(x) (x2=None, the symmetric path) and K(x, x), max |K - K_ref| / max |K_ref|
               over the off-diagonal and the diagonal entries; pairs/s of the forward, the
               fwd+VJP (gradient of sum(K) w.r.t. x1) and K(x) on 64 x 64 pairs at 32x32x3
               and 28x28x1 with ``make``'s defaults, and (this tree) the fwd+VJP with the
               chunks a block's linearization uses (``KernelSpec.build(vjp=True)``); compile
               seconds and XLA's memory of each compiled call (arguments + outputs + temps)
  kip:fmnist   the Fashion-MNIST preset's step (``--preset paper``: 1 image per class, 10
               support x 5000 targets, 28x28x1) and
  kip:paper    the paper's KIP step (100 support x 5000 targets, 32x32x3): ConvNet NTK,
               ``kipd.compute.value_and_grad`` of ``kipd.distill.krr_loss`` (images and
               labels) on a ``LocalExecutor``; a warm-up step (compile), then timed steps;
               the process's peak device memory (``peak_bytes_in_use``; RSS on a CPU)

Each step is budgeted: a step that would not fit its share of ``--budget-s`` runs on
fewer targets and is scaled by its pairs (marked). Results (``gpu.json``, every number;
``gpu.md``, the tables, also printed at the end) are written after every worker, so a run
cut off still leaves them.

Prepared here, once (the device machine has no network and no git history; kipd is not
installed there, JAX with CUDA is):

    git worktree add --detach .bench-venv/kipd-a9282db a9282db     # ignored by git

The device call (the device tool runs in a copy of the working tree; ignored paths travel
only when named in ``carry``), <= 8 minutes:

    command:  PYTHONPATH=src python3 bench/gpu.py --out $OUT
    carry:    [".bench-venv/kipd-a9282db"]
    timeout_s: 480

    python bench/gpu.py --smoke --out /tmp/gpusmoke    # both trees on this CPU, tiny, ~1-2 min
    python bench/gpu.py --no-baseline ...               # this tree only

``--baseline DIR`` names another checkout (default ``.bench-venv/kipd-a9282db``).
Afterwards: ``git worktree remove .bench-venv/kipd-a9282db``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import inspect
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
BASELINE_COMMIT = "a9282db"
DEFAULT_BASELINE = REPO_ROOT / ".bench-venv" / f"kipd-{BASELINE_COMMIT}"
ARCH = "convnet"
EXACT_TOLERANCE = 1e-5
"""A float32 kernel within this relative error of float64 is marked ok (kipd's path is at
~1e-7; a TF32 matmul or an approximate division would show as ~1e-3..1e-4)."""


@dataclasses.dataclass(frozen=True)
class KipSetting:
    """One KIP step to time."""

    name: str
    label: str
    shape: tuple[int, int, int]
    support: int
    targets: int
    steps: int  # timed steps after the warm-up, while the budget lasts

    def pairs(self, targets: int) -> int:
        """Kernel pairs of one pass (K_ts and the upper triangle of K_ss)."""
        return self.support * targets + self.support * (self.support + 1) // 2


@dataclasses.dataclass(frozen=True)
class Config:
    """Shapes and sizes of a run (FULL for the GPU, SMOKE to test the script on a CPU)."""

    shapes: tuple[tuple[int, int, int], ...]
    depth: int | None  # ConvNet pooling blocks; None: make's default (3)
    exact_sizes: tuple[int, int]  # n1, n2 images of the exactness check
    side: int  # throughput on side x side pairs
    repeats: int  # timed calls per throughput measurement
    kip: tuple[KipSetting, ...]
    calibration: dict[str, Any] | None  # calibrate_chunk_sizes keywords; None: its defaults
    kip_reserve_s: float  # budget the kernels workers leave to the KIP steps
    smoke: bool


FULL = Config(
    shapes=((32, 32, 3), (28, 28, 1)),
    depth=None,
    exact_sizes=(4, 3),
    side=64,
    repeats=3,
    kip=(
        KipSetting("fmnist", "Fashion-MNIST preset step", (28, 28, 1), 10, 5000, 2),
        KipSetting("paper", "paper's KIP step", (32, 32, 3), 100, 5000, 1),
    ),
    calibration=None,
    kip_reserve_s=210.0,
    smoke=False,
)
SMOKE = Config(
    shapes=((12, 12, 3), (12, 12, 1)),
    depth=1,
    exact_sizes=(4, 3),
    side=2,
    repeats=1,
    kip=(
        KipSetting("fmnist", "Fashion-MNIST preset step", (12, 12, 1), 2, 20, 2),
        KipSetting("paper", "paper's KIP step", (12, 12, 3), 4, 20, 1),
    ),
    calibration={"candidates": (1, 4), "image_shape": (12, 12, 3), "depth": 1, "side": 2},
    kip_reserve_s=30.0,
    smoke=True,
)


# ----------------------------------------------------------------------------------------
# Small helpers.
# ----------------------------------------------------------------------------------------


class Clock:
    """Seconds since the start and until a deadline."""

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
    return f"{type(err).__name__}: {text[0] if text else ''}"[:200]


def shape_name(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def random_images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    tmp.replace(path)


# ----------------------------------------------------------------------------------------
# Worker side: a fresh process whose ``import kipd`` is the tree being measured.
# ----------------------------------------------------------------------------------------


class Results:
    """A worker's results, written to its file after every update."""

    def __init__(self, path: Path):
        self.path, self.data = path, {}

    def update(self, **values: Any) -> None:
        self.data.update(values)
        write_json(self.path, self.data)


def environment() -> dict[str, Any]:
    """Versions, backend and devices of this worker; says them on stdout."""
    import jax
    import jax.numpy as jnp

    import kipd
    import kipd.compute

    devices = jax.devices()
    jnp.ones(()).block_until_ready()  # initializes the backend here, not in a timed call
    summary = getattr(kipd.compute, "device_summary", None) or (lambda: _summary(devices))
    env = {
        "jax": jax.__version__,
        "kipd": kipd.__version__,
        "kipd_file": kipd.__file__,
        "backend": jax.default_backend(),
        "devices": [f"{d.platform}:{d.id} {getattr(d, 'device_kind', '')}" for d in devices],
        "device_summary": summary(),
        "cpu_count": os.cpu_count(),
    }
    log(f"kipd {env['kipd']} ({env['kipd_file']}), jax {env['jax']}: {env['device_summary']}")
    return env


def _summary(devices: list[Any]) -> str:
    """``kipd.compute.device_summary`` for a tree without it."""
    if devices[0].platform == "cpu":
        cores = len(os.sched_getaffinity(0))
        return f"{cores} CPU cores" if len(devices) == 1 else f"{len(devices)} CPU devices"
    return f"{len(devices)} x {devices[0].device_kind}"


def peak_memory() -> dict[str, Any]:
    """The process's peak memory so far: the device's ``peak_bytes_in_use`` (a GPU), else
    the peak RSS (a CPU)."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return {"peak_mib": stats["peak_bytes_in_use"] / 2**20, "peak_of": "device"}
    return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_of": "RSS"}


def calibrate(cfg: Config) -> dict[str, Any]:
    """This tree's chunk calibration, timed (``n/a`` for a tree without it)."""
    from kipd import compute

    if not hasattr(compute, "calibrate_chunk_sizes"):
        return {"status": "n/a: no calibrate_chunk_sizes in this tree"}
    kwargs = dict(cfg.calibration or {})
    if cfg.smoke:  # on a CPU the policy never reads it: kept apart from the user's cache
        kwargs["cache_dir"] = tempfile.mkdtemp()
    started = time.perf_counter()
    result = compute.calibrate_chunk_sizes(log=log, **kwargs)
    seconds = time.perf_counter() - started
    if result is None:
        return {"status": "failed: no candidate ran", "seconds": seconds}
    log(f"  chunks: forward {result.forward_pairs} pairs, fwd+VJP {result.vjp_pairs} pairs")
    return {"status": "ok", "seconds": seconds, **result._asdict()}


def build_kernel(cfg: Config, vjp_chunks: bool = False) -> Callable[..., Any]:
    """``kernel(x1, x2=None, get=...)``: ``make``'s default, or (``vjp_chunks``) the kernel a
    block's linearization uses (``KernelSpec.build(vjp=True)``, NTK only)."""
    import kipd.kernels
    from kipd import compute

    if not vjp_chunks:
        return kipd.kernels.make(ARCH, depth=cfg.depth)
    built = compute.KernelSpec(ARCH, depth=cfg.depth).build(vjp=True)
    return lambda x1, x2=None, get="ntk": built(x1, x2)


def chunk_pairs(cfg: Config, shape: tuple[int, ...], vjp: bool) -> int | None:
    """Pairs per chunk this tree's policy gives on a GPU (``None`` on a CPU or where the
    tree has no ``default_pairs_per_block``)."""
    import jax

    import kipd.kernels

    policy = getattr(kipd.kernels, "default_pairs_per_block", None)
    if policy is None or jax.default_backend() == "cpu":
        return None
    band = kipd.kernels.architecture(ARCH, depth=cfg.depth).band(None)
    keywords = {"vjp": True} if vjp else {}
    if "vjp" not in inspect.signature(policy).parameters:
        keywords = {}
    return policy(band, shape, **keywords)


def device_values(kernel: Callable, x1: np.ndarray, x2: np.ndarray) -> dict[str, np.ndarray]:
    """K(x1, x2), K(x1) and K(x1, x1), NNGP and NTK, float32 on the default device."""
    import jax

    get = ("nngp", "ntk")
    calls = {
        "cross": lambda a, b: kernel(a, b, get=get),
        "symmetric": lambda a, b: kernel(a, get=get),
        "self": lambda a, b: kernel(a, a, get=get),
    }
    a, b = jax.device_put(x1), jax.device_put(x2)
    together = jax.jit(lambda a, b: {name: call(a, b) for name, call in calls.items()})
    values = jax.device_get(together(a, b))
    return {f"{call}_{g}": np.asarray(values[call][i]) for call in calls for i, g in enumerate(get)}


def measure(fn: Callable, args: tuple, pairs: int, repeats: int) -> dict[str, Any]:
    """Compile ``jax.jit(fn)`` ahead of time (timed on its own), warm up, time ``repeats``
    calls; pairs/s from the median, and XLA's memory of the compiled call."""
    import jax

    started = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - started
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - started)
    memory = compiled.memory_analysis()
    xla_bytes = None
    if memory is not None:
        xla_bytes = (
            memory.argument_size_in_bytes
            + memory.output_size_in_bytes
            + memory.temp_size_in_bytes
            - memory.alias_size_in_bytes
        )
    return {
        "compile_s": compile_s,
        "times_s": times,
        "pairs_per_s": pairs / statistics.median(times),
        "xla_mib": None if xla_bytes is None else xla_bytes / 2**20,
    }


def throughput_plan(cfg: Config, has_vjp_chunks: bool) -> list[tuple[tuple, str]]:
    """(shape, kind) of every measurement, in order."""
    kinds = ["fwd", "fwd+VJP", "K(x) fwd"] + (["fwd+VJP, block chunks"] if has_vjp_chunks else [])
    return [(shape, kind) for shape in cfg.shapes for kind in kinds]


def measure_kind(cfg: Config, shape: tuple, kind: str) -> dict[str, Any]:
    """One throughput measurement of the NTK on ``cfg.side`` x ``cfg.side`` pairs."""
    import jax
    import jax.numpy as jnp

    kernel = build_kernel(cfg, vjp_chunks=kind.endswith("block chunks"))
    x1 = jax.device_put(random_images(cfg.side, shape, 1))
    x2 = jax.device_put(random_images(cfg.side, shape, 2))
    pairs = cfg.side * cfg.side  # K(x) counts its n x n entries, like bench/kernels.py
    if kind == "fwd":
        fn, args = (lambda a, b: kernel(a, b, get="ntk")), (x1, x2)
    elif kind == "K(x) fwd":
        fn, args = (lambda a: kernel(a, get="ntk")), (x1,)
    else:  # the gradient of sum(K) w.r.t. x1: one VJP with a cotangent of ones
        fn, args = jax.grad(lambda a, b: jnp.sum(kernel(a, b, get="ntk"))), (x1, x2)
    entry = measure(fn, args, pairs, cfg.repeats)
    entry["chunk_pairs"] = chunk_pairs(cfg, shape, vjp=kind.endswith("block chunks"))
    return entry


def worker_kernels(cfg: Config, args: argparse.Namespace) -> None:
    """Environment, calibration, exactness values (to ``--values``), throughput."""
    from kipd import compute

    results = Results(args.result)
    deadline = time.monotonic() + args.deadline_s
    results.update(environment=environment())
    try:
        results.update(calibration=calibrate(cfg))
    except Exception as err:  # noqa: BLE001 - the rest runs with the static chunk sizes
        results.update(calibration={"status": f"failed: {short_error(err)}"})
    values: dict[str, np.ndarray] = {}
    with np.load(args.inputs) as inputs:
        for shape in cfg.shapes:
            name = shape_name(shape)
            log(f"  exactness {name}")
            got = device_values(build_kernel(cfg), inputs[f"x1_{name}"], inputs[f"x2_{name}"])
            values.update({f"{name}_{key}": value for key, value in got.items()})
    np.savez(args.values, **values)
    has_vjp_chunks = "vjp" in inspect.signature(compute.KernelSpec.build).parameters
    entries: list[dict[str, Any]] = []
    for shape, kind in throughput_plan(cfg, has_vjp_chunks):
        entry: dict[str, Any] = {"shape": shape_name(shape), "kind": kind}
        entries.append(entry)
        if time.monotonic() > deadline:
            entry["status"] = "skipped: budget"
            continue
        try:
            entry.update(measure_kind(cfg, shape, kind), status="ok")
            log(f"  {entry['shape']} {kind}: {entry['pairs_per_s']:,.0f} pairs/s")
        except Exception as err:  # noqa: BLE001 - a failure is a table entry
            entry.update(status=f"failed: {short_error(err)}", traceback=traceback.format_exc())
        results.update(throughput=entries)
    results.update(peak=peak_memory())


def kip_loss(k_ss: Any, k_ts: Any, support_labels: Any, target_labels: Any) -> tuple[Any, Any]:
    """``kipd.distill.krr_loss`` in value_and_grad's argument order (module level, so that
    value_and_grad's compiled server step is reused between steps)."""
    from kipd import distill

    return distill.krr_loss(k_ts, k_ss, support_labels, target_labels)


def kip_step_seconds(cfg: Config, setting: KipSetting, targets: int) -> float:
    """One KIP step: forward blocks, loss and dL/dK on the server, VJP blocks, summed."""
    import jax

    from kipd import compute

    support = random_images(setting.support, setting.shape, 3)
    target_images = random_images(targets, setting.shape, 4)
    labels = np.eye(10, dtype=np.float32)[np.arange(setting.support + targets) % 10] - 0.1
    started = time.perf_counter()
    (loss, _), grads = compute.value_and_grad(
        kip_loss,
        compute.KernelSpec(ARCH, get="ntk", depth=cfg.depth),
        support,
        target_images,
        labels[: setting.support],
        labels[setting.support :],
        executor=compute.LocalExecutor(),
    )
    jax.block_until_ready((loss, grads))
    if not np.isfinite(float(loss)) or not np.all(np.isfinite(np.asarray(grads[0]))):
        raise FloatingPointError(f"non-finite loss or gradient (loss {float(loss)})")
    return time.perf_counter() - started


def worker_kip(cfg: Config, args: argparse.Namespace) -> None:
    """A warm-up step, then one timed step and up to ``--steps`` that fit ``--deadline-s``."""
    from kipd import compute

    results = Results(args.result)
    deadline = time.monotonic() + args.deadline_s
    setting = next(s for s in cfg.kip if s.name == args.setting)
    spec = compute.KernelSpec(ARCH, depth=cfg.depth)
    block = compute.default_block_size(spec, setting.shape)
    results.update(environment=environment(), targets=args.targets, block_size=block)
    log(f"  {setting.label}: {setting.support} x {args.targets}, warm-up step (compiles)")
    warmup = kip_step_seconds(cfg, setting, args.targets)
    results.update(warmup_s=warmup, peak=peak_memory())
    steps: list[float] = []
    while not steps or (len(steps) < args.steps and time.monotonic() + steps[-1] < deadline):
        steps.append(kip_step_seconds(cfg, setting, args.targets))
        log(f"  step {steps[-1]:.2f} s")
        results.update(steps_s=steps, step_s=min(steps), peak=peak_memory())


# ----------------------------------------------------------------------------------------
# The float64 reference (a CPU process of its own: x64 is process-global in JAX).
# ----------------------------------------------------------------------------------------


def exactness_inputs(cfg: Config) -> dict[str, np.ndarray]:
    """x1 (n1 images) and x2 (n2 images) per shape; float32 values, so the float64
    reference sees exactly the numbers the device sees."""
    n1, n2 = cfg.exact_sizes
    out = {}
    for i, shape in enumerate(cfg.shapes):
        out[f"x1_{shape_name(shape)}"] = random_images(n1, shape, 10 + i)
        out[f"x2_{shape_name(shape)}"] = random_images(n2, shape, 20 + i)
    return out


def reference_worker(cfg: Config, args: argparse.Namespace) -> None:
    """K(x1, x2) and K(x1, x1), NNGP and NTK, in float64 on the CPU (XLA path)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import kipd.kernels

    kernel = kipd.kernels.make(ARCH, depth=cfg.depth, implementation="xla")
    out = {}
    with np.load(args.inputs) as data:
        for shape in cfg.shapes:
            name = shape_name(shape)
            x1 = jnp.asarray(data[f"x1_{name}"], jnp.float64)
            x2 = jnp.asarray(data[f"x2_{name}"], jnp.float64)
            for call, (a, b) in (("cross", (x1, x2)), ("self", (x1, x1))):
                nngp, ntk = kernel(a, b, get=("nngp", "ntk"))
                out[f"{name}_{call}_nngp"], out[f"{name}_{call}_ntk"] = map(np.asarray, (nngp, ntk))
            assert out[f"{name}_cross_ntk"].dtype == np.float64
    np.savez(args.values, **out)


def relative_errors(ours: np.ndarray, ref: np.ndarray, square: bool) -> dict[str, float]:
    """max |ours - ref| / max |ref| over the off-diagonal and (square) diagonal entries;
    NaN or inf in ``ours`` gives NaN / inf, so a broken kernel cannot look exact."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    diagonal = np.eye(*ref.shape, dtype=bool) if square else np.zeros(ref.shape, bool)
    out = {}
    for part, mask in (("off_diag", ~diagonal), ("diag", diagonal)):
        if mask.any():
            out[part] = float(np.abs(ours[mask] - ref[mask]).max() / np.abs(ref[mask]).max())
    return out


def exactness_rows(cfg: Config, label: str, values: Path, reference: Path) -> list[dict]:
    """Rows of the exactness table for one tree's device values."""
    rows = []
    calls = {"cross": "K(x1, x2)", "symmetric": "K(x) [x2=None]", "self": "K(x, x)"}
    with np.load(values) as ours, np.load(reference) as ref:
        for shape in cfg.shapes:
            name = shape_name(shape)
            for call, title in calls.items():
                row: dict[str, Any] = {"tree": label, "shape": name, "call": title}
                ref_call = "cross" if call == "cross" else "self"
                for kind in ("nngp", "ntk"):
                    errors = relative_errors(
                        ours[f"{name}_{call}_{kind}"],
                        ref[f"{name}_{ref_call}_{kind}"],
                        call != "cross",
                    )
                    row.update({f"{kind}_{part}": err for part, err in errors.items()})
                worst = max(v for k, v in row.items() if k.startswith(("nngp_", "ntk_")))
                ok = bool(np.isfinite(worst)) and worst < EXACT_TOLERANCE
                row["status"] = (
                    "ok" if ok else f"error {worst:.1e} (tolerance {EXACT_TOLERANCE:.0e})"
                )
                rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------
# Driver side: no JAX here (the device stays free for the workers).
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tree:
    label: str
    src: Path


def _echo(stream: Any, prefix: str) -> None:
    for line in iter(stream.readline, ""):
        print(f"{prefix} {line.rstrip()}", flush=True)


def run_worker(tree: Tree, cfg: Config, argv: list[str], timeout_s: float) -> str:
    """``bench/gpu.py --worker ...`` with ``tree``'s kipd; its output echoed with a prefix.
    Returns ``"ok"``, ``"failed: exit N"`` or ``"timed out after N s"`` (killed)."""
    env = dict(os.environ, PYTHONPATH=str(tree.src), TQDM_DISABLE="1")
    if cfg.smoke:
        env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *argv]
    cmd += ["--smoke"] if cfg.smoke else []
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    echo = threading.Thread(target=_echo, args=(proc.stdout, f"    [{tree.label}]"), daemon=True)
    echo.start()
    try:
        rc = proc.wait(timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker we started, and its children
        proc.wait()
        echo.join(timeout=5)
        return f"timed out after {timeout_s:.0f} s"
    echo.join(timeout=5)
    return "ok" if rc == 0 else f"failed: exit {rc}"


def read_result(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class Report:
    """Everything measured; ``write`` puts gpu.json and gpu.md into every output folder."""

    def __init__(self, cfg: Config, trees: list[Tree], out_dirs: list[Path], budget_s: float):
        self.out_dirs = out_dirs
        self.data: dict[str, Any] = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "config": dataclasses.asdict(cfg),
            "trees": {t.label: str(t.src) for t in trees},
            "budget_s": budget_s,
            "runs": [],  # one per worker: task, tree, status, seconds, result
            "exactness": [],
        }

    def write(self) -> None:
        self.data["elapsed_s"] = CLOCK.elapsed()
        for folder in self.out_dirs:
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / "gpu.json", self.data)
            (folder / "gpu.md").write_text(render_markdown(self.data))

    def run(self, task: str, tree: Tree, cfg: Config, argv: list[str], timeout_s: float) -> dict:
        """Runs one worker, records it, writes the report."""
        result_path = Path(self.data["tmp"]) / f"{task.replace(':', '_')}_{tree.label}.json"
        log(f"{task} [{tree.label}]: start, up to {timeout_s:.0f} s")
        started = time.monotonic()
        status = run_worker(tree, cfg, [*argv, "--result", str(result_path)], timeout_s)
        run = {"task": task, "tree": tree.label, "status": status}
        run.update(seconds=time.monotonic() - started, result=read_result(result_path))
        self.data["runs"].append(run)
        log(f"{task} [{tree.label}]: {status} ({run['seconds']:.1f} s)")
        self.write()
        return run


def kernels_rates(run: dict, shape: tuple) -> dict[str, dict]:
    """The ok throughput entries of a kernels run at ``shape``, by kind."""
    return {
        e["kind"]: e
        for e in run.get("result", {}).get("throughput", [])
        if e.get("status") == "ok" and e["shape"] == shape_name(shape)
    }


def predicted_cost(setting: KipSetting, rates: dict[str, dict]) -> tuple[float, float] | None:
    """(seconds of one full step, seconds of compiling and starting a worker) from the
    kernels run's forward and fwd+VJP rates at the step's shape."""
    vjp = rates.get("fwd+VJP, block chunks") or rates.get("fwd+VJP")
    fwd = rates.get("fwd")
    if vjp is None or fwd is None:
        return None
    pairs = setting.pairs(setting.targets)
    step = 1.3 * (pairs / fwd["pairs_per_s"] + pairs / vjp["pairs_per_s"])
    # A worker's start, and the block programs' compiles (a linearization per block kind).
    return step, 10.0 + fwd["compile_s"] + 2 * vjp["compile_s"]


def fit_targets(setting: KipSetting, cost: tuple[float, float] | None, available: float):
    """(targets, timed steps, how) that fit ``available`` seconds: the full step if it fits
    once after the warm-up, else fewer targets (scaled by pairs afterwards)."""
    if cost is None:
        return setting.targets, setting.steps, "measured"
    step, fixed = cost
    steps = max(1, min(setting.steps, int((available - fixed) / max(step, 1e-9)) - 1))
    if fixed + (1 + steps) * step <= available:
        return setting.targets, steps, "measured"
    per_pair = step / setting.pairs(setting.targets)
    fit = int(((available - fixed) / 2 / per_pair - setting.support**2 / 2) / setting.support)
    targets = max(setting.support, min(setting.targets, fit))
    return targets, 1, f"scaled from {targets} targets by pairs"


def run_kip_tasks(report: Report, cfg: Config, trees: list[Tree], kernels: dict) -> None:
    """Every KIP setting on every tree, each with a share of the budget left that is
    proportional to its predicted cost."""
    jobs = [(s, t) for s in cfg.kip for t in trees]
    costs = [predicted_cost(s, kernels_rates(kernels.get(t.label, {}), s.shape)) for s, t in jobs]
    for i, ((setting, tree), cost) in enumerate(zip(jobs, costs)):
        needs = [c[1] + (1 + s.steps) * c[0] if c else 60.0 for c, (s, _) in zip(costs, jobs)]
        available = (CLOCK.left() - 5) * needs[i] / sum(needs[i:])
        targets, steps, how = fit_targets(setting, cost, available)
        argv = ["kip", "--setting", setting.name, "--targets", str(targets)]
        argv += ["--steps", str(steps), "--deadline-s", str(available)]
        run = report.run(f"kip:{setting.name}", tree, cfg, argv, available + 40)
        run.update(how=how, predicted=cost)
        step = run["result"].get("step_s")
        if step is not None:
            scale = setting.pairs(setting.targets) / setting.pairs(targets)
            run["step_s_full"] = step * scale
        report.write()


def driver(cfg: Config, trees: list[Tree], report: Report, tmp: Path) -> None:
    """The reference, the kernels workers, the exactness tables, the KIP workers."""
    inputs = tmp / "inputs.npz"
    np.savez(inputs, **exactness_inputs(cfg))
    reference = tmp / "reference.npz"
    env = dict(os.environ, PYTHONPATH=str(trees[0].src), JAX_PLATFORMS="cpu")
    ref_cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "reference"]
    ref_cmd += ["--inputs", str(inputs), "--values", str(reference)]
    ref_cmd += ["--smoke"] if cfg.smoke else []
    with open(tmp / "reference.log", "w") as ref_log:
        ref = subprocess.Popen(ref_cmd, env=env, stdout=ref_log, stderr=subprocess.STDOUT)
    try:
        kernels = {}
        weights = [2.0] + [1.0] * (len(trees) - 1)  # this tree also calibrates its chunks
        for i, tree in enumerate(trees):
            share = (CLOCK.left() - cfg.kip_reserve_s) * weights[i] / sum(weights[i:])
            values = tmp / f"values_{tree.label}.npz"
            argv = ["kernels", "--inputs", str(inputs), "--values", str(values)]
            argv += ["--deadline-s", str(max(share - 20, 10))]
            kernels[tree.label] = report.run("kernels", tree, cfg, argv, max(share, 30) + 30)
        ref.wait(timeout=max(10.0, min(120.0, CLOCK.left() - cfg.kip_reserve_s / 2)))
        if ref.returncode != 0:
            raise RuntimeError((tmp / "reference.log").read_text()[-2000:])
        for tree in trees:
            values = tmp / f"values_{tree.label}.npz"
            if values.exists():
                report.data["exactness"] += exactness_rows(cfg, tree.label, values, reference)
        report.write()
    except Exception as err:  # noqa: BLE001 - the KIP steps still run
        report.data["exactness_error"] = short_error(err)
        log(f"exactness: {report.data['exactness_error']}")
    finally:
        if ref.poll() is None:
            ref.kill()
            ref.wait()
    run_kip_tasks(report, cfg, trees, kernels)


# ----------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------


def _num(value: Any, fmt: str = ".1f") -> str:
    if value is None or value == "":
        return ""
    return format(value, fmt) if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _ratio(a: Any, b: Any, higher_is_better: bool = True) -> str:
    if not a or not b:
        return ""
    return f"**{(a / b if higher_is_better else b / a):.2f}x**"


def _header(data: dict) -> list[str]:
    runs = data["runs"]
    envs = {r["tree"]: r["result"].get("environment", {}) for r in runs if r["result"]}
    cfg = data["config"]
    lines = [
        f"# kipd on the device: this tree and {BASELINE_COMMIT}",
        "",
        f"{data['date']}; {data.get('elapsed_s', 0):.0f} s of a {data['budget_s']:.0f} s "
        "budget; `PYTHONPATH=src python3 bench/gpu.py`"
        + (
            " --smoke (CPU, tiny shapes: tests the script, measures nothing)"
            if cfg["smoke"]
            else ""
        ),
        "",
    ]
    for label, env in envs.items():
        lines.append(
            f"- {label}: kipd {env.get('kipd', '?')}, jax {env.get('jax', '?')}, backend "
            f"{env.get('backend', '?')}, devices used: **{env.get('device_summary', '?')}** "
            f"({', '.join(env.get('devices', []))})"
        )
    lines += ["", *_table(
        ["task", "tree", "status", "seconds"],
        [[r["task"], r["tree"], r["status"], _num(r["seconds"])] for r in runs],
    )]  # fmt: skip
    for r in runs:
        calibration = r["result"].get("calibration") if r["task"] == "kernels" else None
        if calibration and calibration.get("status") == "ok":
            lines += [
                "",
                f"Chunk calibration ({r['tree']}, {calibration['seconds']:.1f} s, "
                f"{'cached' if calibration['cached'] else 'measured'}, "
                f"{calibration['pairs_per_call']} pairs per call): forward "
                f"**{calibration['forward_pairs']}** pairs per chunk "
                f"({_seconds(calibration['forward_seconds'])}), fwd+VJP "
                f"**{calibration['vjp_pairs']}** ({_seconds(calibration['vjp_seconds'])}).",
            ]
    return lines


def _seconds(by_pairs: dict) -> str:
    return ", ".join(f"{p}: {s * 1e3:.1f} ms" for p, s in by_pairs.items())


def _exactness(data: dict) -> list[str]:
    rows = data.get("exactness", [])
    if not rows and not data.get("exactness_error"):
        return []
    n1, n2 = data["config"]["exact_sizes"]
    lines = [
        "",
        "## Exactness: float32 on the device vs float64 on the CPU",
        "",
        f"max |K - K_ref| / max |K_ref| over the off-diagonal and diagonal entries; x1 {n1} "
        f"images, x2 {n2}; K(x) is `kernel(x1)` (the symmetric path). ok: below "
        f"{EXACT_TOLERANCE:.0e}." + (f" Error: {data['exactness_error']}" if not rows else ""),
        "",
    ]
    header = ["shape", "tree", "call", "NTK off-diag", "NTK diag", "NNGP off-diag", "NNGP diag"]
    keys = ("ntk_off_diag", "ntk_diag", "nngp_off_diag", "nngp_diag")
    table = [
        [r["shape"], r["tree"], r["call"], *[_num(r.get(k), ".1e") for k in keys], r["status"]]
        for r in sorted(rows, key=lambda r: r["shape"], reverse=True)
    ]
    return lines + _table([*header, "status"], table)


def _throughput(data: dict, labels: list[str]) -> list[str]:
    kernels = {r["tree"]: r["result"] for r in data["runs"] if r["task"] == "kernels"}
    entries = [dict(e, tree=t) for t, res in kernels.items() for e in res.get("throughput", [])]
    if not entries:
        return []
    side = data["config"]["side"]
    lines = [
        "",
        f"## Kernel throughput: ConvNet NTK, {side} x {side} pairs per call",
        "",
        "fwd+VJP: the gradient of sum(K) w.r.t. x1; K(x): `kernel(x)` counted as n x n pairs; "
        "block chunks: `KernelSpec.build(vjp=True)`, the chunks of a block's linearization. "
        "Chunk: pairs per chunk (GPU policy). XLA MiB: arguments + outputs + temps of the "
        "compiled call.",
        "",
    ]
    rows = []
    for e in sorted(entries, key=lambda e: (e["shape"], e["kind"], labels.index(e["tree"]))):
        rows.append([
            e["shape"], e["kind"], e["tree"], _num(e.get("chunk_pairs")),
            _num(e.get("pairs_per_s"), ",.0f"), _num(e.get("compile_s")),
            _num(e.get("xla_mib"), ",.1f"), e.get("status", ""),
        ])  # fmt: skip
        if e["tree"] == labels[-1] and len(labels) > 1:
            this = next((x for x in entries if x["tree"] == labels[0] and x["shape"] == e["shape"]
                         and x["kind"] == e["kind"]), {})  # fmt: skip
            ratio = _ratio(this.get("pairs_per_s"), e.get("pairs_per_s"))
            if ratio:
                rows.append([e["shape"], e["kind"], f"{labels[0]} / {labels[-1]}", "", ratio])
    header = ["shape", "kind", "tree", "chunk", "pairs/s", "compile s", "XLA MiB", "status"]
    return lines + _table(header, [r + [""] * (len(header) - len(r)) for r in rows])


def _kip(data: dict, labels: list[str]) -> list[str]:
    runs = [r for r in data["runs"] if r["task"].startswith("kip:")]
    if not runs:
        return []
    settings = {s["name"]: s for s in data["config"]["kip"]}
    lines = [
        "",
        "## KIP steps: ConvNet NTK, `kipd.compute.value_and_grad` on a `LocalExecutor`",
        "",
        "A warm-up step (compile, and this tree's calibration if not cached), then timed steps "
        "(the fastest kept). Peak: the worker's peak device memory (`peak_bytes_in_use`; "
        "RSS on a CPU), one process per step setting.",
        "",
    ]
    rows, by = [], {}
    for r in runs:
        s, res = settings[r["task"][4:]], r["result"]
        by[r["task"], r["tree"]] = r.get("step_s_full")
        shape = "x".join(map(str, s["shape"]))
        peak = res.get("peak", {})
        rows.append([
            f"{s['label']} ({s['support']} x {s['targets']}, {shape})", r["tree"],
            _num(r.get("step_s_full"), ".2f"), r.get("how", ""), _num(res.get("warmup_s")),
            _num(res.get("block_size")),
            f"{_num(peak.get('peak_mib'), ',.0f')} {peak.get('peak_of', '')}".strip(),
            r["status"],
        ])  # fmt: skip
        if r["tree"] == labels[-1] and len(labels) > 1:
            ratio = _ratio(by.get((r["task"], labels[0])), r.get("step_s_full"), False)
            if ratio:
                rows.append(
                    ["", f"{labels[0]} vs {labels[-1]} (speed-up)", ratio, "", "", "", "", ""]
                )
    header = ["step", "tree", "step s", "how", "warm-up s", "block", "peak MiB", "status"]
    return lines + _table(header, rows)


def render_markdown(data: dict) -> str:
    labels = list(data["trees"])
    failures = [
        f"### {r['task']} [{r['tree']}]: {r['status']}" for r in data["runs"] if r["status"] != "ok"
    ]
    text = _header(data) + _exactness(data) + _throughput(data, labels) + _kip(data, labels)
    return "\n".join(text + ([""] + failures if failures else [])) + "\n"


# ----------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="also write gpu.md and gpu.json here")
    parser.add_argument("--budget-s", type=float, default=420.0, help="seconds (default 420)")
    parser.add_argument("--smoke", action="store_true", help="both trees on the CPU, tiny shapes")
    parser.add_argument(
        "--baseline", type=Path, default=DEFAULT_BASELINE, help="a checkout of the baseline"
    )
    parser.add_argument("--no-baseline", action="store_true", help="this tree only")
    for hidden in ("--worker", "--inputs", "--values", "--result", "--setting"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--targets", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--deadline-s", type=float, default=1e9, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    global CLOCK
    args = parse(argv)
    cfg = SMOKE if args.smoke else FULL
    if args.worker:
        for name in ("result", "inputs", "values"):
            if getattr(args, name):
                setattr(args, name, Path(getattr(args, name)))
        workers = {"kernels": worker_kernels, "kip": worker_kip, "reference": reference_worker}
        workers[args.worker](cfg, args)
        return
    trees = [Tree("this", REPO_ROOT / "src")]
    if not args.no_baseline:
        if not (args.baseline / "src" / "kipd").is_dir():
            sys.exit(
                f"no checkout of the baseline at {args.baseline}: run `git worktree add "
                f"--detach {args.baseline} {BASELINE_COMMIT}` here first (and name it in the "
                "device tool's carry), or pass --no-baseline"
            )
        trees.append(Tree(BASELINE_COMMIT, args.baseline.resolve() / "src"))
    CLOCK = Clock(args.budget_s)
    out_dirs = [args.out] if args.out else []
    if not args.smoke:
        out_dirs.append(RESULTS_DIR)
    elif not out_dirs:
        out_dirs.append(Path(tempfile.gettempdir()) / "kipd-gpu-smoke")
    log(f"bench/gpu.py: budget {args.budget_s:.0f} s, trees {', '.join(t.label for t in trees)}")
    report = Report(cfg, trees, out_dirs, args.budget_s)
    with tempfile.TemporaryDirectory() as tmp:
        report.data["tmp"] = tmp
        if not args.smoke:  # a fresh cache, as on a fresh machine: calibrated once, here
            os.environ["KIPD_CACHE_DIR"] = str(Path(tmp) / "cache")
        driver(cfg, trees, report, Path(tmp))
    report.write()
    print(render_markdown(report.data), flush=True)
    log(f"done in {CLOCK.elapsed():.0f} s; tables in {', '.join(map(str, out_dirs))}")


if __name__ == "__main__":
    main()
