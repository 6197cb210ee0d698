"""Runs on random features (``--features W:M``): the exact kernel as referee, the
feature kernel's own readings, Label Solve on features, and exact refinement from a
distilled set (``--init-from``). Every run here is FC1 on 8x8x1 images, like the rest of
the folder, so the kernels compile once."""

import dataclasses
import json

import jax
import numpy as np
import pytest

import kipd.kernels
from kipd import cli, compute, data, distill, runs
from kipd.runs import _features, _rundir
from kipd.runs._estimate import kip_estimate, measures_init


@pytest.fixture(scope="module")
def feature_run(tiny_dataset, tmp_path_factory):
    """A finished 4-step KIP run on features 16:2 (FC1, 4 images per class)."""
    out = tmp_path_factory.mktemp("runs") / "features"
    config = runs.KipConfig(
        dataset=tiny_dataset,
        kernels=("fc1",),
        features="16:2",
        images_per_class=4,
        steps=4,
        target_batch_size=30,
        checkpoint_every=2,
        eval_every=2,
        eval_size=15,
        keep_best=2,
    )
    return out, config, runs.run_kip(config, out, progress=False)


def _test_set(config):
    dataset = data.load(config.dataset)
    pre = data.fit_dataset_preprocessing(dataset, False, None)
    return dataset, np.asarray(pre.apply(dataset.x_test)), dataset.y_test


def test_summary_gives_the_exact_kernels_accuracy_beside_the_features(feature_run):
    out, config, summary = feature_run
    assert summary["features"] == "16:2" and summary["kernel"] == "fc1"
    assert 0 < summary["feature_kernel_error"] < 2
    with np.load(out / "distilled.npz") as f:
        images, labels = f["images"], f["labels"]
    dataset, test_images, test_labels = _test_set(config)
    # The exact kernel's accuracy (the referee) is what `kipd evaluate` says.
    (exact,) = runs.krr_test_accuracies(
        "fc1", images, [labels], test_images, test_labels, config.lambda0
    )
    assert summary["test_accuracy"] == pytest.approx(exact, abs=1e-6)
    assert runs.evaluate(out, progress=False)["test_accuracy"] == pytest.approx(exact, abs=1e-6)
    # The feature kernel's: one fixed draw of 2 width-16 networks, from the run's seed.
    features = kipd.kernels.random_features("fc1", width=16, networks=2)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), _features._EVAL_STREAM)
    phi_s, phi_t = features(key, images), features(key, test_images)
    predictions = distill.krr_predict_features(phi_t, phi_s, labels, config.lambda0)
    assert summary["feature_test_accuracy"] == pytest.approx(
        float(distill.accuracy(predictions, test_labels)), abs=1e-6
    )
    assert "best_checkpoints_feature_test_accuracy" in summary
    assert "best_checkpoints_test_accuracy" not in summary  # the best are judged on features
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert first["feature_kernel_error"] == summary["feature_kernel_error"]


def test_feature_kernel_matrix_is_chunk_independent(monkeypatch):
    config = runs.KipConfig(kernels=("fc1",), features="8:3")
    kernel = _features.feature_kernel(config)
    images = np.random.default_rng(0).standard_normal((11, 4, 4, 1)).astype(np.float32)
    whole = kernel.matrix(images)
    monkeypatch.setattr(_features, "FEATURE_CHUNK", 4)  # 3 chunks, the last one padded
    np.testing.assert_allclose(kernel.matrix(images), whole, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(whole, whole.T, rtol=1e-6)


def test_referee_error_falls_as_the_features_grow():
    images = np.random.default_rng(1).standard_normal((16, 4, 4, 1)).astype(np.float32)
    errors = [
        _features.referee_error(runs.KipConfig(kernels=("fc1",), features=f), images)
        for f in ("2:1", "64:16")
    ]
    # fc1's features are exact in expectation; error ~ 1 / sqrt(width * networks), 22x less.
    assert errors[1] < errors[0] / 5 and errors[1] < 0.1


def test_estimate_prices_features_and_the_exact_referee(tiny_dataset):
    dataset = data.load(tiny_dataset)
    config = runs.KipConfig(dataset=tiny_dataset, kernels=("fc1",), features="16:2").resolve(
        dataset
    )
    estimate = kip_estimate(config, dataset.image_shape, 3, 30)
    assert set(estimate.parts) == {"steps", "evaluations", "exact evaluation"}
    assert all(seconds > 0 for seconds in estimate.parts.values())
    assert estimate.entries == 2 * (30 + 3) * 3 and "features 16:2" in estimate.what
    final_only = kip_estimate(config, dataset.image_shape, 3, 30, measure_init=False)
    assert final_only.entries == (30 + 3) * 3 and "kernel for the final set" in final_only.what


def test_label_solve_on_features_solves_with_the_feature_kernel(tiny_dataset, tmp_path):
    config = runs.LabelSolveConfig(
        dataset=tiny_dataset, kernel="fc1", features="16:2", images_per_class=2
    )
    summary = runs.run_label_solve(config, tmp_path / "ls", progress=False)
    assert summary["features"] == "16:2" and {"feature_test_accuracy", "test_accuracy"} <= set(
        summary
    )
    with np.load(tmp_path / "ls/distilled.npz") as f:
        images, labels = f["images"], f["labels"]
    dataset = data.load(tiny_dataset)
    pre = data.fit_dataset_preprocessing(dataset, False, None)
    kernel = _features.feature_kernel(config.resolve(dataset))
    targets = np.asarray(pre.apply(dataset.x_train))
    expected = distill.label_solve(
        kernel.matrix(targets, images),
        kernel.matrix(images),
        data.centered_one_hot(dataset.y_train, 3),
        config.lambda0,
        config.rcond,
    )
    np.testing.assert_allclose(labels, expected, rtol=1e-4, atol=1e-5)


def _refinement(config, source, steps):
    """An exact FC1 run of ``steps`` steps from the distilled set at ``source``."""
    return runs.KipConfig(
        dataset=config.dataset,
        kernels=("fc1",),
        images_per_class=4,
        steps=steps,
        target_batch_size=30,
        eval_every=2,
        eval_size=15,
        init_from=str(source),
    )


def test_init_from_starts_an_exact_run_from_a_distilled_set(feature_run, tmp_path):
    source, config, _ = feature_run
    refine = _refinement(config, source, steps=2)
    summary = runs.run_kip(refine, tmp_path / "refined", progress=False)
    assert summary["init_from"] == str(source)
    with np.load(source / "distilled.npz") as a, np.load(tmp_path / "refined/init.npz") as b:
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
    # Its initial set's exact accuracy is the source's final one: taken from the source's
    # summary (same kernel, ridge and test images), not measured again.
    assert (
        summary["init_test_accuracy"]
        == (json.loads((source / "summary.json").read_text())["test_accuracy"])
    )
    final = np.arange(30)  # the whole tiny test set, the source's final subset too
    assert _rundir.known_init_accuracy(refine, final) == {
        "init_test_accuracy": summary["init_test_accuracy"]
    }
    for other in (
        dataclasses.replace(refine, kernels=("fc2",)),  # another kernel: measured again
        dataclasses.replace(refine, lambda0=1e-3),  # another ridge
    ):
        assert _rundir.known_init_accuracy(other, final) is None
    assert _rundir.known_init_accuracy(refine, final[:20]) is None  # other test images
    # ... and its estimate does not price that measurement.
    dataset = data.load(config.dataset)
    assert not measures_init(refine.resolve(dataset), dataset)
    assert measures_init(dataclasses.replace(refine, lambda0=1e-3).resolve(dataset), dataset)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"images_per_class": 2}, "pass --images-per-class 4"),
        ({"zca": True, "images_per_class": 4}, "pass --no-zca"),
    ],
)
def test_init_from_refuses_a_set_that_does_not_fit(feature_run, tmp_path, changes, message):
    source, config, _ = feature_run
    refine = runs.KipConfig(
        dataset=config.dataset, kernels=("fc1",), init_from=str(source), **changes
    )
    with pytest.raises(ValueError, match=message):
        runs.run_kip(refine, tmp_path / "refused", progress=False)
    assert not (tmp_path / "refused").exists()


def test_an_export_of_a_run_on_features_evaluates_and_refines_exactly(feature_run, tmp_path):
    source, config, summary = feature_run
    exported = runs.export(source, tmp_path / "export")
    # An export's accuracy is the exact kernel's, as its run's summary says.
    result = runs.evaluate(exported, progress=False)
    assert result["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
    card = json.loads((exported / "card.json").read_text())
    assert "16:2" in json.dumps(card)  # the card says the set was made on features
    refined = runs.run_kip(_refinement(config, exported, steps=1), tmp_path / "r", progress=False)
    assert refined["init_test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)


def test_a_feature_count_near_the_support_size_is_named_with_its_fix():
    def note(features, images_per_class):
        config = runs.KipConfig(features=features, images_per_class=images_per_class)
        return _features.threshold_note(config, (28, 28, 1), 10)

    near = note("32:2", 50)  # p = 577 for 500 support images
    assert "p = 577" in near and "--features 32:8 (p = 2305)" in near
    assert "--features 8:2 (p = 145)" in near
    assert note("32:2", 10) is None and note("16:2", 50) is None  # p = 577 vs 100, 289 vs 500


def test_a_run_on_features_is_judged_by_the_exact_nngp_on_request(feature_run, capsys, monkeypatch):
    out, config, _ = feature_run
    with np.load(out / "distilled.npz") as f:
        images, labels = f["images"], f["labels"]
    _, test_images, test_labels = _test_set(config)
    # The kernel the features estimate, straight from the layer description.
    nngp = kipd.kernels.make("fc1")
    predictions = distill.krr_predict(
        nngp(test_images, images, get="nngp"), nngp(images, get="nngp"), labels, config.lambda0
    )
    expected = float(distill.accuracy(predictions, test_labels))
    # On 30 test images the NNGP and the NTK often agree on the accuracy: the kernel
    # matrices say which kernel was asked for.
    asked = []
    kernel_matrix = compute.kernel_matrix

    def recording(spec, *args, **kwargs):
        asked.append(spec.get)
        return kernel_matrix(spec, *args, **kwargs)

    monkeypatch.setattr(compute, "kernel_matrix", recording)
    result = runs.evaluate(out, get="nngp", progress=False)
    assert result["get"] == "nngp" and set(asked) == {"nngp"}
    assert result["test_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert cli.main(["evaluate", str(out), "--get", "nngp", "--json", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["get"] == "nngp"
    assert printed["test_accuracy"] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="--get nngp"):
        runs.evaluate(out, get="NNGP", progress=False)


def test_a_run_on_ntk_features_trains_on_them_and_is_refereed_by_the_exact_ntk(
    tiny_dataset, tmp_path, capsys
):
    config = runs.KipConfig(
        dataset=tiny_dataset,
        kernels=("fc1",),
        features="16:2",
        feature_kernel="ntk",
        images_per_class=2,
        steps=2,
        target_batch_size=30,
        eval_every=2,
        eval_size=15,
    )
    out = tmp_path / "ntk"
    assert cli.main(["distill", *_flags(config), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    printed = captured.out + captured.err  # the summary, and the estimate: line
    assert "NTK features 16:2" in printed and "features vs the exact NTK at the start" in printed
    assert "KIP steps on NTK features 16:2" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["feature_kernel"] == "ntk"
    with np.load(out / "distilled.npz") as f:
        images, labels = f["images"], f["labels"]
    _, test_images, test_labels = _test_set(config)
    # The feature kernel is the fixed draw of the networks' parameter gradients.
    features = kipd.kernels.random_features("fc1", width=16, networks=2, get="ntk")
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), _features._EVAL_STREAM)
    predictions = distill.krr_predict_features(
        features(key, test_images), features(key, images), labels, config.lambda0
    )
    assert summary["feature_test_accuracy"] == pytest.approx(
        float(distill.accuracy(predictions, test_labels)), abs=1e-6
    )
    # The referee is the exact kernel the features estimate: many wide networks' NTK
    # features are near the exact NTK, and far from the NNGP (a different kernel).
    sample = np.random.default_rng(1).standard_normal((16, 4, 4, 1)).astype(np.float32)
    wide = dataclasses.replace(config, features="64:16")
    assert _features.referee_error(wide, sample) < 0.1
    estimated_nngp = dataclasses.replace(wide, feature_kernel="nngp")
    nngp_as_ntk = np.asarray(kipd.kernels.make("fc1")(sample, get="nngp"))
    ntk = np.asarray(kipd.kernels.make("fc1")(sample, get="ntk"))
    assert np.linalg.norm(nngp_as_ntk - ntk) / np.linalg.norm(ntk) > 0.3
    assert _features.referee_error(estimated_nngp, sample) < 0.1


def _flags(config):
    """The distill flags of the fields of ``config`` that differ from the defaults."""
    default = runs.KipConfig()
    flags = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value == getattr(default, field.name):
            continue
        flag = "--kernel" if field.name == "kernels" else "--" + field.name.replace("_", "-")
        flags += [flag, ",".join(value) if isinstance(value, tuple) else str(value)]
    return flags


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(feature_kernel="ntk"), "add e.g. --features"),
        (dict(features="16:2", feature_kernel="NTK"), "--feature-kernel ntk"),
    ],
)
def test_a_feature_kernel_needs_features_and_a_known_name(changes, message):
    with pytest.raises(ValueError, match=message):
        runs.KipConfig(**changes)
    with pytest.raises(ValueError, match=message):
        runs.LabelSolveConfig(**changes)
