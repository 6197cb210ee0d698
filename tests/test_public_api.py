"""Pins kipd.files' public names: changing them is a visible decision."""

import kipd.files


def test_public_names():
    assert kipd.files.__all__ == [
        "HASH_KEY",
        "DamagedFileError",
        "atomic_path",
        "cache_dir",
        "atomic_write",
        "read_npz",
        "write_json",
        "write_npz",
    ]
