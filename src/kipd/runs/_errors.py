"""The one error type of kipd.runs: a run that cannot start, go on, or be read."""


class DistillError(Exception):
    """A run cannot start or go on: its directory is in the way or inconsistent, or its
    loss diverged. The message says what happened and what to do."""
