"""The kipd command: help with examples, the three sub-commands, and error messages."""

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from kipd import cli, files
from kipd.cli import _run_printers


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
    # config.json now says 5 steps: a plain --resume is the finished run.
    assert cli.main(["distill", "--out", out, "--resume", "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == summary

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
    assert "(this process: " in text and " CPU core" in text  # where the steps would run
    assert cli.main([*args, "--out", str(out), "--plan", "--json", "--block-size", "8"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["kernels"][0]["blocks"] == 1 + 3 and plan["step_seconds"] > 0
    assert plan["run_seconds"] > 1000 * plan["step_seconds"] > 0  # the default 1000 steps


def test_plan_needs_no_out(dataset, capsys):
    args = ["distill", "--dataset", dataset, "--kernel", "fc1", "--target-batch-size", "20"]
    assert cli.main([*args, "--steps", "10", "--plan", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["zca_fit_seconds"] == 0  # grayscale: no ZCA
    for missing in ([], ["--plan", "--resume"]):  # a run, or a resumed one, needs its folder
        assert cli.main([*args, *missing]) == 1
        err = capsys.readouterr().err
        assert "no run directory: pass --out RUN_DIR" in err and "Traceback" not in err


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
        (["distill", "--kernel", "fc1", "--features", "128"], "--features 128:4"),
        (["distill", "--kernel", "fc1", "--loss", "platt"], "add e.g. --features"),
        (["distill", "--kernel", "fc1,fc2", "--features", "8:2"], "--features takes one"),
        (["label-solve", "--kernel", "fc1", "--features", "0:2"], "WIDTH:NETWORKS"),
        (["distill", "--kernel", "fc1", "--init-from", "nowhere"], "nowhere"),
    ],
)
def test_bad_input_names_the_problem(args, message, tmp_path, capsys):
    if args[0] != "evaluate":
        args = [*args, "--out", str(tmp_path / "run")]
    assert cli.main([*args, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"kipd {args[0]}: error:" in err and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["distill", "--lr", "inf"],
        ["distill", "--augment", "nan"],
        ["distill", "--lambda0", "1e999"],
        ["label-solve", "--zca-regularization", "inf"],
        ["label-solve", "--rcond", "nan"],
        ["evaluate", "run", "--zca-regularization", "inf"],
        ["transfer", "run", "--lr-factors", "1,inf"],
        ["transfer", "run", "--l2", "nan"],
        ["analyze", "subsample", "run", "--fractions", "0.5,nan"],
        ["report", "run", "--fractions", "inf"],
    ],
)
def test_non_finite_numbers_are_refused_up_front(args, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(args)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {args[-2]}: expected a finite number, got {args[-1]!r}" in err
    assert "inf and nan are refused" in err


def test_non_finite_config_values_are_refused():
    from kipd import runs

    with pytest.raises(ValueError, match="lr must be a finite number, got inf"):
        runs.KipConfig(lr=float("inf"))
    with pytest.raises(ValueError, match="rcond must be a finite number, got nan"):
        runs.LabelSolveConfig(rcond=float("nan"))


def test_help_lists_kernels_and_label_solves_own_seed(capsys):
    with pytest.raises(SystemExit):
        cli.main(["distill", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "fc<n>" in text and "convvec<n>" in text and "convnet (the paper's)" in text
    with pytest.raises(SystemExit):
        cli.main(["label-solve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "fc<n>" in text and "convvec<n>" in text
    seed = text[text.index("--seed SEED seeds") : text.index("--lambda0 LAMBDA0 relative")]
    assert "target_size random targets" in seed and "target batches" not in seed


def test_nan_pixels_are_named(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x_train = rng.random((12, 4, 4, 1))
    x_train[[3, 7], 1, 2] = np.nan
    path = tmp_path / "holes.npz"
    np.savez(
        path,
        x_train=x_train,
        y_train=np.arange(12) % 3,
        x_test=rng.random((3, 4, 4, 1)),
        y_test=np.arange(3),
    )
    assert (
        cli.main(
            ["distill", "--dataset", str(path), "--kernel", "fc1", "--out", str(tmp_path / "run")]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "x_train holds 2 NaN values, in 2 of its 12 images (indices 3, 7)" in err
    assert "np.nan_to_num" in err and "[nan, nan]" not in err


def test_a_short_run_is_not_compared_with_the_paper():
    from kipd import runs

    short = runs.KipConfig(dataset="fashion_mnist", steps=5)
    assert runs.paper_figure(short) is None
    assert runs.paper_figure(dataclasses.replace(short, steps=1000)) == (82.9, 0.2)
    printed = {
        "algorithm": "kip",
        "steps": 5,
        "dataset": "fashion_mnist",
        "support_size": 10,
        "kernel": "convnet",
        "test_size": 100,
        "init_test_accuracy": 0.5,
        "test_accuracy": 0.6,
        "seconds": 3.0,
    }
    assert "paper" not in _summary_text(printed)
    paper = {
        **printed,
        "paper_test_accuracy": 0.829,
        "paper_test_accuracy_std": 0.002,
        "gap_to_paper": -0.229,
    }
    assert "paper, Table 1" in _summary_text(paper)
    unmeasured = _summary_text({**printed, "init_test_accuracy": None})
    assert "not measured (--no-init-accuracy)" in unmeasured and "points" not in unmeasured


def _summary_text(summary):
    return _run_printers.format_summary(summary, "runs/x")


def test_a_slow_zca_fit_is_priced_said_and_named(tmp_path, capsys, monkeypatch):
    """RGB images get regularized ZCA: its fit is part of the estimate, said before it
    starts, and where it dominates a note names --no-zca (a 15-minute fit here stands in
    for the cube of the features of large images)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "rgb.npz"
    np.savez(
        path,
        x_train=rng.random((30, 4, 4, 3)),
        y_train=np.arange(30) % 3,
        x_test=rng.random((6, 4, 4, 3)),
        y_test=np.arange(6) % 3,
    )
    monkeypatch.setattr("kipd.data.zca_fit_seconds", lambda n, shape: 900.0)
    args = [
        "distill",
        "--dataset",
        str(path),
        "--kernel",
        "fc1",
        "--steps",
        "1",
        "--target-batch-size",
        "10",
        "--eval-size",
        "6",
        "--quiet",
    ]
    monkeypatch.setattr(cli.compute, "DAY_SECONDS", 600.0)
    assert cli.main([*args, "--out", str(tmp_path / "over")]) == 1
    err = capsys.readouterr().err
    assert "estimate: the ZCA fit on 30 train images of 48 features (4x4x3), then 1 KIP" in err
    assert "(ZCA fit 15.0 min, steps" in err
    assert "note: the ZCA fit is 15.0 min of this run's 15.0 min" in err
    assert "make it cheaper: --no-zca" in err and not (tmp_path / "over").exists()
    assert cli.main([*args, "--out", str(tmp_path / "run"), "--yes"]) == 0
    err = capsys.readouterr().err
    fitting = "fitting regularized ZCA (lambda 0.1) on 30 train images of 48 features (4x4x3)"
    assert err.index("estimate:") < err.index(fitting) and "about 15.0 min ..." in err
    assert cli.main([*args, "--out", str(tmp_path / "plain"), "--no-zca"]) == 0
    assert "ZCA" not in capsys.readouterr().err


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
    args = [
        "distill",
        "--dataset",
        dataset,
        "--kernel",
        "fc1",
        "--steps",
        "2",
        "--target-batch-size",
        "20",
        "--eval-size",
        "10",
        "--out",
        str(out),
        "--quiet",
    ]
    monkeypatch.setattr(cli.compute, "DAY_SECONDS", 1e-9)  # every run is "too long"
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "\nestimate: 2 KIP steps of 3 support x 20 target images (fc1)" in err
    assert "\nrunning on " in err and " CPU core" in err  # the devices, before the estimate
    assert "so it was not started. Pass --yes" in err and not out.exists()
    assert cli.main([*args, "--yes"]) == 0
    assert "estimate:" in capsys.readouterr().err
    for command in (
        ["evaluate", str(out)],
        ["label-solve", "--dataset", dataset, "--kernel", "fc1", "--out", str(tmp_path / "ls")],
    ):
        assert cli.main([*command, "--quiet"]) == 1
        assert "estimate: " in capsys.readouterr().err


def test_damaged_files_resume_from_the_previous_checkpoint_or_fail_cleanly(
    dataset, tmp_path, capsys
):
    out = tmp_path / "run"
    args = [
        "distill",
        "--dataset",
        dataset,
        "--kernel",
        "fc1",
        "--steps",
        "4",
        "--checkpoint-every",
        "2",
        "--eval-size",
        "10",
        "--out",
        str(out),
        "--quiet",
    ]
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
    np.savez(
        typo,
        x_train=rng.random((40, 4, 4, 1)),
        y_train=labels,
        x_test=rng.random((10, 4, 4, 1)),
        y_test=np.arange(10),
    )
    for args, message in (
        (["--dataset", "fashion_mnist", "--data-dir", "/nonexistent"], "is not a folder"),
        (["--dataset", str(typo)], "47 of 58 classes have no train images"),
    ):
        assert (
            cli.main(["label-solve", *args, "--kernel", "fc1", "--out", str(tmp_path / "x")]) == 1
        )
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_import_kipd_reaches_every_subpackage():
    code = "import kipd; print(kipd.kernels.make('fc1') is not None, kipd.distill.LAMBDA0)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["True", "1e-06"]


def _copy(run, folder):
    shutil.copytree(run, folder)
    return folder


def _refused(command, capsys):
    """The error of a kipd command that must fail cleanly."""
    assert cli.main([*command, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_one_writer_per_run_directory(tiny_run, dataset, tmp_path, capsys):
    """A second process on a run being written stops at once, naming the first; its lock
    is .NAME.lock beside the run directory."""
    run = _copy(tiny_run, tmp_path / "run")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    twin = tmp_path / "twin"
    new = ["--dataset", dataset, "--kernel", "fc1", "--out", str(twin)]
    locks = [files.exclusive_lock(tmp_path / name) for name in (".run.lock", ".twin.lock")]
    with locks[0], locks[1]:
        for args in (
            ["distill", "--out", str(run), "--resume", "--steps", "8"],
            ["distill", *new],
            ["label-solve", *new],
        ):
            out = run if "--resume" in args else twin
            assert (
                f"{out} is being written by process {os.getpid()} (it holds "
                f"{out.parent / ('.' + out.name + '.lock')}): one process writes a run at a time. "
                f"Wait for it to finish, or stop it (kill {os.getpid()}), then run this command "
                "again; nothing was changed"
            ) in _refused(args, capsys)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no twin, no lock left


def test_a_bad_metrics_line_loses_no_record(tiny_run, tmp_path, capsys):
    run = _copy(tiny_run, tmp_path / "run")
    metrics = run / "metrics.jsonl"
    original = metrics.read_text().splitlines()
    metrics.write_text("\n".join([*original[:3], "{garbage", *original[3:]]) + "\n")
    for name in ("checkpoints/step_00000006.npz", "distilled.npz", "summary.json"):
        (run / name).unlink()  # resumed from step 4: steps 5 and 6 are redone
    with pytest.warns(RuntimeWarning, match=r"line 4 of \S*metrics.jsonl is not a metrics record"):
        assert cli.main(["distill", "--out", str(run), "--resume", "--quiet"]) == 0
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(7))
    assert records[:5] == [json.loads(line) for line in original[:5]]


def test_resume_rebuilds_a_damaged_or_missing_end(tiny_run, tmp_path, capsys, umask_022):
    """Every message about a finished run's distilled.npz or summary.json points to
    --resume, which writes it again; printed paths are quoted for the shell."""
    run = _copy(tiny_run, tmp_path / "sp ace")
    distilled, summary = run / "distilled.npz", run / "summary.json"
    original = files.read_npz(distilled)
    hint = f"kipd distill --out {shlex.quote(str(run))} --resume"
    resume = ["distill", "--out", str(run), "--resume", "--quiet"]

    distilled.write_bytes(distilled.read_bytes()[:1000])
    for command in (["evaluate", str(run)], ["export", str(run), "--out", str(tmp_path / "x")]):
        assert (
            "distilled.npz is damaged: it is not an .npz archive (no zip directory: cut short?). "
            f"{hint} writes it again from its last good checkpoint"
        ) in _refused(command, capsys)
    with pytest.warns(RuntimeWarning, match="distilled.npz is damaged.*; this run writes it again"):
        assert cli.main(resume) == 0
    rebuilt = files.read_npz(distilled)
    assert rebuilt.keys() == original.keys()
    for name in original:
        np.testing.assert_array_equal(rebuilt[name], original[name])
    assert distilled.stat().st_mode & 0o777 == 0o644

    distilled.unlink()
    err = _refused(["evaluate", str(run)], capsys)
    assert f"has not finished (no distilled.npz): finish it with {hint}" in err
    assert cli.main(resume) == 0 and distilled.is_file()

    summary.write_text("{cut")
    err = _refused(["evaluate", str(run)], capsys)
    assert "summary.json is damaged: not JSON" in err and f"{hint} writes it again" in err
    with pytest.warns(RuntimeWarning, match="summary.json is damaged"):
        assert cli.main(resume) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(run), "--json", "--quiet"]) == 0
    accuracy = json.loads(capsys.readouterr().out)["test_accuracy"]
    assert accuracy == json.loads(summary.read_text())["test_accuracy"]


def test_label_solve_resume_rebuilds_its_labels(dataset, tmp_path, capsys):
    out = tmp_path / "new folder" / "l s"  # made for the run, as its lock lies beside it
    new = ["label-solve", "--dataset", dataset, "--kernel", "fc1", "--out", str(out), "--quiet"]
    assert cli.main(new) == 0
    labels = files.read_npz(out / "distilled.npz")["labels"]
    (out / "distilled.npz").unlink()
    capsys.readouterr()
    err = _refused(["evaluate", str(out)], capsys)
    assert f"continue it with kipd label-solve --out {shlex.quote(str(out))} --resume" in err
    assert cli.main(["label-solve", "--out", str(out), "--resume", "--quiet"]) == 0
    np.testing.assert_allclose(files.read_npz(out / "distilled.npz")["labels"], labels, rtol=1e-6)
    assert not (out / "kernel_rows").exists()


def test_an_edited_config_is_refused(tiny_run, tmp_path, capsys):
    run = _copy(tiny_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "lr": 0.02}))
    for command in (["distill", "--out", str(run), "--resume"], ["evaluate", str(run)]):
        assert (
            f"{run}/config.json was changed after the run started (recorded -> now: lr: 0.01 -> "
            "0.02): its checkpoints and files were made with the recorded config. Put the "
            "recorded values back in config.json, or start a new run"
        ) in _refused(command, capsys)
