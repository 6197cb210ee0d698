"""Transfer: empirical NTK against the exact kernel, training, selection, CLI (all < 90 s)."""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kipd.data as kd
import kipd.kernels
from kipd import cli, transfer
from kipd.transfer import _train, _transfer

FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed")


def _relative_frobenius(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize(
    "name, shape, width", [("fc1", (4, 4, 1), 4096), ("convvec1", (5, 5, 1), 1024)]
)
def test_empirical_ntk_approaches_exact_kernel(name, shape, width):
    x = jax.random.normal(jax.random.PRNGKey(1), (4, *shape))
    exact = kipd.kernels.make(name)(x)
    errors = {}
    for w in (8, width):
        net = kipd.kernels.architecture(name, width=w, out_width=2)  # NTK parameterization
        _, params = net.init(jax.random.PRNGKey(2), shape)
        errors[w] = _relative_frobenius(transfer.empirical_ntk(net.apply, params, x), exact)
    assert errors[width] < 0.05, errors
    assert errors[width] < errors[8]


def test_empirical_ntk_cross_and_critical_rate_eigh():
    net = transfer.network("fc1", 3, width=16)
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 3, 3, 1))
    _, params = net.init(jax.random.PRNGKey(1), x.shape[1:])
    full = transfer.empirical_ntk(net.apply, params, x)
    np.testing.assert_allclose(
        transfer.empirical_ntk(net.apply, params, x[:2], x[2:]),
        full[:2, 2:],
        rtol=1e-4,
        atol=1e-4,
    )
    eig = np.linalg.eigvalsh(np.asarray(full, np.float64) / 6)
    eta = transfer.critical_learning_rate(net.apply, params, x, method="eigh")
    assert eta == pytest.approx(2 / (eig[0] + eig[-1]), rel=1e-4)


def test_power_iteration_gives_two_over_lambda_max_of_a_single_output():
    net = transfer.network("fc1", 1, width=16)
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 3, 3, 1))
    _, params = net.init(jax.random.PRNGKey(1), x.shape[1:])
    lam = np.linalg.eigvalsh(
        np.asarray(transfer.empirical_ntk(net.apply, params, x), np.float64) / 6
    )[-1]
    eta = transfer.critical_learning_rate(net.apply, params, x, iterations=100)
    assert eta == pytest.approx(2 / lam, rel=1e-3)


@pytest.mark.parametrize("norm", ["layer", "instance", "batch"])
def test_normalization_layers_finite_only(norm):
    net = transfer.network("convvec1", 10, width=8, norm=norm)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 6, 6, 1))
    _, params = net.init(jax.random.PRNGKey(1), x.shape[1:])
    assert net.apply(params, x).shape == (3, 10)
    layer = kipd.kernels.normalization(norm)
    _, p = layer.init(None, (6, 6, 4))
    y = layer.apply(p, 3 * x[..., :1] + 1)
    axes = {"layer": (1, 2, 3), "instance": (1, 2), "batch": (0, 1, 2)}[norm]
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-5)
    with pytest.raises(
        ValueError, match="has no exact kernel in kipd; use it for finite networks only"
    ):
        layer.kernel(None)


def test_myrtle5_finite_network_and_no_kernel():
    net = transfer.network("myrtle5", 10, width=4)
    out_shape, params = net.init(jax.random.PRNGKey(0), (28, 28, 1))
    assert out_shape == (10,)
    assert net.apply(params, jnp.ones((2, 28, 28, 1))).shape == (2, 10)
    with pytest.raises(ValueError, match="global average pooling has no exact kernel"):
        kipd.kernels.make("myrtle5")


def test_architecture_defaults_unchanged():
    net = kipd.kernels.architecture("convnet", width=4)
    assert net.init(jax.random.PRNGKey(0), (8, 8, 1))[0] == (1,)


@pytest.fixture(scope="module")
def fmnist():
    ds = kd.load("fashion_mnist", download=False)
    ds = kd.split_validation(ds, 500, seed=0)
    ds = dataclasses.replace(ds, x_test=ds.x_test[:1000], y_test=ds.y_test[:1000])
    prep = kd.fit_preprocessing(ds.x_train[:5000], "standard")
    x, y, _ = kd.class_balanced_subset(ds.x_train, ds.y_train, 20, 0)
    return ds, prep, np.asarray(prep.apply(x)), y


@needs_fmnist
def test_training_on_natural_subset_beats_chance(fmnist):
    ds, prep, x, y = fmnist
    result = transfer.transfer(
        x,
        kd.centered_one_hot(y, 10),
        ds,
        preprocessing=prep,
        arch="fc1",
        width=64,
        steps=300,
        eval_every=100,
        lr_factors=(0.5, 1.0),
        l2=(0.0, 1e-3),
        key=0,
    )
    assert result.test_accuracy > 0.5  # chance: 0.1
    assert len(result.grid) == 4
    best = max(row.validation_accuracy for row in result.grid)
    assert result.validation_accuracy == best
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["test_accuracy"] == result.test_accuracy


@needs_fmnist
def test_selection_follows_validation_never_test(fmnist, monkeypatch):
    ds, prep, x, y = fmnist
    options = dict(
        preprocessing=prep,
        arch="fc1",
        width=16,
        steps=20,
        eval_every=10,
        lr_factors=(0.5, 1.0, 2.0),
        l2=(0.0,),
        key=0,
    )
    # Validation readings that disagree with anything test could say: setting 1 wins at
    # its first reading.
    readings = iter([np.array([0.2, 0.9, 0.3]), np.array([0.5, 0.1, 0.4])])
    real = _train.accuracies
    monkeypatch.setattr(_train, "accuracies", lambda *a, **k: next(readings))
    chosen = transfer.transfer(x, y, ds, **options)
    assert (chosen.lr_factor, chosen.step, chosen.validation_accuracy) == (1.0, 10, 0.9)
    monkeypatch.setattr(_train, "accuracies", real)
    # Scrambling the test labels changes the test accuracy, never the choice.
    a = transfer.transfer(x, y, ds, **options)
    scrambled = dataclasses.replace(ds, y_test=(ds.y_test + 1) % 10)
    b = transfer.transfer(x, y, scrambled, **options)
    assert a.grid == b.grid and (a.lr_factor, a.l2, a.step) == (
        b.lr_factor,
        b.l2,
        b.step,
    )
    assert a.test_accuracy != b.test_accuracy


@needs_fmnist
def test_input_validation(fmnist):
    ds, _, x, y = fmnist
    with pytest.raises(ValueError, match="validation split"):
        transfer.transfer(x, y, dataclasses.replace(ds, x_val=None, y_val=None))
    with pytest.raises(ValueError, match="support images have shape"):
        transfer.transfer(x[:, :10], y, ds)
    with pytest.raises(ValueError, match="loss must be"):
        transfer.transfer(x, y, ds, loss="hinge", steps=1)
    with pytest.raises(ValueError, match="lr_factors"):
        transfer.transfer(x, y, ds, lr_factors=(-1.0,), steps=1)
    with pytest.raises(ValueError, match="norm must be"):
        transfer.transfer(x, y, ds, norm="group", steps=1)
    with pytest.raises(ValueError, match="unknown architecture"):
        transfer.transfer(x, y, ds, arch="resnet", steps=1)


def test_cli_rejects_bad_numbers(capsys):
    with pytest.raises(SystemExit):
        cli.main(["transfer", "x.npz", "--lr-factors", "a,b"])
    assert "comma-separated numbers" in capsys.readouterr().err


@needs_fmnist
def test_cli_json_on_released_layout(tmp_path, fmnist, capsys):
    _, _, x, y = fmnist
    path = tmp_path / "released.npz"
    np.savez(path, images=x[:20], labels=np.asarray(kd.centered_one_hot(y[:20], 10)))
    args = [
        "transfer",
        str(path),
        "--dataset",
        "fashion_mnist",
        "--arch",
        "fc1",
        "--width",
        "16",
        "--steps",
        "10",
        "--lr-factors",
        "1",
        "--l2",
        "0",
        "--validation-size",
        "200",
    ]
    assert cli.main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["test_accuracy"] <= 1
    assert result["lr_factor"] == 1.0 and result["l2"] == 0.0 and result["support_size"] == 20
    assert cli.main([*args, "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert cli.main(["transfer", str(path)]) == 1
    assert "does not record its dataset" in capsys.readouterr().err


@needs_fmnist
def test_init_baseline_trains_on_the_runs_initial_images(tmp_path, fmnist, monkeypatch):
    _, _, x, y = fmnist
    labels = np.asarray(kd.centered_one_hot(y[:20], 10))
    path = tmp_path / "with_init.npz"
    np.savez(path, images=x[:20] + 1.0, labels=labels, init_images=x[:20], init_labels=labels)
    seen = {}

    def fake_transfer(images, labels, dataset, **options):
        seen.update(images=np.asarray(images), labels=np.asarray(labels))
        return transfer.TransferResult(
            test_accuracy=0.5,
            lr_factor=1.0,
            l2=0.0,
            learning_rate=0.1,
            step=1,
            validation_accuracy=0.5,
            critical_learning_rate=0.1,
            grid=(),
            settings={},
        )

    monkeypatch.setattr(_transfer, "transfer", fake_transfer)
    result = transfer.transfer_run(path, dataset="fashion_mnist", baseline="init")
    assert result["source"] == "init"
    np.testing.assert_array_equal(seen["images"], x[:20])
    np.testing.assert_array_equal(seen["labels"], labels)
    released = tmp_path / "released.npz"
    np.savez(released, images=x[:20], labels=labels)
    with pytest.raises(ValueError, match="does not record its initial images"):
        transfer.transfer_run(released, dataset="fashion_mnist", baseline="init")
    with pytest.raises(ValueError, match="baseline must be"):
        transfer.transfer_run(released, dataset="fashion_mnist", baseline="random")


def test_minibatches_and_batch_norm_train():
    x = jax.random.normal(jax.random.PRNGKey(0), (12, 4, 4, 1))
    y = jnp.arange(12) % 3
    net = transfer.network("convvec1", 3, width=8, norm="batch")
    fit = transfer.train(
        net,
        x,
        y,
        x,
        y,
        key=jax.random.PRNGKey(1),
        steps=6,
        eval_every=3,
        batch_size=4,
        lr_factors=(1.0,),
        l2=(0.0, 1e-3),
        loss="xent",
    )
    assert len(fit.grid) == 2 and fit.choice.step in (3, 6)
    assert 0 <= fit.choice.validation_accuracy <= 1
    with pytest.raises(ValueError, match="batch_size"):
        transfer.train(net, x, y, x, y, key=jax.random.PRNGKey(1), steps=1, batch_size=13)
