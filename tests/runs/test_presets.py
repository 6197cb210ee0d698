"""--preset paper resolves to appendix A's values (a table written from the paper)."""

import pytest

from kipd import runs

# Appendix A: "Adam with learning rate 0.04 for CIFAR-10 and CIFAR-100, and 0.01 for the
# remaining datasets"; "lambda = 100 for SVHN and 0.1 for CIFAR-10 and CIFAR-100"; ZCA for
# RGB only; "target batch size of 5K"; "up to 50K iterations"; lambda0 = 1e-6; "we
# checkpoint every 50 train steps"; Table 1 reports the 5 lowest-loss checkpoints; "for
# the case of SVHN without augmentations, we fall back to ... ZCA regularization of 0.1
# and learning rate of 0.04".
APPENDIX_A = {
    # dataset: (zca, regularization, lr) without augmentation, and with it
    "mnist": ((False, None, 0.01), (False, None, 0.01)),
    "fashion_mnist": ((False, None, 0.01), (False, None, 0.01)),
    "svhn": ((True, 0.1, 0.04), (True, 100.0, 0.01)),
    "cifar10": ((True, 0.1, 0.04), (True, 0.1, 0.04)),
    "cifar100": ((True, 0.1, 0.04), (True, 0.1, 0.04)),
}


@pytest.mark.parametrize("dataset", sorted(APPENDIX_A))
@pytest.mark.parametrize("augment", [0.0, 0.5])
def test_paper_preset_is_appendix_a(dataset, augment):
    config = runs.preset_config(runs.KipConfig, "paper", dataset=dataset, augment=augment)
    zca, regularization, lr = APPENDIX_A[dataset][augment > 0]
    assert (config.zca, config.zca_regularization, config.lr) == (zca, regularization, lr)
    assert config.learn_labels and config.kernels == ("convnet",) and config.lambda0 == 1e-6
    assert (config.target_batch_size, config.steps) == (5000, 50000)
    assert (config.checkpoint_every, config.keep_best) == (50, 5)
    assert config.preset == "paper" and config.preset_overrides == ()
    solve = runs.preset_config(runs.LabelSolveConfig, "paper", dataset=dataset)
    assert (solve.zca, solve.kernel, solve.target_size) == (zca, "convnet", None)


def test_explicit_options_override_and_are_recorded():
    config = runs.preset_config(
        runs.KipConfig, "paper", dataset="cifar10", steps=2000, target_batch_size=500, seed=3
    )
    assert (config.steps, config.target_batch_size, config.lr) == (2000, 500, 0.04)
    assert config.preset_overrides == ("steps", "target_batch_size")  # seed: not a preset value
    assert runs.paper_figure(config) == (64.7, 0.2)


def test_rows_the_paper_does_not_have_are_refused():
    with pytest.raises(ValueError, match="Table 1 has cifar100 with 1, 10 images per class"):
        runs.preset_config(runs.KipConfig, "paper", dataset="cifar100", images_per_class=50)
    with pytest.raises(ValueError, match="Table 1's datasets"):
        runs.preset_config(runs.KipConfig, "paper", dataset="my_data.npz")
