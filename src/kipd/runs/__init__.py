"""Durable runs: KIP and Label Solve on a dataset, into a run directory, and read back.

``run_kip`` and ``run_label_solve`` run the algorithms of ``kipd.distill`` on a dataset
into a durable run directory (config, metrics, checkpoints, the distilled set), and resume
one (``resume=True``: continue, extend, or repair its end); ``load_run`` reads one back
(finished or still training), ``load_distilled`` reads a distilled set (a run, an export
or a ``.npz``), and ``resolve`` adds its dataset, preprocessing, test subset and kernel:
the one reader every later command uses. ``evaluate`` reports the KRR test accuracy of a
run or a distilled ``.npz``; ``export`` writes a finished run's set as a self-describing
folder (``distilled.npz`` + ``card.json``). The file names of a run directory are
constants here (``CONFIG_FILE``, ``REPORT_FILE``, ``FIGURES_DIR``).
"""

from kipd.compute import ComputeError
from kipd.runs._config import KipConfig
from kipd.runs._config import LabelSolveConfig
from kipd.runs._config import PRESETS
from kipd.runs._config import command_line
from kipd.runs._errors import DistillError
from kipd.runs._estimate import plan_kip
from kipd.runs._estimate import plan_run
from kipd.runs._evaluate import evaluate
from kipd.runs._evaluate import krr_test_accuracies
from kipd.runs._export import export
from kipd.runs._kip_run import run_kip
from kipd.runs._label_solve_run import run_label_solve
from kipd.runs._presets import PAPER_TABLE_1
from kipd.runs._presets import paper_figure
from kipd.runs._presets import paper_settings
from kipd.runs._presets import preset_config
from kipd.runs._resolve import Resolved
from kipd.runs._resolve import resolve
from kipd.runs._resume import resume_config
from kipd.runs._rundir import CONFIG_FILE
from kipd.runs._rundir import FIGURES_DIR
from kipd.runs._rundir import REPORT_FILE
from kipd.runs._rundir import Distilled
from kipd.runs._rundir import Run
from kipd.runs._rundir import checkpoint_supports
from kipd.runs._rundir import load_config
from kipd.runs._rundir import load_distilled
from kipd.runs._rundir import load_run

__all__ = [
    "CONFIG_FILE",
    "FIGURES_DIR",
    "PAPER_TABLE_1",
    "PRESETS",
    "REPORT_FILE",
    "ComputeError",
    "Distilled",
    "DistillError",
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
    "resume_config",
    "run_kip",
    "run_label_solve",
]
