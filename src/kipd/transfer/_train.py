"""Training finite networks on a support set, with the paper's hyperparameter grid.

Appendix A: SGD with momentum 0.9 and cosine learning-rate decay; MSE or softmax
cross-entropy; learning rate ``c * eta_critical`` and L2 strength chosen on a grid by
validation accuracy, with early stopping on validation; full batch up to 100 examples,
batches of 100 above. Every grid setting trains from the same initialization.

Each setting and each step is one call of a compiled single-setting step, driven from
Python. On XLA:CPU a convolution inside a ``lax.fori_loop`` body ran ~40x slower than the
same convolution called directly (16.9 s against 0.39 s for 3 steps of a width-32
ConvNet on 100 images, jax 0.10.2), and ``jax.vmap`` over settings turns every
convolution into a grouped one, ~8x slower per setting; a dispatch costs well under a
millisecond.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

import kipd.kernels
from kipd import compute, data
from kipd.kernels import Layer
from kipd.transfer._ntk import critical_learning_rate

LR_FACTORS = (0.5, 1.0, 2.0, 4.0)
L2_STRENGTHS = (0.0, 1e-7, 1e-5, 1e-3, 1e-1)
LOSSES = ("mse", "xent")
NORMS = (None, "layer", "instance", "batch")
MOMENTUM = 0.9
FULL_BATCH_MAX = 100


def network(arch: str, num_classes: int, *, width: int = 128, norm: str | None = None) -> Layer:
    """The finite network of transfer: a named architecture in standard parameterization.

    Args:
      arch: ``"fc<n>"``, ``"convvec<n>"``, ``"convnet"`` or ``"myrtle5"``
        (``kipd.kernels.architecture``'s table).
      num_classes: readout units.
      width: hidden units / channels (paper: 1024; default 128 to run on a CPU).
      norm: ``None``, ``"layer"``, ``"instance"`` or ``"batch"`` after each hidden layer.

    Returns:
      A :class:`kipd.kernels.Layer`; ``W_std = sqrt(2)``, ``b_std = 0.1`` as the kernels.
    """
    if not (isinstance(width, int) and width >= 1):
        raise ValueError(f"width must be an integer >= 1, got {width!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of none, layer, instance, batch; got {norm!r}")
    return kipd.kernels.architecture(
        arch, width=width, parameterization="standard", out_width=num_classes, norm=norm
    )


class TrainState(NamedTuple):
    """Parameters and optimizer state of one grid setting (the step count is in the latter)."""

    params: Any
    opt_state: Any


class GridRow(NamedTuple):
    """One grid setting: its hyperparameters and its best validation reading.

    ``validation_accuracy`` is ``None`` (and ``step`` 0) when the setting diverged before
    its first reading; ``diverged`` says whether its loss ever became non-finite.
    """

    lr_factor: float
    l2: float
    learning_rate: float
    validation_accuracy: float | None
    step: int
    diverged: bool


@dataclasses.dataclass(frozen=True)
class GridResult:
    """What :func:`train` returns.

    Attributes:
      params: parameters of the chosen setting at its best validation step.
      choice: the chosen :class:`GridRow`.
      grid: every setting's row, in the order lr factor major, L2 minor.
      critical_learning_rate: ``eta_critical`` of the initial network.
    """

    params: Any
    choice: GridRow
    grid: tuple[GridRow, ...]
    critical_learning_rate: float


def optimizer(learning_rate: float | jax.Array, steps: int) -> optax.GradientTransformation:
    """SGD, momentum 0.9, learning rate decayed from ``learning_rate`` to 0 by a cosine."""
    return optax.sgd(optax.cosine_decay_schedule(learning_rate, steps), momentum=MOMENTUM)


def objective(
    apply: Callable,
    params: Any,
    x: jax.Array,
    targets: jax.Array,
    l2: jax.Array,
    loss: str,
) -> tuple[jax.Array, jax.Array]:
    """``(data loss + 0.5 * l2 * ||theta||^2, data loss)`` on one batch.

    ``mse``: ``0.5 * mean_i ||f(x_i) - y_i||^2`` (targets ``(n, C)`` label vectors);
    ``xent``: ``mean_i`` softmax cross-entropy (targets ``(n,)`` class ids). The L2 term
    covers every parameter (weights, biases, normalization scales and shifts).
    """
    out = apply(params, x)
    if loss == "mse":
        value = 0.5 * jnp.mean(jnp.sum(jnp.square(out - targets), axis=-1))
    else:
        value = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(out, targets))
    norm = sum(jnp.sum(jnp.square(p)) for p in jax.tree_util.tree_leaves(params))
    return value + 0.5 * l2 * norm, value


def train_targets(labels: np.ndarray, num_classes: int, loss: str) -> np.ndarray:
    """Label vectors ``(n, C)`` or class ids ``(n,)`` as the targets of ``loss``.

    MSE regresses on label vectors (class ids become centred one-hot vectors; learned
    labels are used as they are); cross-entropy takes class ids (the argmax of label
    vectors, as the paper does for learned labels).
    """
    labels = np.asarray(labels)
    if loss == "mse":
        if labels.ndim == 1:
            return np.asarray(data.centered_one_hot(labels, num_classes), np.float32)
        return labels.astype(np.float32)
    return (labels.argmax(-1) if labels.ndim == 2 else labels).astype(np.int32)


def _check_grid(name: str, values: Sequence[float], positive: bool) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    bad = [v for v in values if not math.isfinite(v) or (v <= 0 if positive else v < 0)]
    if not values or bad:
        need = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a non-empty list of {need} numbers, got {values}")
    return values


def accuracies(
    apply: Callable, params: Sequence[Any], x: np.ndarray, y: np.ndarray, batch_size: int = 500
) -> np.ndarray:
    """Accuracy of each of several parameter sets on ``(x, y)``.

    Args:
      apply: the network's ``apply(params, x)``.
      params: one parameter pytree per setting.
      x, y: ``(m, ...)`` inputs and ``(m,)`` class ids.
      batch_size: evaluated in batches of this many; a batch norm uses each batch's
        statistics.

    Returns:
      ``(len(params),)`` accuracies in [0, 1].
    """
    predict = _predict(apply)
    correct = np.zeros(len(params), np.int64)
    for start in range(0, len(x), batch_size):
        xb, yb = (
            jnp.asarray(x[start : start + batch_size]),
            np.asarray(y[start : start + batch_size]),
        )
        for i, p in enumerate(params):
            correct[i] += int((np.asarray(predict(p, xb)).argmax(-1) == yb).sum())
    return correct / len(x)


@functools.cache
def _predict(apply: Callable) -> Callable:
    return jax.jit(apply)


class _Grid(NamedTuple):
    """What every setting of :func:`train`'s grid shares: its compiled ``step``, the
    network's ``apply``, per-setting learning rates and L2 strengths, the support inputs
    and targets, the batch key, the validation set and the schedule."""

    step: Callable
    apply: Callable
    lrs: list[jax.Array]
    l2s: list[jax.Array]
    x: jax.Array
    targets: jax.Array
    batch_key: jax.Array
    x_val: np.ndarray
    y_val: np.ndarray
    steps: int
    eval_every: int

    def advance(self, state: TrainState, bad: jax.Array, setting: int, index: int) -> Any:
        """Step ``index`` of grid setting ``setting``: ``(state, bad)`` after it."""
        return self.step(
            state,
            bad,
            self.lrs[setting],
            self.l2s[setting],
            self.x,
            self.targets,
            self.batch_key,
            index,
        )


def train(
    net: Layer,
    images: np.ndarray,
    labels: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    key: jax.Array,
    loss: str = "mse",
    steps: int = 5000,
    lr_factors: Sequence[float] = LR_FACTORS,
    l2: Sequence[float] = L2_STRENGTHS,
    eval_every: int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    budget_seconds: float | None = None,
) -> GridResult:
    """Trains ``net`` on a support set over the (lr factor x L2) grid; picks by validation.

    Args:
      net: a finite network with a readout of C units (see :func:`network`).
      images: ``(n, H, W, C_in)`` support images (the space the network sees).
      labels: ``(n, C)`` label vectors (learned or centred one-hot) or ``(n,)`` class ids.
      x_val, y_val: validation images (same space) and their class ids.
      key: PRNG key: initialization (shared by every setting), NTK points, batches.
      loss: ``"mse"`` or ``"xent"`` (cross-entropy on the argmax of label vectors).
      steps: SGD steps (paper: 5000); the cosine decay reaches 0 at ``steps``.
      lr_factors: the factors c of ``lr = c * eta_critical``.
      l2: L2 strengths (the loss adds ``0.5 * l2 * ||theta||^2``).
      eval_every: steps between validation readings (default ``max(1, steps // 50)``;
        the last step is always read).
      batch_size: default full batch for ``n <= 100``, else 100 (random batches per step).
      progress: show a progress bar.
      log: where the ``estimate:`` line goes (timed from a few compiled steps);
        ``None`` measures nothing.
      budget_seconds: stop with :class:`kipd.compute.OverBudgetError` before training if
        estimated to take longer (``None``: no limit).

    Returns:
      A :class:`GridResult`: the setting with the best validation accuracy (early-stopped
      at its best reading; ties go to the earlier setting and step), its parameters, and
      every setting's row.

    Raises:
      ValueError: bad shapes or options, or every setting diverged.

    Paper: appendix A, "Details for neural network transfer".
    """
    factors, strengths, images, eval_every, batch_size = _checked(
        images, labels, x_val, loss, steps, lr_factors, l2, eval_every, batch_size
    )
    init_key, ntk_key, batch_key = jax.random.split(key, 3)
    _, params = net.init(init_key, images.shape[1:])
    num_classes = net.apply(params, jnp.asarray(images[:1])).shape[-1]
    x = jnp.asarray(images)
    eta = critical_learning_rate(net.apply, params, x, key=ntk_key)

    settings = [(c, s) for c in factors for s in strengths]
    grid = _Grid(
        step=_step_function(net.apply, loss, steps, len(images), batch_size),
        apply=net.apply,
        lrs=[jnp.float32(c * eta) for c, _ in settings],
        l2s=[jnp.float32(s) for _, s in settings],
        x=x,
        targets=jnp.asarray(train_targets(labels, num_classes, loss)),
        batch_key=batch_key,
        x_val=x_val,
        y_val=y_val,
        steps=steps,
        eval_every=eval_every,
    )
    states = [TrainState(params, optimizer(lr, steps).init(params)) for lr in grid.lrs]
    if log is not None or budget_seconds is not None:
        fix = "fewer --steps, --lr-factors or --l2 values, a smaller --width or --validation-size"
        _estimate(grid, states[0]).announce(log, budget_seconds, fix)
    best_params, best_acc, best_step, diverged = _run_grid(grid, states, progress)
    rows = tuple(
        GridRow(
            lr_factor=c,
            l2=s,
            learning_rate=float(grid.lrs[i]),
            validation_accuracy=float(best_acc[i]) if best_acc[i] >= 0 else None,
            step=int(best_step[i]),
            diverged=bool(diverged[i]),
        )
        for i, (c, s) in enumerate(settings)
    )
    if not (best_acc >= 0).any():
        raise ValueError(
            "every grid setting diverged before its first validation reading: try smaller "
            "--lr-factors or a smaller --eval-every"
        )
    chosen = int(np.argmax(best_acc))  # first maximum: the earlier setting wins ties
    return GridResult(best_params[chosen], rows[chosen], rows, eta)


def _checked(
    images, labels, x_val, loss, steps, lr_factors, l2, eval_every, batch_size
) -> tuple[tuple[float, ...], tuple[float, ...], np.ndarray, int, int]:
    """:func:`train`'s arguments checked: ``(lr factors, L2 strengths, images as float32,
    eval_every, batch_size)`` with the defaults filled in."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be 'mse' or 'xent', got {loss!r}")
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    factors = _check_grid("lr_factors", lr_factors, positive=True)
    strengths = _check_grid("l2", l2, positive=False)
    images = np.asarray(images, np.float32)
    n = len(images)
    if images.ndim != 4 or n == 0 or len(labels) != n:
        raise ValueError(
            f"images must be (n, H, W, C) with one label each; got images {images.shape} and "
            f"{len(labels)} labels"
        )
    if x_val is None or len(x_val) == 0:
        raise ValueError(
            "a validation set is needed to choose hyperparameters (never the test set)"
        )
    eval_every = max(1, steps // 50) if eval_every is None else eval_every
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    batch_size = min(n, FULL_BATCH_MAX) if batch_size is None else batch_size
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
    return factors, strengths, images, eval_every, batch_size


def _run_grid(
    grid: _Grid, states: list[TrainState], progress: bool
) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray]:
    """Every grid setting trained by ``step`` to the end of its schedule, read on the
    validation set every ``grid.eval_every`` steps: ``(best params, best accuracy (-1 where
    never read), step of the best reading, diverged)``, one entry per setting."""
    settings, steps = len(states), grid.steps
    best_params = [state.params for state in states]
    best_acc = np.full(settings, -1.0)
    best_step = np.zeros(settings, np.int64)
    diverged = np.zeros(settings, bool)
    bar = tqdm.tqdm(total=steps * settings, desc="transfer", disable=not progress, leave=False)
    done = 0
    while done < steps:
        num = min(grid.eval_every, steps - done)
        active = np.flatnonzero(~diverged)  # a non-finite loss stays so: no more steps
        bar.update(num * (settings - len(active)))
        for i in active:
            state, bad = states[i], jnp.zeros((), bool)
            for index in range(done, done + num):
                state, bad = grid.advance(state, bad, int(i), index)
            states[i] = state
            diverged[i] = bool(bad)
            bar.update(num)
        done += num
        acc = accuracies(grid.apply, [st.params for st in states], grid.x_val, grid.y_val)
        improved = (acc > best_acc) & ~diverged
        best_acc = np.where(improved, acc, best_acc)
        best_step = np.where(improved, done, best_step)
        for i in np.flatnonzero(improved):
            best_params[i] = states[i].params
    bar.close()
    return best_params, best_acc, best_step, diverged


def _estimate(grid: _Grid, state: TrainState) -> compute.Estimate:
    """The grid's cost from a few timed steps and one validation reading (compiled first;
    the compiled functions are those the grid then uses)."""

    def timed(fn: Callable[[], Any]) -> float:
        jax.block_until_ready(fn())  # compile
        started = time.perf_counter()
        jax.block_until_ready(fn())
        return time.perf_counter() - started

    bad = jnp.zeros((), bool)
    step_seconds = timed(lambda: grid.advance(state, bad, 0, 0))
    reading_seconds = timed(lambda: accuracies(grid.apply, [state.params], grid.x_val, grid.y_val))
    settings, steps = len(grid.lrs), grid.steps
    readings = -(-steps // grid.eval_every)
    return compute.Estimate(
        what=f"{settings} settings x {steps} SGD steps on {len(grid.x)} images, "
        f"{readings} validation readings of {len(grid.x_val)} images each",
        parts={
            "training": settings * steps * step_seconds,
            "validation": readings * reading_seconds * settings,
        },
        entries=settings * steps,
        unit="SGD steps",
    )


def _step_function(apply: Callable, loss: str, steps: int, n: int, batch_size: int) -> Callable:
    """One compiled SGD step of one setting: ``(state, bad, lr, l2, x, targets, batch_key,
    index) -> (state, bad | loss not finite)``; step ``index`` draws its batch from
    ``fold_in(batch_key, index)`` unless the batch is the whole support set."""
    full_batch = batch_size == n

    @jax.jit
    def step(state, bad, lr, l2, x, targets, batch_key, index):
        if full_batch:
            xb, yb = x, targets
        else:
            idx = jax.random.choice(
                jax.random.fold_in(batch_key, index), n, (batch_size,), replace=False
            )
            xb, yb = x[idx], targets[idx]
        opt = optimizer(lr, steps)
        grads, value = jax.grad(lambda p: objective(apply, p, xb, yb, l2, loss), has_aux=True)(
            state.params
        )
        updates, opt_state = opt.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state), bad | ~jnp.isfinite(value)

    return step
