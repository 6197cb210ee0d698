"""Transfer: train finite-width networks on a (distilled) support set (paper appendix A).

``transfer(images, labels, dataset)`` trains a finite FC-n / ConvVec-n / ConvNet /
Myrtle-5 (standard parameterization, optional layer / instance / batch norm) with SGD,
momentum 0.9 and cosine decay, over a grid of learning-rate factors (relative to the
critical learning rate of the empirical NTK) and L2 strengths, chooses the setting and the
early-stopping step on the validation split, and reports its test accuracy.
"""

from kipd.transfer._ntk import critical_learning_rate
from kipd.transfer._ntk import empirical_ntk
from kipd.transfer._train import L2_STRENGTHS
from kipd.transfer._train import LR_FACTORS
from kipd.transfer._train import GridResult
from kipd.transfer._train import GridRow
from kipd.transfer._train import TrainState
from kipd.transfer._train import network
from kipd.transfer._train import objective
from kipd.transfer._train import optimizer
from kipd.transfer._train import train
from kipd.transfer._transfer import TransferResult
from kipd.transfer._transfer import transfer
from kipd.transfer._transfer import transfer_run

__all__ = [
    "L2_STRENGTHS",
    "LR_FACTORS",
    "GridResult",
    "GridRow",
    "TrainState",
    "TransferResult",
    "critical_learning_rate",
    "empirical_ntk",
    "network",
    "objective",
    "optimizer",
    "train",
    "transfer",
    "transfer_run",
]
