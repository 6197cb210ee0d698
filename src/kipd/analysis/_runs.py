"""Reading a run directory for analysis: its config, preprocessing, supports and metrics.

A run of ``kipd distill`` (KIP) or ``kipd label-solve`` is read as a :class:`Run`. An
unfinished KIP run (still training, or interrupted) is read too: its "final" support is
then the latest checkpoint, so every analysis can look at a run while it trains.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from kipd import data, distill
from kipd.analysis._errors import AnalysisError
from kipd.distill import _checkpoint, _run


class Run(NamedTuple):
    """A run directory as the analyses see it.

    Attributes:
      path: the run directory.
      config: its resolved :class:`~kipd.distill.KipConfig` or
        :class:`~kipd.distill.LabelSolveConfig`.
      preprocessing: the fitted preprocessing (``invert`` maps images back to pixels).
      init_images: ``(n, H, W, C)`` float32 initial support, preprocessed space.
      init_labels: ``(n, C)`` float32 initial labels (centred one-hot).
      images: ``(n, H, W, C)`` float32 final support (``distilled.npz``; for an unfinished
        KIP run the latest checkpoint's), preprocessed space.
      labels: ``(n, C)`` float32 final labels (learned, solved, or the initial ones).
      step: the KIP step of ``images``; 0 for Label Solve.
      finished: whether ``distilled.npz`` exists.
      summary: ``summary.json`` (test accuracies of init and final), or ``None``.
      metrics: the records of ``metrics.jsonl`` (empty for Label Solve).
    """

    path: Path
    config: distill.KipConfig | distill.LabelSolveConfig
    preprocessing: data.Preprocessing
    init_images: np.ndarray
    init_labels: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    step: int
    finished: bool
    summary: dict[str, Any] | None
    metrics: list[dict[str, Any]]

    @property
    def classes(self) -> np.ndarray:
        """``(n,)`` class of each support image: the argmax of its initial label."""
        return np.argmax(self.init_labels, axis=1)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {name: f[name] for name in f.files}


def _checkpoint_template(config: distill.KipConfig, images: np.ndarray, labels: np.ndarray):
    """A freshly initialized KIP state of the run: the structure its checkpoints restore into."""
    algo = distill.kip(
        _run.ntk(config.eval_kernel), optax.adam(config.lr), learn_labels=config.learn_labels
    )
    return algo.init(images, labels, jax.random.PRNGKey(config.seed))


def checkpoint_supports(run: Run) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The support set at step 0 (the initial one) and at every kept checkpoint.

    A KIP run keeps the ``keep_best`` checkpoints of lowest train loss and the latest one
    (``docs/distill.md``), so the steps are those, not a regular grid.

    Args:
      run: a run from :func:`load_run`.

    Returns:
      ``{step: (images (n, H, W, C), labels (n, C))}`` in increasing step order; for a
      Label Solve run only step 0.

    Example:
      >>> supports = checkpoint_supports(load_run("runs/quickstart"))  # doctest: +SKIP
      >>> sorted(supports)  # doctest: +SKIP
      [0, 100, 150, 200, 250, 300]
    """
    supports = {0: (run.init_images, run.init_labels)}
    if not isinstance(run.config, distill.KipConfig):
        return supports
    template = _checkpoint_template(run.config, run.init_images, run.init_labels)
    for step, path in _checkpoint.list_checkpoints(run.path / _run.CHECKPOINTS).items():
        try:
            state = _checkpoint.load_checkpoint(path, template)
        except (OSError, ValueError) as err:
            raise AnalysisError(f"cannot read checkpoint {path}: {err}") from err
        supports[step] = (np.asarray(state.support_images), np.asarray(state.support_labels))
    return dict(sorted(supports.items()))


def load_run(run_dir: str | os.PathLike) -> Run:
    """Reads a run directory of ``kipd distill`` or ``kipd label-solve``.

    Args:
      run_dir: the ``--out`` folder of the run.

    Returns:
      The :class:`Run`. A finished run's final support is ``distilled.npz``; an unfinished
      KIP run's is its latest checkpoint (the initial support if it has none yet).

    Raises:
      AnalysisError: the folder does not exist or is not a kipd run directory.

    Example:
      >>> run = load_run("runs/quickstart")  # doctest: +SKIP
      >>> run.images.shape, run.labels.shape  # doctest: +SKIP
      ((10, 28, 28, 1), (10, 10))
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise AnalysisError(
            f"no run directory at {path}: pass the --out folder of a finished or running "
            "'kipd distill' or 'kipd label-solve'"
        )
    missing = [
        name for name in (_run.PREPROCESSING_FILE, _run.INIT_FILE) if not (path / name).is_file()
    ]
    try:
        config = distill.load_config(path)
    except distill.DistillError as err:
        raise AnalysisError(f"{path} is not a kipd run directory: {err}") from err
    if missing:
        raise AnalysisError(
            f"{path} is not a complete kipd run directory: {', '.join(missing)} missing"
        )
    init = _read_npz(path / _run.INIT_FILE)
    preprocessing = data.Preprocessing.load(path / _run.PREPROCESSING_FILE)
    finished = (path / _run.DISTILLED_FILE).is_file()
    summary_path = path / _run.SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    metrics = _run._read_metrics(path / _run.METRICS_FILE, sys.maxsize)
    run = Run(
        path=path,
        config=config,
        preprocessing=preprocessing,
        init_images=init["images"].astype(np.float32),
        init_labels=init["labels"].astype(np.float32),
        images=init["images"].astype(np.float32),
        labels=init["labels"].astype(np.float32),
        step=0,
        finished=finished,
        summary=summary,
        metrics=metrics,
    )
    if finished:
        distilled = distill.load_distilled(path)
        step = config.steps if isinstance(config, distill.KipConfig) else 0
        return run._replace(images=distilled.images, labels=distilled.labels, step=step)
    step, (images, labels) = list(checkpoint_supports(run).items())[-1]
    return run._replace(images=images, labels=labels, step=step)


def load_dataset(run: Run, data_dir: str | None = None) -> data.Dataset:
    """The dataset a run was distilled from (``kipd.data.load``).

    Args:
      run: from :func:`load_run`.
      data_dir: folder searched first for its files; default: the run's ``data_dir``.

    Raises:
      ValueError: the dataset's files cannot be found or read (the message names them).
    """
    return data.load(
        run.config.dataset, data_dir=run.config.data_dir if data_dir is None else data_dir
    )
