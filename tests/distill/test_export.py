"""kipd export: a self-describing folder that evaluates exactly like its run."""

import json

import numpy as np
import pytest

from kipd import cli, data, distill


def test_export_evaluates_exactly_like_the_run(tiny_run, tmp_path, capsys):
    out = tmp_path / "export"
    assert cli.main(["export", str(tiny_run), "--out", str(out)]) == 0
    assert "exported to" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "distilled.npz"]
    card = json.loads((out / "card.json").read_text())
    arrays = np.load(out / "distilled.npz")
    for name, field in card["files"]["distilled.npz"].items():
        assert list(arrays[name].shape) == field["shape"] and field["description"], name
    assert card["preprocessing"]["method"] == "standard" and card["kernel"] == "fc1"
    run = distill.load_run(tiny_run)
    np.testing.assert_array_equal(arrays["hard_labels"], np.argmax(run.labels, axis=1))
    preprocessing = data.Preprocessing.from_dict(arrays)  # the arrays suffice, no run needed
    np.testing.assert_allclose(preprocessing.apply(arrays["images_pixel"]), arrays["images"],
                               atol=1e-4)

    from_run = distill.evaluate(tiny_run, progress=False)
    from_export = distill.evaluate(out, progress=False)
    assert from_export == from_run  # same arrays, test images, kernel and ridge: exactly
    assert from_run["test_accuracy"] == run.summary["test_accuracy"]


def test_export_refuses_unfinished_runs_and_used_folders(tiny_run, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    with pytest.raises(distill.DistillError, match="not empty"):
        distill.export(tiny_run, tmp_path / "used")


def test_a_released_file_says_what_it_assumed(tiny_run, tiny_dataset, tmp_path):
    run = distill.load_run(tiny_run)
    released = tmp_path / "released.npz"
    np.savez(released, images=run.images, labels=run.labels)
    lines = []
    result = distill.evaluate(released, dataset=tiny_dataset, progress=False, log=lines.append)
    assert any("does not record its preprocessing: assumed standard" in line for line in lines)
    assert 0 <= result["test_accuracy"] <= 1
    with pytest.raises(ValueError, match="records its preprocessing"):
        distill.evaluate(tiny_run, zca=True, progress=False)
