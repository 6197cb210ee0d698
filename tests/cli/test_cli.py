"""The kipd command: help with examples, the three sub-commands, and error messages."""

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from kipd import cli


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A tiny random .npz dataset (3 classes of 8x8 grayscale images)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(
        path,
        x_train=rng.random((60, 8, 8, 1)),
        y_train=np.arange(60) % 3,
        x_test=rng.random((30, 8, 8, 1)),
        y_test=np.arange(30) % 3,
    )
    return str(path)


@pytest.mark.parametrize("command", [[], ["distill"], ["label-solve"], ["evaluate"]])
def test_help_carries_a_working_example(command, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main([*command, "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "kipd " in text
    if not command:
        assert cli.QUICKSTART in text


def test_installed_command_runs():
    # pip puts console scripts beside the interpreter that installed them (a venv's bin/),
    # which need not be on PATH: CI calls .venv/bin/python without activating the venv.
    kipd = Path(sysconfig.get_path("scripts")) / "kipd"
    assert kipd.is_file(), f"the kipd script is not installed in {kipd.parent}: pip install -e ."
    result = subprocess.run([kipd, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("kipd ")


def test_distill_resume_and_evaluate(dataset, tmp_path, capsys):
    out = str(tmp_path / "run")
    common = ["--dataset", dataset, "--out", out, "--quiet"]
    args = [
        "distill",
        *common,
        "--kernel",
        "fc1",
        "--steps",
        "3",
        "--target-batch-size",
        "20",
        "--eval-size",
        "10",
    ]
    assert cli.main(args) == 0
    table = capsys.readouterr().out
    assert "natural init" in table and "KIP (3 steps)" in table and "points" in table

    assert cli.main(["distill", "--out", out, "--resume", "--steps", "5", "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 5

    assert cli.main(["evaluate", out, "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert result["init_test_accuracy"] == pytest.approx(summary["init_test_accuracy"])

    assert cli.main(["evaluate", f"{out}/distilled.npz", "--kernel", "fc2", "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_plan_prints_the_cost_and_trains_nothing(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["distill", "--dataset", dataset, "--kernel", "fc1", "--target-batch-size", "20"]
    assert cli.main([*args, "--steps", "10", "--out", str(out), "--plan"]) == 0
    text = capsys.readouterr().out
    assert "per step" in text and "whole run" in text and "peak memory per worker" in text
    assert "kernel entries forward" in text and not out.exists()
    assert cli.main([*args, "--out", str(out), "--plan", "--json", "--block-size", "8"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["kernels"][0]["blocks"] == 1 + 3 and plan["step_seconds"] > 0
    assert plan["run_seconds"] > 1000 * plan["step_seconds"] > 0  # the default 1000 steps


def test_label_solve(dataset, tmp_path, capsys):
    out = str(tmp_path / "ls")
    assert (
        cli.main(["label-solve", "--dataset", dataset, "--kernel", "fc1", "--out", out, "--quiet"])
        == 0
    )
    assert "Label Solve" in capsys.readouterr().out
    # A finished run resumed gives its summary back; a new run there is refused.
    assert cli.main(["label-solve", "--out", out, "--resume", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["algorithm"] == "label_solve"
    assert cli.main(["label-solve", "--dataset", dataset, "--kernel", "fc1", "--out", out]) == 1
    assert "pass --resume to continue it" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["distill", "--images-per-class", "0"], "--images-per-class"),
        (["distill", "--steps", "0"], "--steps"),
        (["distill", "--kernel", "vgg"], "unknown architecture"),
        (["distill", "--dataset", "imagenet", "--kernel", "fc1"], "fashion_mnist"),
        (["distill", "--resume"], "nothing to resume"),
        (["label-solve", "--kernel", "fc1", "--rcond", "2"], "rcond"),
        (["evaluate", "missing.npz"], "missing.npz"),
        (["distill", "--kernel", "fc1", "--workers", "2"], "--executor ray"),
        (["distill", "--kernel", "fc1", "--block-size", "0"], "--block-size"),
    ],
)
def test_bad_input_names_the_problem(args, message, tmp_path, capsys):
    if args[0] != "evaluate":
        args = [*args, "--out", str(tmp_path / "run")]
    assert cli.main([*args, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"kipd {args[0]}: error:" in err and message in err and "Traceback" not in err


def test_existing_run_and_changed_config_are_refused(dataset, tmp_path, capsys):
    out = str(tmp_path / "run")
    base = [
        "distill",
        "--dataset",
        dataset,
        "--kernel",
        "fc1",
        "--steps",
        "2",
        "--eval-size",
        "10",
        "--out",
        out,
        "--quiet",
    ]
    assert cli.main(base) == 0
    capsys.readouterr()
    assert cli.main(base) == 1
    assert "already holds a run: pass --resume" in capsys.readouterr().err
    assert cli.main([*base, "--resume", "--lr", "0.3"]) == 1
    assert "another config (lr: 0.01 -> 0.3)" in capsys.readouterr().err


def test_cost_is_said_before_commitment(dataset, tmp_path, capsys, monkeypatch):
    """An estimate: line first; over the budget nothing starts without --yes."""
    out = tmp_path / "run"
    args = ["distill", "--dataset", dataset, "--kernel", "fc1", "--steps", "2",
            "--target-batch-size", "20", "--eval-size", "10", "--out", str(out), "--quiet"]
    monkeypatch.setattr(cli.compute, "DAY_SECONDS", 1e-9)  # every run is "too long"
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "\nestimate: 2 KIP steps of 3 support x 20 target images (fc1)" in err
    assert "so it was not started. Pass --yes" in err and not out.exists()
    assert cli.main([*args, "--yes"]) == 0
    assert "estimate:" in capsys.readouterr().err
    for command in (["evaluate", str(out)], ["label-solve", "--dataset", dataset, "--kernel",
                                              "fc1", "--out", str(tmp_path / "ls")]):
        assert cli.main([*command, "--quiet"]) == 1
        assert "estimate: " in capsys.readouterr().err


def test_damaged_files_resume_from_the_previous_checkpoint_or_fail_cleanly(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["distill", "--dataset", dataset, "--kernel", "fc1", "--steps", "4",
            "--checkpoint-every", "2", "--eval-size", "10", "--out", str(out), "--quiet"]
    assert cli.main(args) == 0
    capsys.readouterr()
    latest = out / "checkpoints" / "step_00000004.npz"
    latest.write_bytes(latest.read_bytes()[:200])  # cut short
    (out / "summary.json").unlink()
    (out / "distilled.npz").unlink()
    # (kipd prints warnings as "kipd: warning: ..." lines; pytest collects them instead)
    with pytest.warns(RuntimeWarning, match="step_00000004.npz is damaged.*step_00000002.npz"):
        assert cli.main(["distill", "--out", str(out), "--resume", "--quiet"]) == 0
    assert "estimate: " in capsys.readouterr().err
    distilled = out / "distilled.npz"
    distilled.write_bytes(distilled.read_bytes()[:1000])
    assert cli.main(["evaluate", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "distilled.npz is damaged" in err and "Traceback" not in err


def test_bad_data_is_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 10
    labels[0] = 57
    typo = tmp_path / "typo.npz"
    np.savez(typo, x_train=rng.random((40, 4, 4, 1)), y_train=labels,
             x_test=rng.random((10, 4, 4, 1)), y_test=np.arange(10))
    for args, message in (
        (["--dataset", "fashion_mnist", "--data-dir", "/nonexistent"], "is not a folder"),
        (["--dataset", str(typo)], "47 of 58 classes have no train images"),
    ):
        assert cli.main(["label-solve", *args, "--kernel", "fc1", "--out", str(tmp_path / "x")]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_import_kipd_reaches_every_subpackage():
    code = "import kipd; print(kipd.kernels.make('fc1') is not None, kipd.distill.LAMBDA0)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "1e-06"]
