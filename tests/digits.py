"""scikit-learn's bundled 8x8 digits (1,797 images, no download) as a regression task for
infinitely wide networks: one-hot targets (minus 0.1, centred-ish), 1,200 images to train on
and the other 597 held out, and the networks the inference tests classify them with."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from ntkserve import stax
from sklearn.datasets import load_digits

MIN_ACCURACY = 0.98  # the bar; 99.3-99.7 % measured in process
TRAIN = 1200
DIGITS_CASES = [
    pytest.param(
        stax.serial(
            stax.Dense(512, W_std=1.5, b_std=0.05),
            stax.Relu(),
            stax.Dense(512, W_std=1.5, b_std=0.05),
            stax.Relu(),
            stax.Dense(1),
        ),
        (64,),
        id="fc",
    ),
    pytest.param(
        stax.serial(
            stax.Conv(64, (3, 3), padding="SAME", W_std=1.5, b_std=0.05),
            stax.Relu(),
            stax.Conv(64, (3, 3), padding="SAME", W_std=1.5, b_std=0.05),
            stax.Relu(),
            stax.Flatten(),
            stax.Dense(1),
        ),
        (8, 8, 1),
        id="cnn",
    ),
]


@dataclasses.dataclass(frozen=True)
class Digits:
    x_train: np.ndarray[Any, Any]
    y_train: np.ndarray[Any, Any]
    x_test: np.ndarray[Any, Any]
    labels_test: np.ndarray[Any, Any]

    def accuracy(self, predictions: Any) -> float:
        """The fraction of held-out digits whose largest output is their label."""
        return float(np.mean(np.argmax(predictions, -1) == self.labels_test))


def digits(shape: tuple[int, ...], dtype: Any = np.float64) -> Digits:
    """The split (fixed), inputs scaled to [0, 1] and shaped `shape` per image."""
    data = load_digits()
    x = (data.data / 16.0).reshape(-1, *shape).astype(dtype)
    y = np.eye(10)[data.target] - 0.1
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:TRAIN], order[TRAIN:]
    return Digits(x[train], y[train], x[test], data.target[test])
