"""Transfer of a (distilled) support set to a finite network: train, select, test."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from kipd import data, runs
from kipd.transfer._standard import EPOCHS, NETWORK_SEEDS, standard_protocol
from kipd.transfer._train import (
    L2_STRENGTHS,
    LR_FACTORS,
    GridRow,
    accuracies,
    network,
    train,
)


@dataclasses.dataclass(frozen=True)
class TransferResult:
    """The outcome of :func:`transfer`.

    Attributes:
      test_accuracy: test accuracy of the chosen setting at its early-stopping step.
      validation_accuracy: that setting's best validation accuracy (what chose it);
        ``None`` if every setting diverged.
      lr_factor, l2, learning_rate, step: the chosen setting (``learning_rate`` is
        ``lr_factor * critical_learning_rate``; ``step`` the early-stopping step).
      critical_learning_rate: ``eta_critical`` of the initial network.
      grid: every setting's :class:`GridRow` (lr factor major, L2 minor).
      settings: arch, width, norm, loss, steps, support_size, validation_size, test_size.
    """

    test_accuracy: float
    validation_accuracy: float | None
    lr_factor: float
    l2: float
    learning_rate: float
    step: int
    critical_learning_rate: float
    grid: tuple[GridRow, ...]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the fields, ``grid`` as a list of dicts, settings merged in."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["grid"] = [row._asdict() for row in self.grid]
        out.update(out.pop("settings"))
        return out


def transfer(
    images: np.ndarray,
    labels: np.ndarray,
    dataset: data.Dataset,
    *,
    preprocessing: data.Preprocessing | None = None,
    arch: str = "convnet",
    width: int = 128,
    norm: str | None = None,
    loss: str = "mse",
    steps: int = 5000,
    lr_factors: Sequence[float] = LR_FACTORS,
    l2: Sequence[float] = L2_STRENGTHS,
    eval_every: int | None = None,
    key: jax.Array | int = 0,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    budget_seconds: float | None = None,
) -> TransferResult:
    """Trains a finite network on a support set; reports the test accuracy of the setting
    chosen on the validation split.

    Args:
      images: ``(n, H, W, C)`` support images in preprocessed space.
      labels: ``(n, classes)`` label vectors (learned or centred one-hot) or ``(n,)`` ids.
      dataset: the dataset, with a validation split (``kipd.data.split_validation``); its
        validation and test images are pixels, mapped by ``preprocessing``.
      preprocessing: the support set's preprocessing; ``None`` if the dataset's arrays are
        already in the support set's space.
      arch, width, norm: the finite network (see :func:`kipd.transfer.network`).
      loss, steps, lr_factors, l2, eval_every: training and grid (see :func:`train`).
      key: PRNG key or int seed.
      progress: show a progress bar.
      log, budget_seconds: the ``estimate:`` line and the budget (see :func:`train`).

    Returns:
      A :class:`TransferResult`. The test set is touched once, for the chosen setting.

    Example:
      >>> ds = kipd.data.split_validation(kipd.data.load("fashion_mnist"), 5000)  # doctest: +SKIP
      >>> d = kipd.runs.load_distilled("runs/quickstart")                      # doctest: +SKIP
      >>> transfer(d.images, d.labels, ds, preprocessing=d.preprocessing,
      ...          arch="fc1", steps=1000).test_accuracy                        # doctest: +SKIP

    Paper: appendix A, "Details for neural network transfer"; Tables 2, A5.
    """
    images, labels = _checked_support(images, labels, dataset)
    assert dataset.x_val is not None  # checked by _checked_support
    key = jax.random.PRNGKey(key) if isinstance(key, (int, np.integer)) else key
    prep = (lambda x: x) if preprocessing is None else preprocessing.apply
    x_val = np.asarray(prep(dataset.x_val), np.float32)
    net = network(arch, dataset.num_classes, width=width, norm=norm)
    fit = train(
        net,
        images,
        labels,
        x_val,
        np.asarray(dataset.y_val),
        key=key,
        loss=loss,
        steps=steps,
        lr_factors=lr_factors,
        l2=l2,
        eval_every=eval_every,
        progress=progress,
        log=log,
        budget_seconds=budget_seconds,
    )
    x_test = np.asarray(prep(dataset.x_test), np.float32)
    (test_accuracy,) = accuracies(net.apply, [fit.params], x_test, np.asarray(dataset.y_test))
    choice = fit.choice
    return TransferResult(
        test_accuracy=float(test_accuracy),
        validation_accuracy=choice.validation_accuracy,
        lr_factor=choice.lr_factor,
        l2=choice.l2,
        learning_rate=choice.learning_rate,
        step=choice.step,
        critical_learning_rate=fit.critical_learning_rate,
        grid=fit.grid,
        settings=dict(
            arch=arch,
            width=width,
            norm=norm,
            loss=loss,
            steps=steps,
            support_size=len(images),
            validation_size=len(x_val),
            test_size=len(x_test),
        ),
    )


def _checked_support(
    images: np.ndarray, labels: np.ndarray, dataset: data.Dataset
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`transfer`'s support set checked against its dataset: ``(images as float32,
    labels)``."""
    if dataset.x_val is None:
        raise ValueError(
            f"{dataset.name} has no validation split: hyperparameters are chosen on validation, "
            "never on test; use kipd.data.split_validation(dataset, 5000)"
        )
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    if images.ndim != 4 or images.shape[1:] != tuple(dataset.image_shape):
        raise ValueError(
            f"support images have shape {images.shape[1:]}, {dataset.name} images "
            f"{tuple(dataset.image_shape)}: pass the dataset they were distilled from"
        )
    if labels.ndim == 2 and labels.shape[1] != dataset.num_classes:
        raise ValueError(
            f"labels have {labels.shape[1]} classes, {dataset.name} has {dataset.num_classes}"
        )
    if labels.ndim not in (1, 2) or len(labels) != len(images):
        raise ValueError(
            f"labels must be (n, classes) or (n,) for n = {len(images)} images, got {labels.shape}"
        )
    return images, labels


PROTOCOLS = ("appendix-a", "standard")
"""``appendix-a``: the paper's (tuned on validation); ``standard``: DC-bench's (fixed recipe)."""


def _natural_set(
    baseline: str,
    distilled: Any,
    ds: data.Dataset,
    preprocessing: data.Preprocessing,
    seed: int,
    path: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of a baseline: the run's initial set, or a random
    class-balanced natural subset of the train split of the same size."""
    if baseline == "init":
        if distilled.init_images is None:
            raise ValueError(
                f"{path} does not record its initial images (a released .npz): use "
                "--baseline natural instead"
            )
        return distilled.init_images, distilled.init_labels
    per_class, extra = divmod(len(distilled.images), ds.num_classes)
    if per_class < 1 or extra:
        raise ValueError(
            f"a natural baseline needs a multiple of {ds.num_classes} images, the set has "
            f"{len(distilled.images)}"
        )
    pixels, ids, _ = data.class_balanced_subset(ds.x_train, ds.y_train, per_class, seed)
    return (
        np.asarray(preprocessing.apply(pixels)),
        np.asarray(data.centered_one_hot(ids, ds.num_classes)),
    )


def _standard_run(
    resolved: runs.Resolved,
    path: Any,
    baseline: str | None,
    seed: int,
    network_seeds: int,
    soft_labels: bool,
    epochs: int,
    options: dict[str, Any],
) -> dict[str, Any]:
    """:func:`transfer_run` under the standard protocol (its Returns)."""
    distilled, preprocessing, ds = resolved.distilled, resolved.preprocessing, resolved.dataset
    sets = {"distilled": (distilled.images, distilled.labels)}
    if baseline is not None:
        sets["baseline"] = _natural_set(baseline, distilled, ds, preprocessing, seed, path)
    results = standard_protocol(
        sets,
        np.asarray(preprocessing.apply(ds.x_test)),
        ds.y_test,
        ds.num_classes,
        network_seeds=network_seeds,
        soft_labels=soft_labels,
        epochs=epochs,
        **{k: v for k, v in options.items() if k in ("progress", "log", "budget_seconds")},
    )
    result: dict[str, Any] = {
        "protocol": "standard",
        **results["distilled"]._asdict(),
        "labels": "soft" if soft_labels else "hard",
        "network_seeds": network_seeds,
        "epochs": epochs,
        "support_size": len(distilled.images),
        "test_size": len(ds.y_test),
    }
    if baseline is not None:
        result["baseline"] = {"source": baseline, **results["baseline"]._asdict()}
        result["improvement"] = result["test_accuracy"] - results["baseline"].test_accuracy
    result.update(dataset=ds.name, source="distilled", path=str(path))
    return result


def transfer_run(
    path: str | os.PathLike,
    *,
    protocol: str = "appendix-a",
    dataset: str | None = None,
    data_dir: str | None = None,
    baseline: str | None = None,
    validation_size: int = 5000,
    seed: int = 0,
    zca: bool | None = None,
    zca_regularization: float | None = None,
    network_seeds: int = NETWORK_SEEDS,
    soft_labels: bool = False,
    epochs: int = EPOCHS,
    **options: Any,
) -> dict[str, Any]:
    """:func:`transfer` (or :func:`standard_protocol`) of a distilled set on disk (what
    ``kipd transfer`` runs).

    Args:
      path: a run directory, its ``distilled.npz``, an export, or a ``.npz`` in the paper's
        released layout (``images``, ``labels``; then ``dataset`` is required and the
        preprocessing is the paper's default for it, fitted on the train split).
      protocol: ``"appendix-a"`` (the paper's: the learning rate and L2 chosen on a
        validation split) or ``"standard"`` (DC-bench's fixed recipe on the whole test set,
        mean +- std over ``network_seeds``).
      dataset, data_dir: default: the run's.
      baseline: ``None``; ``"natural"``: a class-balanced natural subset of the train split
        of the same size (centred one-hot labels); ``"init"``: the natural images the run
        started from, with their initial labels (a paired comparison: what KIP changed,
        nothing else). Appendix A trains on the baseline instead of the set; the standard
        protocol trains on both and reports the improvement.
      validation_size: train images held out for selection (appendix A; paper: 5000;
        capped at a tenth of the train set).
      seed: seeds the validation split, the natural subset and the training key.
      zca, zca_regularization: the preprocessing of a released file, which does not record
        it (default: the paper's for the dataset; :func:`kipd.runs.resolve`).
      network_seeds, soft_labels, epochs: of the standard protocol
        (:func:`standard_protocol`).
      options: passed to :func:`transfer` (arch, width, norm, loss, steps, lr_factors, l2,
        eval_every, progress, log, budget_seconds); the standard protocol takes progress,
        log and budget_seconds.

    Returns:
      Appendix A: ``TransferResult.to_dict()`` plus ``dataset``, ``source``
      (``"distilled"``, ``"natural"`` or ``"init"``) and ``path``. Standard:
      ``test_accuracy`` (mean over network seeds), ``test_accuracy_std``, ``accuracies``
      (per seed), ``labels`` (``"hard"`` or ``"soft"``), and with a baseline
      ``baseline`` (the same three for it) and ``improvement`` (the difference of means).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if baseline not in (None, "natural", "init"):
        raise ValueError(f"baseline must be 'natural', 'init' or omitted, got {baseline!r}")
    if not (isinstance(seed, int) and seed >= 0):
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    resolved = runs.resolve(
        path, dataset=dataset, data_dir=data_dir, zca=zca, zca_regularization=zca_regularization
    )
    if resolved.note is not None and options.get("log") is not None:
        options["log"](f"note: {resolved.note}")
    if protocol == "standard":
        return _standard_run(
            resolved, path, baseline, seed, network_seeds, soft_labels, epochs, options
        )
    distilled, preprocessing, ds = resolved.distilled, resolved.preprocessing, resolved.dataset
    if not (isinstance(validation_size, int) and validation_size >= 1):
        raise ValueError(f"validation size must be an integer >= 1, got {validation_size!r}")
    ds = data.split_validation(ds, min(validation_size, len(ds.x_train) // 10), seed=seed)
    images, labels = distilled.images, distilled.labels
    if baseline is not None:
        images, labels = _natural_set(baseline, distilled, ds, preprocessing, seed, path)
    result = transfer(
        images,
        labels,
        ds,
        preprocessing=preprocessing,
        key=jax.random.PRNGKey(seed),
        **options,
    ).to_dict()
    result.update(
        protocol="appendix-a", dataset=ds.name, source=baseline or "distilled", path=str(path)
    )
    return result
