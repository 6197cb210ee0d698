"""Durable runs: KIP and Label Solve on a dataset, into a run directory, and read back.

``run_kip`` and ``run_label_solve`` run the algorithms of ``kipd.distill`` on a dataset
into a durable run directory (config, metrics, checkpoints, the distilled set), and resume
one (``resume=True``: continue, extend, or repair its end); ``load_run`` reads one back
(finished or still training), ``load_distilled`` reads a distilled set (a run, an export
or a ``.npz``), and ``resolve`` adds its dataset, preprocessing, test subset and kernel:
the one reader every later command uses (its options as dataclasses: ``DatasetOptions``,
``EvaluateOptions``). ``evaluate`` reports the KRR test accuracy of a run or a distilled
``.npz``; ``export`` writes a finished run's set as a self-describing
folder (``distilled.npz`` + ``card.json``). The file names of a run directory are
constants here (``CONFIG_FILE``, ``REPORT_FILE``, ``FIGURES_DIR``).
"""

from kipd.compute import ComputeError
from kipd.runs._config import PRESETS, KipConfig, LabelSolveConfig, command_line, resume_command
from kipd.runs._errors import DistillError
from kipd.runs._estimate import plan_kip, plan_run
from kipd.runs._evaluate import evaluate, krr_test_accuracies
from kipd.runs._export import export
from kipd.runs._kip_run import run_kip
from kipd.runs._label_solve_run import run_label_solve
from kipd.runs._options import DatasetOptions, EvaluateOptions
from kipd.runs._presets import PAPER_TABLE_1, paper_figure, paper_settings, preset_config
from kipd.runs._resolve import Resolved, resolve
from kipd.runs._resume import resume_config
from kipd.runs._rundir import (
    CONFIG_FILE,
    FIGURES_DIR,
    REPORT_FILE,
    Distilled,
    Run,
    checkpoint_supports,
    load_config,
    load_distilled,
    load_run,
)

__all__ = [
    "CONFIG_FILE",
    "FIGURES_DIR",
    "PAPER_TABLE_1",
    "PRESETS",
    "REPORT_FILE",
    "ComputeError",
    "DatasetOptions",
    "Distilled",
    "DistillError",
    "EvaluateOptions",
    "KipConfig",
    "LabelSolveConfig",
    "Resolved",
    "Run",
    "checkpoint_supports",
    "command_line",
    "evaluate",
    "export",
    "krr_test_accuracies",
    "load_config",
    "load_distilled",
    "load_run",
    "paper_figure",
    "paper_settings",
    "plan_kip",
    "plan_run",
    "preset_config",
    "resolve",
    "resume_command",
    "resume_config",
    "run_kip",
    "run_label_solve",
]
