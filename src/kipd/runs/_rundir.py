"""The run directory: the one place that knows its files, writes them and reads them back.

A run directory (the ``--out`` of ``kipd distill`` or ``kipd label-solve``) holds::

    config.json          the resolved config (KipConfig or LabelSolveConfig); runtime
                         options (executor, workers, cluster address) are not part of it;
                         a resume rewrites it with what it may change (steps, test_size,
                         data_dir, block_size)
    preprocessing.npz    the fitted preprocessing (ZCA matrix included)
    init.npz             the initial support set (images preprocessed, labels, indices)
                         and ``config``: the config the run started with (canonical JSON,
                         under the file's content hash), which ``config.json`` is checked
                         against (:func:`read_config`)
    test_subset.npz      the test indices of the final summary (``final``) and of the
                         readings during training (``readings``); every later command
                         on the run (evaluate, analyze, report) reuses ``final``
    metrics.jsonl        one JSON object per step (KIP): loss, accuracy, kernel, seconds,
                         and test_accuracy on the readings subset every eval_every steps
    checkpoints/         step_00000050.npz (the step in 8 digits): the whole KIP state
                         keyed by tree path, every checkpoint_every steps; the keep_best
                         of lowest train loss and the latest are kept
    kernel_rows/         Label Solve, while it runs: one .npz per chunk of K(targets,
                         support), named by its first target row in 8 digits
                         (rows_00026176.npz), so a killed run resumes with the chunks it
                         had; removed when the run is finished
    distilled.npz        at the end: the distilled set (layout of the paper's releases,
                         plus the config, preprocessing and initial set)
    summary.json         at the end: test accuracy of the natural init and distilled set
    report.html          written by ``kipd report`` (``kipd.analysis``), any time after
    figures/             written by ``kipd analyze figures``: images.png, labels.png,
                         curves.png

One process writes a run directory at a time: it holds ``.NAME.lock`` beside the
directory (:func:`writer_lock`) from its first check to its last write. A new run is
assembled in a temporary folder and renamed into place (:func:`create_run`), and every
later file is replaced atomically with a content hash (:mod:`kipd.files`), so an
interrupted run leaves a directory that ``--resume`` continues from its last good
checkpoint, and a damaged file is reported by name; a finished run's damaged or missing
``distilled.npz`` or ``summary.json`` is written again by ``--resume``
(:func:`read_end`). Directories of kipd 0.1 (no ``test_subset.npz``, positional
checkpoints, executor options in ``config.json``) and runs that recorded no config in
``init.npz`` (kipd <= 0.4.1) load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from kipd import data, files
from kipd.runs import _checkpoint
from kipd.runs._config import (
    KipConfig,
    LabelSolveConfig,
    command_line,
    config_differences,
    config_from_json,
    resume_command,
)
from kipd.runs._errors import DistillError

CONFIG_FILE = "config.json"
PREPROCESSING_FILE = "preprocessing.npz"
INIT_FILE = "init.npz"
TEST_SUBSET_FILE = "test_subset.npz"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
KERNEL_ROWS = "kernel_rows"
DISTILLED_FILE = "distilled.npz"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"  # written by kipd.analysis, default of ``kipd report``
FIGURES_DIR = "figures"  # written by kipd.analysis, default of ``kipd analyze figures``
CARD_FILE = "card.json"  # an export's description (``_export``)
CARD_HASHES = "sha256"  # the card's record of its own hash and of its arrays' (``_export``)
_RECORDED_CONFIG = "config"  # in init.npz: the config the run started with

Config = KipConfig | LabelSolveConfig


class Run(NamedTuple):
    """A run directory as every later command sees it.

    Attributes:
      path: the run directory.
      config: its resolved :class:`~kipd.runs.KipConfig` or
        :class:`~kipd.runs.LabelSolveConfig`.
      preprocessing: the fitted preprocessing (``invert`` maps images back to pixels).
      init_images: ``(n, H, W, C)`` float32 initial support, preprocessed space.
      init_labels: ``(n, C)`` float32 initial labels (centred one-hot).
      images: ``(n, H, W, C)`` float32 final support (``distilled.npz``; for an unfinished
        KIP run the latest good checkpoint's), preprocessed space.
      labels: ``(n, C)`` float32 final labels (learned, solved, or the initial ones).
      step: the KIP step of ``images``; 0 for Label Solve.
      finished: whether ``distilled.npz`` exists.
      summary: ``summary.json`` (test accuracies of init and final), or ``None``.
      metrics: the records of ``metrics.jsonl`` (empty for Label Solve).
      test_indices: ``(t,)`` the test images of the run's final summary; ``None`` for a
        run of kipd 0.1, which did not record them (:func:`test_subsets` draws them
        again).
    """

    path: Path
    config: Config
    preprocessing: data.Preprocessing
    init_images: np.ndarray
    init_labels: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    step: int
    finished: bool
    summary: dict[str, Any] | None
    metrics: list[dict[str, Any]]
    test_indices: np.ndarray | None

    @property
    def classes(self) -> np.ndarray:
        """``(n,)`` class of each support image: the argmax of its initial label."""
        return np.argmax(self.init_labels, axis=1)


def is_run(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a run's ``config.json``."""
    return (Path(path) / CONFIG_FILE).is_file()


def is_export(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder written by :func:`kipd.runs.export`."""
    path = Path(path)
    return (path / CARD_FILE).is_file() and (path / DISTILLED_FILE).is_file()


def lock_path(out: Path) -> Path:
    """The lock file of the run directory ``out``: ``.NAME.lock`` beside it, so that it
    exists before a new run's directory does. ``out`` is resolved first: a run reached by
    two names (a relative path, a symbolic link) has one lock."""
    out = out.resolve()
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def writer_lock(out: Path) -> Iterator[None]:
    """Makes this process the one writer of the run directory ``out`` (new or existing)
    for the block (:func:`kipd.files.exclusive_lock` on :func:`lock_path`).

    Raises:
      DistillError: another process writes ``out`` (the message names it; nothing is
        changed), or the lock file cannot be created.
    """
    lock = lock_path(out)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(files.exclusive_lock(lock))
        except files.LockedError as err:
            holder = "another process" if err.pid is None else f"process {err.pid}"
            stop = "" if err.pid is None else f", or stop it ({command_line('kill', err.pid)})"
            raise DistillError(
                f"{out} is being written by {holder} (it holds {lock}): one process writes a "
                f"run at a time. Wait for it to finish{stop}, then run this command again; "
                "nothing was changed"
            ) from None
        except OSError as err:
            raise DistillError(
                f"cannot create the lock file {lock} ({err.strerror}): kipd keeps it beside "
                f"the run directory while it writes the run; make {lock.parent} writable"
            ) from err
        yield


def create_run(out: Path, write: Callable[[Path], None]) -> None:
    """Creates the run directory ``out`` whole: ``write(folder)`` fills a temporary folder
    beside it, which is then renamed to ``out``; on any failure nothing is left behind."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        write(tmp)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_start(
    folder: Path,
    config: Config,
    preprocessing: data.Preprocessing,
    init: Mapping[str, np.ndarray],
    test_subsets: Mapping[str, np.ndarray],
) -> None:
    """The files a run has from its start: config, preprocessing, initial support set,
    test subsets (and an empty ``checkpoints/`` for KIP, ``kernel_rows/`` for Label Solve)."""
    write_config(folder, config)
    preprocessing.save(folder / PREPROCESSING_FILE)
    # The config is recorded under init.npz's content hash too: config.json stays
    # readable, and an edit of it is caught (read_config).
    files.write_npz(folder / INIT_FILE, {**init, _RECORDED_CONFIG: np.array(_canonical(config))})
    write_test_subsets(folder, test_subsets)
    (folder / (CHECKPOINTS if isinstance(config, KipConfig) else KERNEL_ROWS)).mkdir(exist_ok=True)


def load_config(run_dir: str | os.PathLike) -> Config:
    """The resolved config recorded in a run directory.

    Args:
      run_dir: a folder written by :func:`run_kip` or :func:`run_label_solve`.

    Returns:
      Its :class:`KipConfig` or :class:`LabelSolveConfig`.

    Raises:
      DistillError: the folder holds no readable ``config.json``.
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise DistillError(
            f"{run_dir} is not a kipd run directory (it has no {CONFIG_FILE}): pass the --out "
            "folder of a 'kipd distill' or 'kipd label-solve' run"
        )
    try:
        return config_from_json(json.loads(path.read_text()))
    except (ValueError, TypeError) as err:
        raise DistillError(
            f"{path} is damaged or not a kipd run config ({err}): restore it, or start the run "
            "again with a new --out"
        ) from err


def _canonical(config: Config) -> str:
    return json.dumps(config.to_json(), sort_keys=True)


def write_config(folder: Path, config: Config) -> None:
    """Writes ``config.json``: at the start, and on resume (with the options a resume may
    change, e.g. more ``steps``)."""
    files.write_json(folder / CONFIG_FILE, config.to_json())


def read_config(run_dir: Path) -> Config:
    """The run's config (``config.json``), checked against the one it started with.

    Raises:
      DistillError: ``config.json`` is missing or damaged, or was edited in an option a
        resume may not change (the message lists them). A run that recorded no config
        at its start (kipd <= 0.4.1) is read as it is.
    """
    config = load_config(run_dir)
    recorded = read_npz(run_dir / INIT_FILE).get(_RECORDED_CONFIG)
    if recorded is None:
        return config
    changed = config_differences(config_from_json(json.loads(str(recorded))), config)
    if changed:
        raise DistillError(
            f"{run_dir / CONFIG_FILE} was changed after the run started "
            f"(recorded -> now: {'; '.join(changed)}): its checkpoints and files were made with "
            f"the recorded config. Put the recorded values back in {CONFIG_FILE}, or start a "
            "new run with the new options and another --out"
        )
    return config


def write_test_subsets(folder: Path, test_subsets: Mapping[str, np.ndarray]) -> None:
    """Records the test indices a run evaluates on (``final``, and ``readings`` for KIP)."""
    files.write_npz(folder / TEST_SUBSET_FILE, test_subsets)


def test_subsets(
    config: Config, num_test: int, run_dir: Path | None = None
) -> dict[str, np.ndarray]:
    """The test indices a run with ``config`` evaluates on: ``final`` (its summary) and,
    for KIP, ``readings`` (during training).

    Those recorded in ``run_dir`` are kept where they still apply (a resumed run with
    another ``--test-size`` gets a new ``final``); otherwise, and for a run of kipd <=
    0.10 which recorded none, they are drawn by :func:`kipd.data.draw_test_subset`, the
    policy that drew them.

    Args:
      config: the run's (resolved) config.
      num_test: the size of the dataset's test set.
      run_dir: a run directory whose record is reused, or ``None``.
    """
    path = None if run_dir is None else run_dir / TEST_SUBSET_FILE
    recorded = read_npz(path) if path is not None and path.is_file() else {}
    subsets = {"final": data.draw_test_subset(num_test, config.test_size, config.seed)}
    if isinstance(config, KipConfig):
        subsets["readings"] = data.draw_test_subset(
            num_test, config.eval_size, config.seed, "readings"
        )
    return {
        name: recorded[name] if len(recorded.get(name, ())) == len(drawn) else drawn
        for name, drawn in subsets.items()
    }


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of one of a run's files, with a :class:`DistillError` that names the file
    and what to do if it is missing or damaged."""
    try:
        return files.read_npz(path)
    except FileNotFoundError as err:
        raise DistillError(
            f"{path} is missing: the run directory {path.parent} is incomplete"
        ) from err
    except files.DamagedFileError as err:
        raise DistillError(
            f"{err}. Restore it from a backup, or start the run again with a new --out"
        ) from err


def _rebuild(run_dir: Path, config: Config) -> str:
    """How a finished run's ``distilled.npz`` or ``summary.json`` is written again."""
    source = (
        "from its last good checkpoint"
        if isinstance(config, KipConfig)
        else "(the labels are solved again)"
    )
    return f"{resume_command(run_dir, config)} writes it again {source}"


def read_preprocessing(run_dir: Path) -> data.Preprocessing:
    """The run's fitted preprocessing (``preprocessing.npz``)."""
    return data.Preprocessing.from_dict(read_npz(run_dir / PREPROCESSING_FILE))


def read_init(run_dir: Path) -> dict[str, np.ndarray]:
    """The run's initial support set: ``images``, ``labels``, ``indices``."""
    init = read_npz(run_dir / INIT_FILE)
    init.pop(_RECORDED_CONFIG, None)
    return init


def write_kernel_rows(run_dir: Path, first_row: int, rows: np.ndarray) -> None:
    """Saves one chunk of a Label Solve run's ``K(targets, support)``: its rows
    ``first_row .. first_row + len(rows) - 1``."""
    (run_dir / KERNEL_ROWS).mkdir(exist_ok=True)  # gone once a run finished: rebuilt then
    files.write_npz(run_dir / KERNEL_ROWS / f"rows_{first_row:08d}.npz", {"rows": rows})


def read_kernel_rows(run_dir: Path) -> dict[int, np.ndarray]:
    """The saved chunks of ``K(targets, support)`` by first row. A damaged chunk (a kill
    mid-write cannot leave one: writes are atomic; a disk fault can) is skipped with a
    warning that names it, and is computed again."""
    chunks = {}
    for path in sorted((run_dir / KERNEL_ROWS).glob("rows_*.npz")):
        try:
            chunks[int(path.stem.removeprefix("rows_"))] = files.read_npz(path)["rows"]
        except (files.DamagedFileError, KeyError) as err:
            warnings.warn(
                f"{path} cannot be read ({err}); its rows are computed again", stacklevel=2
            )
    return chunks


def remove_kernel_rows(run_dir: Path) -> None:
    """Deletes the kernel chunks of a finished Label Solve run (its labels are stored)."""
    shutil.rmtree(run_dir / KERNEL_ROWS, ignore_errors=True)


def read_metrics(run_dir: Path, up_to_step: int = sys.maxsize) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` for steps ``<= up_to_step``.

    A line that is no record (cut short by a kill, damaged) is skipped with a warning
    that names its line number; every record around it is kept.
    """
    path = run_dir / METRICS_FILE
    records = []
    if path.is_file():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                    raise ValueError("no integer 'step'")
            except ValueError as err:  # json.JSONDecodeError is one
                warnings.warn(
                    f"line {number} of {path} is not a metrics record ({err}): skipped",
                    RuntimeWarning,
                    stacklevel=1,  # one location: said once, however many readers meet it
                )
                continue
            if record["step"] <= up_to_step:
                records.append(record)
    return records


def elapsed_seconds(run_dir: Path, step: int) -> float:
    """The run's wall time when it logged ``step``, earlier legs included (the last
    ``elapsed`` of ``metrics.jsonl`` up to that step; 0 for a new run or one whose log
    predates ``elapsed``)."""
    times = [r["elapsed"] for r in read_metrics(run_dir, step) if "elapsed" in r]
    return times[-1] if times else 0.0


class MetricsLog:
    """``metrics.jsonl`` opened to append, after dropping the records past ``up_to_step``
    (a resumed run is about to redo those steps) and any line that is no record.

    Example:
      >>> import tempfile
      >>> folder = Path(tempfile.mkdtemp())
      >>> with MetricsLog(folder, up_to_step=0) as log:
      ...     log.append({"step": 1, "loss": 0.5})
      >>> read_metrics(folder)
      [{'step': 1, 'loss': 0.5}]
    """

    def __init__(self, run_dir: Path, up_to_step: int):
        self.records = read_metrics(run_dir, up_to_step)
        kept = "".join(json.dumps(r) + "\n" for r in self.records).encode()
        path = run_dir / METRICS_FILE
        files.atomic_write(path, lambda f: f.write(kept))
        self._file: IO[str] = open(path, "a")

    def append(self, record: Mapping[str, Any]) -> None:
        """Appends one record and flushes it to the file."""
        self._file.write(json.dumps(dict(record)) + "\n")
        self._file.flush()
        self.records.append(dict(record))

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._file.close()


def save_checkpoint(run_dir: Path, state: Any, loss: float, keep_best: int) -> Path:
    """Writes a KIP state as the checkpoint of its step (see ``_checkpoint``)."""
    return _checkpoint.save_checkpoint(run_dir / CHECKPOINTS, state, loss, keep_best)


def restore_latest(run_dir: Path, template: Any) -> Any:
    """The newest readable checkpoint restored into ``template``'s structure, or
    ``template`` itself if there is none (a damaged newer one is skipped with a warning).

    Raises:
      DistillError: a checkpoint belongs to another configuration.
    """

    def load(path: Path) -> Any:
        try:
            return _checkpoint.load_checkpoint(path, template)
        except files.DamagedFileError:
            raise
        except ValueError as err:
            raise DistillError(str(err)) from err

    found = _checkpoint.newest_readable(run_dir / CHECKPOINTS, load)
    return template if found is None else found[1]


def best_supports(run_dir: Path, count: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{step: (images, labels)}`` of the ``count`` checkpoints of lowest train loss: the
    sets Table 1 reports the mean and std of."""
    return {
        step: _checkpoint.read_support(path)
        for step, path in _checkpoint.lowest_loss(run_dir / CHECKPOINTS, count)
    }


def latest_step(run_dir: Path) -> int:
    """The step of a run's newest checkpoint (0 if it has none)."""
    return max(_checkpoint.list_checkpoints(run_dir / CHECKPOINTS), default=0)


def last_good_state(run_dir: Path) -> Path:
    """The file a run would restart from: its newest checkpoint, else ``init.npz``."""
    checkpoints = _checkpoint.list_checkpoints(run_dir / CHECKPOINTS)
    return checkpoints[max(checkpoints)] if checkpoints else run_dir / INIT_FILE


def checkpoint_supports(run: Run) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The support set at step 0 (the initial one) and at every kept, readable checkpoint.

    A KIP run keeps the ``keep_best`` checkpoints of lowest train loss and the latest one
    (``docs/runs.md``), so the steps are those, not a regular grid. A damaged
    checkpoint is left out with a warning that names it.

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
    damaged = []
    for step, path in _checkpoint.list_checkpoints(run.path / CHECKPOINTS).items():
        try:
            images, labels = _checkpoint.read_support(path)
        except files.DamagedFileError as err:
            damaged.append(str(err))
            continue
        supports[step] = (images.astype(np.float32), labels.astype(np.float32))
    if damaged:
        warnings.warn(f"left out: {'; '.join(damaged)}", RuntimeWarning, stacklevel=2)
    return supports


def write_distilled(
    run_dir: Path,
    images: Any,
    labels: Any,
    init: Mapping[str, Any],
    config: Config,
    preprocessing: data.Preprocessing,
) -> None:
    """Writes ``distilled.npz``: the paper's released layout (``images`` preprocessed,
    ``labels``) plus pixels, the initial set and the config. The preprocessing stays in
    ``preprocessing.npz`` beside it, stored once (a ZCA's two d x d matrices are 1.2 GB at
    64x64x3); :func:`load_distilled` reads it from there, and an export carries both."""
    files.write_npz(
        run_dir / DISTILLED_FILE,
        {
            "images": np.asarray(images, np.float32),
            "labels": np.asarray(labels, np.float32),
            "images_pixel": np.asarray(preprocessing.invert(images)),
            "init_images": np.asarray(init["images"], np.float32),
            "init_labels": np.asarray(init["labels"], np.float32),
            "config": np.array(json.dumps(config.to_json(), sort_keys=True)),
        },
    )


def _summary_json(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise files.DamagedFileError(path, f"not JSON ({err})") from err
    if not isinstance(summary, dict):
        raise files.DamagedFileError(path, "not a JSON object")
    return summary


def read_summary(run_dir: Path, config: Config) -> dict[str, Any] | None:
    """``summary.json``, or ``None`` before the run has finished.

    Raises:
      DistillError: it is damaged (the message says how to write it again).
    """
    try:
        return _summary_json(run_dir)
    except files.DamagedFileError as err:
        raise DistillError(f"{err}: {_rebuild(run_dir, config)}") from err


def _kept(read: Callable[[Path], Any], path: Path) -> Any:
    """``read(path)``, or ``None`` if the file is missing or damaged (a warning names it)."""
    try:
        return read(path)
    except FileNotFoundError:
        return None
    except files.DamagedFileError as err:
        warnings.warn(f"{err}; this run writes it again", RuntimeWarning, stacklevel=3)
        return None


def read_end(run_dir: Path) -> tuple[dict[str, np.ndarray] | None, dict[str, Any] | None]:
    """What a resumed run keeps of its end: the arrays of ``distilled.npz`` and
    ``summary.json``, each ``None`` if missing or damaged (then the run writes it again;
    a warning names a damaged one). The summary counts only beside the set it describes.
    """
    distilled = _kept(files.read_npz, run_dir / DISTILLED_FILE)
    summary = _kept(_summary_json, run_dir)
    return distilled, None if distilled is None else summary


def write_summary(run_dir: Path, summary: Mapping[str, Any]) -> None:
    """Writes ``summary.json`` atomically."""
    files.write_json(run_dir / SUMMARY_FILE, dict(summary))


def load_run(run_dir: str | os.PathLike) -> Run:
    """Reads a run directory of ``kipd distill`` or ``kipd label-solve``.

    Args:
      run_dir: the ``--out`` folder of the run.

    Returns:
      The :class:`Run`. A finished run's final support is ``distilled.npz``; an unfinished
      KIP run's is its latest good checkpoint (the initial support if it has none yet).

    Raises:
      DistillError: the folder does not exist, is not a kipd run directory, is a Label
        Solve run that has not finished, or a file it needs is missing or damaged (the
        message names it).

    Example:
      >>> run = load_run("runs/quickstart")  # doctest: +SKIP
      >>> run.images.shape, run.labels.shape  # doctest: +SKIP
      ((10, 28, 28, 1), (10, 10))
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise DistillError(
            f"no run directory at {path}: pass the --out folder of a finished or running "
            "'kipd distill' or 'kipd label-solve'"
        )
    config = read_config(path)
    preprocessing = read_preprocessing(path)
    init = read_init(path)
    subsets = path / TEST_SUBSET_FILE
    test_indices = read_npz(subsets)["final"] if subsets.is_file() else None
    finished = (path / DISTILLED_FILE).is_file()
    if not finished and isinstance(config, LabelSolveConfig):
        raise DistillError(
            f"{path} is a Label Solve run that has not finished (its labels are not solved "
            f"yet): continue it with {resume_command(path, config)}"
        )
    init_images = init["images"].astype(np.float32)
    init_labels = init["labels"].astype(np.float32)
    run = Run(
        path=path,
        config=config,
        preprocessing=preprocessing,
        init_images=init_images,
        init_labels=init_labels,
        images=init_images,
        labels=init_labels,
        step=0,
        finished=finished,
        summary=read_summary(path, config),
        metrics=read_metrics(path),
        test_indices=test_indices,
    )
    if finished:
        try:
            distilled = files.read_npz(path / DISTILLED_FILE)
        except files.DamagedFileError as err:
            raise DistillError(f"{err}. {_rebuild(path, config)}") from err
        step = config.steps if isinstance(config, KipConfig) else 0
        return run._replace(
            images=distilled["images"].astype(np.float32),
            labels=distilled["labels"].astype(np.float32),
            step=step,
        )
    found = _checkpoint.newest_readable(path / CHECKPOINTS, _checkpoint.read_support)
    if found is None:
        return run
    step, (images, labels) = found
    return run._replace(
        images=images.astype(np.float32), labels=labels.astype(np.float32), step=step
    )


class Distilled(NamedTuple):
    """A distilled set: of a finished run, or of a ``.npz`` file.

    Attributes:
      images: ``(n, H, W, C)`` float32 support images in preprocessed space.
      labels: ``(n, C)`` float32 support labels (argmax is the class).
      config: the run's config, or ``None`` for a file of the paper's released layout
        (``images`` and ``labels`` only).
      preprocessing: the fitted preprocessing, or ``None`` (released layout, or a run's
        ``distilled.npz`` away from its ``preprocessing.npz``: see :func:`resolve`).
      init_images: ``(n, H, W, C)`` natural initial support, or ``None``.
      init_labels: ``(n, C)`` initial labels, or ``None``.
      test_indices: the test images of the run's final summary; ``None`` if not
        recorded (a file, or a run of kipd 0.1).
    """

    images: np.ndarray
    labels: np.ndarray
    config: Config | None
    preprocessing: data.Preprocessing | None
    init_images: np.ndarray | None
    init_labels: np.ndarray | None
    test_indices: np.ndarray | None = None


def card_hash(card: Mapping[str, Any]) -> str:
    """The SHA-256 of an export's card without its :data:`CARD_HASHES` entry, as JSON with
    sorted keys (``json.dumps(card, sort_keys=True)``): what that entry records for
    ``card.json``."""
    text = json.dumps({k: v for k, v in card.items() if k != CARD_HASHES}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _card_problem(card_path: Path, arrays_hash: str) -> str | None:
    """What is wrong with an export's card, given the content hash of its arrays; ``None``
    if it is the card ``kipd export`` wrote for them."""
    try:
        card = json.loads(card_path.read_text())
    except ValueError as err:  # not JSON, or not text
        return f"it is not JSON ({err})"
    hashes = card.get(CARD_HASHES) if isinstance(card, dict) else None
    if not isinstance(hashes, dict):
        return f"it records no {CARD_HASHES} of its files (written by an older kipd, or edited)"
    if hashes.get(CARD_FILE) != card_hash(card):
        return "it was changed after the export (it no longer matches the hash it records)"
    if hashes.get(DISTILLED_FILE) != arrays_hash:
        return (
            f"it describes other arrays than those of the {DISTILLED_FILE} beside it (their "
            "content hash differs from the one it records)"
        )
    return None


def _check_export(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Refuses an export whose arrays or card were changed after ``kipd export``: its
    ``distilled.npz`` must carry its content hash (every export did), and its
    ``card.json`` must record that hash and its own, so an edit of either shows. A file
    in the paper's released layout, which never had a hash, is no export.
    """
    in_export = path.name == DISTILLED_FILE and is_export(path.parent)
    if not in_export and "hard_labels" not in arrays:  # only kipd export writes hard_labels
        return
    again = "export the run again (kipd export RUN --out NEW_DIR)"
    stored = files.stored_hash(path)
    if stored is None:
        raise DistillError(
            f"{path} is a kipd export but carries no content hash ({files.HASH_KEY}): it was "
            f"rewritten outside kipd, so its arrays cannot be checked; {again}"
        )
    problem = _card_problem(path.parent / CARD_FILE, stored) if in_export else None
    if problem is not None:
        raise DistillError(f"{path.parent / CARD_FILE} cannot be trusted: {problem}; {again}")


# Over 60 lines: one branch per kind of source (export, run directory, a run's
# distilled.npz, a released file), each with its own message of what to do.
def load_distilled(path: str | os.PathLike) -> Distilled:
    """Reads a distilled set: a finished run directory, its ``distilled.npz``, an export
    (:func:`kipd.runs.export`), or a ``.npz`` in the paper's released layout
    (``images`` NHWC preprocessed, ``labels``).

    Raises:
      DistillError: nothing readable at ``path``, a damaged file, an unfinished run (the
        message says how to finish it), or no ``images``/``labels`` of the expected shapes.
    """
    path = Path(path)
    if path.is_dir() and is_export(path):
        path = path / DISTILLED_FILE
    if path.is_dir():
        if not is_run(path):
            raise DistillError(
                f"{path} is a folder but not a kipd run directory (no {CONFIG_FILE}): pass "
                "the --out folder of 'kipd distill' or 'kipd label-solve', or a .npz file"
            )
        run = load_run(path)
        if not run.finished:
            raise DistillError(
                f"run {path} has not finished (no {DISTILLED_FILE}): finish it with "
                f"{resume_command(path, run.config)} (for a finished run whose "
                f"{DISTILLED_FILE} was deleted, that writes it again)"
            )
        return Distilled(
            images=run.images,
            labels=run.labels,
            config=run.config,
            preprocessing=run.preprocessing,
            init_images=run.init_images,
            init_labels=run.init_labels,
            test_indices=run.test_indices,
        )
    if not path.exists():
        raise DistillError(f"no file or run directory at {path}")
    in_run = path.name == DISTILLED_FILE and is_run(path.parent)
    try:
        arrays = files.read_npz(path)
    except files.DamagedFileError as err:
        if in_run:
            raise DistillError(f"{err}. {_rebuild(path.parent, load_config(path.parent))}") from err
        raise DistillError(
            f"{err}. A distilled set is a kipd run directory, its distilled.npz, or an .npz "
            "with 'images' (n, H, W, C) and 'labels' (n, classes)"
        ) from err
    _check_export(path, arrays)
    images, labels = arrays.get("images"), arrays.get("labels")
    if (
        images is None
        or labels is None
        or images.ndim != 4
        or labels.ndim != 2
        or len(images) != len(labels)
    ):
        raise DistillError(
            f"{path} is not a distilled set: it needs 'images' (n, H, W, C) and 'labels' (n, "
            "classes); "
            f"found {', '.join(f'{k} {v.shape}' for k, v in arrays.items()) or 'nothing'}"
        )
    has_config = "config" in arrays
    if not has_config:
        preprocessing = None
    elif data.Preprocessing.stored_in(arrays):  # an export, or a run of kipd 0.4.1 or older
        preprocessing = data.Preprocessing.from_dict(arrays)
    elif in_run:
        preprocessing = read_preprocessing(path.parent)
    else:  # a run's distilled.npz moved out of its run: resolve fits it again from the config
        preprocessing = None
    return Distilled(
        images=images.astype(np.float32),
        labels=labels.astype(np.float32),
        config=config_from_json(json.loads(str(arrays["config"]))) if has_config else None,
        preprocessing=preprocessing,
        init_images=arrays.get("init_images"),
        init_labels=arrays.get("init_labels"),
        test_indices=arrays.get("test_indices"),
    )


def known_init_accuracy(
    config: KipConfig | LabelSolveConfig, final: np.ndarray
) -> dict[str, float] | None:
    """``{"init_test_accuracy": a}`` where ``init_from`` is a finished kipd run directory
    that measured this very set with the run's kernel and ridge on the same test images
    (its summary's ``test_accuracy``: for a run on features, the exact kernel's), so the run
    need not measure it again; ``None`` otherwise.

    Args:
      config: the run's resolved config.
      final: ``(t,)`` the test indices of the run's final summary.
    """
    if not isinstance(config, KipConfig) or config.init_from is None:
        return None
    if not Path(config.init_from).is_dir():
        return None  # an export or a file: no summary of the same test images
    try:
        source = load_run(config.init_from)
    except (DistillError, ValueError, OSError):
        return None
    summary = source.summary
    same = (
        source.finished
        and summary is not None
        and summary.get("kernel") == config.eval_kernel
        and source.config.dataset == config.dataset
        and source.config.lambda0 == config.lambda0
        and source.test_indices is not None
        and np.array_equal(source.test_indices, final)
    )
    return {"init_test_accuracy": summary["test_accuracy"]} if same and summary else None
