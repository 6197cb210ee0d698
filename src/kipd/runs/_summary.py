"""A finished run's summary (``summary.json``): its test accuracies, its cost, and Table
1's figure where the run is the paper's setting (``_presets.paper_figure``)."""

from __future__ import annotations

import time
from typing import Any

from kipd import data
from kipd.runs._config import KipConfig, LabelSolveConfig
from kipd.runs._presets import paper_figure


def run_summary(
    config: KipConfig | LabelSolveConfig,
    dataset: data.Dataset,
    support_size: int,
    test_size: int,
    init_accuracy: float | None,
    final_accuracy: float,
    started: float,
    **extra: Any,
) -> dict[str, Any]:
    """The summary of a run that finished now.

    Args:
      config: the run's resolved config.
      dataset: its dataset.
      support_size: support images.
      test_size: test images of the final evaluation.
      init_accuracy, final_accuracy: KRR test accuracy (a fraction) of the initial and
        of the distilled set (``init_accuracy`` ``None``: not measured).
      started: ``time.perf_counter()`` when the command started (``seconds``: its wall
        time).
      **extra: the algorithm's own entries (KIP: steps, loss, best checkpoints).
    """
    figure = paper_figure(config)
    paper = {}
    if figure is not None:  # Table 1's figure for this dataset, support size and setting
        measured = extra.get("best_checkpoints_test_accuracy", final_accuracy)
        paper = {
            "paper_test_accuracy": figure[0] / 100,
            "paper_test_accuracy_std": None if figure[1] is None else figure[1] / 100,
            "gap_to_paper": measured - figure[0] / 100,
        }
    init_from = getattr(config, "init_from", None)  # KIP's --init-from
    return {
        "algorithm": config.ALGORITHM,
        "dataset": dataset.name,
        "kernel": config.eval_kernel,
        "support_size": support_size,
        "test_size": test_size,
        "init_test_accuracy": init_accuracy,
        "test_accuracy": final_accuracy,
        "seconds": round(time.perf_counter() - started, 1),
        **extra,
        **paper,
        **({"init_from": init_from} if init_from else {}),
        "preset": config.preset,
        "preset_overrides": list(config.preset_overrides),
    }
