"""The UCI handwritten digits that ship with fastoptim, and a fixed train/test split.

1,797 grey-scale 8×8 images of the digits 0..9, pixel values 0..16 (Alpaydin & Kaynak, UCI
Machine Learning Repository, CC BY 4.0; see ``fastoptim/data/DIGITS_LICENSE.md``). The file
is read from the installed package: nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["DIGITS_PATH", "Split", "load_digits", "train_test_split"]

DIGITS_PATH = Path(__file__).resolve().parent.parent / "data" / "digits.npz"
SPLIT_SEED = 1998  # the split never changes with the demo's --seed, so runs compare on one test set


class Split(NamedTuple):
    """Features scaled to [0, 1] (n, 64) and integer labels (n,), for training and testing."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The images, uint8 (1797, 8, 8) with values 0..16, and the labels, uint8 (1797,)."""
    with np.load(DIGITS_PATH) as archive:
        images, labels = archive["images"], archive["labels"]
    if images.shape != (1797, 8, 8) or labels.shape != (1797,) or images.dtype != np.uint8:
        raise ValueError(f"{DIGITS_PATH} is not the digits archive fastoptim ships (damaged install?)")
    return images, labels


def train_test_split(test_fraction: float = 0.2, dtype: type = np.float32) -> Split:
    """A stratified split, the same on every call: `test_fraction` of each digit's images
    (chosen by a fixed generator) are held out. Features are pixels / 16 as `dtype`."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    images, labels = load_digits()
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        test[members[: round(test_fraction * len(members))]] = True
    x: np.ndarray = (images.reshape(len(images), -1) / 16.0).astype(dtype)
    y = labels.astype(np.intp)
    return Split(x[~test], y[~test], x[test], y[test])
