"""Datasets, splits, preprocessing and augmentation: the first box of the data path.

``load`` reads MNIST, Fashion-MNIST, SVHN, CIFAR-10/100 or a user's .npz / image folder
into float32 NHWC pixels in [0, 1]; ``fit_preprocessing`` fits standard or regularized ZCA
preprocessing on train images (``zca_fit_seconds`` predicts how long the ZCA fit takes);
``augment`` applies the paper's per-image augmentations; ``dsa`` the field's standard
evaluation augmentation (DSA).
See docs/data.md.
"""

from kipd.data._augment import augment
from kipd.data._datasets import Dataset, builtin_name, load
from kipd.data._dsa import DSA_STRATEGY, dsa
from kipd.data._errors import DatasetError
from kipd.data._preprocess import (
    Preprocessing,
    default_preprocessing,
    default_zca_regularization,
    fit_dataset_preprocessing,
    fit_preprocessing,
    zca_fit_seconds,
)
from kipd.data._splits import (
    centered_one_hot,
    class_balanced_subset,
    draw_test_subset,
    split_validation,
)

__all__ = [
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
