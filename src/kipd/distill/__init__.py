"""Distillation algorithms: KRR (eq. 1), KIP, Label Solve (eq. 2); pure functions of arrays.

``kip(kernels, optimizer)`` gives the optax-style ``(init, update)`` pair over a
:class:`KipState` (``kip_on_features`` the same on a random-feature kernel, through
``krr_loss_features``, or RFAD's Platt-scaled cross-entropy with ``loss="platt"``), and
``label_solve`` solves eq. (2) from kernel matrices. Nothing here reads or writes a file:
runs on a dataset, their run directories, checkpoints and evaluation are ``kipd.runs``
(moved there in kipd 0.5).
"""

from kipd.compute import ComputeError
from kipd.distill._kip import Kip, KipState, kip, kip_on_features, sample_target_batch
from kipd.distill._krr import (
    LAMBDA0,
    accuracy,
    krr_loss,
    krr_loss_features,
    krr_platt_loss_features,
    krr_predict,
    krr_predict_features,
    ridge,
)
from kipd.distill._label_solve import RCOND, label_solve

__all__ = [
    "LAMBDA0",
    "RCOND",
    "ComputeError",
    "Kip",
    "KipState",
    "accuracy",
    "kip",
    "kip_on_features",
    "krr_loss",
    "krr_loss_features",
    "krr_platt_loss_features",
    "krr_predict",
    "krr_predict_features",
    "label_solve",
    "ridge",
    "sample_target_batch",
]
