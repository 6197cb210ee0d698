"""A durable KIP run: KIP on a dataset, into a run directory.

Its stages: check the destination -> load the data -> start or resume the run directory
(``_resume``) -> build the algorithm and restore its state -> train (checkpointing) ->
evaluate and write the distilled set. The files of a run directory and how they are
written and read back are ``_rundir``'s. Every kernel of a run, training and evaluation,
goes through one executor (``kipd.compute``), given by the caller; where blocks run is
never part of the run.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from kipd import compute, data
from kipd.distill import Kip, KipState, kip, kip_on_features, sample_target_batch
from kipd.runs import _resume, _rundir
from kipd.runs._config import KipConfig
from kipd.runs._context import Log, executor_for, load_dataset, say, say_start
from kipd.runs._errors import DistillError
from kipd.runs._estimate import (
    announce,
    final_test_size,
    kip_estimate,
    measures_init,
)
from kipd.runs._evaluate import Evaluator
from kipd.runs._features import (
    REFEREE_DRAWS,
    REFEREE_IMAGES,
    feature_fn,
    feature_kernel,
    referee_error,
)
from kipd.runs._summary import run_summary

Step = Callable[[KipState, jax.Array, jax.Array], tuple[KipState, dict[str, Any]]]
"""``step(state, train_images, train_labels) -> (state, metrics)``: one KIP update on the
step's target batch, with ``metrics["finite"]``: whether loss and support stayed finite."""


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
) -> tuple[Kip, tuple[jax.Array, jax.Array]]:
    """Stage: the KIP ``(init, update)`` pair and its targets (pixels when augmenting:
    augmentations act on pixels, and targets are preprocessed after, inside the step)."""
    augment: Callable[[jax.Array, jax.Array], jax.Array] | None
    if config.augment > 0:
        targets = jnp.asarray(dataset.x_train)

        def augment(key: jax.Array, pixels: jax.Array) -> jax.Array:
            return preprocessing.apply(data.augment(key, pixels, config.augment))

    else:
        targets, augment = preprocessing.apply(dataset.x_train), None
    labels = data.centered_one_hot(dataset.y_train, dataset.num_classes)
    if config.features is not None:
        algo = kip_on_features(
            feature_fn(config),
            optax.adam(learning_rate(config)),
            learn_labels=config.learn_labels,
            lambda0=config.lambda0,
            augment=augment,
            loss=config.loss,
        )
        return algo._replace(update=jax.jit(algo.update)), (targets, labels)
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


def _checked_step(config: KipConfig, algo: Kip, batch_key: jax.Array) -> Step:
    """The run's :data:`Step`: the target batch of step ``s`` drawn from ``(batch_key, s)``
    (so a resumed run repeats it), then ``algo.update``."""
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
        for leaf in jax.tree_util.tree_leaves(
            (new_state.support_images, new_state.support_labels, new_state.log_scale)
        ):
            finite &= bool(np.all(np.isfinite(np.asarray(leaf))))
        return new_state, {**metrics, "finite": finite}

    return step_fn


def _train(
    config: KipConfig,
    out: Path,
    step_fn: Step,
    state: KipState,
    targets: tuple[jax.Array, jax.Array],
    read_accuracy: Callable[[Any, Any], float],
    progress: bool,
    run_clock: Callable[[], float],
) -> tuple[KipState, float]:
    """Stage: KIP steps from ``state.step`` to ``config.steps``, logging and checkpointing.

    ``run_clock()`` is the run's wall time so far in seconds, earlier legs included; each
    step's record keeps it as ``elapsed``, so a resumed run knows what came before.

    Returns:
      The final state and the last step's train loss.
    """
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
                    f"the KIP loss or support set became {float(metrics['loss'])} at step {step}: "
                    "the "
                    f"run stopped, and its last good state is {_rundir.last_good_state(out)}. "
                    "Start a "
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


def _referee(
    config: KipConfig,
    dataset: data.Dataset,
    begun: _resume.Start,
    executor: compute.Executor,
    log: Log | None,
) -> float:
    """Stage: the feature kernel's error against the exact kernel it estimates (NNGP or
    NTK) on a few train images, said before the first step (a large error warns that the
    features do not stand for the exact kernel the run is judged by)."""
    images = begun.preprocessing.apply(dataset.x_train[:REFEREE_IMAGES])
    error = referee_error(config, images, executor=executor)
    say(
        log,
        f"feature kernel ({config.features}) vs the exact {config.eval_kernel} "
        f"{config.feature_kernel.upper()} on "
        f"{REFEREE_IMAGES} train images: relative error {error:.3f} (mean of {REFEREE_DRAWS} "
        "draws of the networks)",
    )
    return error


def _read_accuracy(evaluator: Evaluator, begun: _resume.Start, images: Any, labels: Any) -> float:
    """A reading during training: ``evaluator``'s accuracy on the readings' test subset."""
    return evaluator.accuracies(images, [labels], begun.test_subsets["readings"])[0]


def _first_record(
    config: KipConfig,
    dataset: data.Dataset,
    begun: _resume.Start,
    running: compute.Executor,
    log: Log | None,
    read_accuracy: Callable[[Any, Any], float],
) -> dict[str, Any]:
    """Stage: step 0's record of a new run: the initial set's reading and, on features,
    the referee's error (:func:`_referee`)."""
    init = begun.init
    record = {"step": 0, "test_accuracy": read_accuracy(init["images"], init["labels"])}
    if config.features is not None:
        record["feature_kernel_error"] = _referee(config, dataset, begun, running, log)
    return record


def _run_seconds(earlier: float, started: float) -> float:
    """The run's wall time so far: the earlier legs of a resumed run too, each up to its
    last checkpoint (steps lost to a kill are counted when they are redone)."""
    return earlier + time.perf_counter() - started


def _announce(
    config: KipConfig,
    dataset: data.Dataset,
    out: Path,
    resume: bool,
    running: compute.Executor,
    log: Log | None,
    budget_seconds: float | None,
) -> None:
    """Stage: where the run's blocks run and the ``estimate:`` line of the rest of the run
    (a new run's ZCA fit included), checked against the budget before anything is
    written."""
    say_start(log, running, config, dataset)
    estimate = kip_estimate(
        config,
        dataset.image_shape,
        dataset.num_classes,
        final_test_size(config, dataset),
        from_step=_rundir.latest_step(out) if resume else 0,
        workers=running.workers_alive,
        keep_pullbacks=hasattr(running, "keeps_pullbacks"),
        measure_init=measures_init(config, dataset, out if resume else None),
        log=log,
    )
    cheaper = (
        "fewer --steps, a smaller --target-batch-size, --test-size N for the final "
        "evaluation, a cheaper --kernel (fc3, convvec3), or more workers (--executor ray)"
    )
    announce(estimate, config, dataset, resume, log, budget_seconds, cheaper)


def _final_accuracies(
    config: KipConfig,
    out: Path,
    evaluator: Evaluator,
    init: dict[str, np.ndarray],
    state: KipState,
    previous: dict[str, Any] | None,
    final: np.ndarray,
    progress: bool,
    *,
    with_best: bool = True,
    init_key: str = "init_test_accuracy",
    measure_init: bool = True,
) -> tuple[float | None, float, dict[int, float]]:
    """Stage: the KRR test accuracy on the final subset of the initial set, the last
    step's and (Table 1's protocol, ``with_best``) each of the ``keep_best`` checkpoints of
    lowest train loss, by step. ``previous[init_key]``, where given, is the initial set's
    already: an extended finished run's own, or the ``--init-from`` run's final accuracy
    (:func:`_rundir.known_init_accuracy`); otherwise it is measured, or ``None`` where
    not ``measure_init`` (``--no-init-accuracy``)."""
    desc = f"test accuracy ({evaluator.name})" if progress else None
    init_accuracy: float | None = None
    if previous is not None and previous.get(init_key) is not None:
        init_accuracy = previous[init_key]
    elif measure_init:
        (init_accuracy,) = evaluator.accuracies(init["images"], [init["labels"]], final, desc)
    (final_accuracy,) = evaluator.accuracies(
        state.support_images, [state.support_labels], final, desc
    )
    # The last step is often among the best: its accuracy is measured once.
    best = {
        step: (
            final_accuracy
            if step == int(state.step)
            else evaluator.accuracies(images, [labels], final, desc)[0]
        )
        for step, (images, labels) in _rundir.best_supports(out, config.keep_best).items()
        if with_best
    }
    return init_accuracy, final_accuracy, best


def _evaluators(
    config: KipConfig, dataset: data.Dataset, begun: _resume.Start, executor: compute.Executor
) -> tuple[Evaluator, Evaluator]:
    """The run's exact evaluator and the one of its readings: the same, or for a run on
    features its fixed-draw feature kernel."""
    exact = Evaluator(config, dataset, begun.preprocessing, executor)
    if config.features is None:
        return exact, exact
    return exact, exact._replace(kernel=feature_kernel(config))


def _final_stage(
    config: KipConfig,
    out: Path,
    evaluators: tuple[Evaluator, Evaluator],
    init: dict[str, np.ndarray],
    state: KipState,
    previous: dict[str, Any] | None,
    final: np.ndarray,
    progress: bool,
) -> tuple[
    tuple[float | None, float, dict[int, float]], tuple[float | None, float, float | None] | None
]:
    """Stage: :func:`_final_accuracies` with the run's kernel (``evaluators``: the exact
    one and the one of its readings); for a run on features also the referee of
    :func:`_summary`: the exact kernel's accuracy of the initial and final set, and the
    feature kernel's start-of-run error (step 0's record). ``config.init_accuracy`` says
    whether the exact kernel measures the initial set; ``previous``: an extended finished
    run's summary, else the ``--init-from`` run's accuracy where it applies."""
    exact, evaluator = evaluators
    on_features = evaluator is not exact
    previous = previous or _rundir.known_init_accuracy(config, final)
    accuracies = _final_accuracies(
        config,
        out,
        evaluator,
        init,
        state,
        previous,
        final,
        progress,
        init_key="feature_init_test_accuracy" if on_features else "init_test_accuracy",
        measure_init=on_features or config.init_accuracy,
    )
    if not on_features:
        return accuracies, None
    init_exact, final_exact, _ = _final_accuracies(
        config,
        out,
        exact,
        init,
        state,
        previous,
        final,
        progress,
        with_best=False,
        measure_init=config.init_accuracy,
    )
    first = _rundir.read_metrics(out, 0)
    error = first[0].get("feature_kernel_error") if first else None
    return accuracies, (init_exact, final_exact, error)


def _summary(
    config: KipConfig,
    dataset: data.Dataset,
    test_size: int,
    init: dict[str, np.ndarray],
    accuracies: tuple[float | None, float, dict[int, float]],
    last_loss: float,
    started: float,
    run_seconds: float,
    referee: tuple[float | None, float, float | None] | None = None,
) -> dict[str, Any]:
    """Stage: the run's summary, from :func:`_final_accuracies`; ``run_seconds``: the wall
    time of every leg of the run. A run on features gives ``referee``: the exact kernel's
    accuracy of the initial and final set and the feature kernel's start-of-run error;
    ``test_accuracy`` is then the exact kernel's (what ``kipd evaluate`` says), and the
    feature kernel's accuracies are the ``feature_`` entries."""
    init_accuracy, final_accuracy, best = accuracies
    best_name = "best_checkpoints_test_accuracy"
    features: dict[str, Any] = {}
    if referee is not None:
        best_name = "best_checkpoints_feature_test_accuracy"
        features = {
            "features": config.features,
            "feature_kernel": config.feature_kernel,
            "loss": config.loss,
            "feature_kernel_error": referee[2],
            "feature_init_test_accuracy": init_accuracy,
            "feature_test_accuracy": final_accuracy,
        }
        init_accuracy, final_accuracy = referee[0], referee[1]
    return run_summary(
        config,
        dataset,
        len(init["images"]),
        test_size,
        init_accuracy,
        final_accuracy,
        started,
        run_seconds=round(run_seconds, 1),
        steps=config.steps,
        final_loss=last_loss,
        best_checkpoints=sorted(best),
        **{
            best_name: float(np.mean(list(best.values()))),
            f"{best_name}_std": float(np.std(list(best.values()))),
        },
        **features,
    )


@_resume.one_writer
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
    _resume.check_destination(out, resume, config)
    dataset = load_dataset(config, log)
    config = config.resolve(dataset)
    _check_target_sampling(config, dataset)
    init_key, kip_key, batch_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    if resume:
        _resume.check_same_config(out, config)

    with executor_for(executor) as running:
        if log is not None or budget_seconds is not None:
            _announce(config, dataset, out, resume, running, log, budget_seconds)
        begun = _resume.start(config, out, dataset, resume, init_key, log)
        init, final = begun.init, begun.test_subsets["final"]
        exact, evaluator = _evaluators(config, dataset, begun, running)
        read_accuracy = functools.partial(_read_accuracy, evaluator, begun)
        if not resume:
            first = functools.partial(
                _first_record, config, dataset, begun, running, log, read_accuracy
            )
            _resume.create(out, config, begun, first)
        algo, targets = _kip_algorithm(config, dataset, begun.preprocessing, running)
        template = algo.init(jnp.asarray(init["images"]), jnp.asarray(init["labels"]), kip_key)
        state = _resume.restored_state(out, template, config.steps)
        previous = _resume.kept_end(out, len(final)).summary  # None: not finished, or rebuilt
        if previous is not None and int(state.step) == config.steps:
            return previous  # a finished run
        say(log, "the first KIP step compiles the step function (a minute or so for convnet)")
        run_clock = functools.partial(
            _run_seconds, _rundir.elapsed_seconds(out, int(state.step)), started
        )
        step_fn = _checked_step(config, algo, batch_key)
        state, last_loss = _train(
            config, out, step_fn, state, targets, read_accuracy, progress, run_clock
        )
        accuracies, referee = _final_stage(
            config, out, (exact, evaluator), init, state, previous, final, progress
        )
    _rundir.write_distilled(
        out, state.support_images, state.support_labels, init, config, begun.preprocessing
    )
    summary = _summary(
        config, dataset, len(final), init, accuracies, last_loss, started, run_clock(), referee
    )
    _rundir.write_summary(out, summary)
    return summary
