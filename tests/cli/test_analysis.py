"""The kipd analyze / report / baseline commands: tables, JSON, files, error messages."""

import json
import sys

import pytest

from kipd import cli


@pytest.mark.parametrize(
    "command",
    [["analyze"], ["analyze", "dimension"], ["analyze", "bands"], ["report"], ["baseline"]],
)
def test_help_carries_a_working_example(command, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main([*command, "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"kipd {command[0]}" in text


def test_analyze_dimension_prints_a_row_per_checkpoint(tiny_run, capsys):
    assert cli.main(["analyze", "dimension", str(tiny_run), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "intrinsic (Two-NN)" in lines[1]
    assert [line.split()[0] for line in lines[2:]] == ["0", "2", "4", "6"]


def test_analyze_bands_json(tiny_run, capsys):
    assert cli.main(["analyze", "bands", str(tiny_run), "--bands", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["analysis"] == "bands" and result["kernel"] == "fc1"
    assert len(result["final"]["band_accuracy"]) == 4 and result["test_size"] == 30
    assert result["final"]["edges"] == [0, 3, 6, 9, 12]


def test_analyze_subsample_table(tiny_run, capsys):
    args = ["analyze", "subsample", str(tiny_run), "--fractions", "0.5", "--draws", "3"]
    assert cli.main([*args, "--test-size", "15", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "3 draws each" in text and "15 test images" in text and "50%" in text


def test_analyze_figures_and_report_write_files(tiny_run, tmp_path, capsys):
    assert cli.main(["analyze", "figures", str(tiny_run), "--out", str(tmp_path), "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "images.png", "labels.png"]
    out = tmp_path / "r.html"
    assert cli.main(["report", str(tiny_run), "--out", str(out), "--draws", "2", "--quiet"]) == 0
    printed = capsys.readouterr()
    assert f"report written: {out}" in printed.out and "intrinsic (Two-NN)" in printed.out
    assert out.is_file()
    # the estimate covers the figures and the subsampling's solves, not the kernels only
    assert "18 KRR solves of the subsampling, 6 figures" in printed.err
    assert ", subsampling " in printed.err and ", figures " in printed.err


def test_baseline_json(tiny_dataset, capsys):
    args = ["baseline", "--dataset", tiny_dataset, "--kernel", "fc1", "--per-class", "1,2"]
    assert cli.main([*args, "--draws", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["analysis"] == "baseline" and [r["per_class"] for r in result["rows"]] == [1, 2]
    assert all(len(r["accuracies"]) == 3 for r in result["rows"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze", "dimension", "missing_run"], "no run directory at missing_run"),
        (["analyze", "bands", "{run}", "--kernel", "vgg"], "unknown architecture"),
        (["report", "{run}", "--fractions", "0,1"], "fractions must be in (0, 1]"),
        (
            ["baseline", "--kernel", "fc1", "--per-class", "1,64", "--pool-per-class", "8"],
            "--pool-per-class 64",
        ),
    ],
)
def test_bad_input_names_the_problem(args, message, tiny_run, capsys):
    args = [a.format(run=tiny_run) for a in args]
    assert cli.main([*args, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"kipd {args[0]}: error:" in err and message in err and "Traceback" not in err


def test_report_without_matplotlib_says_how_to_install_it(tiny_run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert cli.main(["report", str(tiny_run), "--quiet"]) == 1
    assert "pip install 'kipd[analysis]'" in capsys.readouterr().err


def test_malformed_numbers_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        cli.main(["baseline", "--per-class", "1,two"])
    assert "expected comma-separated integers" in capsys.readouterr().err


def test_report_and_baseline_on_ray_equal_local(tiny_run, tiny_dataset, tmp_path, capsys):
    """Every kernel matrix of the analyses goes through kipd.compute: on a real local Ray
    cluster the report's analyses and a baseline give the local numbers."""
    pytest.importorskip("ray", reason="the Ray executor is an extra: pip install 'kipd[ray]'")
    results = {}
    for executor in ("local", "ray"):
        where = ["--executor", executor] + (["--workers", "2"] if executor == "ray" else [])
        out = str(tmp_path / f"{executor}.html")
        report = ["report", str(tiny_run), "--out", out, "--draws", "3", "--json", *where]
        assert cli.main(report) == 0
        results[executor] = json.loads(capsys.readouterr().out)
        baseline = ["baseline", "--dataset", tiny_dataset, "--kernel", "fc1", "--per-class", "1"]
        assert cli.main([*baseline, "--draws", "2", "--json", *where]) == 0
        results[executor]["baseline"] = json.loads(capsys.readouterr().out)
    for name in ("dimension", "bands", "subsample"):
        assert results["ray"][name] == results["local"][name], name
    local, ray = results["local"]["baseline"], results["ray"]["baseline"]
    assert ray["rows"] == local["rows"]
