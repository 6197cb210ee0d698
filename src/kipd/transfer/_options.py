"""The options of ``kipd transfer`` as one dataclass: its fields are the command's flags
and its ``Attributes:`` their help (``kipd.cli`` builds them as it does a run's config);
:meth:`TransferOptions.keywords` gives them to :func:`kipd.transfer.transfer_run`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kipd.transfer._standard import EPOCHS, NETWORK_SEEDS
from kipd.transfer._train import L2_STRENGTHS, LOSSES, LR_FACTORS, NORMS
from kipd.transfer._transfer import PROTOCOLS

_STANDARD = "the standard protocol (--protocol standard)"
# "none" spells the network without normalization (NORMS' None) on the command line
_NORM_NAMES = tuple("none" if norm is None else norm for norm in NORMS)


def _cli(default: Any, **options: Any) -> Any:
    """A field with its command-line spelling (see ``kipd.cli``'s option builder)."""
    return dataclasses.field(default=default, metadata={"cli": options})


@dataclasses.dataclass(frozen=True)
class TransferOptions:
    """How ``kipd transfer`` trains finite networks on a distilled set (appendix A, or the
    standard protocol); the set and its dataset are :class:`kipd.runs.DatasetOptions`.

    Attributes:
      protocol: appendix-a: the paper's (finite network of --arch, learning rate and L2
        chosen on validation); standard: DC-bench's shared recipe (ConvNet-3 width 128,
        instance norm, DSA, SGD 0.01 / 10 at half, weight decay 5e-4, --epochs, mean +- std
        over --network-seeds; with --baseline, both sets and the improvement).
      network_seeds: networks per set.
      epochs: passes over the set.
      soft_labels: MSE on the learned labels instead of cross-entropy on their argmax (hard
        labels).
      arch: fc<n>, convvec<n>, convnet or myrtle5.
      width: hidden units / channels (the paper: 1024).
      steps: SGD steps (the paper's).
      lr_factors: learning-rate factors c of c x eta_critical.
      l2: L2 strengths.
      loss: MSE on the labels, or cross-entropy on their argmax.
      norm: normalization after each hidden layer, before its ReLU.
      eval_every: steps between validation readings (default: steps/50).
      validation_size: train images held out for selection.
      baseline: natural images: 'natural', a fresh class-balanced subset of the same size;
        'init', the natural images the run started from (paired). appendix-a trains on them
        instead of the set; standard trains on both and reports the improvement.
      seed: random seed.
    """

    protocol: str = _cli("appendix-a", choices=PROTOCOLS)
    network_seeds: int = _cli(NETWORK_SEEDS, metavar="N", positive=True, group=_STANDARD)
    epochs: int = _cli(EPOCHS, metavar="N", positive=True, group=_STANDARD)
    soft_labels: bool = _cli(False, action="store_true", group=_STANDARD)
    arch: str = "convnet"
    width: int = _cli(128, positive=True)
    steps: int = _cli(5000, positive=True)
    lr_factors: tuple[float, ...] = _cli(LR_FACTORS, metavar="C,C,...")
    l2: tuple[float, ...] = _cli(L2_STRENGTHS, metavar="L,L,...")
    loss: str = _cli("mse", choices=LOSSES)
    norm: str = _cli("none", choices=_NORM_NAMES)
    eval_every: int | None = _cli(None, metavar="STEPS", positive=True)
    validation_size: int = _cli(5000, metavar="N", positive=True)
    baseline: str | None = _cli(None, choices=("natural", "init"))
    seed: int = 0

    def keywords(self) -> dict[str, Any]:
        """The keyword arguments of :func:`kipd.transfer.transfer_run` these options give.

        Example:
          >>> TransferOptions(norm="none", width=64).keywords()["norm"] is None
          True
        """
        return {**dataclasses.asdict(self), "norm": None if self.norm == "none" else self.norm}
