"""KIP (Kernel Inducing Points) as an optax-style ``(init, update)`` pair.

Each step draws a target batch, computes ``K_ss`` and ``K_ts`` for one kernel of the
family, and takes an optimizer step on the support images (and labels, with label
learning) along the gradient of the KRR loss of eq. (1). With several kernels each step
samples one of them with the state's key ("sampling KIP", paper §3.2). The kernels of
``kipd.kernels`` bound their own memory (they compute pairs in blocks, rematerialized in
the backward pass), so a 5000-image target batch is one call. With an executor the
same step runs as the block plan of paper §2.1 (``kipd.compute``), on this machine's
devices or a Ray cluster, with the same result. ``kip_on_features`` takes the same step
on a random-feature kernel (RFAD), with eq. (1) or RFAD's Platt-scaled cross-entropy, and
fresh or fixed random networks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from kipd import compute
from kipd.compute import KernelSpec
from kipd.distill._krr import (
    LAMBDA0,
    accuracy,
    krr_loss,
    krr_loss_features,
    krr_platt_loss_features,
)

KernelFn = Callable[[jax.Array, jax.Array], jax.Array]
"""``kernel(x1, x2) -> K``: ``x1`` ``(n1, H, W, C)``, ``x2`` ``(n2, H, W, C)``, ``K``
``(n1, n2)``."""

Augment = Callable[[jax.Array, jax.Array], jax.Array]
"""``augment(key, images) -> images``: a pure, jit-able map of a target batch."""


class KipState(NamedTuple):
    """Everything KIP carries from step to step; one pytree, saved and restored whole.

    Attributes:
      support_images: ``(n_s, H, W, C)`` support images (preprocessed space).
      support_labels: ``(n_s, C)`` support labels (learned with label learning,
        else the initial mean-centred one-hot labels).
      opt_state: the optax optimizer state of the learned parameters.
      step: int32 scalar, the number of updates taken.
      key: PRNG key for kernel sampling and augmentation; split at every step.
      log_scale: scalar, the log of the learned Platt scale of
        :func:`kip_on_features` with ``loss="platt"`` (dtype of the support images,
        starts at 0, learned by the optimizer with the images); else ``None``.
      network_key: PRNG key of the fixed random networks of :func:`kip_on_features`
        with ``resample_networks=False``; else ``None``.

    The last two default to ``None``, which is no pytree leaf: the states of :func:`kip`
    and of the default :func:`kip_on_features` have the leaves they always had, so their
    checkpoints (``kipd.runs``) restore unchanged.
    """

    support_images: jax.Array
    support_labels: jax.Array
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array
    log_scale: jax.Array | None = None
    network_key: jax.Array | None = None


class Kip(NamedTuple):
    """The KIP algorithm as a pair of pure functions (optax's shape).

    Attributes:
      init: ``init(support_images, support_labels, key) -> KipState``.
      update: ``update(state, target_images, target_labels) -> (state, metrics)`` with
        ``target_images`` ``(n_t, H, W, C)``, ``target_labels`` ``(n_t, C)`` mean-centred
        one-hot, and ``metrics`` a dict of scalars: ``loss`` and ``accuracy`` of the
        support set *before* the step on this target batch, and ``kernel``, the index of
        the kernel used.
    """

    init: Callable[[jax.Array, jax.Array, jax.Array], KipState]
    update: Callable[[KipState, jax.Array, jax.Array], tuple[KipState, dict[str, jax.Array]]]


def kip(
    kernels: KernelFn | KernelSpec | Sequence[KernelFn | KernelSpec],
    optimizer: optax.GradientTransformation,
    *,
    learn_labels: bool = True,
    lambda0: float = LAMBDA0,
    augment: Augment | None = None,
    executor: compute.Executor | None = None,
    block_size: int | None = None,
) -> Kip:
    """The KIP algorithm over a kernel (or a family of kernels, for sampling KIP).

    Args:
      kernels: ``kernel(x1, x2) -> (n1, n2)`` or a :class:`kipd.compute.KernelSpec`, or
        a sequence of them; with several, each step uses one drawn uniformly with the
        state's key. With an ``executor`` they must be specs.
      optimizer: optax transformation applied to the support images (and labels); the
        paper uses ``optax.adam(0.01)`` for grayscale and ``optax.adam(0.04)`` for RGB.
      learn_labels: also optimize the support labels (paper, appendix A).
      lambda0: relative ridge of eq. (1), see :func:`ridge`.
      augment: applied to each target batch with a fresh key, or ``None``.
      executor: ``None``: ``update`` is one pure, jit-able function (autodiff of the whole
        loss). An executor: ``update`` runs the block plan of paper §2.1 on it (forward
        blocks, loss and dL/dK, VJP blocks; :func:`kipd.compute.value_and_grad`), with
        the same result; it calls the executor, so it is not jit-able itself.
      block_size: block side ``B`` of the plan (default per kernel, see
        :func:`kipd.compute.default_block_size`); only with an ``executor``.

    Returns:
      A :class:`Kip` pair ``(init, update)``.

    Example:
      >>> import kipd.kernels, optax
      >>> from functools import partial
      >>> algo = kip(partial(kipd.kernels.make("fc1"), get="ntk"), optax.adam(0.01))
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (12, 4, 4, 1))
      >>> y = jnp.eye(2)[jnp.arange(12) % 2] - 0.5
      >>> state = algo.init(x[:2], y[:2], jax.random.PRNGKey(1))
      >>> state, metrics = jax.jit(algo.update)(state, x[2:], y[2:])
      >>> int(state.step)
      1

    Paper: eq. (1), §2, §2.1 (block plan), §3.2 (sampling KIP), appendix A (optimizer,
    label learning).
    """
    kernels = (kernels,) if callable(kernels) or isinstance(kernels, KernelSpec) else tuple(kernels)
    if not kernels:
        raise ValueError("kip needs at least one kernel")
    if executor is not None and not all(isinstance(k, KernelSpec) for k in kernels):
        raise ValueError("with an executor, kernels must be kipd.compute.KernelSpec (names)")
    learned, init, prepare, finish = _steps(optimizer, learn_labels, augment, len(kernels))

    if executor is not None:
        return Kip(
            init, _blocked_update(kernels, learned, prepare, finish, executor, block_size, lambda0)
        )

    kernel_fns = [k.build() if isinstance(k, KernelSpec) else k for k in kernels]

    def update(state: KipState, target_images: jax.Array, target_labels: jax.Array):
        key, index, target_images = prepare(state, target_images)

        def loss_fn(kernel, params):
            images = params["images"]
            labels = params.get("labels", state.support_labels)
            k_ss = kernel(images, images)
            k_ts = kernel(target_images, images)
            return krr_loss(k_ts, k_ss, labels, target_labels, lambda0)

        branches = [
            jax.value_and_grad(functools.partial(loss_fn, kernel), has_aux=True)
            for kernel in kernel_fns
        ]
        params = learned(state.support_images, state.support_labels)
        (loss, predictions), grads = jax.lax.switch(index, branches, params)
        return finish(state, key, index, loss, predictions, grads, target_labels)

    return Kip(init, update)


class _Steps(NamedTuple):
    learned: Callable[..., dict[str, jax.Array]]
    init: Callable[[jax.Array, jax.Array, jax.Array], KipState]
    prepare: Callable[..., tuple[jax.Array, jax.Array, jax.Array]]
    finish: Callable[..., tuple[KipState, dict[str, jax.Array]]]


def _steps(
    optimizer: optax.GradientTransformation,
    learn_labels: bool,
    augment: Augment | None,
    num_kernels: int,
    learn_scale: bool = False,
) -> _Steps:
    """What every KIP update shares, whatever gives its loss (kernels, blocks, features):
    the learned parameters, ``init``, the step's keys and targets, and the optimizer step
    with the metrics. ``learn_scale``: one more learned parameter, ``"log_scale"`` (the
    state's ``log_scale``, RFAD's Platt scale, starting at 0)."""

    def learned(
        images: jax.Array, labels: jax.Array, log_scale: jax.Array | None = None
    ) -> dict[str, jax.Array]:
        params = {"images": images, "labels": labels} if learn_labels else {"images": images}
        if learn_scale:
            if log_scale is None:
                raise ValueError(
                    "this KIP learns a Platt scale but the state has none (log_scale is None): "
                    "use a state made by this algorithm's init"
                )
            params["log_scale"] = log_scale
        return params

    def init(support_images: jax.Array, support_labels: jax.Array, key: jax.Array) -> KipState:
        support_images, support_labels = jnp.asarray(support_images), jnp.asarray(support_labels)
        log_scale = jnp.zeros((), support_images.dtype) if learn_scale else None
        opt_state = optimizer.init(learned(support_images, support_labels, log_scale))
        return KipState(
            support_images, support_labels, opt_state, jnp.zeros((), jnp.int32), key, log_scale
        )

    def prepare(state: KipState, target_images: jax.Array):
        """The step's keys, kernel index and (augmented) targets."""
        key, kernel_key, augment_key = jax.random.split(state.key, 3)
        if augment is not None:
            target_images = augment(augment_key, target_images)
        return key, jax.random.randint(kernel_key, (), 0, num_kernels), target_images

    def finish(state: KipState, key, index, loss, predictions, grads, target_labels):
        """The optimizer step and the metrics, from the loss and its gradient."""
        params = learned(state.support_images, state.support_labels, state.log_scale)
        updates, opt_state = optimizer.update(grads, state.opt_state, params)
        params = optax.apply_updates(params, updates)
        new_state = state._replace(
            support_images=params["images"],
            support_labels=params.get("labels", state.support_labels),
            opt_state=opt_state,
            step=state.step + 1,
            key=key,
            log_scale=params.get("log_scale", state.log_scale),
        )
        metrics = {
            "loss": loss,
            "accuracy": accuracy(predictions, jnp.argmax(target_labels, axis=-1)),
            "kernel": index,
        }
        return new_state, metrics

    return _Steps(learned, init, prepare, finish)


_NETWORK_STREAM = 0x6E6574
"""Folded into a step's key to draw that step's random networks, apart from the streams
``prepare`` splits off (the next state's key, the kernel index, augmentation)."""

_FEATURE_LOSSES = ("mse", "platt")
"""The losses of :func:`kip_on_features`."""


def kip_on_features(
    features: Callable[[jax.Array, jax.Array], jax.Array],
    optimizer: optax.GradientTransformation,
    *,
    learn_labels: bool = True,
    lambda0: float = LAMBDA0,
    augment: Augment | None = None,
    loss: str = "mse",
    resample_networks: bool = True,
) -> Kip:
    """KIP on a random-feature kernel ``K = Phi Phi^T``, as RFAD does it (Loo et al., NeurIPS
    2022, "Efficient dataset distillation using random feature approximation"): a step
    costs forward passes of the support and target images (linear in their number) and a
    ``min(n_s, p)``-sized solve, never ``K_ts``.

    Args:
      features: ``features(key, images) -> (n, p)``, e.g.
        :func:`kipd.kernels.random_features`; the key draws the networks.
      optimizer, learn_labels, lambda0, augment: as :func:`kip`.
      loss: ``"mse"``: the loss of eq. (1), half the mean squared error of the KRR
        predictions (:func:`krr_loss_features`). ``"platt"``: RFAD's Platt-scaled
        cross-entropy (:func:`krr_platt_loss_features`), the softmax cross-entropy of
        ``exp(log_scale)`` times the KRR predictions against the targets' classes, in
        nats per target image. ``log_scale`` is the state's ``log_scale``, starting at 0
        (scale 1) as in RFAD, and one more learned parameter, ``"log_scale"`` in the
        dict of learned parameters (next to ``"images"`` and ``"labels"``), stepped by
        ``optimizer``. RFAD gives it a larger learning rate (1e-2) than the images; a
        per-parameter optimizer does that here, e.g. ``optax.multi_transform`` with
        labels ``lambda p: {k: "scale" if k == "log_scale" else "rest" for k in p}``.
      resample_networks: ``True``: every step draws fresh networks from its key (RFAD's
        setting, ``fold_in`` of the state's key). ``False``: the networks are drawn once
        from the key given to ``init`` (those of the first step with ``True``), kept in
        the state's ``network_key``, and the same at every step: KIP on one fixed finite
        random-feature kernel.

    Returns:
      A :class:`Kip` pair over the same :class:`KipState` as :func:`kip` (the metrics'
      ``kernel`` is always 0, ``loss`` is the chosen loss, ``accuracy`` that of the raw
      KRR predictions with either loss); ``update`` is pure and jit-able. With the
      defaults the state has the leaves of :func:`kip`'s; ``"platt"`` adds ``log_scale``
      (and its optimizer state), ``resample_networks=False`` adds ``network_key``.

    Raises:
      ValueError: ``loss`` is not one of ``"mse"``, ``"platt"``.

    Example:
      >>> import kipd.kernels, optax
      >>> features = kipd.kernels.random_features("fc1", width=16, networks=2)
      >>> algo = kip_on_features(features, optax.adam(0.01))
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (12, 4, 4, 1))
      >>> y = jnp.eye(2)[jnp.arange(12) % 2] - 0.5
      >>> state = algo.init(x[:2], y[:2], jax.random.PRNGKey(1))
      >>> state, metrics = jax.jit(algo.update)(state, x[2:], y[2:])
      >>> int(state.step)
      1
    """
    if loss not in _FEATURE_LOSSES:
        raise ValueError(
            f"loss must be one of {', '.join(map(repr, _FEATURE_LOSSES))}, got {loss!r}"
        )
    platt = loss == "platt"
    learned, shared_init, prepare, finish = _steps(
        optimizer, learn_labels, augment, 1, learn_scale=platt
    )

    def init(support_images: jax.Array, support_labels: jax.Array, key: jax.Array) -> KipState:
        state = shared_init(support_images, support_labels, key)
        if resample_networks:
            return state
        return state._replace(network_key=jax.random.fold_in(key, _NETWORK_STREAM))

    def update(state: KipState, target_images: jax.Array, target_labels: jax.Array):
        key, index, target_images = prepare(state, target_images)
        if resample_networks:
            network_key = jax.random.fold_in(state.key, _NETWORK_STREAM)
        elif state.network_key is None:
            raise ValueError(
                "resample_networks=False needs the state's network_key: use a state made by "
                "this algorithm's init"
            )
        else:
            network_key = state.network_key

        def loss_fn(params):
            phi_s = features(network_key, params["images"])
            phi_t = features(network_key, target_images)
            labels = params.get("labels", state.support_labels)
            if platt:
                return krr_platt_loss_features(
                    phi_t, phi_s, labels, target_labels, params["log_scale"], lambda0
                )
            return krr_loss_features(phi_t, phi_s, labels, target_labels, lambda0)

        params = learned(state.support_images, state.support_labels, state.log_scale)
        (value, predictions), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return finish(state, key, index, value, predictions, grads, target_labels)

    return Kip(init, update)


def _blocked_update(kernels, learned, prepare, finish, executor, block_size, lambda0):
    """KIP's update through the block plan: jitted before and after, blocks in between."""
    prepare, finish = jax.jit(prepare), jax.jit(finish)

    def kernel_loss(k_ss, k_ts, support_labels, target_labels):
        return krr_loss(k_ts, k_ss, support_labels, target_labels, lambda0)

    def update(state: KipState, target_images: jax.Array, target_labels: jax.Array):
        key, index, target_images = prepare(state, target_images)
        (loss, predictions), (d_images, d_labels, _) = compute.value_and_grad(
            kernel_loss,
            kernels[int(index)],
            state.support_images,
            target_images,
            state.support_labels,
            target_labels,
            executor=executor,
            block_size=block_size,
        )
        grads = learned(d_images, d_labels)
        return finish(state, key, index, loss, predictions, grads, target_labels)

    return update


def sample_target_batch(
    key: jax.Array,
    step: jax.Array | int,
    images: jax.Array,
    labels: jax.Array,
    batch_size: int,
    balanced: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """The target batch of a step: ``batch_size`` rows drawn without replacement.

    A function of ``(key, step)`` only, so a resumed run draws the same batches as an
    uninterrupted one.

    Args:
      key: PRNG key of the run's target sampling (fixed over the run).
      step: the step number the batch is for.
      images: ``(N, H, W, C)`` target set.
      labels: ``(N, C)`` target labels; with ``balanced`` each row's class is its argmax.
      batch_size: rows to draw, at most ``N``.
      balanced: draw ``batch_size // C`` rows of every class and one more row of each of
        ``batch_size % C`` classes chosen at random, instead of any ``batch_size`` rows.
        Every class needs ``ceil(batch_size / C)`` rows (the caller checks).

    Returns:
      ``(images[idx], labels[idx])`` of ``batch_size`` rows.
    """
    key = jax.random.fold_in(key, step)
    if balanced:
        idx = _class_balanced_rows(key, jnp.argmax(labels, axis=-1), labels.shape[-1], batch_size)
    else:
        idx = jax.random.choice(key, images.shape[0], (batch_size,), replace=False)
    return images[idx], labels[idx]


def _class_balanced_rows(
    key: jax.Array, classes: jax.Array, num_classes: int, batch_size: int
) -> jax.Array:
    """Row indices of a class-balanced draw without replacement (``sample_target_batch``)."""
    per_class, extra = divmod(batch_size, num_classes)
    score_key, extra_key = jax.random.split(key)
    # The highest uniform scores among a class's rows are a uniform draw without
    # replacement from that class; other rows score -1 and are never among them.
    scores = jax.random.uniform(score_key, classes.shape)
    members = classes[None, :] == jnp.arange(num_classes)[:, None]
    _, chosen = jax.lax.top_k(jnp.where(members, scores, -1.0), per_class + (extra > 0))
    rows = chosen[:, :per_class].reshape(-1)
    if extra:
        lucky = jax.random.permutation(extra_key, num_classes)[:extra]
        rows = jnp.concatenate([rows, chosen[lucky, per_class]])
    return rows
