"""Reading run directories: finished, unfinished (latest checkpoint), and not runs at all."""

import shutil

import numpy as np
import pytest

from kipd import analysis, distill


def test_a_finished_run(tiny_run):
    run = analysis.load_run(tiny_run)
    assert run.finished and run.step == 6 and run.summary["steps"] == 6
    assert run.images.shape == (12, 8, 8, 1) and run.labels.shape == (12, 3)
    assert list(run.classes) == [0] * 4 + [1] * 4 + [2] * 4
    assert [r["step"] for r in run.metrics] == list(range(7))
    assert not np.array_equal(run.images, run.init_images)  # KIP moved the images


def test_checkpoints_start_from_the_initial_support_and_end_at_the_final_one(tiny_run):
    run = analysis.load_run(tiny_run)
    supports = analysis.checkpoint_supports(run)
    assert list(supports) == [0, 2, 4, 6]
    np.testing.assert_array_equal(supports[0][0], run.init_images)
    np.testing.assert_array_equal(supports[6][0], run.images)
    np.testing.assert_array_equal(supports[6][1], run.labels)


def test_an_unfinished_run_reports_its_latest_checkpoint(tiny_run, tmp_path):
    copy = tmp_path / "unfinished"
    shutil.copytree(tiny_run, copy)
    (copy / "distilled.npz").unlink()
    (copy / "summary.json").unlink()
    (copy / "checkpoints" / "step_00000006.npz").unlink()
    run = analysis.load_run(copy)
    assert not run.finished and run.step == 4 and run.summary is None
    np.testing.assert_array_equal(run.images, analysis.checkpoint_supports(run)[4][0])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no run directory at"),
        (lambda p: p.mkdir(), "is not a kipd run directory"),
    ],
)
def test_not_a_run_directory(tmp_path, make, message):
    path = tmp_path / "nothing"
    make(path)
    with pytest.raises(analysis.AnalysisError, match=message):
        analysis.load_run(path)


def test_a_run_directory_with_files_missing(tiny_run, tmp_path):
    copy = tmp_path / "broken"
    shutil.copytree(tiny_run, copy)
    (copy / "preprocessing.npz").unlink()
    with pytest.raises(analysis.AnalysisError, match="preprocessing.npz missing"):
        analysis.load_run(copy)


def test_a_label_solve_run(tiny_dataset, tmp_path):
    out = tmp_path / "ls"
    config = distill.LabelSolveConfig(dataset=tiny_dataset, kernel="fc1", images_per_class=4)
    distill.run_label_solve(config, out, progress=False)
    run = analysis.load_run(out)
    assert run.finished and run.step == 0 and run.metrics == []
    np.testing.assert_array_equal(run.images, run.init_images)  # only the labels are solved
    assert list(analysis.checkpoint_supports(run)) == [0]
    assert set(analysis.run_figures(run)) == {"images", "labels"}  # no training curves
