"""The options of the analyses as dataclasses: the fields are the flags of ``kipd
analyze``, ``kipd report`` and ``kipd baseline``, the ``Attributes:`` their help
(``kipd.cli`` builds them as it does a run's config).

:class:`ContextOptions` are the choices every analysis of a run shares (those of
:class:`kipd.analysis.RunContext`); each entry of :data:`kipd.analysis.ANALYSES` names
the dataclass of its own options (:class:`DimensionOptions`, :class:`BandsOptions`,
:class:`SubsampleOptions`), whose fields are the keywords of its ``run``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kipd.analysis._bands import BANDS
from kipd.analysis._baseline import BASELINE_DRAWS
from kipd.analysis._subsample import DRAWS, FRACTIONS


def _cli(default: Any, **options: Any) -> Any:
    """A field with its command-line spelling (see ``kipd.cli``'s option builder)."""
    return dataclasses.field(default=default, metadata={"cli": options})


@dataclasses.dataclass(frozen=True)
class ContextOptions:
    """The choices every analysis of a run shares (:class:`kipd.analysis.RunContext`).

    Attributes:
      data_dir: folder searched first for the run's dataset.
      kernel: NTK architecture of the analysis (default: the run's first kernel).
      seed: seed of the random draws.
      test_size: a fixed random test subset of N images, drawn with the run's seed
        (default: the run's own test images, those of its summary).
    """

    data_dir: str | None = _cli(None, metavar="DIR")
    kernel: str | None = None
    seed: int = 0
    test_size: int | None = _cli(None, metavar="N", positive=True)


@dataclasses.dataclass(frozen=True)
class DimensionOptions:
    """The dimension analysis has no options beyond the run context's."""


@dataclasses.dataclass(frozen=True)
class BandsOptions:
    """The spectral band analysis (Fig. 8).

    Attributes:
      bands: contiguous bands of the spectrum (5: 20% each).
    """

    bands: int = BANDS


@dataclasses.dataclass(frozen=True)
class SubsampleOptions:
    """The subsampling analysis (Fig. A1).

    Attributes:
      fractions: kept fractions of the support.
      draws: random subsets per fraction (the paper's).
    """

    fractions: tuple[float, ...] = _cli(FRACTIONS, metavar="F,F,...")
    draws: int = DRAWS


@dataclasses.dataclass(frozen=True)
class BaselineOptions:
    """KRR on random natural subsets (Table A1): the keywords of
    :func:`kipd.analysis.natural_baseline` that ``kipd baseline`` takes.

    Attributes:
      dataset: dataset name or .npz / image-folder path.
      data_dir: folder searched first for the dataset's files.
      kernel: NTK architecture.
      per_class: images per class of each row.
      draws: random subsets per row (the paper's).
      test_size: a fixed random test subset of N images (default: the whole test set).
      pool_per_class: draw from a fixed random pool of N train images per class (default:
        the whole train set).
      zca: regularized ZCA preprocessing (default: the paper's choice, RGB datasets only).
      seed: random seed.
    """

    dataset: str = _cli("fashion_mnist", metavar="NAME_OR_PATH")
    data_dir: str | None = _cli(None, metavar="DIR")
    kernel: str = "convnet"
    per_class: tuple[int, ...] = _cli((1, 2, 4, 8), metavar="K,K,...")
    draws: int = _cli(BASELINE_DRAWS, positive=True)
    test_size: int | None = _cli(None, metavar="N", positive=True)
    pool_per_class: int | None = _cli(None, metavar="N", positive=True)
    zca: bool | None = None
    seed: int = 0
