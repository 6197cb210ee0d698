"""Pins kipd.data's public names: changing them is a visible decision."""

import kipd.data


def test_public_names():
    assert kipd.data.__all__ == [
        "DSA_STRATEGY",
        "Dataset",
        "DatasetError",
        "Preprocessing",
        "augment",
        "builtin_name",
        "centered_one_hot",
        "class_balanced_subset",
        "default_preprocessing",
        "default_zca_regularization",
        "draw_test_subset",
        "dsa",
        "fit_dataset_preprocessing",
        "fit_preprocessing",
        "load",
        "split_validation",
        "zca_fit_seconds",
    ]
    public = {name for name in dir(kipd.data) if not name.startswith("_")}
    assert public == set(kipd.data.__all__)


def test_dataset_error_is_a_value_error():
    assert issubclass(kipd.data.DatasetError, ValueError)
