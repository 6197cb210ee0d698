"""Pins kipd.cli' public names: changing them is a visible decision."""

import kipd.cli


def test_public_names():
    assert kipd.cli.__all__ == [
        "QUICKSTART",
        "main",
    ]
