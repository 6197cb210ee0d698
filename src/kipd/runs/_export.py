"""Shipping a distilled set: a self-describing folder that needs nothing of kipd to use.

``export(run_dir, out)`` writes::

    out/distilled.npz   the set in model-input space and in pixels, its labels (learned
                        and argmax), the initial set, the preprocessing as arrays (ZCA
                        matrix and its inverse, means, deviations), the run's config and
                        the test indices its accuracy was measured on
    out/card.json       what every array is (shape, dtype, meaning), the dataset, kernel,
                        ridge, preprocessing and the accuracies measured, how to load it, and
                        ``sha256``: the content hash of distilled.npz's arrays and the card's
                        own (of the card without that entry), which the loader checks

The export is a distilled set like a run directory: ``kipd evaluate out`` and ``kipd
transfer out`` read it through the same loader (:func:`load_distilled`) and give the
run's KRR test accuracy exactly (same arrays, same test images, same kernel and ridge).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

import kipd
from kipd import files
from kipd.runs._config import command_line, resume_command
from kipd.runs._errors import DistillError
from kipd.runs._rundir import CARD_FILE, CARD_HASHES, DISTILLED_FILE, card_hash, load_run

_FIELDS = {
    "images": "support images in model-input space (after the preprocessing): what the "
    "kernel and a network trained on the set see. NHWC",
    "images_pixel": "the same images mapped back to pixels by the inverse preprocessing "
    "(not clipped: learned images leave [0, 1]). NHWC",
    "labels": "support labels as learned (or solved) by the run: real-valued regression "
    "targets, one column per class (natural labels are centred one-hot: 1 - 1/C and -1/C)",
    "hard_labels": "argmax of labels: the class of each support image",
    "init_images": "the natural (or noise) images the run started from, model-input space",
    "init_labels": "their centred one-hot labels",
    "test_indices": "indices into the dataset's test split of the images the accuracies "
    "were measured on",
    "config": "the run's resolved configuration (JSON string; card.json has it too)",
    "preprocessing.method": "'standard' (channel mean/std) or 'zca' (regularized ZCA, paper "
    "appendix A)",
    "preprocessing.image_shape": "(H, W, C) the preprocessing was fitted for",
    "preprocessing.mean": "standard: (C,) channel means; zca: (H*W*C,) feature means of the "
    "layer-normalized train images",
    "preprocessing.std": "standard: (C,) channel deviations; zca: (H*W*C,) feature deviations",
    "preprocessing.whitening": "zca: (d, d) whitening matrix W; model input = (normalized "
    "image - mean) / std @ W",
    "preprocessing.coloring": "zca: (d, d) inverse of W (maps model input back)",
    "preprocessing.eigenvalues": "zca: (d,) eigenvalues of the standardized feature covariance",
    "preprocessing.regularization": "zca: the regularization strength lambda",
    "preprocessing.image_mean": "zca: train average of the per-image means (for the inverse)",
    "preprocessing.image_std": "zca: train average of the per-image deviations (for the inverse)",
}


def export(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Writes a finished run's distilled set as a self-describing folder.

    Args:
      run_dir: a finished run directory of ``kipd distill`` or ``kipd label-solve``.
      out: the folder to write (created; must not hold an export or anything else).

    Returns:
      ``out``.

    Raises:
      DistillError: ``run_dir`` is not a finished run, or ``out`` is not empty.

    Example:
      >>> export("runs/quickstart", "exports/quickstart")  # doctest: +SKIP
      PosixPath('exports/quickstart')
    """
    run = load_run(run_dir)
    if not run.finished:
        raise DistillError(
            f"run {run.path} has not finished (no {DISTILLED_FILE}): finish it with "
            f"{resume_command(run.path, run.config)}, then export it"
        )
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DistillError(f"{out} already exists and is not empty: choose a new --out")
    if run.test_indices is None:
        raise DistillError(
            f"{run.path} records no test subset (a run of kipd 0.1): evaluate it once with "
            f"{command_line('kipd', 'evaluate', run.path)}, or re-run it, before exporting"
        )
    config = run.config.to_json()
    arrays: dict[str, Any] = {
        "images": run.images,
        "images_pixel": np.asarray(run.preprocessing.invert(run.images), np.float32),
        "labels": run.labels,
        "hard_labels": np.argmax(run.labels, axis=1).astype(np.int64),
        "init_images": run.init_images,
        "init_labels": run.init_labels,
        "test_indices": run.test_indices.astype(np.int64),
        "config": np.array(json.dumps(config, sort_keys=True)),
        **run.preprocessing.to_dict(),
    }
    out.mkdir(parents=True, exist_ok=True)
    files.write_npz(out / DISTILLED_FILE, arrays)
    card = _card(run, arrays, config)
    card[CARD_HASHES] = {
        DISTILLED_FILE: files.stored_hash(out / DISTILLED_FILE),
        CARD_FILE: card_hash(card),
    }
    files.write_json(out / CARD_FILE, card)
    return out


def _card(run: Any, arrays: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    preprocessing = run.preprocessing
    return {
        "format": "kipd distilled set",
        "kipd_version": kipd.__version__,
        "source_run": str(run.path),
        "algorithm": run.config.ALGORITHM,
        "dataset": run.config.dataset,
        "num_classes": int(run.labels.shape[1]),
        "support_size": int(len(run.images)),
        "image_shape": list(run.images.shape[1:]),
        "kernel": run.config.eval_kernel,
        "kernels": list(getattr(run.config, "kernels", [run.config.eval_kernel])),
        "lambda0": run.config.lambda0,
        "steps": run.step,
        "preprocessing": {
            "method": preprocessing.method,
            "regularization": preprocessing.regularization,
        },
        "accuracies": {
            name: value
            for name, value in (run.summary or {}).items()
            if name in ("test_accuracy", "init_test_accuracy", "test_size", "kernel")
        },
        "config": config,
        "files": {
            DISTILLED_FILE: {
                name: {
                    "shape": list(np.shape(value)),
                    "dtype": str(np.asarray(value).dtype),
                    "description": _FIELDS[name],
                }
                for name, value in arrays.items()
            },
            CARD_FILE: f"this description; its {CARD_HASHES} records the content hash of "
            f"{DISTILLED_FILE}'s arrays and its own (JSON with sorted keys, without {CARD_HASHES})",
        },
        "how_to_load": {
            "numpy": "z = numpy.load('distilled.npz'); z['images'], z['labels']",
            "pytorch": "torch.from_numpy(z['images']).permute(0, 3, 1, 2) (NHWC -> NCHW)",
            "kipd": "kipd evaluate DIR / kipd transfer DIR / kipd.runs.load_distilled(DIR)",
        },
    }
