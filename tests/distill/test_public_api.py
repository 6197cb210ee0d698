"""Pins kipd.distill' public names: changing them is a visible decision."""

import kipd.distill


def test_public_names():
    assert kipd.distill.__all__ == [
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
    public = {name for name in dir(kipd.distill) if not name.startswith("_")}
    assert public == set(kipd.distill.__all__)
