"""What a run will cost, said before it starts: the ``estimate:`` line and ``--plan``.

The resolved config fixes every shape of a step: ``n_s`` support images, the target
batch, the kernels, the block size. ``kip_estimate`` prices a run from cached kernel-entry
timings (:func:`kipd.compute.entry_cost`); ``--plan`` compiles and times one block of each
kind on this machine's default device (:func:`kipd.compute.estimate_step`) and models the
step, the evaluations and the whole run from it, on one worker and on ``N``. A new run
with regularized ZCA also pays for its fit, O(n d^2 + d^3) in the d = H*W*C features
(:func:`kipd.data.zca_fit_seconds`), which outgrows everything else for large images: the
estimate includes it, and says so where it dominates.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

import kipd.kernels
from kipd import compute, data
from kipd.distill import krr_loss
from kipd.runs._config import KipConfig, LabelSolveConfig
from kipd.runs._context import Log, load_dataset, say
from kipd.runs._features import feature_image_seconds, feature_label, threshold_note
from kipd.runs._rundir import known_init_accuracy, test_subsets

ZCA_FIT = "ZCA fit"
"""The part of a run's estimate that fits its regularized ZCA."""

ZCA_NOTE_SECONDS = 60.0
"""A ZCA fit predicted longer than this and than the rest of the run gets a note that
names ``--no-zca``."""


def final_test_size(config: KipConfig | LabelSolveConfig, dataset: data.Dataset) -> int:
    """Test images of a resolved config's final evaluation (``test_size``, or all)."""
    return len(dataset.y_test) if config.test_size is None else config.test_size


def measures_init(
    config: KipConfig, dataset: data.Dataset, run_dir: os.PathLike | None = None
) -> bool:
    """Whether a KIP run measures its initial set with the exact kernel at the end: not
    with ``init_accuracy=False``, nor where :func:`known_init_accuracy` reuses the
    ``--init-from`` run's (``run_dir``: a resumed run, whose recorded test subset counts).
    """
    if not config.init_accuracy:
        return False
    run = None if run_dir is None else Path(run_dir)
    final = test_subsets(config, len(dataset.y_test), run)["final"]
    return known_init_accuracy(config, final) is None


def _zca_fit_on(dataset: data.Dataset) -> str:
    height, width, channels = dataset.image_shape
    features = height * width * channels
    return (
        f"on {len(dataset.x_train):,} train images of {features:,} features "
        f"({height}x{width}x{channels})"
    )


def zca_fit_seconds(config: KipConfig | LabelSolveConfig, dataset: data.Dataset) -> float:
    """Predicted seconds of fitting a new run's preprocessing: its regularized ZCA
    (:func:`kipd.data.zca_fit_seconds`), or 0 for standard preprocessing (one pass over
    the pixels)."""
    if not config.zca:
        return 0.0
    return data.zca_fit_seconds(len(dataset.x_train), dataset.image_shape)


def with_zca_fit(
    estimate: compute.Estimate, config: KipConfig | LabelSolveConfig, dataset: data.Dataset
) -> compute.Estimate:
    """``estimate`` with the fit of a new run's regularized ZCA in front, as the part
    :data:`ZCA_FIT`; unchanged for standard preprocessing."""
    if not config.zca:
        return estimate
    seconds = zca_fit_seconds(config, dataset)
    return estimate._replace(
        what=f"the ZCA fit {_zca_fit_on(dataset)}, then {estimate.what}",
        parts={ZCA_FIT: seconds, **estimate.parts},
    )


def announce(
    estimate: compute.Estimate,
    config: KipConfig | LabelSolveConfig,
    dataset: data.Dataset,
    resume: bool,
    log: Log | None,
    budget_seconds: float | None,
    cheaper: str,
) -> None:
    """Says the ``estimate:`` line of a run to ``log`` and checks the budget, as
    :meth:`kipd.compute.Estimate.announce` does; a new run (not ``resume``) prices its ZCA
    fit first (:func:`with_zca_fit`). Where the ZCA fit dominates (longer than
    :data:`ZCA_NOTE_SECONDS` and than the rest of the run) also a note that says so and
    names ``--no-zca``, which the over-budget error then names too."""
    if not resume:
        estimate = with_zca_fit(estimate, config, dataset)
    fit = estimate.parts.get(ZCA_FIT, 0.0)
    dominates = fit > max(ZCA_NOTE_SECONDS, estimate.seconds - fit)
    if log is not None:
        log(estimate.line())
        if dominates:
            log(
                f"note: the ZCA fit is {compute.format_duration(fit)} of this run's "
                f"{compute.format_duration(estimate.seconds)}: it grows with the cube of the "
                "features per image (H*W*C). Pass --no-zca for standard preprocessing (per "
                "channel, seconds), or use smaller images (half the side: 64x less)"
            )
    if dominates:
        cheaper = f"--no-zca (standard preprocessing: no ZCA fit), {cheaper}"
    estimate.check(budget_seconds, cheaper)


def log_zca_fit(
    log: Log | None, config: KipConfig | LabelSolveConfig, dataset: data.Dataset
) -> None:
    """Says, before a new run fits its regularized ZCA, what the fit does and about how
    long it takes (nothing for standard preprocessing)."""
    if log is None or not config.zca:
        return
    d = int(np.prod(dataset.image_shape))
    seconds = zca_fit_seconds(config, dataset)
    log(
        f"fitting regularized ZCA (lambda {config.zca_regularization}) {_zca_fit_on(dataset)}: a "
        f"{d:,} x {d:,} covariance and its eigendecomposition, about "
        f"{compute.format_duration(seconds)} ..."
    )


def _kernel_loss(k_ss, k_ts, support_labels, target_labels):
    return krr_loss(k_ts, k_ss, support_labels, target_labels)


def _memory_limit() -> tuple[int, str]:
    """Bytes one worker may use: the default device's memory, else this machine's RAM."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]), f"{device.device_kind} memory"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "RAM"


# Over 60 lines: one straight sequence (measure each kernel, model the step and the run,
# warn) whose last third is the JSON-able result, one entry per line.
def _kernel_plan(name: str, e: compute.StepEstimate, workers: int) -> dict[str, Any]:
    """One kernel's row of :func:`plan_kip`: its plan, timed blocks and modelled step."""
    return {
        "kernel": name,
        "block_size": e.plan.support_block,
        "target_block": e.plan.target_block,
        "blocks": len(e.plan.blocks),
        "entries_forward": e.entries(),
        "entries_vjp": e.entries(),
        "forward_seconds": e.forward_seconds,
        "vjp_seconds": e.vjp_seconds,
        "server_seconds": e.server_seconds,
        "compile_seconds": e.compile_seconds,
        "step_seconds": e.step_seconds(1),
        "step_seconds_workers": e.step_seconds(workers),
        "peak_bytes_per_worker": e.peak_bytes_per_worker,
    }


def _plan_warnings(peak: int, limit: int, limit_name: str, run_n: float, workers: int) -> list[str]:
    """What a plan should warn of: a worker over this machine's memory, a run over a day."""
    warnings = []
    if peak > 0.9 * limit:
        warnings.append(
            f"a worker needs about {peak / 2**30:.1f} GiB, more than this machine's "
            f"{limit_name} ({limit / 2**30:.1f} GiB): lower --target-batch-size or --block-size"
        )
    if run_n > compute.DAY_SECONDS:
        warnings.append(
            f"the run will take about {run_n / compute.DAY_SECONDS:.1f} days on {workers} "
            "worker(s): fewer --steps, a smaller --target-batch-size, more workers "
            "(--executor ray), or a GPU"
        )
    return warnings


def plan_kip(
    config: KipConfig,
    *,
    image_shape: tuple[int, ...],
    num_classes: int,
    test_size: int,
    executor: compute.ExecutorConfig | None = None,
    workers: int | None = None,
    overhead_seconds: float | None = None,
    repeats: int = 2,
    measure_init: bool = True,
    log: Log | None = None,
) -> dict[str, Any]:
    """The cost of a resolved KIP config: entries, measured block times, modelled times.

    Args:
      config: a resolved config (``KipConfig.resolve``).
      image_shape: ``(H, W, C)`` of the dataset.
      num_classes: label dimension.
      test_size: images of the final test evaluations.
      executor: where the run's blocks would run (default: this process's devices).
      workers: ``N`` of the multi-worker model (default: the executor's workers).
      overhead_seconds: per-block executor overhead; ``None`` measures it on the
        executor (for ``ray`` this starts the pool).
      repeats: timed runs per block.
      measure_init: whether the run measures its initial set at the end
        (:func:`measures_init`).
      log: where to say what is being measured.

    Returns:
      A JSON-able dict: per-kernel block timings and entries, ``step_seconds`` (1 worker),
      ``step_seconds_workers`` (N), ``run_seconds`` and ``run_seconds_workers``,
      ``peak_bytes_per_worker``, ``memory_limit_bytes``, and ``warnings`` (a list of
      sentences).
    """
    if config.features is not None:
        return _plan_features(config, image_shape, num_classes, test_size, measure_init, log)
    support_size = config.images_per_class * num_classes
    targets = config.target_batch_size
    labels = np.zeros((support_size, num_classes), np.float32)
    target_labels = np.zeros((targets, num_classes), np.float32)
    executor = executor or compute.ExecutorConfig()
    if overhead_seconds is None or workers is None:
        if log is not None:
            log(f"measuring the per-block overhead of the {executor.executor} executor ...")
        with executor.make() as running:
            workers = workers or running.workers_alive
            if overhead_seconds is None:
                overhead_seconds = compute.block_overhead(running)
    kernels = []
    for name in config.kernels:
        if log is not None:
            log(
                f"compiling and timing one forward and one VJP block of each kind of the {name} "
                f"kernel ({support_size} support x {targets} targets per step) ..."
            )
        estimate = compute.estimate_step(
            compute.KernelSpec(name),
            image_shape,
            support_size,
            targets,
            block_size=config.block_size,
            loss_fn=_kernel_loss,
            loss_args=(labels, target_labels),
            overhead_seconds=overhead_seconds,
            repeats=repeats,
            keep_pullbacks=executor.executor == "local",
        )
        kernels.append((name, estimate, estimate.forward_pair_seconds()))
    # Sampling KIP draws kernels uniformly: a step costs their mean.
    step_1 = float(np.mean([e.step_seconds(1) for _, e, _ in kernels]))
    step_n = float(np.mean([e.step_seconds(workers) for _, e, _ in kernels]))
    # Evaluations use the first kernel.
    eval_seconds = _evaluation_seconds(config, kernels[0][2], support_size, test_size, measure_init)
    run_1 = config.steps * step_1 + eval_seconds
    run_n = config.steps * step_n + eval_seconds / workers
    peak = max(e.peak_bytes_per_worker for _, e, _ in kernels)
    limit, limit_name = _memory_limit()
    warnings = _plan_warnings(peak, limit, limit_name, run_n, workers)
    return {
        "support_size": support_size,
        "target_batch_size": targets,
        "steps": config.steps,
        "workers": workers,
        "executor": executor.executor,
        "overhead_seconds_per_block": overhead_seconds,
        "kernels": [_kernel_plan(name, e, workers) for name, e, _ in kernels],
        "step_seconds": step_1,
        "step_seconds_workers": step_n,
        "eval_seconds": eval_seconds,
        "run_seconds": run_1,
        "run_seconds_workers": run_n,
        "peak_bytes_per_worker": peak,
        "memory_limit_bytes": limit,
        "warnings": warnings,
    }


def _evaluation_seconds(
    config: KipConfig, pair_seconds: float, support_size: int, test_size: int, measure_init: bool
) -> float:
    """:func:`plan_kip`'s evaluations: the readings, then the final set and (where
    ``measure_init``) the initial set against the test images, each entry ``pair_seconds``."""
    readings = config.steps // config.eval_every + 1
    sets = 1 + measure_init
    return (
        pair_seconds
        * support_size
        * (readings * (config.eval_size + support_size) + sets * (test_size + support_size))
    )


def _plan_features(
    config: KipConfig,
    image_shape: tuple[int, ...],
    num_classes: int,
    test_size: int,
    measure_init: bool,
    log: Log | None,
) -> dict[str, Any]:
    """:func:`plan_kip` of a run on features: the feature map timed here, the step and the
    run modelled from it (the steps run in this process: one worker)."""
    estimate = _feature_kip_estimate(
        config, image_shape, num_classes, test_size, 0, measure_init, log
    )
    assert config.feature_map is not None
    width, networks = config.feature_map
    # Timed by the estimate above (cached per process): said once, so no log here.
    forward, gradient = _feature_seconds(config, image_shape, None)
    step = estimate.parts["steps"] / max(config.steps, 1)
    note = threshold_note(config, image_shape, num_classes)
    return {
        "support_size": config.images_per_class * num_classes,
        "target_batch_size": config.target_batch_size,
        "steps": config.steps,
        "workers": 1,
        "executor": "local",
        "kernels": [],
        "features": {
            "features": config.features,
            "feature_count": kipd.kernels.feature_count(
                config.eval_kernel,
                image_shape,
                width=width,
                networks=networks,
                get=config.feature_kernel,
            ),
            "forward_seconds_per_image": forward,
            "gradient_seconds_per_image": gradient,
        },
        "step_seconds": step,
        "step_seconds_workers": step,
        "eval_seconds": estimate.parts["evaluations"] + estimate.parts["exact evaluation"],
        "run_seconds": estimate.seconds,
        "run_seconds_workers": estimate.seconds,
        "warnings": [] if note is None else [note.removeprefix("note: ")],
    }


def plan_run(
    config: KipConfig,
    *,
    executor: compute.ExecutorConfig | None = None,
    repeats: int = 2,
    log: Log | None = None,
) -> dict[str, Any]:
    """:func:`plan_kip` for a config as given on the command line: loads its dataset for
    the shapes and resolves it first. Trains nothing and writes nothing. The whole run's
    times include the predicted ZCA fit (``zca_fit_seconds``; 0 without ZCA).

    Example:
      >>> config = KipConfig(kernels=("convnet",), target_batch_size=100)
      >>> plan_run(config)["step_seconds"]  # doctest: +SKIP
    """
    dataset = load_dataset(config, log)
    config = config.resolve(dataset)
    plan = plan_kip(
        config,
        image_shape=dataset.image_shape,
        num_classes=dataset.num_classes,
        test_size=final_test_size(config, dataset),
        executor=executor,
        repeats=repeats,
        measure_init=measures_init(config, dataset),
        log=log,
    )
    # The fit runs once, in the command's own process, before the first step.
    fit = zca_fit_seconds(config, dataset)
    return {
        "dataset": dataset.name,
        "devices": compute.device_summary(),
        **plan,
        "zca_fit_seconds": fit,
        "run_seconds": plan["run_seconds"] + fit,
        "run_seconds_workers": plan["run_seconds_workers"] + fit,
    }


def kip_estimate(
    config: KipConfig,
    image_shape: tuple[int, ...],
    num_classes: int,
    num_test: int,
    *,
    from_step: int = 0,
    workers: int = 1,
    keep_pullbacks: bool = False,
    measure_init: bool = True,
    log: Log | None = None,
) -> compute.Estimate:
    """What the rest of a KIP run costs on this machine, from timed (cached) kernel entries:
    the steps (forward and VJP of ``K_ss`` and ``K_ts`` per step), the test readings and
    the final evaluation of the final support, its best checkpoints and (``measure_init``,
    see :func:`measures_init`) the initial support.

    Args:
      config: a resolved config.
      image_shape, num_classes, num_test: of its dataset (``num_test``: the final
        evaluation's test images).
      from_step: steps already done (a resumed run).
      workers: workers sharing the blocks.
      keep_pullbacks: whether the executor keeps each block's pullback between the passes
        (the local executor: see :func:`kipd.compute.estimate_step`).
      measure_init: whether the initial support is measured with the exact kernel.
      log: where to say that a kernel is being timed.
    """
    if config.features is not None:
        return _feature_kip_estimate(
            config, image_shape, num_classes, num_test, from_step, measure_init, log
        )
    support = config.images_per_class * num_classes
    targets = config.target_batch_size
    costs = [
        compute.entry_cost(compute.KernelSpec(name), image_shape, support, log, keep_pullbacks)
        for name in config.kernels
    ]
    steps = max(0, config.steps - from_step)
    pass_entries = config.step_kernel_entries(num_classes) // 2  # the forward, then the VJP
    step_seconds = float(
        np.mean([pass_entries * (c.forward_seconds + c.vjp_seconds) for c in costs])
    )
    readings = steps // config.eval_every + (from_step == 0)
    eval_entries = readings * (config.eval_size + support) * support
    eval_entries += (1 + measure_init + config.keep_best) * (num_test + support) * support
    return compute.Estimate(
        what=f"{steps} KIP steps of {support} support x {targets} target images "
        f"({','.join(config.kernels)}), {readings} test readings and the final evaluation "
        f"({'init, ' if measure_init else ''}last step, {config.keep_best} best checkpoints) "
        f"on {num_test} test images",
        parts={
            "steps": steps * step_seconds / workers,
            "evaluations": eval_entries * costs[0].forward_seconds / workers,
        },
        entries=steps * config.step_kernel_entries(num_classes) + eval_entries,
    )


def _feature_seconds(
    config: KipConfig | LabelSolveConfig, image_shape: tuple[int, ...], log: Log | None
) -> tuple[float, float]:
    """:func:`feature_image_seconds` of a config on features, said before it is timed."""
    assert config.feature_map is not None
    width, networks = config.feature_map
    say(
        log,
        f"timing the feature map ({config.eval_kernel} {feature_label(config)}) on this "
        "machine ...",
    )
    return feature_image_seconds(
        config.eval_kernel, width, networks, config.feature_kernel, tuple(image_shape)
    )


def _feature_kip_estimate(
    config: KipConfig,
    image_shape: tuple[int, ...],
    num_classes: int,
    num_test: int,
    from_step: int,
    measure_init: bool,
    log: Log | None,
) -> compute.Estimate:
    """:func:`kip_estimate` of a run on features: a step is the support's features with
    their gradient and the targets' features; readings and the final accuracies on the
    feature kernel are forward passes, the final referee ``(t + n_s) n_s`` exact forward
    entries per set (the final set, and the initial set where ``measure_init``)."""
    support = config.images_per_class * num_classes
    forward, gradient = _feature_seconds(config, image_shape, log)
    exact = compute.entry_cost(compute.KernelSpec(config.eval_kernel), image_shape, support, log)
    steps = max(0, config.steps - from_step)
    readings = steps // config.eval_every + (from_step == 0)
    feature_images = readings * (config.eval_size + support)
    feature_images += (2 + config.keep_best) * (num_test + support)
    exact_entries = (1 + measure_init) * (num_test + support) * support
    exact_sets = "initial and final set" if measure_init else "final set"
    return compute.Estimate(
        what=f"{steps} KIP steps on {feature_label(config)} of {support} support x "
        f"{config.target_batch_size} target images ({config.eval_kernel}), {readings} test "
        f"readings on features and the final evaluation on {num_test} test images (features, "
        f"and the exact kernel for the {exact_sets})",
        parts={
            "steps": steps * (support * gradient + config.target_batch_size * forward),
            "evaluations": feature_images * forward,
            "exact evaluation": exact_entries * exact.forward_seconds,
        },
        entries=exact_entries,
        unit="exact kernel entries",
    )


def label_solve_estimate(
    config: LabelSolveConfig,
    image_shape: tuple[int, ...],
    num_classes: int,
    num_test: int,
    *,
    done_targets: int = 0,
    workers: int = 1,
    log: Log | None = None,
) -> compute.Estimate:
    """What the rest of a Label Solve run costs on this machine, from timed (cached) kernel
    entries: ``K_ss`` and the rows of ``K(targets, support)`` not saved yet, then the test
    evaluation of the natural and the solved labels (one kernel matrix).

    Args:
      config: a resolved config.
      image_shape, num_classes, num_test: of its dataset (``num_test``: the final
        evaluation's test images).
      done_targets: target rows already saved (a resumed run).
      workers: workers sharing the blocks.
      log: where to say that a kernel is being timed.
    """
    support = config.images_per_class * num_classes  # the class-balanced support
    assert config.target_size is not None  # a resolved config
    remaining = config.target_size - done_targets
    done = f", {done_targets} of them done" if done_targets else ""
    if config.features is not None:
        forward, _ = _feature_seconds(config, image_shape, log)
        exact = compute.entry_cost(compute.KernelSpec(config.kernel), image_shape, support, log)
        return compute.Estimate(
            what=f"Label Solve of {support} images on {config.target_size} targets (features "
            f"{config.features} of {config.kernel}{done}), tested on {num_test} images with "
            "the features and the exact kernel",
            parts={
                "targets": (remaining + support) * forward,
                "evaluations": (num_test + support) * forward,
                "exact evaluation": num_test * support * exact.forward_seconds,
            },
            entries=num_test * support,
            unit="exact kernel entries",
        )
    return compute.kernel_estimate(
        f"Label Solve of {support} images on {config.target_size} targets ({config.kernel}"
        f"{done}), tested on {num_test} images",
        compute.KernelSpec(config.kernel),
        image_shape,
        support,
        {"targets": (remaining + support) * support, "test": num_test * support},
        workers=workers,
        log=log,
    )
