"""Transfer: train finite-width networks on a (distilled) support set (paper appendix A).

``transfer(images, labels, dataset)`` trains a finite FC-n / ConvVec-n / ConvNet /
Myrtle-5 (standard parameterization, optional layer / instance / batch norm) with SGD,
momentum 0.9 and cosine decay, over a grid of learning-rate factors (relative to the
critical learning rate of the empirical NTK) and L2 strengths, chooses the setting and the
early-stopping step on the validation split, and reports its test accuracy.
``standard_protocol`` is the field's shared recipe instead (DC-bench: ConvNet-3, DSA, fixed
SGD schedule, mean +- std over network seeds, against a random subset of the same size);
``transfer_run`` runs either on a distilled set on disk.
"""

from kipd.transfer._ntk import critical_learning_rate
from kipd.transfer._ntk import empirical_ntk
from kipd.transfer._standard import EPOCHS
from kipd.transfer._standard import NETWORK_SEEDS
from kipd.transfer._standard import StandardResult
from kipd.transfer._standard import standard_network
from kipd.transfer._standard import standard_protocol
from kipd.transfer._train import L2_STRENGTHS
from kipd.transfer._train import LR_FACTORS
from kipd.transfer._train import GridResult
from kipd.transfer._train import GridRow
from kipd.transfer._train import TrainState
from kipd.transfer._train import network
from kipd.transfer._train import objective
from kipd.transfer._train import optimizer
from kipd.transfer._train import train
from kipd.transfer._transfer import PROTOCOLS
from kipd.transfer._transfer import TransferResult
from kipd.transfer._transfer import transfer
from kipd.transfer._transfer import transfer_run

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
