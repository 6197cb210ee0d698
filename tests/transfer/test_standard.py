"""The standard protocol (DC-bench): ConvNet-3/4, seeds, baseline and improvement."""

import json

import jax
import numpy as np
import pytest

from kipd import cli, transfer


def test_network_depth_follows_the_image_size():
    for side, pools in ((28, 3), (32, 3), (64, 4)):
        net = transfer.standard_network((side, side, 3), 10, width=4)
        shape, params = net.init(jax.random.PRNGKey(0), (side, side, 3))
        assert shape == (10,)
        assert len(params) == 4 * pools + 2  # [conv, norm, relu, pool] x depth, flatten, dense


def test_protocol_is_seeded_and_reports_mean_and_std():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((6, 8, 8, 1)).astype(np.float32)
    labels = np.eye(3, dtype=np.float32)[np.arange(6) % 3] - 1 / 3
    test_x = rng.standard_normal((20, 8, 8, 1)).astype(np.float32)
    test_y = np.arange(20) % 3
    kwargs = dict(network_seeds=2, epochs=3, width=4)
    first = transfer.standard_protocol({"a": (images, labels)}, test_x, test_y, 3, **kwargs)
    again = transfer.standard_protocol({"a": (images, labels)}, test_x, test_y, 3, **kwargs)
    assert first == again and len(first["a"].accuracies) == 2
    assert first["a"].test_accuracy == pytest.approx(np.mean(first["a"].accuracies))
    assert first["a"].test_accuracy_std == pytest.approx(np.std(first["a"].accuracies))
    with pytest.raises(ValueError, match="--network-seeds"):
        transfer.standard_protocol({"a": (images, labels)}, test_x, test_y, 3, network_seeds=0)


def test_cli_standard_protocol_with_baseline(tiny_run, capsys):
    args = [
        "transfer",
        str(tiny_run),
        "--protocol",
        "standard",
        "--epochs",
        "2",
        "--network-seeds",
        "2",
        "--baseline",
        "natural",
    ]
    assert cli.main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"] == "standard" and result["labels"] == "hard"
    assert len(result["accuracies"]) == 2 and len(result["baseline"]["accuracies"]) == 2
    assert result["improvement"] == pytest.approx(
        result["test_accuracy"] - result["baseline"]["test_accuracy"]
    )
    assert cli.main([*args, "--quiet", "--soft-labels"]) == 0
    captured = capsys.readouterr()
    assert "improvement over the baseline" in captured.out and "soft labels" in captured.out
    assert "estimate: standard protocol: 4 ConvNets" in captured.err
