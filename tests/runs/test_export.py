"""kipd export: a self-describing folder that evaluates exactly like its run, readable by
others, and refused once its arrays or card were changed."""

import json
import re

import numpy as np
import pytest

from kipd import cli, data, files, runs


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
    run = runs.load_run(tiny_run)
    np.testing.assert_array_equal(arrays["hard_labels"], np.argmax(run.labels, axis=1))
    preprocessing = data.Preprocessing.from_dict(arrays)  # the arrays suffice, no run needed
    np.testing.assert_allclose(
        preprocessing.apply(arrays["images_pixel"]), arrays["images"], atol=1e-4
    )

    from_run = runs.evaluate(tiny_run, progress=False)
    from_export = runs.evaluate(out, progress=False)
    assert from_export == from_run  # same arrays, test images, kernel and ridge: exactly
    assert from_run["test_accuracy"] == run.summary["test_accuracy"]


def test_export_refuses_unfinished_runs_and_used_folders(tiny_run, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    with pytest.raises(runs.DistillError, match="not empty"):
        runs.export(tiny_run, tmp_path / "used")


def test_a_released_file_says_what_it_assumed(tiny_run, tiny_dataset, tmp_path):
    run = runs.load_run(tiny_run)
    released = tmp_path / "released.npz"
    np.savez(released, images=run.images, labels=run.labels)
    lines = []
    result = runs.evaluate(released, dataset=tiny_dataset, progress=False, log=lines.append)
    assert any("does not record its preprocessing: assumed standard" in line for line in lines)
    assert 0 <= result["test_accuracy"] <= 1
    with pytest.raises(ValueError, match="records its preprocessing"):
        runs.evaluate(tiny_run, zca=True, progress=False)


def test_an_export_is_readable_by_others(tiny_run, tmp_path, umask_022):
    out = tmp_path / "export"
    assert cli.main(["export", str(tiny_run), "--out", str(out)]) == 0
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {
        "card.json": 0o644,
        "distilled.npz": 0o644,
    }


def _edit_card(out, edit):
    card = json.loads((out / "card.json").read_text())
    edit(card)
    (out / "card.json").write_text(json.dumps(card))


def _rewrite_arrays(out, change, hashed=True):
    arrays = files.read_npz(out / "distilled.npz")
    change(arrays)
    if hashed:
        files.write_npz(out / "distilled.npz", arrays)
    else:
        np.savez(out / "distilled.npz", **arrays)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda out: _edit_card(out, lambda c: c["accuracies"].update(test_accuracy=0.99)),
            "card.json cannot be trusted: it was changed after the export",
        ),
        (
            lambda out: _edit_card(out, lambda c: c.update(dataset="mnist")),
            "card.json cannot be trusted: it was changed after the export",
        ),
        (
            lambda out: _edit_card(out, lambda c: c.pop("sha256")),
            "card.json cannot be trusted: it records no sha256",
        ),
        (
            lambda out: _rewrite_arrays(out, lambda a: a.update(labels=a["labels"] * 2)),
            "card.json cannot be trusted: it describes other arrays",
        ),
        (
            lambda out: _rewrite_arrays(out, lambda a: None, hashed=False),
            "distilled.npz is a kipd export but carries no content hash (__sha256__)",
        ),
    ],
)
def test_an_edited_export_is_refused(tiny_run, tmp_path, capsys, edit, message):
    out = tmp_path / "export"
    assert cli.main(["export", str(tiny_run), "--out", str(out)]) == 0
    assert cli.main(["evaluate", str(out), "--quiet"]) == 0  # as exported: accepted
    capsys.readouterr()
    edit(out)
    assert cli.main(["evaluate", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert message in err and "export the run again (kipd export RUN --out NEW_DIR)" in err


def test_an_export_file_without_its_hash_is_refused_on_its_own(tiny_run, tmp_path):
    out = tmp_path / "export"
    runs.export(tiny_run, out)
    alone = tmp_path / "alone.npz"
    np.savez(alone, **files.read_npz(out / "distilled.npz"))  # the hash left out
    with pytest.raises(runs.DistillError, match="is a kipd export but carries no content hash"):
        runs.load_distilled(alone)


def test_a_zca_run_stores_its_whitening_once_and_an_export_says_its_size(
    tiny_dataset, tmp_path, capsys
):
    config = runs.KipConfig(
        dataset=tiny_dataset,
        kernels=("fc1",),
        zca=True,
        steps=2,
        target_batch_size=30,
        checkpoint_every=2,
        eval_every=2,
        eval_size=15,
        keep_best=1,
    )
    run = tmp_path / "zca"
    runs.run_kip(config, run, progress=False)
    stored = data.Preprocessing.load(run / "preprocessing.npz")
    assert stored.whitening.dtype == stored.coloring.dtype == np.float32
    with np.load(run / "distilled.npz") as arrays:  # not a second copy of the d x d matrices
        assert not data.Preprocessing.stored_in(arrays)
    loaded = runs.load_distilled(run / "distilled.npz").preprocessing
    np.testing.assert_array_equal(loaded.whitening, stored.whitening)
    # Away from its run, the file's config fits the same preprocessing again.
    moved = tmp_path / "moved.npz"
    moved.write_bytes((run / "distilled.npz").read_bytes())
    assert runs.evaluate(moved, progress=False) == runs.evaluate(run, progress=False)

    assert cli.main(["export", str(run), "--out", str(tmp_path / "export")]) == 0
    printed = capsys.readouterr().out
    sizes = r"card\.json \([\d.]+ KB\), distilled\.npz \([\d.]+ KB\); [\d.]+ KB in all"
    assert re.search(sizes, printed), printed
