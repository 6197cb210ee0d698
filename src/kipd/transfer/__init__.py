"""Transfer: train finite-width networks on a (distilled) support set (paper appendix A).

``transfer(images, labels, dataset)`` trains a finite FC-n / ConvVec-n / ConvNet /
Myrtle-5 (standard parameterization, optional layer / instance / batch norm) with SGD,
momentum 0.9 and cosine decay, over a grid of learning-rate factors (relative to the
critical learning rate of the empirical NTK) and L2 strengths, chooses the setting and the
early-stopping step on the validation split, and reports its test accuracy.
``standard_protocol`` is the field's shared recipe instead (DC-bench: ConvNet-3, DSA, fixed
SGD schedule, mean +- std over network seeds, against a random subset of the same size);
``transfer_run`` runs either on a distilled set on disk, with the options of
``TransferOptions`` (the flags of ``kipd transfer``).
"""

from kipd.transfer._ntk import critical_learning_rate, empirical_ntk
from kipd.transfer._options import TransferOptions
from kipd.transfer._standard import (
    EPOCHS,
    NETWORK_SEEDS,
    StandardResult,
    standard_network,
    standard_protocol,
)
from kipd.transfer._train import (
    L2_STRENGTHS,
    LR_FACTORS,
    GridResult,
    GridRow,
    TrainState,
    network,
    objective,
    optimizer,
    train,
)
from kipd.transfer._transfer import PROTOCOLS, TransferResult, transfer, transfer_run

__all__ = [
    "EPOCHS",
    "L2_STRENGTHS",
    "LR_FACTORS",
    "NETWORK_SEEDS",
    "PROTOCOLS",
    "GridResult",
    "GridRow",
    "StandardResult",
    "TrainState",
    "TransferOptions",
    "TransferResult",
    "critical_learning_rate",
    "empirical_ntk",
    "network",
    "objective",
    "optimizer",
    "standard_network",
    "standard_protocol",
    "train",
    "transfer",
    "transfer_run",
]
