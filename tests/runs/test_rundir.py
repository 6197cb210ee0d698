"""The run directory: read back finished, unfinished, damaged, old-format and not-a-run
directories; checkpoints keyed by tree path; recorded test subsets; the metrics log."""

import json
import shutil
import warnings

import jax
import numpy as np
import optax
import pytest

from kipd import analysis, compute, distill, files, runs
from kipd.runs import _checkpoint


def test_a_finished_run(tiny_run):
    run = runs.load_run(tiny_run)
    assert run.finished and run.step == 6 and run.summary["steps"] == 6
    assert run.images.shape == (12, 8, 8, 1) and run.labels.shape == (12, 3)
    assert list(run.classes) == [0] * 4 + [1] * 4 + [2] * 4
    assert [r["step"] for r in run.metrics] == list(range(7))
    assert not np.array_equal(run.images, run.init_images)  # KIP moved the images
    # The test images of the summary are recorded, and every reader reuses them.
    assert run.summary["test_size"] == len(run.test_indices) == 30
    resolved = runs.resolve(run)
    np.testing.assert_array_equal(resolved.test_indices, run.test_indices)


def test_checkpoints_start_from_the_initial_support_and_end_at_the_final_one(tiny_run):
    run = runs.load_run(tiny_run)
    supports = runs.checkpoint_supports(run)
    assert list(supports) == [0, 2, 4, 6]
    np.testing.assert_array_equal(supports[0][0], run.init_images)
    np.testing.assert_array_equal(supports[6][0], run.images)
    np.testing.assert_array_equal(supports[6][1], run.labels)


def _copy(tiny_run, tmp_path, name="copy"):
    copy = tmp_path / name
    shutil.copytree(tiny_run, copy)
    return copy


def test_an_unfinished_run_reports_its_latest_checkpoint(tiny_run, tmp_path):
    copy = _copy(tiny_run, tmp_path)
    (copy / "distilled.npz").unlink()
    (copy / "summary.json").unlink()
    (copy / "checkpoints" / "step_00000006.npz").unlink()
    run = runs.load_run(copy)
    assert not run.finished and run.step == 4 and run.summary is None
    np.testing.assert_array_equal(run.images, runs.checkpoint_supports(run)[4][0])
    with pytest.raises(runs.DistillError, match="has not finished.*--resume"):
        runs.load_distilled(copy)


@pytest.mark.parametrize(
    "damage", [lambda p: p.write_bytes(b""), lambda p: p.write_bytes(p.read_bytes()[:-100])]
)
def test_a_damaged_latest_checkpoint_is_named_and_the_newest_good_one_used(
    tiny_run, tmp_path, damage
):
    copy = _copy(tiny_run, tmp_path)
    (copy / "distilled.npz").unlink()
    damage(copy / "checkpoints" / "step_00000006.npz")
    with pytest.warns(RuntimeWarning, match="step_00000006.npz is damaged.*step_00000004.npz"):
        run = runs.load_run(copy)
    assert run.step == 4


def test_a_damaged_checkpoint_on_resume_falls_back_to_the_one_before(tiny_run, tmp_path):
    copy = _copy(tiny_run, tmp_path)
    config = runs.load_config(copy)
    whole = runs.run_kip(
        runs.resume_config(copy, steps=8),
        _copy(tiny_run, tmp_path, "whole"),
        resume=True,
        progress=False,
    )
    (copy / "checkpoints" / "step_00000006.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.warns(RuntimeWarning, match="step_00000006.npz is damaged"):
        resumed = runs.run_kip(runs.resume_config(copy, steps=8), copy, resume=True, progress=False)
    assert resumed["test_accuracy"] == whole["test_accuracy"] and config.steps == 6


def test_a_damaged_distilled_set_is_named(tiny_run, tmp_path):
    copy = _copy(tiny_run, tmp_path)
    data = (copy / "distilled.npz").read_bytes()
    (copy / "distilled.npz").write_bytes(data[:100] + bytes(len(data) - 100))
    with pytest.raises(runs.DistillError, match="distilled.npz is damaged"):
        runs.evaluate(copy, progress=False)


def test_a_run_of_the_previous_release_loads(tiny_run, tmp_path):
    """kipd 0.1: positional checkpoints, executor options in config.json, no
    test_subset.npz, no content hashes, no config recorded in init.npz."""
    copy = _copy(tiny_run, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "executor": "local", "workers": None}))
    (copy / "test_subset.npz").unlink()
    init = files.read_npz(copy / "init.npz")
    np.savez(copy / "init.npz", **{k: v for k, v in init.items() if k != "config"})
    old = runs.load_run(tiny_run)
    algo = distill.kip(compute.KernelSpec("fc1"), optax.adam(0.01))
    template = algo.init(old.init_images, old.init_labels, jax.random.PRNGKey(0))
    for path in (copy / "checkpoints").glob("step_*.npz"):
        leaves = jax.tree_util.tree_leaves(_checkpoint.load_checkpoint(path, template))
        legacy = {f"leaf_{i:04d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
        np.savez(path, **legacy, loss=np.float64(0.5), num_leaves=len(leaves))
    run = runs.load_run(copy)
    assert run.test_indices is None
    np.testing.assert_array_equal(
        runs.checkpoint_supports(run)[4][0], runs.checkpoint_supports(runs.load_run(tiny_run))[4][0]
    )
    assert len(runs.resolve(run).test_indices) == 30
    runs.run_kip(runs.resume_config(copy, steps=7), copy, resume=True, progress=False)


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
    with pytest.raises(runs.DistillError, match=message):
        runs.load_run(path)


def test_a_run_directory_with_files_missing(tiny_run, tmp_path):
    copy = _copy(tiny_run, tmp_path)
    (copy / "preprocessing.npz").unlink()
    with pytest.raises(runs.DistillError, match="preprocessing.npz is missing"):
        runs.load_run(copy)


def test_a_label_solve_run(tiny_dataset, tmp_path):
    out = tmp_path / "ls"
    config = runs.LabelSolveConfig(dataset=tiny_dataset, kernel="fc1", images_per_class=4)
    runs.run_label_solve(config, out, progress=False)
    run = runs.load_run(out)
    assert run.finished and run.step == 0 and run.metrics == []
    np.testing.assert_array_equal(run.images, run.init_images)  # only the labels are solved
    assert list(runs.checkpoint_supports(run)) == [0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set(analysis.run_figures(run)) == {"images", "labels"}  # no training curves


def test_a_bad_metrics_line_is_skipped_with_its_number(tiny_run, tmp_path):
    copy = _copy(tiny_run, tmp_path)
    lines = (copy / "metrics.jsonl").read_text().splitlines()
    (copy / "metrics.jsonl").write_text("\n".join([*lines[:3], "{garbage", "[1]", *lines[3:]]))
    with pytest.warns(RuntimeWarning) as caught:
        run = runs.load_run(copy)
    assert [r["step"] for r in run.metrics] == list(range(7))  # the records after them too
    assert [str(w.message).split(" of ")[0] for w in caught] == ["line 4", "line 5"]
