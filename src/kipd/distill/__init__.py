"""Distillation: KRR (eq. 1), KIP, Label Solve (eq. 2), and durable runs.

The algorithms are pure functions of arrays: ``kip(kernels, optimizer)`` gives the
optax-style ``(init, update)`` pair over a :class:`KipState`, and ``label_solve`` solves
eq. (2) from kernel matrices. ``run_kip`` and ``run_label_solve`` run them on a dataset
into a durable run directory (config, metrics, checkpoints, the distilled set), and
``evaluate`` reports the KRR test accuracy of a run or a distilled ``.npz``.
"""

from kipd.compute import ComputeError
from kipd.distill._config import (
    DistillError,
    KipConfig,
    LabelSolveConfig,
    load_config,
    resume_config,
)
from kipd.distill._estimate import plan_kip, plan_run
from kipd.distill._kip import Kip, KipState, kip, sample_target_batch
from kipd.distill._krr import LAMBDA0, accuracy, krr_loss, krr_predict, ridge
from kipd.distill._label_solve import label_solve
from kipd.distill._run import Distilled, evaluate, load_distilled, run_kip, run_label_solve

__all__ = [
    "LAMBDA0",
    "ComputeError",
    "Distilled",
    "DistillError",
    "Kip",
    "KipConfig",
    "KipState",
    "LabelSolveConfig",
    "accuracy",
    "evaluate",
    "kip",
    "krr_loss",
    "krr_predict",
    "label_solve",
    "load_config",
    "load_distilled",
    "plan_kip",
    "plan_run",
    "resume_config",
    "ridge",
    "run_kip",
    "run_label_solve",
    "sample_target_batch",
]
