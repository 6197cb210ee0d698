"""Durable runs: KIP and Label Solve on a dataset, written to a run directory.

A run directory holds::

    config.json          the resolved config (KipConfig or LabelSolveConfig)
    preprocessing.npz    the fitted preprocessing (ZCA matrix included)
    init.npz             the initial support set (images preprocessed, labels, indices)
    metrics.jsonl        one JSON object per step (KIP): loss, accuracy, kernel, seconds,
                         and test_accuracy on the evaluation subset every eval_every steps
    checkpoints/         step_XXXXXXXX.npz: the whole KIP state, every checkpoint_every
                         steps; the keep_best of lowest train loss and the latest are kept
    distilled.npz        at the end: the distilled set (layout of the paper's releases)
    summary.json         at the end: test accuracy of the natural init and distilled set

A new run is assembled in a temporary folder and renamed into place, and every later
file is replaced atomically, so an interrupted run leaves a directory that ``resume``
continues exactly where the last checkpoint stands.
"""

from __future__ import annotations

import functools
import json
import math
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import kipd.kernels
from kipd import compute, data
from kipd.distill._blocks import KernelFn
from kipd.distill._checkpoint import (
    atomic_write,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    write_json,
    write_npz,
)
from kipd.distill._config import (
    CONFIG_FILE,
    DistillError,
    KipConfig,
    LabelSolveConfig,
    config_differences,
    config_from_json,
    load_config,
)
from kipd.distill._kip import KipState, kip, sample_target_batch
from kipd.distill._krr import LAMBDA0, accuracy, krr_predict
from kipd.distill._label_solve import label_solve

PREPROCESSING_FILE = "preprocessing.npz"
INIT_FILE = "init.npz"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
DISTILLED_FILE = "distilled.npz"
SUMMARY_FILE = "summary.json"


@functools.cache
def ntk(name: str) -> KernelFn:
    """The NTK of ``kipd.kernels.make(name)`` as ``kernel(x1, x2)`` (one per name)."""
    return functools.partial(kipd.kernels.make(name), get="ntk")


def make_executor(config: KipConfig | None = None) -> compute.Executor:
    """The executor a run's config names (the local executor for Label Solve and
    evaluation, which have no executor options)."""
    if config is None or config.executor == "local":
        return compute.LocalExecutor()
    return compute.RayExecutor(config.ray_address, workers=config.workers)


def _load_dataset(config: KipConfig | LabelSolveConfig) -> data.Dataset:
    return data.load(config.dataset, data_dir=config.data_dir)


def _fit_preprocessing(
    config: KipConfig | LabelSolveConfig, dataset: data.Dataset
) -> data.Preprocessing:
    if config.zca:
        return data.fit_preprocessing(dataset.x_train, "zca", config.zca_regularization)
    return data.fit_preprocessing(dataset.x_train, "standard")


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
    config: KipConfig, dataset: data.Dataset, preprocessing: data.Preprocessing, key: jax.Array
) -> dict[str, np.ndarray]:
    """The natural support, or (``init="noise"``) uniform pixel noise with its labels."""
    support = _natural_support(dataset, preprocessing, config.images_per_class, key)
    if config.init == "noise":
        pixels = jax.random.uniform(jax.random.fold_in(key, 1), support["images"].shape)
        support["images"] = np.asarray(preprocessing.apply(pixels))
        support["indices"] = np.full_like(support["indices"], -1)
    return support


def _test_accuracies(
    kernel: str,
    support_images: Any,
    label_sets: list[Any],
    test_images: Any,
    test_labels: Any,
    lambda0: float,
    desc: str | None,
    executor: compute.Executor | None = None,
) -> list[float]:
    """KRR test accuracy of one support image set under each of several label sets."""
    spec = compute.KernelSpec(kernel)
    k_ss = compute.kernel_matrix(spec, support_images, executor=executor)
    k_ts = compute.kernel_matrix(spec, test_images, support_images, executor=executor, desc=desc)
    return [
        float(accuracy(krr_predict(k_ts, k_ss, jnp.asarray(y), lambda0), test_labels))
        for y in label_sets
    ]


def _final_test_set(
    config, dataset: data.Dataset, preprocessing: data.Preprocessing
) -> tuple[jax.Array, jax.Array]:
    """The preprocessed test images and the labels of a run's final summary: the whole test
    set, or ``config.test_size`` of them drawn once from the seed (the same on every
    resume)."""
    subset = slice(None)
    if config.test_size is not None:
        rng = np.random.default_rng([config.seed, 1])  # a stream apart from the eval subset's
        subset = np.sort(rng.choice(len(dataset.y_test), config.test_size, replace=False))
    return preprocessing.apply(dataset.x_test[subset]), jnp.asarray(dataset.y_test[subset])


def _new_run_dir(out: Path, write: Any) -> None:
    """Creates ``out`` whole: ``write(tmp_dir)`` fills a temporary folder, then it is renamed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        write(tmp)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_out(out: Path, resume: bool) -> None:
    """Fails early (before loading data) if ``out`` cannot be started or resumed."""
    if resume:
        load_config(out)
    elif out.exists():
        raise DistillError(
            f"{out} already exists: pass --resume to continue that run, or choose a new --out"
        )


def _distilled_arrays(
    images, labels, init_images, init_labels, config, preprocessing
) -> dict[str, Any]:
    return {
        "images": np.asarray(images, np.float32),
        "labels": np.asarray(labels, np.float32),
        "images_pixel": np.asarray(preprocessing.invert(images)),
        "init_images": np.asarray(init_images, np.float32),
        "init_labels": np.asarray(init_labels, np.float32),
        "config": np.array(json.dumps(config.to_json(), sort_keys=True)),
        **preprocessing.to_dict(),
    }


def _read_metrics(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    """The complete records of ``metrics.jsonl`` for steps ``<= up_to_step``."""
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut short by an interruption
            if record["step"] <= up_to_step:
                records.append(record)
    return records


def _summary(
    config,
    dataset: data.Dataset,
    support_size: int,
    test_size: int,
    init_accuracy: float,
    final_accuracy: float,
    started: float,
    **extra,
) -> dict[str, Any]:
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
    }


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {name: f[name] for name in f.files}


def _check_resumable(out: Path, config: KipConfig) -> None:
    differences = config_differences(load_config(out), config)
    if differences:
        raise DistillError(
            f"{out} is a run of another config ({'; '.join(differences)}); resume it with its own "
            "options (only --steps, --test-size and the executor options may change), or start a new run "
            "with another --out"
        )


def _train(
    config: KipConfig,
    out: Path,
    algo: Any,
    state: KipState,
    targets: tuple[jax.Array, jax.Array],
    batch_key: jax.Array,
    eval_accuracy: Any,
    progress: bool,
) -> tuple[KipState, float]:
    """KIP steps from ``state.step`` to ``config.steps``, logging and checkpointing.

    Returns:
      The final state and the last step's train loss.
    """

    sample = jax.jit(
        functools.partial(sample_target_batch, batch_key, batch_size=config.target_batch_size)
    )

    def step_fn(state: KipState, images: jax.Array, labels: jax.Array):
        new_state, metrics = algo.update(state, *sample(state.step, images, labels))
        finite = bool(np.isfinite(float(metrics["loss"])))
        for leaf in (new_state.support_images, new_state.support_labels):
            finite &= bool(np.all(np.isfinite(np.asarray(leaf))))
        return new_state, {**metrics, "finite": finite}

    # Records past the checkpoint resumed from are dropped: they are about to be redone.
    records = _read_metrics(out / METRICS_FILE, int(state.step))
    kept = "".join(json.dumps(r) + "\n" for r in records).encode()
    atomic_write(out / METRICS_FILE, lambda f: f.write(kept))
    last_loss = next((r["loss"] for r in reversed(records) if "loss" in r), math.nan)
    bar = tqdm(
        total=config.steps, initial=int(state.step), desc="KIP", unit="step", disable=not progress
    )
    with open(out / METRICS_FILE, "a") as log, bar:
        while int(state.step) < config.steps:
            step_started = time.perf_counter()
            new_state, metrics = step_fn(state, *targets)
            step = int(new_state.step)
            if not bool(metrics["finite"]):
                checkpoints = list_checkpoints(out / CHECKPOINTS)
                last_good = checkpoints[max(checkpoints)] if checkpoints else out / INIT_FILE
                raise DistillError(
                    f"the KIP loss or support set became {float(metrics['loss'])} at step {step}: the "
                    f"run stopped, and its last good state is {last_good}. Start a new run with a "
                    f"lower --lr (this one used {config.lr})."
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
                record["test_accuracy"] = eval_accuracy(state.support_images, state.support_labels)
                bar.set_postfix_str(f"test acc {record['test_accuracy']:.3f}", refresh=False)
            log.write(json.dumps(record) + "\n")
            log.flush()
            if step % config.checkpoint_every == 0 or step == config.steps:
                save_checkpoint(out / CHECKPOINTS, state, last_loss, config.keep_best)
            bar.set_description(
                f"KIP loss {last_loss:.4g} acc {record['accuracy']:.3f}", refresh=False
            )
            bar.update(1)
    return state, last_loss


def run_kip(
    config: KipConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
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
        config for ``resume`` (only ``steps``, ``data_dir``, ``test_size`` and the executor
        options may change).
      resume: continue the run in ``out`` from its latest checkpoint.
      progress: show progress bars.

    Returns:
      The summary (also written to ``summary.json``): ``init_test_accuracy``,
      ``test_accuracy``, ``kernel``, ``support_size``, ``test_size``, ``steps``,
      ``final_loss``, ``seconds``, ``dataset``, ``algorithm``.

    Raises:
      DistillError: ``out`` exists (without ``resume``), is not a run or is a run of
        another config (with ``resume``), or the loss became NaN/inf.
      ValueError: bad options or dataset (the message names the fix).

    Example:
      >>> summary = run_kip(KipConfig(kernels=("fc1",), steps=100), "runs/fc1")  # doctest: +SKIP
      >>> summary["test_accuracy"] > summary["init_test_accuracy"]  # doctest: +SKIP
      True

    Paper: §2 (KIP), §3.1, appendix A.
    """
    started = time.perf_counter()
    out = Path(out)
    _check_out(out, resume)
    dataset = _load_dataset(config)
    config = config.resolve(dataset)
    init_key, kip_key, batch_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    if resume:
        _check_resumable(out, config)
        preprocessing = data.Preprocessing.load(out / PREPROCESSING_FILE)
        init = _read_npz(out / INIT_FILE)
    else:
        preprocessing = _fit_preprocessing(config, dataset)
        init = _initial_support(config, dataset, preprocessing, init_key)

    kernel = config.eval_kernel
    rng = np.random.default_rng(config.seed)
    eval_subset = np.sort(rng.choice(len(dataset.y_test), config.eval_size, replace=False))
    eval_images = preprocessing.apply(dataset.x_test[eval_subset])
    eval_labels = jnp.asarray(dataset.y_test[eval_subset])
    final_images, final_labels = _final_test_set(config, dataset, preprocessing)

    # Every kernel of the run, training and evaluation, goes through the executor.
    with make_executor(config) as executor:
        def eval_accuracy(images: Any, labels: Any) -> float:
            return _test_accuracies(
                kernel, images, [labels], eval_images, eval_labels, config.lambda0, None, executor
            )[0]

        if not resume:

            def write_new_run(tmp: Path) -> None:
                write_json(tmp / CONFIG_FILE, config.to_json())
                preprocessing.save(tmp / PREPROCESSING_FILE)
                write_npz(tmp / INIT_FILE, init)
                (tmp / CHECKPOINTS).mkdir()
                record = {"step": 0, "test_accuracy": eval_accuracy(init["images"], init["labels"])}
                (tmp / METRICS_FILE).write_text(json.dumps(record) + "\n")

            _new_run_dir(out, write_new_run)

        if config.augment > 0:
            # Augmentations act on pixels: targets stay in pixel space and are preprocessed
            # after augmentation, inside the step.
            targets = jnp.asarray(dataset.x_train)

            def augment(key: jax.Array, pixels: jax.Array) -> jax.Array:
                return preprocessing.apply(data.augment(key, pixels, config.augment))

        else:
            targets, augment = preprocessing.apply(dataset.x_train), None
        labels = data.centered_one_hot(dataset.y_train, dataset.num_classes)
        algo = kip(
            [compute.KernelSpec(name) for name in config.kernels],
            optax.adam(config.lr),
            learn_labels=config.learn_labels,
            lambda0=config.lambda0,
            augment=augment,
            executor=executor,
            block_size=config.block_size,
        )
        state = algo.init(init["images"], init["labels"], kip_key)
        checkpoints = list_checkpoints(out / CHECKPOINTS)
        if checkpoints:
            state = load_checkpoint(checkpoints[max(checkpoints)], state)
        if int(state.step) > config.steps:
            raise DistillError(
                f"{out} is already at step {int(state.step)}, past --steps {config.steps}: pass --steps "
                f"{int(state.step)} or more"
            )
        summary_path = out / SUMMARY_FILE
        previous = json.loads(summary_path.read_text()) if summary_path.is_file() else None
        if previous is not None and previous["test_size"] != len(final_labels):
            previous = None  # re-read on another test set: evaluate both sets again
        if previous is not None and int(state.step) == config.steps:
            return previous  # a finished run
        state, last_loss = _train(
            config, out, algo, state, (targets, labels), batch_key, eval_accuracy, progress
        )

        desc = "test accuracy" if progress else None
        if previous is not None:  # a finished run extended: same init, kernel and test set
            init_accuracy = previous["init_test_accuracy"]
        else:
            (init_accuracy,) = _test_accuracies(
                kernel,
                init["images"],
                [init["labels"]],
                final_images,
                final_labels,
                config.lambda0,
                desc,
                executor,
            )
        (final_accuracy,) = _test_accuracies(
            kernel,
            state.support_images,
            [state.support_labels],
            final_images,
            final_labels,
            config.lambda0,
            desc,
            executor,
        )
        distilled = _distilled_arrays(
            state.support_images,
            state.support_labels,
            init["images"],
            init["labels"],
            config,
            preprocessing,
        )
        write_npz(out / DISTILLED_FILE, distilled)
        summary = _summary(
            config,
            dataset,
            len(init["images"]),
            len(final_labels),
            init_accuracy,
            final_accuracy,
            started,
            steps=config.steps,
            final_loss=last_loss,
        )
        write_json(summary_path, summary)
        return summary


def run_label_solve(
    config: LabelSolveConfig, out: str | os.PathLike, *, progress: bool = True
) -> dict[str, Any]:
    """Runs Label Solve (eq. 2) on a class-balanced natural support set into ``out``.

    Solves for the least-norm labels of the support images that minimize the KRR loss on
    the whole train set (or ``config.target_size`` random train images), then evaluates
    the natural labels and the solved labels with KRR on the whole test set (or
    ``config.test_size`` images of it). The run
    directory appears only when complete.

    Args:
      config: the run's options; ``None`` fields are resolved for the dataset.
      out: run directory; must not exist.
      progress: show progress bars.

    Returns:
      The summary (also in ``summary.json``): ``init_test_accuracy`` (centred one-hot
      labels), ``test_accuracy`` (solved labels), ``kernel``, ``support_size``,
      ``target_size``, ``test_size``, ``seconds``, ``dataset``, ``algorithm``.

    Raises:
      DistillError: ``out`` exists.
      ValueError: bad options or dataset.

    Example:
      >>> run_label_solve(LabelSolveConfig(kernel="fc3"), "runs/ls")["test_accuracy"]  # doctest: +SKIP

    Paper: eq. (2), §3.1.
    """
    started = time.perf_counter()
    out = Path(out)
    _check_out(out, resume=False)
    dataset = _load_dataset(config)
    config = config.resolve(dataset)
    preprocessing = _fit_preprocessing(config, dataset)
    init_key, target_key = jax.random.split(jax.random.PRNGKey(config.seed))
    support = _natural_support(dataset, preprocessing, config.images_per_class, init_key)
    targets = np.sort(
        np.asarray(
            jax.random.choice(
                target_key, len(dataset.x_train), (config.target_size,), replace=False
            )
        )
    )
    kernel = config.kernel
    spec = compute.KernelSpec(kernel)
    k_ss = compute.kernel_matrix(spec, support["images"])
    k_ts = compute.kernel_matrix(
        spec,
        preprocessing.apply(dataset.x_train[targets]),
        support["images"],
        desc="K(targets, support)" if progress else None,
    )
    target_labels = data.centered_one_hot(dataset.y_train[targets], dataset.num_classes)
    labels = label_solve(k_ts, k_ss, np.asarray(target_labels), config.lambda0, config.rcond)
    test_images, test_labels = _final_test_set(config, dataset, preprocessing)
    init_accuracy, final_accuracy = _test_accuracies(
        kernel,
        support["images"],
        [support["labels"], labels],
        test_images,
        test_labels,
        config.lambda0,
        "test accuracy" if progress else None,
    )
    summary = _summary(
        config,
        dataset,
        len(support["images"]),
        len(test_labels),
        init_accuracy,
        final_accuracy,
        started,
        target_size=config.target_size,
    )

    def write(tmp: Path) -> None:
        write_json(tmp / CONFIG_FILE, config.to_json())
        preprocessing.save(tmp / PREPROCESSING_FILE)
        write_npz(tmp / INIT_FILE, support)
        distilled = _distilled_arrays(
            support["images"], labels, support["images"], support["labels"], config, preprocessing
        )
        write_npz(tmp / DISTILLED_FILE, distilled)
        write_json(tmp / SUMMARY_FILE, summary)

    _new_run_dir(out, write)
    return summary


class Distilled(NamedTuple):
    """A distilled set as stored in a ``.npz``.

    Attributes:
      images: ``(n, H, W, C)`` float32 support images in preprocessed space.
      labels: ``(n, C)`` float32 support labels (argmax is the class).
      config: the run's config, or ``None`` for a file of the paper's released layout
        (``images`` and ``labels`` only).
      preprocessing: the fitted preprocessing, or ``None`` (released layout).
      init_images: ``(n, H, W, C)`` natural initial support, or ``None``.
      init_labels: ``(n, C)`` initial labels, or ``None``.
    """

    images: np.ndarray
    labels: np.ndarray
    config: KipConfig | LabelSolveConfig | None
    preprocessing: data.Preprocessing | None
    init_images: np.ndarray | None
    init_labels: np.ndarray | None


def load_distilled(path: str | os.PathLike) -> Distilled:
    """Reads a distilled set: a run directory, its ``distilled.npz``, or a ``.npz`` in the
    paper's released layout (``images`` NHWC preprocessed, ``labels`` label vectors).

    Raises:
      DistillError: the file is missing or holds no ``images``/``labels`` of the expected
        shapes; for a run directory without ``distilled.npz``, says how to finish it.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / DISTILLED_FILE).is_file():
            raise DistillError(
                f"run {path} has not finished (no {DISTILLED_FILE}); finish it with "
                f"kipd distill --out {path} --resume"
            )
        path = path / DISTILLED_FILE
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
    except (OSError, ValueError) as err:
        raise DistillError(f"cannot read {path} as an .npz file ({err})") from err
    images, labels = arrays.get("images"), arrays.get("labels")
    if (
        images is None
        or labels is None
        or images.ndim != 4
        or labels.ndim != 2
        or len(images) != len(labels)
    ):
        raise DistillError(
            f"{path} is not a distilled set: it needs 'images' (n, H, W, C) and 'labels' (n, classes); "
            f"found {', '.join(f'{k} {v.shape}' for k, v in arrays.items()) or 'nothing'}"
        )
    has_config = "config" in arrays
    return Distilled(
        images=images.astype(np.float32),
        labels=labels.astype(np.float32),
        config=config_from_json(json.loads(str(arrays["config"]))) if has_config else None,
        preprocessing=data.Preprocessing.from_dict(arrays) if has_config else None,
        init_images=arrays.get("init_images"),
        init_labels=arrays.get("init_labels"),
    )


def evaluate(
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    kernel: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """KRR test accuracy of a distilled set on the whole test set of its dataset.

    Args:
      path: a run directory, its ``distilled.npz``, or a ``.npz`` of the paper's released
        layout.
      dataset: the dataset to test on; default: the run's. Required for the released
        layout, which does not record it; its preprocessing is then the paper's default
        for the dataset, fitted on the train set.
      data_dir: folder searched first for the dataset's files; default: the run's.
      kernel: architecture of the KRR kernel; default: the run's (the first of a
        sampling-KIP family), ``convnet`` for the released layout.
      progress: show a progress bar.

    Returns:
      ``test_accuracy``, ``kernel``, ``dataset``, ``support_size``, ``test_size``, and for
      a kipd run or its ``distilled.npz`` also ``init_test_accuracy`` (the natural init).

    Raises:
      DistillError: the path holds no distilled set.
      ValueError: no dataset for a released file, or images that do not fit the dataset.

    Example:
      >>> evaluate("runs/quickstart")["test_accuracy"]  # doctest: +SKIP
    """
    distilled = load_distilled(path)
    config = distilled.config
    if config is None and dataset is None:
        raise ValueError(
            f"{path} does not record its dataset: pass it, e.g. --dataset fashion_mnist"
        )
    kernel = kernel or ("convnet" if config is None else config.eval_kernel)
    kipd.kernels.make(kernel)  # an unknown name fails here, before the data is loaded
    if config is not None:
        dataset = dataset or config.dataset
        data_dir = config.data_dir if data_dir is None else data_dir
    ds = data.load(dataset, data_dir=data_dir)
    images, labels = distilled.images, distilled.labels
    if images.shape[1:] != ds.image_shape or labels.shape[1] != ds.num_classes:
        raise ValueError(
            f"the distilled set has images {images.shape[1:]} and {labels.shape[1]} classes, "
            f"{ds.name} has images {ds.image_shape} and {ds.num_classes} classes: pass the "
            "--dataset it was distilled from"
        )
    if config is None:
        preprocessing = data.fit_preprocessing(
            ds.x_train, data.default_preprocessing(ds), data.default_zca_regularization(ds)
        )
    else:
        preprocessing = distilled.preprocessing
    test_accuracies = functools.partial(
        _test_accuracies,
        kernel,
        test_images=preprocessing.apply(ds.x_test),
        test_labels=jnp.asarray(ds.y_test),
        lambda0=LAMBDA0 if config is None else config.lambda0,
        desc="test accuracy" if progress else None,
    )
    result = {
        "dataset": ds.name,
        "kernel": kernel,
        "support_size": len(images),
        "test_size": len(ds.y_test),
    }
    if distilled.init_images is None:
        (result["test_accuracy"],) = test_accuracies(images, [labels])
    elif np.array_equal(distilled.init_images, images):  # Label Solve: one kernel matrix
        result["test_accuracy"], result["init_test_accuracy"] = test_accuracies(
            images, [labels, distilled.init_labels]
        )
    else:
        (result["test_accuracy"],) = test_accuracies(images, [labels])
        (result["init_test_accuracy"],) = test_accuracies(
            distilled.init_images, [distilled.init_labels]
        )
    return result
