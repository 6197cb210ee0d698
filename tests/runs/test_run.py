"""Durable runs: run directories, bit-for-bit resume, NaN stops, Label Solve, evaluate."""

import dataclasses
import json

import numpy as np
import pytest

from kipd import compute, data, distill, runs
from kipd.runs import _label_solve_run, _rundir


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A tiny learnable .npz dataset: 3 classes of 8x8x1 images around class means."""
    rng = np.random.default_rng(0)
    means = rng.random((3, 8, 8, 1))
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    splits = {}
    for split, n in (("train", 90), ("test", 30)):
        labels = np.arange(n) % 3
        splits[f"x_{split}"] = np.clip(
            means[labels] + 0.3 * rng.standard_normal((n, 8, 8, 1)), 0, 1
        )
        splits[f"y_{split}"] = labels
    np.savez(path, **splits)
    return str(path)


def _config(dataset, **changes):
    options = dict(
        dataset=dataset,
        kernels=("fc1",),
        steps=6,
        target_batch_size=30,
        checkpoint_every=2,
        eval_every=3,
        eval_size=20,
        keep_best=1,
    )
    return runs.KipConfig(**{**options, **changes})


def _records(run_dir, timed=True):
    """The metrics.jsonl records of a run, without wall times if not ``timed``."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [
        {k: v for k, v in json.loads(line).items() if timed or k not in ("seconds", "elapsed")}
        for line in lines
    ]


def _npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_run_writes_a_complete_run_directory(dataset, tmp_path):
    out = tmp_path / "run"
    summary = runs.run_kip(_config(dataset), out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "config.json",
        "distilled.npz",
        "init.npz",
        "metrics.jsonl",
        "preprocessing.npz",
        "summary.json",
        "test_subset.npz",
    ]
    config = runs.load_config(out)
    assert (config.lr, config.zca, config.target_batch_size) == (0.01, False, 30)  # resolved
    records = _records(out)
    assert [r["step"] for r in records] == list(range(7))
    assert [r["step"] for r in records if "test_accuracy" in r] == [0, 3, 6]
    assert all(r["kernel"] == "fc1" and np.isfinite(r["loss"]) for r in records[1:])
    # Best one by train loss, plus the latest.
    best = min((2, 4, 6), key=lambda s: records[s]["loss"])
    assert set(p.name for p in (out / "checkpoints").iterdir()) == {
        f"step_{s:08d}.npz" for s in {best, 6}
    }

    distilled = _npz(out / "distilled.npz")
    assert distilled["images"].shape == (3, 8, 8, 1) and distilled["labels"].shape == (3, 3)
    assert not data.Preprocessing.stored_in(distilled)  # stored once, in preprocessing.npz
    preprocessing = data.Preprocessing.load(out / "preprocessing.npz")
    np.testing.assert_allclose(
        distilled["images_pixel"], preprocessing.invert(distilled["images"]), rtol=1e-6
    )
    assert runs.load_distilled(out).config == config
    init = _npz(out / "init.npz")
    np.testing.assert_array_equal(distilled["init_images"], init["images"])
    assert not np.array_equal(distilled["images"], init["images"])
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["steps"] == 6 and summary["test_size"] == 30 and summary["support_size"] == 3
    assert summary["test_accuracy"] >= summary["init_test_accuracy"]
    # A finished run resumed with the same steps just reports its summary.
    assert runs.run_kip(runs.resume_config(out), out, resume=True, progress=False) == summary
    # ... and on a smaller test set, evaluates both sets again there (same subset each time).
    smaller = runs.run_kip(runs.resume_config(out, test_size=10), out, resume=True, progress=False)
    assert smaller["test_size"] == 10 and smaller["steps"] == 6
    assert json.loads((out / "summary.json").read_text()) == smaller
    again = runs.run_kip(runs.resume_config(out, test_size=10), out, resume=True, progress=False)
    assert again == smaller
    # The final test subset of the summary is recorded, and evaluate reuses it.
    assert len(runs.load_run(out).test_indices) == 10
    assert runs.evaluate(out, progress=False)["test_accuracy"] == smaller["test_accuracy"]


def test_a_run_may_skip_measuring_its_initial_set(dataset, tmp_path):
    """--no-init-accuracy: the final set is measured as before, the initial set is not
    (``None`` in the summary), and the estimate prices one set fewer."""
    measured = runs.run_kip(_config(dataset), tmp_path / "both", progress=False)
    config = _config(dataset, init_accuracy=False)
    skipped = runs.run_kip(config, tmp_path / "final_only", progress=False)
    assert skipped["init_test_accuracy"] is None
    assert skipped["test_accuracy"] == measured["test_accuracy"]
    # The same sets were trained: only the last evaluation differs.
    assert _records(tmp_path / "both", False) == _records(tmp_path / "final_only", False)
    resolved = config.resolve(data.load(dataset))
    priced = {
        measure: runs._estimate.kip_estimate(resolved, (8, 8, 1), 3, 30, measure_init=measure)
        for measure in (True, False)
    }
    assert priced[True].entries - priced[False].entries == (30 + 3) * 3
    assert "(init, last step" in priced[True].what and "(last step" in priced[False].what
    assert runs._estimate.measures_init(resolved, data.load(dataset)) is False


def _steps(run_dir):
    """The steps of a run's checkpoints."""
    return [int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*.npz")]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        # cosine: the schedule's step count is part of the checkpointed optimizer state.
        {"lr_schedule": "cosine"},
        # balanced batches (10 of each class, 29 from the 3 classes' 30): drawn by step too.
        {"target_sampling": "balanced", "target_batch_size": 29},
        # on features: fresh networks each step, drawn from the checkpointed key.
        {"features": "16:2"},
        # RFAD's loss: its learned scale is checkpointed with the support.
        {"features": "16:2", "loss": "platt"},
    ],
)
def test_interrupted_run_resumes_bit_for_bit(dataset, tmp_path, monkeypatch, changes):
    config = _config(dataset, steps=7, checkpoint_every=2, **changes)
    runs.run_kip(config, tmp_path / "whole", progress=False)

    real_save = _rundir.save_checkpoint

    def killed_at_step_5(folder, state, loss, keep_best):
        if int(state.step) == 6:  # metrics of steps 5 and 6 written, checkpoint 6 not
            raise KeyboardInterrupt
        return real_save(folder, state, loss, keep_best)

    monkeypatch.setattr(_rundir, "save_checkpoint", killed_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        runs.run_kip(config, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(_rundir, "save_checkpoint", real_save)
    assert max(_steps(tmp_path / "resumed")) == 4
    first_leg = _rundir.elapsed_seconds(tmp_path / "resumed", 4)
    summary = runs.run_kip(config, tmp_path / "resumed", resume=True, progress=False)
    # The run's wall time carries the first leg (up to its checkpoint) into the second.
    elapsed = [r["elapsed"] for r in _records(tmp_path / "resumed") if "elapsed" in r]
    assert first_leg > 0 and elapsed == sorted(elapsed) and elapsed[4] > first_leg
    assert summary["run_seconds"] >= summary["seconds"] + first_leg - 0.1

    whole, resumed = (
        _npz(tmp_path / "whole/distilled.npz"),
        _npz(tmp_path / "resumed/distilled.npz"),
    )
    assert whole.keys() == resumed.keys()
    for key in whole:
        np.testing.assert_array_equal(whole[key], resumed[key], err_msg=key)
    a, b = (_npz(tmp_path / run / "checkpoints/step_00000007.npz") for run in ("whole", "resumed"))
    for key in a:  # optimizer state and PRNG key included
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert _records(tmp_path / "whole", timed=False) == _records(tmp_path / "resumed", timed=False)


def test_run_directory_guards(dataset, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(runs.DistillError, match="nothing to resume.*leave out --resume"):
        runs.run_kip(_config(dataset), out, resume=True, progress=False)
    runs.run_kip(_config(dataset, steps=2), out, progress=False)
    with pytest.raises(runs.DistillError, match="already holds a run.*--resume"):
        runs.run_kip(_config(dataset, steps=2), out, progress=False)
    with pytest.raises(runs.DistillError, match="another config.*lr: 0.01 -> 0.5"):
        runs.run_kip(runs.resume_config(out, lr=0.5, steps=4), out, resume=True, progress=False)
    with pytest.raises(runs.DistillError, match="past --steps 1"):
        runs.run_kip(runs.resume_config(out, steps=1), out, resume=True, progress=False)
    # A decaying learning rate ends at its own --steps: more would change every step's rate.
    decayed = tmp_path / "cosine"
    runs.run_kip(_config(dataset, steps=2, lr_schedule="cosine"), decayed, progress=False)
    with pytest.raises(runs.DistillError, match=r"steps: 2 -> 4 \(cosine learning rate\)"):
        runs.run_kip(runs.resume_config(decayed, steps=4), decayed, resume=True, progress=False)
    assert not list(tmp_path.glob(".run*"))  # no temporary run folder left behind


def test_balanced_targets_need_enough_images_of_every_class(dataset, tmp_path):
    """Class 2 has 10 of 70 train images: a balanced batch of 60 needs 20 of each class."""
    with np.load(dataset) as tiny:
        keep = np.flatnonzero((tiny["y_train"] != 2) | (np.arange(90) < 30))
        path = tmp_path / "uneven.npz"
        uneven = {**tiny, "x_train": tiny["x_train"][keep], "y_train": tiny["y_train"][keep]}
        np.savez(path, **uneven)
    config = _config(str(path), target_sampling="balanced", target_batch_size=60)
    with pytest.raises(runs.DistillError, match="class 2 has 10.*--target-batch-size 30"):
        runs.run_kip(config, tmp_path / "balanced", progress=False)
    assert not (tmp_path / "balanced").exists()


def test_diverging_loss_stops_and_keeps_the_last_good_checkpoint(dataset, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(runs.DistillError, match="became (nan|inf).*last good state.*lower --lr"):
        runs.run_kip(
            _config(dataset, lr=1e30, steps=20, checkpoint_every=1, keep_best=20),
            out,
            progress=False,
        )
    for path in (out / "checkpoints").glob("step_*.npz"):
        checkpoint = _npz(path)
        assert checkpoint.keys() >= {"support_images", "support_labels", "step", "key"}
        assert all(np.isfinite(v).all() for k, v in checkpoint.items() if k.startswith("support"))
    assert not (out / "distilled.npz").exists()


def test_noise_init_sampling_and_augmentation(dataset, tmp_path):
    config = _config(
        dataset, kernels=("fc1", "fc2"), init="noise", augment=0.5, steps=4, learn_labels=False
    )
    runs.run_kip(config, tmp_path / "run", progress=False)
    records = _records(tmp_path / "run")
    assert {r["kernel"] for r in records[1:]} <= {"fc1", "fc2"}
    distilled = _npz(tmp_path / "run/distilled.npz")
    np.testing.assert_array_equal(distilled["labels"], distilled["init_labels"])
    assert (_npz(tmp_path / "run/init.npz")["indices"] == -1).all()


def test_label_solve_run_and_evaluate(dataset, tmp_path, ntk):
    out = tmp_path / "ls"
    config = runs.LabelSolveConfig(dataset=dataset, kernel="fc1", images_per_class=2)
    summary = runs.run_label_solve(config, out, progress=False)
    assert summary["target_size"] == 90 and summary["support_size"] == 6
    with pytest.raises(runs.DistillError, match="already holds a run: pass --resume"):
        runs.run_label_solve(config, out, progress=False)

    # The stored labels are eq. (2) on the whole (preprocessed) train set.
    ds = data.load(dataset)
    distilled = runs.load_distilled(out)
    preprocessing = data.Preprocessing.load(out / "preprocessing.npz")
    x_train = preprocessing.apply(ds.x_train)
    kernel = ntk("fc1")
    expected = distill.label_solve(
        kernel(x_train, distilled.images),
        kernel(distilled.images, distilled.images),
        data.centered_one_hot(ds.y_train, 3),
    )
    np.testing.assert_allclose(distilled.labels, expected, rtol=1e-4, atol=1e-5)

    result = runs.evaluate(out, progress=False)
    assert result["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert result["init_test_accuracy"] == pytest.approx(summary["init_test_accuracy"])

    # --test-size: the same solve, read on a fixed random subset of the test set.
    subset = runs.run_label_solve(
        dataclasses.replace(config, test_size=12), tmp_path / "ls12", progress=False
    )
    assert subset["test_size"] == 12
    np.testing.assert_array_equal(runs.load_distilled(tmp_path / "ls12").labels, distilled.labels)

    released = tmp_path / "released.npz"
    np.savez(released, images=distilled.images, labels=distilled.labels)
    with pytest.raises(ValueError, match="--dataset"):
        runs.evaluate(released, progress=False)
    result = runs.evaluate(released, dataset=dataset, kernel="fc1", progress=False)
    assert set(result) == {"dataset", "kernel", "get", "support_size", "test_size", "test_accuracy"}
    assert result["get"] == "ntk"  # the paper's kernel unless asked otherwise

    np.savez(released, images=distilled.images[:, :4], labels=distilled.labels)
    with pytest.raises(ValueError, match="pass the --dataset it was distilled from"):
        runs.evaluate(released, dataset=dataset, kernel="fc1", progress=False)
    with pytest.raises(runs.DistillError, match="not a distilled set"):
        np.savez(released, pictures=distilled.images)
        runs.evaluate(released, dataset=dataset, progress=False)


def test_label_solve_killed_mid_kernel_resumes_to_the_same_labels(dataset, tmp_path, monkeypatch):
    """K(targets, support) is saved chunk by chunk: a kill loses only the chunk in progress."""
    monkeypatch.setattr(
        _label_solve_run, "KERNEL_ROWS_CHUNK_ENTRIES", 64 * 6
    )  # 64 rows of 6 support images
    config = runs.LabelSolveConfig(dataset=dataset, kernel="fc1", images_per_class=2)
    whole = runs.run_label_solve(config, tmp_path / "whole", progress=False)

    real_write = _rundir.write_kernel_rows
    written = []

    def killed_at_the_second_chunk(run_dir, first_row, rows):
        if first_row == 64 and not written:
            raise KeyboardInterrupt
        return real_write(run_dir, first_row, rows)

    monkeypatch.setattr(_rundir, "write_kernel_rows", killed_at_the_second_chunk)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        runs.run_label_solve(config, out, progress=False)
    assert sorted(p.name for p in (out / "kernel_rows").iterdir()) == ["rows_00000000.npz"]
    with pytest.raises(runs.DistillError, match="not finished.*label-solve --out .* --resume"):
        runs.load_run(out)
    with pytest.raises(runs.DistillError, match="label_solve run: resume it with kipd label-solve"):
        runs.resume_config(out)

    def counted(run_dir, first_row, rows):
        written.append(first_row)
        return real_write(run_dir, first_row, rows)

    monkeypatch.setattr(_rundir, "write_kernel_rows", counted)
    resumed = runs.run_label_solve(
        runs.resume_config(out, runs.LabelSolveConfig), out, resume=True, progress=False
    )
    assert written == [64]  # only the rows the kill lost
    np.testing.assert_array_equal(
        runs.load_distilled(out).labels, runs.load_distilled(tmp_path / "whole").labels
    )
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    assert not (out / "kernel_rows").exists()

    # A finished run resumed: its summary, or (another --test-size) its labels read again.
    assert runs.run_label_solve(config, out, resume=True, progress=False) == resumed
    again = runs.run_label_solve(
        dataclasses.replace(config, test_size=12), out, resume=True, progress=False
    )
    assert again["test_size"] == 12 and written == [64]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"images_per_class": 0}, "--images-per-class"),
        ({"steps": 0}, "--steps"),
        ({"target_batch_size": -1}, "--target-batch-size"),
        ({"augment": 1.5}, "--augment"),
        ({"lr": 0.0}, "--lr"),
        ({"kernels": ("resnet",)}, "unknown architecture 'resnet'"),
        ({"kernels": ()}, "--kernel"),
        ({"init": "zeros"}, "--init"),
        ({"lr_schedule": "linear"}, "--lr-schedule cosine"),
        ({"target_sampling": "stratified"}, "--target-sampling balanced"),
        ({"lambda0": 0.0}, "1e-6"),
        ({"block_size": 0}, "--block-size"),
        ({"test_size": 0}, "--test-size"),
    ],
)
def test_config_validation_names_the_fix(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(runs.KipConfig(), **changes)


def test_ray_run_that_loses_every_worker_resumes_locally_to_the_same_result(
    dataset, tmp_path, monkeypatch
):
    """A Ray run whose cluster dies mid-run fails the step with ComputeError; the run
    directory keeps its last checkpoint, and --resume on the local executor finishes it
    with the bits of an uninterrupted local run."""
    pytest.importorskip("ray", reason="the Ray executor is an extra: pip install 'kipd[ray]'")
    import ray

    local = _config(dataset, steps=5, block_size=16)
    runs.run_kip(local, tmp_path / "local", progress=False)

    passes = []

    class DyingCluster:
        """A Ray executor whose every worker is killed in the 4th step's backward pass."""

        def __init__(self):
            self.inner = compute.RayExecutor(workers=2)
            self.name = "ray"

        def map(self, spec, phase, shared, plan, on_block=None):
            passes.append(phase)
            # init eval: 2 passes; steps 1-3: forward + VJP; eval at step 3: 2; step 4:
            # forward, then its VJP pass (the 12th) starts on a dead cluster.
            if len(passes) == 12:
                for actor in self.inner.workers:
                    ray.kill(actor, no_restart=True)
            return self.inner.map(spec, phase, shared, plan, on_block)

        def close(self):
            self.inner.close()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    with pytest.raises(runs.ComputeError, match="--resume"), pytest.warns(RuntimeWarning):
        with DyingCluster() as cluster:
            runs.run_kip(local, tmp_path / "ray", progress=False, executor=cluster)
    assert not ray.is_initialized()  # the local cluster was stopped
    assert max(_steps(tmp_path / "ray")) == 2
    # Where blocks run is not part of the run: it resumes here, on the local executor.
    runs.run_kip(
        runs.resume_config(tmp_path / "ray"), tmp_path / "ray", resume=True, progress=False
    )
    a, b = _npz(tmp_path / "local/distilled.npz"), _npz(tmp_path / "ray/distilled.npz")
    for key in ("images", "labels"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)  # the same bits


def test_unknown_dataset_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="fashion_mnist"):
        runs.run_kip(
            runs.KipConfig(dataset="imagenet", kernels=("fc1",)),
            tmp_path / "run",
            progress=False,
        )
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_fashion_mnist_end_to_end(tmp_path):
    """Real Fashion-MNIST, 1 image per class, FC1 kernel: KIP and Label Solve both beat
    the natural init on the whole test set (ConvNet numbers are in docs/runs.md)."""
    config = runs.KipConfig(
        kernels=("fc1",), steps=30, target_batch_size=1000, eval_every=30, eval_size=500
    )
    kip = runs.run_kip(config, tmp_path / "kip", progress=False)
    assert kip["test_size"] == 10000 and kip["support_size"] == 10
    assert kip["test_accuracy"] - kip["init_test_accuracy"] > 0.08
    ls = runs.run_label_solve(runs.LabelSolveConfig(kernel="fc1"), tmp_path / "ls", progress=False)
    assert ls["target_size"] == 60000
    assert ls["test_accuracy"] - ls["init_test_accuracy"] > 0.05
