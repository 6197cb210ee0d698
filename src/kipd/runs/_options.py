"""The options of a command that reads a distilled set back, as dataclasses: which dataset
and preprocessing it is read against (:class:`DatasetOptions`: ``kipd evaluate``,
``kipd transfer``), and with which kernel it is evaluated (:class:`EvaluateOptions`).
``kipd.cli`` builds their flags from the fields and the ``Attributes:`` below, as it does
for a run's config.
"""

from __future__ import annotations

import dataclasses

from kipd.kernels import KERNEL_OUTPUTS

_RELEASED = "preprocessing of a released .npz (kipd runs and exports record their own)"


@dataclasses.dataclass(frozen=True)
class DatasetOptions:
    """The dataset and preprocessing a distilled set on disk is read against (the keywords
    of :func:`kipd.runs.resolve` that name them); a run and an export record their own.

    Attributes:
      dataset: the dataset (a built-in name, or a path to an ``.npz`` file or image
        folder); default: the run's (required for released files).
      data_dir: folder searched first for the dataset's files.
      zca: regularized ZCA (default: the paper's choice for the dataset, ZCA for RGB).
      zca_regularization: ZCA strength (default: per dataset).
    """

    dataset: str | None = dataclasses.field(
        default=None, metadata={"cli": {"metavar": "NAME_OR_PATH"}}
    )
    data_dir: str | None = dataclasses.field(default=None, metadata={"cli": {"metavar": "DIR"}})
    zca: bool | None = dataclasses.field(default=None, metadata={"cli": {"group": _RELEASED}})
    zca_regularization: float | None = dataclasses.field(
        default=None, metadata={"cli": {"group": _RELEASED, "metavar": "LAMBDA"}}
    )


@dataclasses.dataclass(frozen=True)
class EvaluateOptions(DatasetOptions):
    """The keywords of :func:`kipd.runs.evaluate` that choose what is measured: the dataset
    (:class:`DatasetOptions`) and the kernel.

    Attributes:
      kernel: KRR kernel (default: the run's first kernel, convnet for released files).
      get: the kernel's output: ntk (the paper's kernel, every run's referee) or nngp (the
        kernel that random features, --features, estimate).
    """

    kernel: str | None = None
    get: str = dataclasses.field(default="ntk", metadata={"cli": {"choices": KERNEL_OUTPUTS}})
