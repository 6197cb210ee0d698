"""Distillation: KRR (eq. 1), KIP, Label Solve (eq. 2), and durable runs.

The algorithms are pure functions of arrays: ``kip(kernels, optimizer)`` gives the
optax-style ``(init, update)`` pair over a :class:`KipState`, and ``label_solve`` solves
eq. (2) from kernel matrices. ``run_kip`` and ``run_label_solve`` run them on a dataset
into a durable run directory (config, metrics, checkpoints, the distilled set);
``load_run`` reads one back (finished or still training), ``load_distilled`` reads a
distilled set (a run or a ``.npz``), and ``resolve`` adds its dataset, preprocessing,
test subset and kernel: the one reader every later command uses. ``evaluate`` reports the
KRR test accuracy of a run or a distilled ``.npz``; ``export`` writes a finished run's set
as a self-describing folder (``distilled.npz`` + ``card.json``).
"""

from kipd.compute import ComputeError
from kipd.distill._config import DistillError
from kipd.distill._config import KipConfig
from kipd.distill._config import PRESETS
from kipd.distill._config import command_line
from kipd.distill._config import LabelSolveConfig
from kipd.distill._config import load_config
from kipd.distill._config import resume_config
from kipd.distill._estimate import plan_kip
from kipd.distill._export import export
from kipd.distill._estimate import plan_run
from kipd.distill._kip import Kip
from kipd.distill._kip import KipState
from kipd.distill._kip import kip
from kipd.distill._kip import sample_target_batch
from kipd.distill._krr import LAMBDA0
from kipd.distill._krr import accuracy
from kipd.distill._krr import krr_loss
from kipd.distill._krr import krr_predict
from kipd.distill._krr import ridge
from kipd.distill._label_solve import RCOND
from kipd.distill._label_solve import label_solve
from kipd.distill._presets import PAPER_TABLE_1
from kipd.distill._presets import paper_figure
from kipd.distill._presets import paper_settings
from kipd.distill._presets import preset_config
from kipd.distill._resolve import Resolved
from kipd.distill._resolve import resolve
from kipd.distill._run import evaluate
from kipd.distill._run import krr_test_accuracies
from kipd.distill._run import run_kip
from kipd.distill._run import run_label_solve
from kipd.distill._rundir import Distilled
from kipd.distill._rundir import Run
from kipd.distill._rundir import checkpoint_supports
from kipd.distill._rundir import load_distilled
from kipd.distill._rundir import load_run

__all__ = [
    "LAMBDA0",
    "PAPER_TABLE_1",
    "PRESETS",
    "RCOND",
    "ComputeError",
    "Distilled",
    "DistillError",
    "Kip",
    "KipConfig",
    "KipState",
    "LabelSolveConfig",
    "Resolved",
    "Run",
    "accuracy",
    "checkpoint_supports",
    "command_line",
    "evaluate",
    "export",
    "kip",
    "krr_loss",
    "krr_predict",
    "krr_test_accuracies",
    "label_solve",
    "load_config",
    "load_distilled",
    "load_run",
    "paper_figure",
    "paper_settings",
    "plan_kip",
    "plan_run",
    "preset_config",
    "resolve",
    "resume_config",
    "ridge",
    "run_kip",
    "run_label_solve",
    "sample_target_batch",
]
