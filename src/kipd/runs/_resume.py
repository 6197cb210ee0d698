"""A run's life: new -> training -> finished, and what ``--resume`` does in each state.

The one owner of starting and resuming a run; KIP and Label Solve runs both go through it.
The files of each state are ``_rundir``'s::

    new        --out does not exist. The run draws its start (preprocessing fitted, initial
               support and test subsets drawn) and creates the directory whole
               (:func:`create`). An existing folder is refused (:func:`check_destination`).
    training   config.json and the start files exist, no distilled.npz. --resume reads the
               start back, checks the config (:func:`check_same_config`: only the options
               of ``RESUMABLE_CHANGES`` may differ) and continues: KIP from its latest good
               checkpoint (:func:`restored_state`), Label Solve with the chunks of
               ``K(targets, support)`` it saved.
    finished   distilled.npz and summary.json exist. --resume returns the summary as it is
               (:func:`kept_end`), or, from the same files:
               extension  more --steps (KIP): training again from the last checkpoint, the
                          natural init's accuracy kept;
               re-reading another --test-size: the final summary measured again;
               repair     a damaged or missing distilled.npz / summary.json: written again
                          (a warning names the damaged file).

One process at a time does any of this to a run directory (:func:`one_writer`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import jax
import numpy as np

from kipd import data
from kipd.distill import KipState
from kipd.runs import _rundir
from kipd.runs._config import KipConfig, LabelSolveConfig, config_differences, resume_command
from kipd.runs._context import Log
from kipd.runs._errors import DistillError
from kipd.runs._estimate import log_zca_fit
from kipd.runs._resolve import resolve

Config = KipConfig | LabelSolveConfig
_Config = TypeVar("_Config", "KipConfig", "LabelSolveConfig")


def check_resumable_folder(out: str | os.PathLike) -> None:
    """Fails with what will work if ``out`` holds no run to resume."""
    out = Path(out)
    if not out.exists():
        raise DistillError(
            f"nothing to resume at {out}: it does not exist; leave out --resume to start a "
            "new run there"
        )
    if not _rundir.is_run(out):
        raise DistillError(
            f"nothing to resume at {out}: it is not a kipd run directory (no "
            f"{_rundir.CONFIG_FILE}); choose another --out for a new run (kipd never writes "
            "into a folder it did not create)"
        )


def resume_config(
    run_dir: str | os.PathLike,
    config_class: type[_Config] = KipConfig,  # type: ignore[assignment]  # mypy#3737
    **changes: Any,
) -> _Config:
    """The config of the run in ``run_dir`` with ``changes`` applied, to resume it.

    Args:
      run_dir: a run directory of ``config_class``'s algorithm.
      config_class: :class:`KipConfig` (``run_kip``) or :class:`LabelSolveConfig`
        (``run_label_solve``).
      **changes: options to change; the run refuses all but ``steps``, ``data_dir``,
        ``test_size`` and ``block_size`` if they differ from the run's.

    Returns:
      The config to pass to ``run_kip(config, run_dir, resume=True)`` (or
      ``run_label_solve``).

    Raises:
      DistillError: ``run_dir`` is not a run directory of that algorithm.
    """
    check_resumable_folder(run_dir)
    saved = _rundir.load_config(run_dir)
    if not isinstance(saved, config_class):
        raise DistillError(
            f"{run_dir} is a {saved.ALGORITHM} run: resume it with {resume_command(run_dir, saved)}"
        )
    return dataclasses.replace(saved, **changes)


_Runner = TypeVar("_Runner", bound=Callable[..., dict[str, Any]])


def one_writer(run: _Runner) -> _Runner:
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


def check_destination(out: Path, resume: bool, config: Config) -> None:
    """Fails early (before loading data) if ``out`` cannot be started (new) or resumed
    (training or finished, with a readable config); the message says what will work."""
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


def check_same_config(out: Path, config: Config) -> None:
    """Fails if the resolved ``config`` differs from the run's in an option a resume may
    not change (the message lists them)."""
    differences = config_differences(_rundir.load_config(out), config)
    if differences:
        raise DistillError(
            f"{out} is a run of another config ({'; '.join(differences)}); resume it with its own "
            "options (only --steps, unless the learning rate decays, --test-size, --block-size and "
            "where blocks run may change), "
            "or start a new run with another --out"
        )


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


def _distilled_init(config: KipConfig, dataset: data.Dataset) -> dict[str, np.ndarray]:
    """The initial support of ``init_from``: a distilled set's images and labels, checked
    against the run (its size, dataset and preprocessing) before anything is fitted."""
    source = config.init_from
    assert source is not None  # the caller's condition
    resolved = resolve(source, dataset=config.dataset, data_dir=config.data_dir)
    images, labels = resolved.distilled.images, resolved.distilled.labels
    wanted = config.images_per_class * dataset.num_classes
    if len(images) != wanted:
        per_class, extra = divmod(len(images), dataset.num_classes)
        fix = f"pass --images-per-class {per_class}" if not extra else "start from another set"
        raise ValueError(
            f"--init-from {source} has {len(images)} images, this run {wanted} "
            f"({config.images_per_class} per class, {dataset.num_classes} classes): {fix}"
        )
    theirs = resolved.preprocessing
    ours = ("zca", config.zca_regularization) if config.zca else ("standard", None)
    if (theirs.method, theirs.regularization) != ours:
        flags = (
            f"--zca --zca-regularization {theirs.regularization:g}"
            if theirs.method == "zca"
            else "--no-zca"
        )
        raise ValueError(
            f"--init-from {source} is in the space of {theirs.method} preprocessing"
            f"{'' if theirs.regularization is None else f' {theirs.regularization:g}'}, this run "
            f"uses {ours[0]}{'' if ours[1] is None else f' {ours[1]:g}'}: pass {flags}"
        )
    return {
        "images": np.asarray(images, np.float32),
        "labels": np.asarray(labels, np.float32),
        "indices": np.full(len(images), -1),
    }


def _initial_support(
    config: Config, dataset: data.Dataset, preprocessing: data.Preprocessing, key: jax.Array
) -> dict[str, np.ndarray]:
    """The natural support, or (KIP with ``init="noise"``) uniform pixel noise with its
    labels."""
    support = _natural_support(dataset, preprocessing, config.images_per_class, key)
    if isinstance(config, KipConfig) and config.init == "noise":
        pixels = jax.random.uniform(jax.random.fold_in(key, 1), support["images"].shape)
        support["images"] = np.asarray(preprocessing.apply(pixels))
        support["indices"] = np.full_like(support["indices"], -1)
    return support


class Start(NamedTuple):
    """What a run starts from: the same whether it is new or resumed.

    Attributes:
      preprocessing: the fitted preprocessing.
      init: the initial support: ``images`` (preprocessed), ``labels``, ``indices``.
      test_subsets: ``final`` (the summary's test indices) and, for KIP, ``readings``.
    """

    preprocessing: data.Preprocessing
    init: dict[str, np.ndarray]
    test_subsets: dict[str, np.ndarray]


def start(
    config: Config, out: Path, dataset: data.Dataset, resume: bool, key: jax.Array, log: Log | None
) -> Start:
    """The preprocessing, initial support and test subsets, fitted and drawn for a new run,
    read back from ``out`` for a resumed one (checked by :func:`check_same_config`)."""
    num_test = len(dataset.y_test)
    if resume:
        _rundir.write_config(out, config)  # with the changes a resume may make (--steps)
        subsets = _rundir.test_subsets(config, num_test, out)
        _rundir.write_test_subsets(out, subsets)  # a new --test-size draws a new final subset
        return Start(_rundir.read_preprocessing(out), _rundir.read_init(out), subsets)
    distilled = None
    if isinstance(config, KipConfig) and config.init_from is not None:
        distilled = _distilled_init(config, dataset)
    log_zca_fit(log, config, dataset)
    preprocessing = data.fit_dataset_preprocessing(dataset, config.zca, config.zca_regularization)
    init = distilled or _initial_support(config, dataset, preprocessing, key)
    return Start(preprocessing, init, _rundir.test_subsets(config, num_test))


def create(
    out: Path,
    config: Config,
    begun: Start,
    first_record: Callable[[], Mapping[str, Any]] | None = None,
) -> None:
    """Creates a new run's directory whole (``_rundir.create_run``): its start files and,
    given ``first_record`` (KIP: step 0's test reading), the first record of its metrics,
    computed once the start files are in place."""

    def write(folder: Path) -> None:
        _rundir.write_start(folder, config, begun.preprocessing, begun.init, begun.test_subsets)
        if first_record is not None:
            with _rundir.MetricsLog(folder, up_to_step=0) as metrics:
                metrics.append(first_record())

    _rundir.create_run(out, write)


def restored_state(out: Path, template: KipState, steps: int) -> KipState:
    """A KIP run's state from its latest good checkpoint (``template``, the initial state,
    if it has none).

    Raises:
      DistillError: the run is already past ``steps`` (the message names the ``--steps``
        that continues it).
    """
    state = _rundir.restore_latest(out, template)
    if int(state.step) > steps:
        raise DistillError(
            f"{out} is already at step {int(state.step)}, past --steps {steps}: pass --steps "
            f"{int(state.step)} or more"
        )
    return state


class End(NamedTuple):
    """What a run keeps of its end; each ``None`` when not there yet, missing or damaged
    (then written again).

    Attributes:
      distilled: the arrays of ``distilled.npz``.
      summary: ``summary.json``, only where it describes that set on the test subset the
        run now asks for (another ``--test-size`` evaluates again).
    """

    distilled: dict[str, np.ndarray] | None
    summary: dict[str, Any] | None


def kept_end(out: Path, test_size: int) -> End:
    """The :class:`End` of the run in ``out`` whose final summary is on ``test_size`` test
    images (``_rundir.read_end``: a warning names a damaged file)."""
    distilled, summary = _rundir.read_end(out)
    if summary is not None and summary["test_size"] != test_size:
        summary = None  # re-read on another test set: evaluate again
    return End(distilled, summary)
