"""Spectral band analysis (paper Fig. 8): which eigendirections of K_ss carry test accuracy.

With ridge 0, KRR predicts ``K_ts K_ss^-1 y_s``. Writing ``K_ss = V diag(lam) V^T`` with
eigenvalues in decreasing order, ``K_ss^-1 = sum_i v_i v_i^T / lam_i``; composing it with
the projection onto a set B of eigendirections gives the predictions of that part of the
spectrum, ``K_ts V_B diag(1/lam_B) V_B^T y_s``. The predictions of disjoint bands add up to
the full ridge-0 predictions. The spectrum is split into contiguous bands of (about) 20%
of the eigenvalues each, from the largest down.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from kipd.analysis._errors import AnalysisError
from kipd.analysis._run_kernels import RunKernels
from kipd.distill import RCOND

BANDS = 5
"""Contiguous bands of 20% of the eigenvalues each (paper, Fig. 8)."""


class SpectralBands(NamedTuple):
    """Test accuracy of ridge-0 KRR restricted to bands of K_ss's spectrum.

    Band ``b`` holds eigenvalues ``edges[b]`` to ``edges[b + 1]`` (exclusive) of the
    spectrum sorted from the largest down; with ``n`` eigenvalues and ``B`` bands,
    ``np.array_split`` sizes (they differ by at most one).

    Attributes:
      eigenvalues: ``(n,)`` eigenvalues of K_ss, decreasing.
      edges: ``(B + 1,)`` band boundaries in that order.
      band_accuracy: ``(B,)`` test accuracy of the predictions of band ``b`` alone.
      cumulative_accuracy: ``(B,)`` test accuracy of bands ``0..b`` together (the top
        ``20 (b + 1)%`` of the spectrum); the last is the full ridge-0 KRR accuracy.
      accuracy_change: ``(B,)`` what adding band ``b`` to the bands above it changes:
        ``cumulative_accuracy[b] - cumulative_accuracy[b - 1]``, starting from ``chance``
        (no spectrum at all predicts nothing). Sums to ``full_accuracy - chance``.
      relative_change: ``(B,)`` ``accuracy_change / (full_accuracy - chance)``, the share
        of the above-chance accuracy each band adds (sums to 1); NaN if the full accuracy
        is not above chance.
      full_accuracy: ridge-0 KRR test accuracy with the whole spectrum.
      chance: ``1 / C``, the accuracy of an uninformative prediction on balanced classes.
    """

    eigenvalues: np.ndarray
    edges: np.ndarray
    band_accuracy: np.ndarray
    cumulative_accuracy: np.ndarray
    accuracy_change: np.ndarray
    relative_change: np.ndarray
    full_accuracy: float
    chance: float


def band_predictions(
    k_ts: np.ndarray,
    k_ss: np.ndarray,
    y_s: np.ndarray,
    bands: int = BANDS,
    rcond: float = RCOND,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge-0 KRR predictions of each contiguous band of K_ss's spectrum.

    Eigenvalues at or below ``rcond`` times the largest are treated as zero, as in Label
    Solve's pseudo-inverse: the kernels are float32, so such directions of a (nearly)
    singular K_ss are rounding noise, and inverting them would only amplify it. They
    contribute nothing, and still count in the band sizes.

    Args:
      k_ts: ``(t, n)`` test-support kernel.
      k_ss: ``(n, n)`` support-support kernel.
      y_s: ``(n, C)`` support labels.
      bands: number of contiguous bands, ``1 <= bands <= n``.
      rcond: relative cutoff of the eigenvalues inverted.

    Returns:
      ``(predictions (B, t, C), eigenvalues (n,) decreasing, edges (B + 1,))``, float64.
      ``predictions.sum(0)`` is the full ridge-0 prediction ``K_ts K_ss^-1 y_s`` (with the
      pseudo-inverse, if K_ss has eigenvalues below the cutoff).

    Raises:
      AnalysisError: shapes that do not fit, or ``bands`` out of range.
    """
    k_ts, k_ss, y_s = (np.asarray(a, np.float64) for a in (k_ts, k_ss, y_s))
    n = k_ss.shape[0]
    if k_ss.shape != (n, n) or k_ts.shape[1] != n or y_s.shape[0] != n:
        raise AnalysisError(
            f"kernel shapes do not fit: k_ss {k_ss.shape}, k_ts {k_ts.shape}, labels {y_s.shape}"
        )
    if not 1 <= bands <= n:
        raise AnalysisError(f"bands must be between 1 and the support size {n}, got {bands}")
    eigenvalues, vectors = np.linalg.eigh((k_ss + k_ss.T) / 2)
    eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
    kept = eigenvalues > rcond * max(eigenvalues[0], 0.0)
    inverse = np.divide(1.0, eigenvalues, out=np.zeros_like(eigenvalues), where=kept)
    # Coordinates of the labels and of the test kernel rows in the eigenbasis.
    label_coords = inverse[:, None] * (vectors.T @ y_s)  # (n, C)
    test_coords = k_ts @ vectors  # (t, n)
    edges = np.array([0, *np.cumsum([len(a) for a in np.array_split(np.arange(n), bands)])])
    predictions = np.stack(
        [test_coords[:, lo:hi] @ label_coords[lo:hi] for lo, hi in itertools.pairwise(edges)]
    )
    return predictions, eigenvalues, edges


def spectral_bands(
    k_ts: np.ndarray,
    k_ss: np.ndarray,
    y_s: np.ndarray,
    test_labels: np.ndarray,
    bands: int = BANDS,
) -> SpectralBands:
    """Test accuracy of ridge-0 KRR restricted to contiguous bands of K_ss's spectrum.

    Args:
      k_ts: ``(t, n)`` test-support kernel.
      k_ss: ``(n, n)`` support-support kernel.
      y_s: ``(n, C)`` support labels.
      test_labels: ``(t,)`` integer classes of the test images.
      bands: number of contiguous bands (5: 20% of the eigenvalues each).

    Returns:
      :class:`SpectralBands`.

    Example:
      >>> k = run_kernels(load_run("runs/quickstart"))  # doctest: +SKIP
      >>> final = k.final  # doctest: +SKIP
      >>> spectral_bands(final.k_ts, final.k_ss, final.labels, k.test_labels)  # doctest: +SKIP

    Paper: §4 "Spectral Analysis", Fig. 8.
    """
    predictions, eigenvalues, edges = band_predictions(k_ts, k_ss, y_s, bands)
    test_labels = np.asarray(test_labels)

    def accuracy(p: np.ndarray) -> float:
        return float(np.mean(np.argmax(p, axis=-1) == test_labels))

    chance = 1.0 / np.asarray(y_s).shape[1]
    band_accuracy = np.array([accuracy(p) for p in predictions])
    cumulative = np.array([accuracy(p) for p in np.cumsum(predictions, axis=0)])
    change = np.diff(cumulative, prepend=chance)
    full = float(cumulative[-1])
    gain = full - chance
    relative = change / gain if gain > 0 else np.full_like(change, np.nan)
    return SpectralBands(
        eigenvalues=eigenvalues,
        edges=edges,
        band_accuracy=band_accuracy,
        cumulative_accuracy=cumulative,
        accuracy_change=change,
        relative_change=relative,
        full_accuracy=full,
        chance=chance,
    )


def band_analysis(kernels: RunKernels, bands: int = BANDS) -> dict[str, SpectralBands]:
    """Spectral bands of a run's final (learned) and initial (natural) support sets.

    Args:
      kernels: from :func:`run_kernels`.
      bands: number of contiguous bands.

    Returns:
      ``{"final": SpectralBands, "initial": SpectralBands}``.

    Paper: Fig. 8 (dark bars: learned images; light bars: their natural initialization).
    """
    return {
        which: spectral_bands(
            support.k_ts, support.k_ss, support.labels, kernels.test_labels, bands
        )
        for which, support in (("final", kernels.final), ("initial", kernels.initial))
    }
