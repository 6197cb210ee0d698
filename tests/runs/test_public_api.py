"""Pins kipd.runs' public names: changing them is a visible decision."""

import kipd.runs


def test_public_names():
    assert kipd.runs.__all__ == [
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
    public = {name for name in dir(kipd.runs) if not name.startswith("_")}
    assert public == set(kipd.runs.__all__)
