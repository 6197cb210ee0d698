"""Each analysis of a run as one JSON-ready dict: what ``kipd analyze ... --json`` prints,
what the report tabulates, and what the text tables are formatted from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kipd import runs
from kipd.analysis._bands import SpectralBands
from kipd.analysis._dimension import Dimensions
from kipd.analysis._run_kernels import RunKernels
from kipd.analysis._subsample import SubsampleRow


def jsonable(value: Any) -> Any:
    """``value`` with NamedTuples as dicts, arrays as lists and NumPy scalars as Python
    numbers (NaN stays a float NaN, which ``json.dumps`` writes as ``NaN``)."""
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return jsonable(value._asdict())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def dimension_result(
    run: runs.Run, dimensions: Mapping[int, Dimensions], kernel: str
) -> dict[str, Any]:
    """``{"analysis": "dimension", "run", "kernel", "support_size", "rows": [{"step",
    "intrinsic", "linear", "gradient_intrinsic", "gradient_linear"}]}``."""
    return {
        "analysis": "dimension",
        "run": str(run.path),
        "kernel": kernel,
        "support_size": len(run.images),
        "rows": [{"step": step, **jsonable(d)} for step, d in dimensions.items()],
    }


def bands_result(
    run: runs.Run, kernels: RunKernels, spectra: Mapping[str, SpectralBands]
) -> dict[str, Any]:
    """``{"analysis": "bands", "run", "kernel", "test_size", "final": {...},
    "initial": {...}}``, each a :class:`SpectralBands` with lists for arrays."""
    return {
        "analysis": "bands",
        "run": str(run.path),
        "kernel": kernels.kernel,
        "test_size": len(kernels.test_labels),
        **jsonable(dict(spectra)),
    }


def subsample_result(
    run: runs.Run,
    kernels: RunKernels,
    full: Mapping[str, float],
    rows: Sequence[SubsampleRow],
    draws: int,
) -> dict[str, Any]:
    """``{"analysis": "subsample", "run", "kernel", "test_size", "draws", "full":
    {"final", "initial"}, "rows": [SubsampleRow as dict]}``."""
    return {
        "analysis": "subsample",
        "run": str(run.path),
        "kernel": kernels.kernel,
        "test_size": len(kernels.test_labels),
        "draws": draws,
        "full": dict(full),
        "rows": jsonable(list(rows)),
    }
