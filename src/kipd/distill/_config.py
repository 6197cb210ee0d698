"""The configurations of KIP and Label Solve runs, validated on construction.

A config names everything a run depends on. Options left ``None`` take the paper's
defaults for the dataset when the run starts (:meth:`KipConfig.resolve`); the resolved
config is what a run directory's ``config.json`` records and what ``--resume`` checks.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, ClassVar

import kipd.kernels
from kipd import data
from kipd.distill._krr import LAMBDA0
from kipd.distill._label_solve import RCOND

CONFIG_FILE = "config.json"

# Options a resumed run may change: they do not alter the trajectory.
RESUMABLE_CHANGES = frozenset(
    {"steps", "data_dir", "test_size", "executor", "block_size", "ray_address", "workers"}
)
EXECUTORS = ("local", "ray")


class DistillError(Exception):
    """A run cannot start or go on: its directory is in the way or inconsistent, or its
    loss diverged. The message says what happened and what to do."""


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@functools.cache
def _check_kernel_name(name: str) -> None:
    kipd.kernels.make(name)


@dataclasses.dataclass(frozen=True)
class _Common:
    ALGORITHM: ClassVar[str]

    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    images_per_class: int = 1
    zca: bool | None = None
    zca_regularization: float | None = None
    seed: int = 0
    lambda0: float = LAMBDA0
    test_size: int | None = None

    def __post_init__(self) -> None:
        _check(
            isinstance(self.dataset, str) and bool(self.dataset),
            "dataset is empty: pass a built-in name such as --dataset fashion_mnist, or a "
            "path to an .npz file or image folder",
        )
        _check(
            isinstance(self.images_per_class, int) and self.images_per_class >= 1,
            f"images per class must be an integer >= 1, got {self.images_per_class!r}: "
            "pass e.g. --images-per-class 1",
        )
        _check(
            self.zca_regularization is None or self.zca_regularization >= 0,
            f"ZCA regularization must be >= 0, got {self.zca_regularization}: pass e.g. "
            "--zca-regularization 0.1",
        )
        _check(
            self.lambda0 > 0,
            f"lambda0 must be > 0 (the ridge of eq. 1), got {self.lambda0}: the paper uses 1e-6",
        )
        _check(
            self.test_size is None or (isinstance(self.test_size, int) and self.test_size >= 1),
            f"test size must be an integer >= 1, got {self.test_size!r}: pass e.g. --test-size "
            "2000, or leave it out to use the whole test set",
        )

    def _resolve_common(self, dataset: data.Dataset) -> dict[str, Any]:
        """Preprocessing and test size resolved for ``dataset`` (``None``: whole test set)."""
        whole_test = self.test_size is None or self.test_size >= len(dataset.x_test)
        resolved: dict[str, Any] = {"test_size": None if whole_test else self.test_size}
        zca = data.default_preprocessing(dataset) == "zca" if self.zca is None else self.zca
        if not zca:
            return {**resolved, "zca": False, "zca_regularization": None}
        reg = self.zca_regularization
        return {
            **resolved,
            "zca": True,
            "zca_regularization": data.default_zca_regularization(dataset) if reg is None else reg,
        }

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON object, with ``algorithm`` naming its kind."""
        return {"algorithm": self.ALGORITHM, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class KipConfig(_Common):
    """A KIP run (paper §2, appendix A). Defaults are the paper's where it gives them.

    Attributes:
      dataset: built-in name (``fashion_mnist``, ``mnist``, ``svhn``, ``cifar10``,
        ``cifar100``) or a path to an ``.npz`` file or image folder.
      data_dir: folder searched first for the dataset's files.
      images_per_class: support images per class (1, 10, 50 in the paper).
      zca: regularized ZCA preprocessing; ``None`` means the paper's choice (ZCA for RGB,
        standard for grayscale).
      zca_regularization: ZCA strength; ``None`` means the dataset's default.
      seed: seeds the initial support, kernel sampling, augmentation and target batches.
      lambda0: relative ridge of eq. (1).
      test_size: test images of the final summary (natural init vs distilled); ``None``
        means the whole test set, a number a fixed random subset of that size (seeded by
        ``seed``). A 100-image ConvNet set against 10,000 test images is 2M kernel
        entries, over an hour on a CPU; readings during training use ``eval_size``.
      kernels: architecture names for ``kipd.kernels.make``; several means sampling KIP.
      steps: KIP updates.
      target_batch_size: targets per step (5000 in the paper), capped by the train set.
      learn_labels: optimize the support labels too (all of the paper's Table 1 runs).
      augment: fraction of each target batch augmented (0 = none).
      lr: Adam learning rate; ``None`` means 0.01 for grayscale and 0.04 for RGB.
      init: ``"natural"`` (class-balanced train subset) or ``"noise"`` (uniform pixels).
      checkpoint_every: steps between checkpoints (50 in the paper).
      eval_every: steps between test accuracy readings on the evaluation subset.
      eval_size: images of the fixed test subset read during training (the final
        summary uses ``test_size``).
      keep_best: checkpoints of lowest train loss kept, besides the latest.
      executor: where the blocks of each step run: ``"local"`` (this process's devices)
        or ``"ray"`` (a Ray cluster; ``pip install 'kipd[ray]'``). Same results.
      block_size: block side ``B`` of the block plan (``None``: per kernel, see
        :func:`kipd.compute.default_block_size`).
      ray_address: a running Ray cluster to join; ``None`` starts a local one.
      workers: Ray workers (``None``: one per GPU of the cluster, else per CPU).
    """

    ALGORITHM: ClassVar[str] = "kip"

    kernels: tuple[str, ...] = ("convnet",)
    steps: int = 1000
    target_batch_size: int = 5000
    learn_labels: bool = True
    augment: float = 0.0
    lr: float | None = None
    init: str = "natural"
    checkpoint_every: int = 50
    eval_every: int = 50
    eval_size: int = 1000
    keep_best: int = 5
    executor: str = "local"
    block_size: int | None = None
    ray_address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        kernels = (self.kernels,) if isinstance(self.kernels, str) else tuple(self.kernels)
        object.__setattr__(self, "kernels", kernels)
        _check(bool(kernels), "no kernel given: pass e.g. --kernel convnet")
        for name in kernels:
            _check_kernel_name(name)
        for name, example in (
            ("steps", "--steps 1000"),
            ("target_batch_size", "--target-batch-size 5000"),
            ("checkpoint_every", "--checkpoint-every 50"),
            ("eval_every", "--eval-every 50"),
            ("eval_size", "--eval-size 1000"),
            ("keep_best", "keep_best=5"),
        ):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and value >= 1,
                f"{name.replace('_', ' ')} must be an integer >= 1, got {value!r}: pass e.g. "
                f"{example}",
            )
        _check(
            0.0 <= self.augment <= 1.0,
            f"augment is the fraction of each target batch that is augmented, in [0, 1]; got "
            f"{self.augment}: pass e.g. --augment 0.5",
        )
        _check(
            self.lr is None or self.lr > 0,
            f"learning rate must be > 0, got {self.lr}: pass e.g. --lr 0.01",
        )
        _check(
            self.init in ("natural", "noise"),
            f"init must be 'natural' or 'noise', got {self.init!r}: pass --init natural",
        )
        _check(
            self.executor in EXECUTORS,
            f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}: pass "
            "--executor local (this machine's devices) or --executor ray",
        )
        for name, example in (("block_size", "--block-size 32"), ("workers", "--workers 2")):
            value = getattr(self, name)
            _check(
                value is None or (isinstance(value, int) and value >= 1),
                f"{name.replace('_', ' ')} must be an integer >= 1, got {value!r}: pass e.g. "
                f"{example}, or leave it out for the default",
            )
        _check(
            self.executor == "ray" or (self.ray_address is None and self.workers is None),
            "--ray-address and --workers are options of the Ray executor: add --executor ray",
        )

    @property
    def eval_kernel(self) -> str:
        """The kernel test accuracy is measured with: the first of ``kernels``."""
        return self.kernels[0]

    def resolve(self, dataset: data.Dataset) -> KipConfig:
        """This config with every ``None`` replaced by the paper's default for ``dataset``
        and the batch sizes capped by its train and test sets."""
        grayscale = dataset.image_shape[-1] == 1
        return dataclasses.replace(
            self,
            **self._resolve_common(dataset),
            lr=(0.01 if grayscale else 0.04) if self.lr is None else self.lr,
            target_batch_size=min(self.target_batch_size, len(dataset.x_train)),
            eval_size=min(self.eval_size, len(dataset.x_test)),
        )


@dataclasses.dataclass(frozen=True)
class LabelSolveConfig(_Common):
    """A Label Solve run (paper eq. 2): the best labels for a natural support set.

    Attributes:
      dataset, data_dir, images_per_class, zca, zca_regularization, seed, lambda0,
        test_size: as in :class:`KipConfig`.
      kernel: architecture name for ``kipd.kernels.make``.
      target_size: targets the labels are solved on; ``None`` means the whole train set
        (as in the paper), a number a random subset of that size.
      rcond: relative singular-value cutoff of the pseudo-inverse.
    """

    ALGORITHM: ClassVar[str] = "label_solve"

    kernel: str = "convnet"
    target_size: int | None = None
    rcond: float = RCOND

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_kernel_name(self.kernel)
        _check(
            self.target_size is None
            or (isinstance(self.target_size, int) and self.target_size >= 1),
            f"target size must be an integer >= 1, got {self.target_size!r}: pass e.g. "
            "--target-size 10000, or leave it out to use the whole train set",
        )
        _check(
            0 < self.rcond < 1, f"rcond must be in (0, 1), got {self.rcond}: the default is 1e-6"
        )

    @property
    def eval_kernel(self) -> str:
        """The kernel test accuracy is measured with: ``kernel``."""
        return self.kernel

    def resolve(self, dataset: data.Dataset) -> LabelSolveConfig:
        """This config with every ``None`` replaced by the default for ``dataset``."""
        n = len(dataset.x_train)
        return dataclasses.replace(
            self,
            **self._resolve_common(dataset),
            target_size=n if self.target_size is None else min(self.target_size, n),
        )


_CONFIGS = {cls.ALGORITHM: cls for cls in (KipConfig, LabelSolveConfig)}


def config_from_json(value: dict[str, Any]) -> KipConfig | LabelSolveConfig:
    """The config of :meth:`to_json`'s output."""
    fields = dict(value)
    algorithm = fields.pop("algorithm", None)
    if algorithm not in _CONFIGS:
        raise ValueError(f"not a kipd config (algorithm {algorithm!r})")
    return _CONFIGS[algorithm](**fields)


def load_config(run_dir: str | Path) -> KipConfig | LabelSolveConfig:
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
            f"nothing to resume: {run_dir} is not a run directory (it has no {CONFIG_FILE}); leave "
            "out --resume to start a new run there"
        )
    try:
        return config_from_json(json.loads(path.read_text()))
    except (ValueError, TypeError) as err:
        raise DistillError(f"{path} is not a kipd run config ({err})") from err


def resume_config(run_dir: str | Path, **changes: Any) -> KipConfig:
    """The config of the KIP run in ``run_dir`` with ``changes`` applied, to resume it.

    Args:
      run_dir: a KIP run directory.
      **changes: options to change; :func:`run_kip` refuses all but ``steps`` and
        ``data_dir`` if they differ from the run's.

    Returns:
      The :class:`KipConfig` to pass to ``run_kip(config, run_dir, resume=True)``.

    Raises:
      DistillError: ``run_dir`` is not a KIP run directory.
    """
    saved = load_config(run_dir)
    if not isinstance(saved, KipConfig):
        raise DistillError(f"{run_dir} is a {saved.ALGORITHM} run; only KIP runs can be resumed")
    if changes.get("executor") == "local":  # leaving a cluster drops its options
        changes = {"ray_address": None, "workers": None, **changes}
    return dataclasses.replace(saved, **changes)


def config_differences(saved: _Common, requested: _Common) -> list[str]:
    """``"name: saved -> requested"`` for each option that a resumed run may not change."""
    if type(saved) is not type(requested):
        return [f"algorithm: {saved.ALGORITHM} -> {requested.ALGORITHM}"]
    return [
        f"{field.name}: {getattr(saved, field.name)!r} -> {getattr(requested, field.name)!r}"
        for field in dataclasses.fields(saved)
        if field.name not in RESUMABLE_CHANGES
        and getattr(saved, field.name) != getattr(requested, field.name)
    ]
