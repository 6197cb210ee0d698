"""Pins kipd.files' public names: changing them is a visible decision."""

import kipd.files


def test_public_names():
    assert kipd.files.__all__ == [
        "HASH_KEY",
        "DamagedFileError",
        "LockedError",
        "atomic_path",
        "cache_dir",
        "atomic_write",
        "exclusive_lock",
        "read_npz",
        "stored_hash",
        "write_json",
        "write_npz",
    ]
