"""The errors of the analyses: each message says what is wrong and what to do."""

from __future__ import annotations

MATPLOTLIB_FIX = "pip install 'kipd[analysis]'  (or: pip install matplotlib)"


class AnalysisError(ValueError):
    """An analysis cannot run on its input: a missing or unfinished run directory, options
    that do not fit the data, or a missing optional dependency."""


class MissingDependencyError(AnalysisError, ImportError):
    """An optional dependency (matplotlib, for figures and reports) is not installed.

    Both an :class:`AnalysisError` (so ``kipd`` prints it as a one-line error) and an
    ``ImportError`` (so ``except ImportError`` in a user's code catches it).
    """


def require_matplotlib() -> None:
    """Imports matplotlib, or raises :class:`MissingDependencyError` naming the fix."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError(
            f"figures and reports need matplotlib, which is not installed: {MATPLOTLIB_FIX}"
        ) from err
