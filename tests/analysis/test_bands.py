"""Spectral bands (Fig. 8): band predictions add up to ridge-0 KRR, the accuracy changes
telescope, and the edge cases (one band, a singular K_ss, bad input)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kipd import analysis, runs
from kipd.distill import accuracy, krr_predict


def _problem(n=12, t=50, classes=3, rank=None, seed=0):
    """A random PSD kernel on n support and t test points (features of dimension ``rank``,
    default 3n), labels of the support and test points."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n + t, rank or 3 * n))
    k = features @ features.T
    support_classes = np.arange(n) % classes
    y_s = np.eye(classes)[support_classes] - 1.0 / classes
    test_labels = rng.integers(0, classes, t)
    return k[n:, :n], k[:n, :n], y_s, test_labels


def test_bands_add_up_to_ridge_zero_krr():
    k_ts, k_ss, y_s, _ = _problem()
    predictions, eigenvalues, edges = analysis.band_predictions(k_ts, k_ss, y_s, bands=5)
    assert predictions.shape == (5, 50, 3)
    assert list(edges) == [0, 3, 6, 8, 10, 12]  # np.array_split sizes 3, 3, 2, 2, 2
    assert np.all(np.diff(eigenvalues) <= 0)
    with jax.enable_x64(True):
        reference = np.asarray(
            krr_predict(jnp.asarray(k_ts), jnp.asarray(k_ss), jnp.asarray(y_s), lambda0=0.0)
        )
    np.testing.assert_allclose(predictions.sum(axis=0), reference, rtol=1e-8, atol=1e-8)


def test_accuracy_changes_telescope_to_the_full_spectrum_accuracy():
    k_ts, k_ss, y_s, test_labels = _problem(seed=1)
    bands = analysis.spectral_bands(k_ts, k_ss, y_s, test_labels)
    with jax.enable_x64(True):
        full = float(
            accuracy(
                krr_predict(jnp.asarray(k_ts), jnp.asarray(k_ss), jnp.asarray(y_s), 0.0),
                test_labels,
            )
        )
    assert bands.full_accuracy == pytest.approx(full, abs=1e-6)  # float32 mean
    assert bands.cumulative_accuracy[-1] == bands.full_accuracy
    assert bands.chance == pytest.approx(1 / 3)
    assert bands.accuracy_change.sum() == pytest.approx(bands.full_accuracy - bands.chance)
    np.testing.assert_allclose(
        np.cumsum(bands.accuracy_change) + bands.chance, bands.cumulative_accuracy, atol=1e-12
    )
    if bands.full_accuracy > bands.chance:
        assert bands.relative_change.sum() == pytest.approx(1.0)


def test_one_band_is_the_whole_spectrum():
    k_ts, k_ss, y_s, test_labels = _problem(seed=2)
    one = analysis.spectral_bands(k_ts, k_ss, y_s, test_labels, bands=1)
    five = analysis.spectral_bands(k_ts, k_ss, y_s, test_labels, bands=5)
    assert one.band_accuracy[0] == one.full_accuracy == five.full_accuracy


def test_a_singular_kernel_is_pseudo_inverted():
    # Rank 4 < 12 support points: the eigenvalues past the 4th are rounding noise, below
    # the cutoff, so bands 2-4 (eigenvalues 7-12) predict exactly nothing, and the whole is
    # the pseudo-inverse solution.
    k_ts, k_ss, y_s, _ = _problem(rank=4, seed=3)
    predictions, _, _ = analysis.band_predictions(k_ts, k_ss, y_s)
    assert np.all(predictions[2:] == 0)
    np.testing.assert_allclose(
        predictions.sum(axis=0), k_ts @ np.linalg.pinv(k_ss, rcond=1e-6) @ y_s, rtol=1e-6, atol=1e-9
    )


def test_bad_input_names_the_problem():
    k_ts, k_ss, y_s, _ = _problem()
    with pytest.raises(analysis.AnalysisError, match="between 1 and the support size 12"):
        analysis.band_predictions(k_ts, k_ss, y_s, bands=13)
    with pytest.raises(analysis.AnalysisError, match="shapes do not fit"):
        analysis.band_predictions(k_ts[:, :5], k_ss, y_s)


def test_band_analysis_of_a_run_compares_learned_and_initial(tiny_run):
    kernels = analysis.run_kernels(runs.load_run(tiny_run), progress=False)
    result = analysis.band_analysis(kernels)
    assert set(result) == {"final", "initial"}
    for which, bands in result.items():
        support = getattr(kernels, which)
        expected = analysis.spectral_bands(
            support.k_ts, support.k_ss, support.labels, kernels.test_labels
        )
        np.testing.assert_array_equal(bands.cumulative_accuracy, expected.cumulative_accuracy)
