"""The empirical NTK of a finite network and the critical learning rate (Lee et al. 2019)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ApplyFn = Callable[[Any, jax.Array], jax.Array]


def empirical_ntk(
    apply: ApplyFn, params: Any, x1: jax.Array, x2: jax.Array | None = None
) -> jax.Array:
    """The empirical NTK ``sum_j df(x1)/dtheta_j df(x2)/dtheta_j``, averaged over outputs.

    Args:
      apply: ``apply(params, x) -> (n, C)``, e.g. ``kipd.kernels.architecture(...).apply``.
      params: the network's parameters (any pytree of arrays).
      x1: ``(n1, ...)`` inputs.
      x2: ``(n2, ...)`` inputs; ``None`` means ``x1``.

    Returns:
      ``(n1, n2)``: ``(1/C) sum_a sum_j df_a(x1)/dtheta_j df_a(x2)/dtheta_j``, the mean over
      the C outputs of each output's NTK (its infinite-width limit, in NTK parameterization,
      is the kernel of ``kipd.kernels.make``). A network with batch statistics (batch norm)
      is differentiated as a function of the whole batch ``x1`` (and ``x2``).

    Example:
      >>> net = kipd.kernels.architecture("fc1", width=512, out_width=10)  # doctest: +SKIP
      >>> _, params = net.init(jax.random.PRNGKey(0), (784,))              # doctest: +SKIP
      >>> empirical_ntk(net.apply, params, x).shape                        # doctest: +SKIP
      (8, 8)

    Paper: appendix A (the NTK that sets the critical learning rate).
    """
    num_outputs = jax.eval_shape(apply, params, x1[:1]).shape[-1]
    total = 0.0
    for output in range(num_outputs):  # one output at a time bounds the Jacobian's memory
        total = total + _one_output_ntk(
            apply, x2 is None, params, x1, x1 if x2 is None else x2, output
        )
    return total / num_outputs


@functools.partial(jax.jit, static_argnums=(0, 1))
def _one_output_ntk(apply, same, params, x1, x2, output):
    def jacobian(x):
        jac = jax.jacrev(lambda p: apply(p, x)[:, output])(params)
        leaves = jax.tree_util.tree_leaves(jac)
        return jnp.concatenate([j.reshape(x.shape[0], -1) for j in leaves], axis=1)

    j1 = jacobian(x1)
    j2 = j1 if same else jacobian(x2)
    return j1 @ j2.T


@functools.partial(jax.jit, static_argnums=0)
def _power_step(apply, params, x, v):
    """One power-iteration step on ``J J^T``: ``(J J^T v / ||J J^T v||, ||J J^T v||)``."""
    f = lambda p: apply(p, x)  # noqa: E731
    _, pullback = jax.vjp(f, params)
    (tangent,) = pullback(v)
    _, w = jax.jvp(f, (params,), (tangent,))
    norm = jnp.sqrt(jnp.sum(jnp.square(w)))
    return w / norm, norm


def _power_iteration(apply, params, x, v, iterations):
    # Driven from Python, not lax.fori_loop: XLA:CPU runs convolutions inside loop bodies
    # far slower than outside (see kipd.transfer._train).
    norm = jnp.zeros(())
    for _ in range(iterations):
        v, norm = _power_step(apply, params, x, v)
    return norm


def critical_learning_rate(
    apply: ApplyFn,
    params: Any,
    x: jax.Array,
    *,
    max_points: int = 64,
    key: jax.Array | None = None,
    method: str = "power",
    iterations: int = 30,
) -> float:
    """The critical learning rate of gradient descent on ``0.5 * mean_i ||f(x_i) - y_i||^2``.

    The loss is a mean over the examples of a batch, so in the linearized regime gradient
    descent moves the outputs by ``-eta * (Theta / n) (f - y)``; ``Theta / m`` on
    ``m = min(max_points, n)`` random points estimates ``Theta / n``. Then:

    - ``method="eigh"``: ``eta_critical = 2 / (lambda_min + lambda_max)`` of ``Theta / m``
      with ``Theta`` the output-averaged :func:`empirical_ntk`, by a full
      eigendecomposition (exact; needs the ``m x params`` Jacobian of each output, slow
      for wide convolutional networks on a CPU).
    - ``method="power"`` (default): ``eta_critical = 2 / lambda_max``, the paper's
      estimate, with ``lambda_max`` of the full ``(m C) x (m C)`` empirical NTK ``J J^T / m``
      (the Gauss-Newton matrix of the loss, whose top eigenvalue sets the stability of
      gradient descent) by ``iterations`` steps of power iteration with VJP/JVP products:
      a few gradient evaluations, no Jacobian. At infinite width both methods agree up to
      ``lambda_min``, which is usually ~0 (dropping it makes eta at most that much larger).

    Args:
      apply, params: the network (see :func:`empirical_ntk`).
      x: ``(n, ...)`` training inputs.
      max_points: at most this many points (paper: 64).
      key: PRNG key choosing the points when ``n > max_points`` (default: the first
        ones) and starting the power iteration.
      method: ``"power"`` or ``"eigh"``.
      iterations: power-iteration steps.

    Returns:
      ``eta_critical`` as a Python float.

    Paper: appendix A, after Lee et al. [2019, 2020].
    """
    if method not in ("power", "eigh"):
        raise ValueError(f"method must be 'power' or 'eigh', got {method!r}")
    n = x.shape[0]
    if n < 1:
        raise ValueError("critical_learning_rate needs at least one input")
    key = jax.random.PRNGKey(0) if key is None else key
    choice_key, start_key = jax.random.split(key)
    m = min(max_points, n)
    if m < n:
        x = x[jax.random.choice(choice_key, n, (m,), replace=False)]
    if method == "power":
        v = jax.random.normal(start_key, jax.eval_shape(apply, params, x).shape)
        v = v / jnp.sqrt(jnp.sum(jnp.square(v)))
        top = float(_power_iteration(apply, params, x, v, iterations)) / m
    else:
        theta = np.asarray(empirical_ntk(apply, params, x), dtype=np.float64) / m
        eigenvalues = np.linalg.eigvalsh(0.5 * (theta + theta.T))
        top = float(eigenvalues[-1] + max(eigenvalues[0], 0.0))
    if not np.isfinite(top) or top <= 0:
        raise ValueError(
            f"the empirical NTK has no positive eigenvalue ({top:.3g}): the network output "
            "does not depend on its parameters at these inputs"
        )
    return 2.0 / top
