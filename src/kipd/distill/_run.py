"""Durable runs: KIP and Label Solve on a dataset, written to a run directory.

The files of a run directory and how they are written and read back are the business of
``_rundir`` (its module docstring lists them). Here: the stages of a run. ``run_kip`` is
check the destination -> load the data -> start or resume the run directory -> build the
algorithm and restore its state -> train (checkpointing) -> evaluate and write the
distilled set. Every kernel of a run, training and evaluation, goes through one executor
(``kipd.compute``), given by the caller; where blocks run is never part of the run.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from kipd import compute, data
from kipd.distill import _rundir
from kipd.distill._config import (
    DistillError,
    KipConfig,
    LabelSolveConfig,
    check_resumable_folder,
    config_differences,
    load_config,
    resume_command,
)
from kipd.distill._estimate import (
    Log,
    announce,
    final_test_size,
    kip_estimate,
    log_zca_fit,
    with_zca_fit,
)
from kipd.distill._kip import KipState, kip, sample_target_batch
from kipd.distill._krr import accuracy, krr_predict
from kipd.distill._label_solve import label_solve
from kipd.distill._presets import paper_figure
from kipd.distill._resolve import resolve


@contextlib.contextmanager
def _executor_for(executor: compute.Executor | None) -> Iterator[compute.Executor]:
    """The caller's executor (left open), or a local one for this call."""
    if executor is not None:
        yield executor
        return
    with compute.LocalExecutor() as local:
        yield local


def _natural_support(
    dataset: data.Dataset, preprocessing: data.Preprocessing, per_class: int, key: jax.Array
) -> dict[str, np.ndarray]:
    """Class-balanced train images (preprocessed) with centred one-hot labels."""
    pixels, labels, indices = data.class_balanced_subset(
        dataset.x_train, dataset.y_train, per_class, key
    )
    return {
        "images": np.asarray(preprocessing.apply(pixels)),
        "labels": np.asarray(data.centered_one_hot(labels, dataset.num_classes)),
        "indices": indices,
    }


def _initial_support(
    config: KipConfig | LabelSolveConfig,
    dataset: data.Dataset,
    preprocessing: data.Preprocessing,
    key: jax.Array,
) -> dict[str, np.ndarray]:
    """The natural support, or (KIP with ``init="noise"``) uniform pixel noise with its
    labels."""
    support = _natural_support(dataset, preprocessing, config.images_per_class, key)
    if isinstance(config, KipConfig) and config.init == "noise":
        pixels = jax.random.uniform(jax.random.fold_in(key, 1), support["images"].shape)
        support["images"] = np.asarray(preprocessing.apply(pixels))
        support["indices"] = np.full_like(support["indices"], -1)
    return support


def krr_test_accuracies(
    kernel: str,
    support_images: Any,
    label_sets: Sequence[Any],
    test_images: Any,
    test_labels: Any,
    lambda0: float,
    *,
    executor: compute.Executor | None = None,
    desc: str | None = None,
) -> list[float]:
    """KRR test accuracy of one support image set under each of several label sets; the
    kernel matrices once, through ``kipd.compute`` (any executor)."""
    spec = compute.KernelSpec(kernel)
    k_ss = compute.kernel_matrix(spec, support_images, executor=executor)
    k_ts = compute.kernel_matrix(spec, test_images, support_images, executor=executor, desc=desc)
    return [
        float(accuracy(krr_predict(k_ts, k_ss, jnp.asarray(y), lambda0), test_labels))
        for y in label_sets
    ]


def _say(log: Log | None, line: str) -> None:
    if log is not None:
        log(line)


def _load(config: KipConfig | LabelSolveConfig, log: Log | None) -> data.Dataset:
    """Stage: the dataset, said first (loading a large one takes seconds)."""
    _say(log, f"loading {config.dataset} ...")
    return data.load(config.dataset, data_dir=config.data_dir)


def _check_out(out: Path, resume: bool, config: KipConfig | LabelSolveConfig) -> None:
    """Fails early (before loading data) if ``out`` cannot be started or resumed; the
    message says what will work."""
    if resume:
        check_resumable_folder(out)
        _rundir.read_config(out)
    elif _rundir.is_run(out):
        raise DistillError(
            f"{out} already holds a run: pass --resume to continue it "
            f"({resume_command(out, config)}), or choose a new --out"
        )
    elif out.exists():
        raise DistillError(
            f"{out} already exists and is not a kipd run: choose a new --out (kipd never "
            "writes into a folder it did not create)"
        )


def _check_resumable(out: Path, config: KipConfig | LabelSolveConfig) -> None:
    differences = config_differences(load_config(out), config)
    if differences:
        raise DistillError(
            f"{out} is a run of another config ({'; '.join(differences)}); resume it with its own "
            "options (only --steps, unless the learning rate decays, --test-size, --block-size and "
            "where blocks run may change), "
            "or start a new run with another --out"
        )


class _Start(NamedTuple):
    """What a KIP run starts from: the same whether it is new or resumed."""

    preprocessing: data.Preprocessing
    init: dict[str, np.ndarray]
    test_subsets: dict[str, np.ndarray]


def _start(
    config: KipConfig | LabelSolveConfig,
    out: Path,
    dataset: data.Dataset,
    resume: bool,
    key,
    log: Log | None,
) -> _Start:
    """Stage: the preprocessing, initial support and test subsets, fitted and drawn for a
    new run, read back from ``out`` for a resumed one (checked by ``_check_resumable``)."""
    num_test = len(dataset.y_test)
    if resume:
        _rundir.write_config(out, config)  # with the changes a resume may make (--steps)
        subsets = _rundir.test_subsets(config, num_test, out)
        _rundir.write_test_subsets(out, subsets)  # a new --test-size draws a new final subset
        return _Start(_rundir.read_preprocessing(out), _rundir.read_init(out), subsets)
    log_zca_fit(log, config, dataset)
    preprocessing = data.fit_dataset_preprocessing(dataset, config.zca, config.zca_regularization)
    init = _initial_support(config, dataset, preprocessing, key)
    return _Start(preprocessing, init, _rundir.test_subsets(config, num_test))


class _Evaluator(NamedTuple):
    """KRR test accuracy of support sets on the run's two test subsets."""

    config: KipConfig | LabelSolveConfig
    dataset: data.Dataset
    preprocessing: data.Preprocessing
    executor: compute.Executor

    def accuracies(
        self, images: Any, label_sets: Sequence[Any], subset: np.ndarray, desc: str | None = None
    ) -> list[float]:
        return krr_test_accuracies(
            self.config.eval_kernel,
            images,
            label_sets,
            self.preprocessing.apply(self.dataset.x_test[subset]),
            jnp.asarray(self.dataset.y_test[subset]),
            self.config.lambda0,
            executor=self.executor,
            desc=desc,
        )


def learning_rate(config: KipConfig) -> float | optax.Schedule:
    """Adam's learning rate of a resolved config: ``lr`` constant (the paper), or decayed
    from ``lr`` at step 0 to 0 at ``steps`` by a cosine (``lr_schedule="cosine"``).

    Example:
      >>> rate = learning_rate(KipConfig(lr=0.04, steps=100, lr_schedule="cosine"))
      >>> [round(float(rate(step)), 6) for step in (0, 50, 100)]
      [0.04, 0.02, 0.0]
    """
    if config.lr_schedule == "cosine":
        return optax.cosine_decay_schedule(config.lr, config.steps)
    return config.lr


def _check_target_sampling(config: KipConfig, dataset: data.Dataset) -> None:
    """Balanced target batches need ``ceil(B / classes)`` train images of every class."""
    if config.target_sampling != "balanced":
        return
    per_class = -(-config.target_batch_size // dataset.num_classes)
    counts = np.bincount(dataset.y_train, minlength=dataset.num_classes)
    if counts.min() < per_class:
        raise DistillError(
            f"balanced target sampling draws up to {per_class} train images of each class per "
            f"step, but class {int(counts.argmin())} has {int(counts.min())}: pass "
            f"--target-batch-size {int(counts.min()) * dataset.num_classes} or less, or "
            "--target-sampling uniform"
        )


def _kip_algorithm(
    config: KipConfig,
    dataset: data.Dataset,
    preprocessing: data.Preprocessing,
    executor: compute.Executor,
):
    """Stage: the KIP ``(init, update)`` pair and its targets (pixels when augmenting:
    augmentations act on pixels, and targets are preprocessed after, inside the step)."""
    if config.augment > 0:
        targets = jnp.asarray(dataset.x_train)

        def augment(key: jax.Array, pixels: jax.Array) -> jax.Array:
            return preprocessing.apply(data.augment(key, pixels, config.augment))

    else:
        targets, augment = preprocessing.apply(dataset.x_train), None
    labels = data.centered_one_hot(dataset.y_train, dataset.num_classes)
    algo = kip(
        [compute.KernelSpec(name) for name in config.kernels],
        optax.adam(learning_rate(config)),
        learn_labels=config.learn_labels,
        lambda0=config.lambda0,
        augment=augment,
        executor=executor,
        block_size=config.block_size,
    )
    return algo, (targets, labels)


def _train(
    config: KipConfig,
    out: Path,
    algo: Any,
    state: KipState,
    targets: tuple[jax.Array, jax.Array],
    batch_key: jax.Array,
    read_accuracy: Any,
    progress: bool,
    run_clock: Callable[[], float],
) -> tuple[KipState, float]:
    """Stage: KIP steps from ``state.step`` to ``config.steps``, logging and checkpointing.

    ``run_clock()`` is the run's wall time so far in seconds, earlier legs included; each
    step's record keeps it as ``elapsed``, so a resumed run knows what came before.

    Returns:
      The final state and the last step's train loss.
    """

    sample = jax.jit(
        functools.partial(
            sample_target_batch,
            batch_key,
            batch_size=config.target_batch_size,
            balanced=config.target_sampling == "balanced",
        )
    )

    def step_fn(state: KipState, images: jax.Array, labels: jax.Array):
        new_state, metrics = algo.update(state, *sample(state.step, images, labels))
        finite = bool(np.isfinite(float(metrics["loss"])))
        for leaf in (new_state.support_images, new_state.support_labels):
            finite &= bool(np.all(np.isfinite(np.asarray(leaf))))
        return new_state, {**metrics, "finite": finite}

    bar = tqdm(
        total=config.steps, initial=int(state.step), desc="KIP", unit="step", disable=not progress
    )
    with _rundir.MetricsLog(out, int(state.step)) as log, bar:
        last_loss = next((r["loss"] for r in reversed(log.records) if "loss" in r), math.nan)
        while int(state.step) < config.steps:
            step_started = time.perf_counter()
            new_state, metrics = step_fn(state, *targets)
            step = int(new_state.step)
            if not bool(metrics["finite"]):
                raise DistillError(
                    f"the KIP loss or support set became {float(metrics['loss'])} at step {step}: the "
                    f"run stopped, and its last good state is {_rundir.last_good_state(out)}. Start a "
                    f"new run with a lower --lr (this one used {config.lr})."
                )
            state = new_state
            last_loss = float(metrics["loss"])
            record = {
                "step": step,
                "loss": last_loss,
                "accuracy": float(metrics["accuracy"]),
                "kernel": config.kernels[int(metrics["kernel"])],
                "seconds": round(time.perf_counter() - step_started, 4),
            }
            if step % config.eval_every == 0 or step == config.steps:
                record["test_accuracy"] = read_accuracy(state.support_images, state.support_labels)
                bar.set_postfix_str(f"test acc {record['test_accuracy']:.3f}", refresh=False)
            record["elapsed"] = round(run_clock(), 1)
            log.append(record)
            if step % config.checkpoint_every == 0 or step == config.steps:
                _rundir.save_checkpoint(out, state, last_loss, config.keep_best)
            bar.set_description(
                f"KIP loss {last_loss:.4g} acc {record['accuracy']:.3f}", refresh=False
            )
            bar.update(1)
    return state, last_loss


def _summary(
    config: KipConfig | LabelSolveConfig,
    dataset: data.Dataset,
    support_size: int,
    test_size: int,
    init_accuracy: float,
    final_accuracy: float,
    started: float,
    **extra: Any,
) -> dict[str, Any]:
    figure = paper_figure(config)
    paper = {}
    if figure is not None:  # Table 1's figure for this dataset, support size and setting
        measured = extra.get("best_checkpoints_test_accuracy", final_accuracy)
        paper = {
            "paper_test_accuracy": figure[0] / 100,
            "paper_test_accuracy_std": None if figure[1] is None else figure[1] / 100,
            "gap_to_paper": measured - figure[0] / 100,
        }
    return {
        "algorithm": config.ALGORITHM,
        "dataset": dataset.name,
        "kernel": config.eval_kernel,
        "support_size": support_size,
        "test_size": test_size,
        "init_test_accuracy": init_accuracy,
        "test_accuracy": final_accuracy,
        "seconds": round(time.perf_counter() - started, 1),
        **extra,
        **paper,
        "preset": config.preset,
        "preset_overrides": list(config.preset_overrides),
    }


_Runner = TypeVar("_Runner", bound=Callable[..., dict[str, Any]])


def _one_writer(run: _Runner) -> _Runner:
    """``run(config, out, ...)`` holding the lock of the run directory ``out`` from its first
    check to its last write (``_rundir.writer_lock``): a second process on the same ``out``
    stops at once, naming the first, instead of both writing it."""

    @functools.wraps(run)
    def locked(config: Any, out: str | os.PathLike, **options: Any) -> dict[str, Any]:
        if options.get("resume"):
            check_resumable_folder(out)  # no run, nothing to lock (and no folder made)
        else:
            Path(out).parent.mkdir(parents=True, exist_ok=True)  # where a new run's lock lies
        with _rundir.writer_lock(Path(out)):
            return run(config, out, **options)

    return locked  # type: ignore[return-value]


@_one_writer
def run_kip(
    config: KipConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    executor: compute.Executor | None = None,
    log: Log | None = None,
    budget_seconds: float | None = None,
) -> dict[str, Any]:
    """Runs KIP on a dataset into a run directory, or resumes one.

    The target set is the whole train set; each step draws a fresh target batch as a
    function of (seed, step), so a resumed run repeats exactly what an uninterrupted run
    would do. At the end the final support set and the natural init are evaluated with
    KRR on the whole test set, or ``config.test_size`` images of it (with the first
    kernel of ``config.kernels``).

    Args:
      config: the run's options; ``None`` fields are resolved for the dataset.
      out: run directory. Must not exist for a new run; must be a run of the same
        config for ``resume`` (only ``steps``, ``data_dir``, ``test_size`` and
        ``block_size`` may change).
      resume: continue the run in ``out`` from its latest good checkpoint.
      progress: show progress bars.
      executor: where every kernel block of the run goes (``kipd.compute``; the caller
        keeps it open); default: this process's devices. Same results on any executor.
      log: where status lines go (loading, the ``estimate:`` line, compiling); ``None``
        says nothing and measures nothing.
      budget_seconds: stop with :class:`kipd.compute.OverBudgetError` before anything is
        written if the run is estimated to take longer (``None``: no limit).

    Returns:
      The summary (also written to ``summary.json``): ``init_test_accuracy``,
      ``test_accuracy``, ``kernel``, ``support_size``, ``test_size``, ``steps``,
      ``final_loss``, ``seconds``, ``dataset``, ``algorithm``.

    Raises:
      DistillError: ``out`` exists (without ``resume``), is not a run or is a run of
        another config (with ``resume``), another process is writing it, a file of it is
        damaged (a finished run's ``distilled.npz`` or ``summary.json`` is written again
        instead, with a warning), or the loss became NaN/inf.
      ValueError: bad options or dataset (the message names the fix).

    Example:
      >>> summary = run_kip(KipConfig(kernels=("fc1",), steps=100), "runs/fc1")  # doctest: +SKIP
      >>> summary["test_accuracy"] > summary["init_test_accuracy"]  # doctest: +SKIP
      True

    Paper: §2 (KIP), §3.1, appendix A.
    """
    started = time.perf_counter()
    out = Path(out)
    _check_out(out, resume, config)
    dataset = _load(config, log)
    config = config.resolve(dataset)
    _check_target_sampling(config, dataset)
    init_key, kip_key, batch_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    if resume:
        _check_resumable(out, config)

    with _executor_for(executor) as running:
        if log is not None or budget_seconds is not None:
            estimate = kip_estimate(
                config,
                dataset.image_shape,
                dataset.num_classes,
                final_test_size(config, dataset),
                from_step=_rundir.latest_step(out) if resume else 0,
                workers=running.workers_alive,
                keep_pullbacks=hasattr(running, "keeps_pullbacks"),
                log=log,
            )
            announce(
                estimate if resume else with_zca_fit(estimate, config, dataset),
                log,
                budget_seconds,
                "fewer --steps, a smaller --target-batch-size, --test-size N for the final "
                "evaluation, a cheaper --kernel (fc3, convvec3), or more workers (--executor ray)",
            )
        start = _start(config, out, dataset, resume, init_key, log)
        init, readings = start.init, start.test_subsets["readings"]
        final = start.test_subsets["final"]
        evaluator = _Evaluator(config, dataset, start.preprocessing, running)

        def read_accuracy(images: Any, labels: Any) -> float:
            return evaluator.accuracies(images, [labels], readings)[0]

        if not resume:

            def write_new_run(folder: Path) -> None:
                _rundir.write_start(folder, config, start.preprocessing, init, start.test_subsets)
                with _rundir.MetricsLog(folder, up_to_step=0) as log:
                    log.append({"step": 0, "test_accuracy": read_accuracy(init["images"], init["labels"])})

            _rundir.create_run(out, write_new_run)

        algo, targets = _kip_algorithm(config, dataset, start.preprocessing, running)
        state = _rundir.restore_latest(out, algo.init(init["images"], init["labels"], kip_key))
        if int(state.step) > config.steps:
            raise DistillError(
                f"{out} is already at step {int(state.step)}, past --steps {config.steps}: pass --steps "
                f"{int(state.step)} or more"
            )
        _, previous = _rundir.read_end(out)  # None: not finished, or rebuilt from here
        if previous is not None and previous["test_size"] != len(final):
            previous = None  # re-read on another test set: evaluate both sets again
        if previous is not None and int(state.step) == config.steps:
            return previous  # a finished run
        _say(log, "the first KIP step compiles the step function (a minute or so for convnet)")
        earlier = _rundir.elapsed_seconds(out, int(state.step))

        def run_clock() -> float:
            # The earlier legs of a resumed run too, each up to its last checkpoint (steps
            # lost to a kill are counted when they are redone).
            return earlier + time.perf_counter() - started

        state, last_loss = _train(
            config,
            out,
            algo,
            state,
            targets,
            batch_key,
            read_accuracy,
            progress,
            run_clock,
        )

        desc = "test accuracy" if progress else None
        if previous is not None:  # a finished run extended: same init, kernel and test set
            init_accuracy = previous["init_test_accuracy"]
        else:
            (init_accuracy,) = evaluator.accuracies(init["images"], [init["labels"]], final, desc)
        (final_accuracy,) = evaluator.accuracies(
            state.support_images, [state.support_labels], final, desc
        )
        # Table 1's protocol: the mean and std over the checkpoints of lowest train loss.
        best = {
            step: evaluator.accuracies(images, [labels], final, desc)[0]
            for step, (images, labels) in _rundir.best_supports(out, config.keep_best).items()
        }
    _rundir.write_distilled(
        out, state.support_images, state.support_labels, init, config, start.preprocessing
    )
    summary = _summary(
        config,
        dataset,
        len(init["images"]),
        len(final),
        init_accuracy,
        final_accuracy,
        started,
        run_seconds=round(run_clock(), 1),
        steps=config.steps,
        final_loss=last_loss,
        best_checkpoints=sorted(best),
        best_checkpoints_test_accuracy=float(np.mean(list(best.values()))),
        best_checkpoints_test_accuracy_std=float(np.std(list(best.values()))),
    )
    _rundir.write_summary(out, summary)
    return summary


KERNEL_ROWS_CHUNK_ENTRIES = 2**18
"""Kernel entries per saved chunk of Label Solve's ``K(targets, support)``: a few minutes
of ConvNet blocks on a 2-core CPU, so a kill loses at most that much; small enough that
saving costs nothing against computing (1 MiB per chunk)."""


class _Targets(NamedTuple):
    """Label Solve's target rows, preprocessed a chunk at a time."""

    dataset: data.Dataset
    preprocessing: data.Preprocessing
    indices: np.ndarray

    def images(self, first: int, stop: int) -> np.ndarray:
        """The preprocessed images of target rows ``first .. stop - 1``."""
        return np.asarray(self.preprocessing.apply(self.dataset.x_train[self.indices[first:stop]]))


def _durable_kernel_rows(
    spec: compute.KernelSpec,
    targets: _Targets,
    support_images: Any,
    out: Path,
    executor: compute.Executor,
    saved: dict[int, np.ndarray],
    desc: str | None,
) -> np.ndarray:
    """``K(targets, support)`` by chunks of rows, each saved in ``out`` as it is done;
    chunks in ``saved`` (by first row) are reused, not computed again. Entries do not
    depend on how rows are chunked, so a resumed run gets the same matrix.

    Returns:
      ``(len(targets), len(support_images))`` NumPy array.
    """
    n_targets, n_support = len(targets.indices), len(support_images)
    rows_per_chunk = max(64, KERNEL_ROWS_CHUNK_ENTRIES // n_support // 64 * 64)
    chunks = []
    with tqdm(total=n_targets, desc=desc, disable=desc is None, unit="target") as bar:
        for first in range(0, n_targets, rows_per_chunk):
            stop = min(first + rows_per_chunk, n_targets)
            rows = saved.get(first)
            if rows is None or rows.shape != (stop - first, n_support):
                rows = compute.kernel_matrix(
                    spec,
                    targets.images(first, stop),
                    support_images,
                    executor=executor,
                    desc=None if desc is None else f"rows {first:,}-{stop - 1:,}",
                )
                _rundir.write_kernel_rows(out, first, rows)
            chunks.append(rows)
            bar.update(stop - first)
    return np.concatenate(chunks)


@_one_writer
def run_label_solve(
    config: LabelSolveConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    executor: compute.Executor | None = None,
    log: Log | None = None,
    budget_seconds: float | None = None,
) -> dict[str, Any]:
    """Runs Label Solve (eq. 2) on a class-balanced natural support set into ``out``.

    Solves for the least-norm labels of the support images that minimize the KRR loss on
    the whole train set (or ``config.target_size`` random train images), then evaluates
    the natural labels and the solved labels with KRR on the whole test set (or
    ``config.test_size`` images of it). ``K(targets, support)``, nearly all of the cost,
    is saved in ``out`` chunk by chunk as it is computed, so a killed run resumes with
    ``resume=True`` where it stopped, to the same labels.

    Args:
      config: the run's options; ``None`` fields are resolved for the dataset.
      out: run directory. Must not exist for a new run; must be a run of the same config
        for ``resume`` (only ``data_dir`` and ``test_size`` may change).
      resume: continue the run in ``out``; a finished run is evaluated again only if
        ``test_size`` changed.
      progress: show progress bars.
      executor: where the kernel blocks go (default: this process's devices).
      log, budget_seconds: as for :func:`run_kip`.

    Returns:
      The summary (also in ``summary.json``): ``init_test_accuracy`` (centred one-hot
      labels), ``test_accuracy`` (solved labels), ``kernel``, ``support_size``,
      ``target_size``, ``test_size``, ``seconds``, ``dataset``, ``algorithm``.

    Raises:
      DistillError: ``out`` exists (without ``resume``), is not a run or a run of another
        config (with ``resume``), another process is writing it, or a file of it is damaged
        (a finished run's ``distilled.npz`` or ``summary.json`` is written again instead).
      ValueError: bad options or dataset.

    Example:
      >>> run_label_solve(LabelSolveConfig(kernel="fc3"), "runs/ls")["test_accuracy"]  # doctest: +SKIP

    Paper: eq. (2), §3.1.
    """
    started = time.perf_counter()
    out = Path(out)
    _check_out(out, resume, config)
    dataset = _load(config, log)
    config = config.resolve(dataset)
    init_key, target_key = jax.random.split(jax.random.PRNGKey(config.seed))
    if resume:
        _check_resumable(out, config)
    num_test = final_test_size(config, dataset)
    stored, previous = _rundir.read_end(out) if resume else (None, None)
    if previous is not None and previous["test_size"] == num_test:
        return previous  # a finished run, asked for the same summary
    saved = _rundir.read_kernel_rows(out) if resume else {}
    spec = compute.KernelSpec(config.kernel)
    n_s = config.images_per_class * dataset.num_classes  # the class-balanced support
    with _executor_for(executor) as running:
        if log is not None or budget_seconds is not None:
            remaining = config.target_size - sum(len(rows) for rows in saved.values())
            done = f", {config.target_size - remaining} of them done" if saved else ""
            estimate = compute.kernel_estimate(
                f"Label Solve of {n_s} images on {config.target_size} targets ({config.kernel}"
                f"{done}), tested on {num_test} images",
                spec,
                dataset.image_shape,
                n_s,
                {"targets": (remaining + n_s) * n_s, "test": num_test * n_s},
                workers=running.workers_alive,
                log=log,
            )
            announce(
                estimate if resume else with_zca_fit(estimate, config, dataset),
                log,
                budget_seconds,
                "--target-size N (fewer targets), --test-size N, a cheaper --kernel, or more "
                "workers (--executor ray)",
            )
        start = _start(config, out, dataset, resume, init_key, log)
        support, final = start.init, start.test_subsets["final"]
        targets = _Targets(
            dataset,
            start.preprocessing,
            np.sort(
                np.asarray(
                    jax.random.choice(
                        target_key, len(dataset.x_train), (config.target_size,), replace=False
                    )
                )
            ),
        )
        if not resume:
            _rundir.create_run(
                out,
                lambda folder: _rundir.write_start(
                    folder, config, start.preprocessing, support, start.test_subsets
                ),
            )
        if stored is not None:  # finished: the solved labels are stored
            labels = stored["labels"]
        else:
            k_ss = compute.kernel_matrix(spec, support["images"], executor=running)
            k_ts = _durable_kernel_rows(
                spec,
                targets,
                support["images"],
                out,
                running,
                saved,
                "K(targets, support)" if progress else None,
            )
            target_labels = data.centered_one_hot(dataset.y_train[targets.indices], dataset.num_classes)
            labels = label_solve(k_ts, k_ss, np.asarray(target_labels), config.lambda0, config.rcond)
            _rundir.write_distilled(
                out, support["images"], labels, support, config, start.preprocessing
            )
        evaluator = _Evaluator(config, dataset, start.preprocessing, running)
        init_accuracy, final_accuracy = evaluator.accuracies(
            support["images"],
            [support["labels"], labels],
            final,
            "test accuracy" if progress else None,
        )
    summary = _summary(
        config,
        dataset,
        n_s,
        len(final),
        init_accuracy,
        final_accuracy,
        started,
        target_size=config.target_size,
    )
    _rundir.write_summary(out, summary)
    _rundir.remove_kernel_rows(out)
    return summary


def evaluate(
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    kernel: str | None = None,
    zca: bool | None = None,
    zca_regularization: float | None = None,
    progress: bool = True,
    executor: compute.Executor | None = None,
    log: Log | None = None,
    budget_seconds: float | None = None,
) -> dict[str, Any]:
    """KRR test accuracy of a distilled set on the test images of its run.

    Args:
      path: a run directory, its ``distilled.npz``, or a ``.npz`` of the paper's released
        layout.
      dataset: the dataset to test on; default: the run's. Required for the released
        layout, which does not record it; its preprocessing is then the paper's default
        for the dataset, fitted on the train set.
      data_dir: folder searched first for the dataset's files; default: the run's.
      kernel: architecture of the KRR kernel; default: the run's (the first of a
        sampling-KIP family), ``convnet`` for the released layout.
      zca, zca_regularization: the preprocessing of a released file, which does not record
        it (default: the paper's for the dataset; see :func:`resolve`).
      progress: show a progress bar.
      executor: where the kernel blocks go (default: this process's devices).
      log, budget_seconds: as for :func:`run_kip`.

    Returns:
      ``test_accuracy``, ``kernel``, ``dataset``, ``support_size``, ``test_size`` (the
      run's final test subset, so the numbers match its ``summary.json``; the whole test
      set for a released file or another dataset), and for a kipd run or its
      ``distilled.npz`` also ``init_test_accuracy`` (the natural init).

    Raises:
      DistillError: the path holds no distilled set.
      ValueError: no dataset for a released file, or images that do not fit the dataset.

    Example:
      >>> evaluate("runs/quickstart")["test_accuracy"]  # doctest: +SKIP
    """
    resolved = resolve(
        path,
        dataset=dataset,
        data_dir=data_dir,
        kernel=kernel,
        zca=zca,
        zca_regularization=zca_regularization,
    )
    if resolved.note is not None:
        _say(log, f"note: {resolved.note}")
    distilled = resolved.distilled
    test_images, test_labels = resolved.test_set()
    result = {
        "dataset": resolved.dataset.name,
        "kernel": resolved.kernel,
        "support_size": len(distilled.images),
        "test_size": len(test_labels),
    }
    images, labels = distilled.images, distilled.labels
    separate_init = distilled.init_images is not None and not np.array_equal(
        distilled.init_images, images
    )
    with _executor_for(executor) as running:
        if log is not None or budget_seconds is not None:
            sets = 2 if separate_init else 1
            n_s = len(images)
            estimate = compute.kernel_estimate(
                f"KRR of {sets} x {n_s} support images on {len(test_labels)} test images "
                f"({resolved.kernel})",
                compute.KernelSpec(resolved.kernel),
                resolved.dataset.image_shape,
                n_s,
                {"test": sets * (len(test_labels) + n_s) * n_s},
                workers=running.workers_alive,
                log=log,
            )
            estimate.announce(
                log, budget_seconds, "a cheaper --kernel, or more workers (--executor ray)"
            )
        accuracies = functools.partial(
            krr_test_accuracies,
            resolved.kernel,
            test_images=test_images,
            test_labels=test_labels,
            lambda0=resolved.lambda0,
            executor=running,
            desc="test accuracy" if progress else None,
        )
        if distilled.init_images is None:
            (result["test_accuracy"],) = accuracies(images, [labels])
        elif not separate_init:  # Label Solve: one kernel matrix
            result["test_accuracy"], result["init_test_accuracy"] = accuracies(
                images, [labels, distilled.init_labels]
            )
        else:
            (result["test_accuracy"],) = accuracies(images, [labels])
            (result["init_test_accuracy"],) = accuracies(
                distilled.init_images, [distilled.init_labels]
            )
    return result
