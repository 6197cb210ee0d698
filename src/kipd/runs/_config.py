"""The configurations of KIP and Label Solve runs, validated on construction.

A config names everything a run depends on. Options left ``None`` take the paper's
defaults for the dataset when the run starts (:meth:`KipConfig.resolve`); the resolved
config is what a run directory's ``config.json`` records (``_rundir`` reads and writes it)
and what ``--resume`` checks (``_resume``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import shlex
from typing import Any, ClassVar

import kipd.kernels
from kipd import data
from kipd.distill import LAMBDA0, RCOND

PRESETS = ("paper",)
"""Named presets (``_presets``): ``paper`` is Table 1 with appendix A's settings."""

LR_SCHEDULES = ("constant", "cosine")
"""KIP's learning rate over the steps: the paper's constant, or a cosine decay to 0."""

TARGET_SAMPLINGS = ("uniform", "balanced")
"""How a KIP step draws its targets: any train images (the paper), or as many per class."""

LOSSES = ("mse", "platt")
"""KIP's loss: the paper's mean squared error of the KRR predictions (eq. 1), or RFAD's
Platt-scaled cross-entropy (the predictions times a learned scale, softmax cross-entropy;
runs on random features only)."""


def parse_features(text: str) -> tuple[int, int]:
    """``(width, networks)`` of a ``--features W:M`` value.

    Example:
      >>> parse_features("128:4")
      (128, 4)
    """
    parts = text.split(":") if isinstance(text, str) else []
    if len(parts) == 2 and all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        return int(parts[0]), int(parts[1])
    raise ValueError(
        f"features must be WIDTH:NETWORKS, two integers >= 1, got {text!r}: pass e.g. "
        "--features 128:4 (random networks of 128 channels, 4 per step), or leave it out "
        "for the exact kernel"
    )


# Options a resumed run may change: they do not alter the trajectory (``steps`` does
# under a decaying learning rate: see ``config_differences``).
RESUMABLE_CHANGES = frozenset({"steps", "data_dir", "test_size", "block_size", "init_accuracy"})
# Runtime options that kipd 0.1 recorded in config.json; they are ignored on reading
# (where blocks run is a choice of each command: kipd.compute.ExecutorConfig).
_RUNTIME_ONLY = ("executor", "ray_address", "workers")


def _cli(default: Any, **options: Any) -> Any:
    """A field with its command-line spelling (``flag``, ``metavar``, ``choices``); the
    help text is the field's line under ``Attributes:`` (``kipd.cli`` reads both)."""
    return dataclasses.field(default=default, metadata={"cli": options})


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_finite(config: Any) -> None:
    """Every float field of ``config`` is finite: inf and nan pass most range checks
    (``inf > 0``) and would fail only later, deep inside the run."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        _check(
            not isinstance(value, float) or math.isfinite(value),
            f"{field.name} must be a finite number, got {value}: pass an ordinary number "
            f"(--{field.name.replace('_', '-')}), or leave it out for the default",
        )


@functools.cache
def _check_kernel_name(name: str) -> None:
    kipd.kernels.make(name)


@dataclasses.dataclass(frozen=True)
class _Common:
    ALGORITHM: ClassVar[str]
    COMMAND: ClassVar[str]  # the kipd command that runs it

    dataset: str = _cli("fashion_mnist", metavar="NAME_OR_PATH")
    data_dir: str | None = _cli(None, metavar="DIR")
    images_per_class: int = _cli(1, metavar="N")
    zca: bool | None = None
    zca_regularization: float | None = _cli(None, metavar="LAMBDA")
    seed: int = 0
    lambda0: float = LAMBDA0
    test_size: int | None = _cli(None, metavar="N")
    features: str | None = _cli(None, metavar="W:M")
    feature_kernel: str = _cli("nngp", choices=kipd.kernels.KERNEL_OUTPUTS)
    preset: str | None = _cli(None, choices=PRESETS)
    preset_overrides: tuple[str, ...] = _cli((), skip=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "preset_overrides", tuple(self.preset_overrides))
        _check_finite(self)
        _check(
            self.preset is None or self.preset in PRESETS,
            f"unknown preset {self.preset!r}: use one of {', '.join(PRESETS)}",
        )
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
        if self.features is not None:
            parse_features(self.features)
        _check(
            self.feature_kernel in kipd.kernels.KERNEL_OUTPUTS,
            f"unknown feature kernel {self.feature_kernel!r}: pass --feature-kernel nngp or "
            "--feature-kernel ntk",
        )
        _check(
            self.feature_kernel == "nngp" or self.features is not None,
            f"--feature-kernel {self.feature_kernel} chooses what random features estimate: "
            "add e.g. --features 16:4, or leave it out for the exact kernel",
        )

    @property
    def feature_map(self) -> tuple[int, int] | None:
        """``(width, networks)`` of a run on random features, ``None`` for the exact kernel."""
        return None if self.features is None else parse_features(self.features)

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
      features: ``W:M``: train on random features instead of the exact kernel: each step
        draws ``M`` random finite networks of width ``W`` of the kernel's architecture
        (RFAD's feature map, whose inner products estimate the kernel's NNGP; see
        docs/kernels.md), so a step costs forward passes of the images instead of one
        kernel evaluation per (support, target) pair. Readings during training use the
        same feature map with fixed networks; the final accuracies are measured with the
        exact kernel (the referee) and with the features. ``None``: the exact kernel.
      feature_kernel: the kernel the random ``features`` estimate: ``"nngp"`` (RFAD's
        features: the readout's inputs) or ``"ntk"`` (every parameter's gradient: the
        kernel of the exact runs and the referee, at several times the cost per step; see
        docs/kernels.md).
      preset: ``paper``: start from the paper's settings for the dataset and images per
        class (Table 1, appendix A; see docs/runs.md); options given explicitly
        override its values.
      preset_overrides: the options given explicitly that replaced a preset value.
      kernels: kernel names, comma-separated: ``fc<n>`` (n dense layers, e.g. ``fc1``),
        ``convvec<n>`` (n conv layers, e.g. ``convvec3``) or ``convnet`` (the paper's);
        several means sampling KIP (each step draws one).
      steps: KIP updates.
      target_batch_size: targets per step (5000 in the paper), capped by the train set.
      target_sampling: ``"uniform"`` (the paper: any train images) or ``"balanced"``: the
        same number of each class per step (one more for ``target_batch_size % classes``
        classes drawn at random), which removes the class counts' share of the batch noise.
      learn_labels: optimize the support labels too (all of the paper's Table 1 runs).
      augment: fraction of each target batch augmented (0 = none).
      lr: Adam learning rate; ``None`` means 0.01 for grayscale and 0.04 for RGB.
      lr_schedule: ``"constant"`` (the paper) or ``"cosine"``: the learning rate decays
        from ``lr`` to 0 at ``steps`` by a cosine (a run on it cannot be extended by
        ``--resume --steps``).
      init: ``"natural"`` (class-balanced train subset) or ``"noise"`` (uniform pixels).
      checkpoint_every: steps between checkpoints (50 in the paper).
      eval_every: steps between test accuracy readings on the evaluation subset.
      eval_size: images of the fixed test subset read during training (the final
        summary uses ``test_size``).
      keep_best: checkpoints of lowest train loss kept, besides the latest.
      block_size: block side ``B`` of the block plan (``None``: per kernel, see
        :func:`kipd.compute.default_block_size`).
      loss: ``"mse"`` (the paper's eq. 1) or ``"platt"``: RFAD's Platt-scaled
        cross-entropy, softmax cross-entropy of the KRR predictions times a learned scale
        (runs on ``features`` only).
      init_from: start from the distilled set of a run directory, its ``distilled.npz``, an
        export or a released ``.npz`` (images and labels) instead of natural images, e.g. to
        refine a run on features with the exact kernel. It must have ``images_per_class``
        images per class and the run's preprocessing.
      init_accuracy: measure the initial set's KRR test accuracy at the end with the
        exact kernel, next to the distilled set's. It costs as much as the distilled set's
        (50 images per class on Fashion-MNIST's 10,000 test images: 5M ConvNet entries,
        about 45 min on a 2-core CPU); ``False`` (``--no-init-accuracy``) skips it: the
        summary's ``init_test_accuracy`` is then ``None``, and a run on features still
        measures the initial set with its feature kernel, which is cheap.
    """

    ALGORITHM: ClassVar[str] = "kip"
    COMMAND: ClassVar[str] = "distill"

    kernels: tuple[str, ...] = _cli(("convnet",), flag="--kernel", metavar="NAMES")
    steps: int = 1000
    target_batch_size: int = _cli(5000, metavar="N")
    target_sampling: str = _cli("uniform", choices=TARGET_SAMPLINGS)
    learn_labels: bool = True
    augment: float = _cli(0.0, metavar="FRACTION")
    lr: float | None = None
    lr_schedule: str = _cli("constant", choices=LR_SCHEDULES)
    init: str = _cli("natural", choices=("natural", "noise"))
    checkpoint_every: int = _cli(50, metavar="STEPS")
    eval_every: int = _cli(50, metavar="STEPS")
    eval_size: int = _cli(1000, metavar="N")
    keep_best: int = _cli(5, metavar="N")
    block_size: int | None = _cli(None, metavar="B")
    loss: str = _cli("mse", choices=LOSSES)
    init_from: str | None = _cli(None, metavar="RUN_OR_EXPORT")
    init_accuracy: bool = True

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
            self.lr_schedule in LR_SCHEDULES,
            f"unknown learning rate schedule {self.lr_schedule!r}: pass --lr-schedule constant "
            "or --lr-schedule cosine",
        )
        _check(
            self.target_sampling in TARGET_SAMPLINGS,
            f"unknown target sampling {self.target_sampling!r}: pass --target-sampling uniform "
            "or --target-sampling balanced",
        )
        _check(
            self.init in ("natural", "noise"),
            f"init must be 'natural' or 'noise', got {self.init!r}: pass --init natural",
        )
        _check(
            self.block_size is None or (isinstance(self.block_size, int) and self.block_size >= 1),
            f"block size must be an integer >= 1, got {self.block_size!r}: pass e.g. "
            "--block-size 32, or leave it out for the default",
        )
        self._check_features_and_init()

    def _check_features_and_init(self) -> None:
        _check(
            self.loss in LOSSES,
            f"unknown loss {self.loss!r}: pass --loss mse (the paper) or --loss platt",
        )
        _check(
            self.loss == "mse" or self.features is not None,
            "--loss platt (RFAD's) is for runs on random features: add e.g. --features 128:4, "
            "or use --loss mse with the exact kernel",
        )
        _check(
            self.features is None or len(self.kernels) == 1,
            f"--features takes one kernel, got {','.join(self.kernels)}: pass e.g. --kernel "
            "convnet, or leave out --features for sampling KIP over several exact kernels",
        )
        _check(
            self.init_from is None or (isinstance(self.init_from, str) and bool(self.init_from)),
            "init_from is empty: pass a run directory or .npz file, e.g. --init-from runs/features",
        )
        _check(
            self.init_from is None or self.init == "natural",
            f"--init {self.init} and --init-from both choose the initial set: leave out --init",
        )

    def step_kernel_entries(self, num_classes: int) -> int:
        """Kernel entries one KIP step spends: ``K_ss`` and ``K_ts`` forward, then the
        same entries again in the VJP, ``2 (n_s^2 + B n_s)`` with ``n_s`` support images
        and ``B`` targets. The unit of the accuracy-against-cost curve (docs/results.md)
        and of the run's estimate.

        Args:
          num_classes: classes of the dataset (``n_s = images_per_class * num_classes``).

        Example:
          >>> KipConfig(target_batch_size=5000).step_kernel_entries(10)
          100200
        """
        support = self.images_per_class * num_classes
        return 2 * (support * support + self.target_batch_size * support)

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
      dataset, data_dir, images_per_class, zca, zca_regularization, lambda0, test_size,
        preset, preset_overrides: as in :class:`KipConfig`.
      seed: seeds the draws of Label Solve: the class-balanced natural support images, the
        ``target_size`` random targets, the ``test_size`` test subset and the networks of
        ``features``.
      features: ``W:M``: solve with the kernel of ``M`` random finite networks of width
        ``W`` (fixed networks; see :class:`KipConfig`); the final accuracies are measured
        with the exact kernel and with the features. ``None``: the exact kernel.
      feature_kernel: ``"nngp"`` or ``"ntk"``, as in :class:`KipConfig`.
      kernel: kernel name: ``fc<n>`` (n dense layers, e.g. ``fc1``), ``convvec<n>`` (n
        conv layers, e.g. ``convvec3``) or ``convnet`` (the paper's).
      target_size: targets the labels are solved on; ``None`` means the whole train set
        (as in the paper), a number a random subset of that size.
      rcond: relative singular-value cutoff of the pseudo-inverse.
    """

    ALGORITHM: ClassVar[str] = "label_solve"
    COMMAND: ClassVar[str] = "label-solve"

    kernel: str = "convnet"
    target_size: int | None = _cli(None, metavar="N")
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
    fields = {k: v for k, v in value.items() if k not in _RUNTIME_ONLY}
    algorithm = fields.pop("algorithm", None)
    if algorithm not in _CONFIGS:
        raise ValueError(f"not a kipd config (algorithm {algorithm!r})")
    return _CONFIGS[algorithm](**fields)


def command_line(*words: str | int | os.PathLike) -> str:
    """A command as kipd prints it for the user to paste: each word quoted for the shell
    where it needs to be (a path with a space, say).

    Example:
      >>> from pathlib import Path
      >>> command_line("kipd", "distill", "--out", Path("runs/sp ace"), "--resume")
      "kipd distill --out 'runs/sp ace' --resume"
    """
    return " ".join(shlex.quote(str(word)) for word in words)


def resume_command(run_dir: str | os.PathLike, config: _Common | type[_Common]) -> str:
    """The command that continues the run in ``run_dir`` (and rebuilds a finished run's
    damaged or missing ``distilled.npz`` / ``summary.json``): ``kipd distill --out RUN
    --resume``, or ``kipd label-solve ...`` for a Label Solve run.

    Args:
      run_dir: the run directory.
      config: the run's config, or its class.
    """
    return command_line("kipd", config.COMMAND, "--out", run_dir, "--resume")


def config_differences(saved: _Common, requested: _Common) -> list[str]:
    """``"name: saved -> requested"`` for each option that a resumed run may not change."""
    if type(saved) is not type(requested):
        return [f"algorithm: {saved.ALGORITHM} -> {requested.ALGORITHM}"]
    # A decaying learning rate reaches 0 at ``steps``: more steps would change every
    # step's rate, so such a run is continued only to its own end.
    schedule = getattr(saved, "lr_schedule", "constant")
    fixed_steps = schedule != "constant"
    return [
        f"{field.name}: {getattr(saved, field.name)!r} -> {getattr(requested, field.name)!r}"
        + (f" ({schedule} learning rate)" if field.name == "steps" else "")
        for field in dataclasses.fields(saved)
        if (field.name not in RESUMABLE_CHANGES or (field.name == "steps" and fixed_steps))
        and getattr(saved, field.name) != getattr(requested, field.name)
    ]
