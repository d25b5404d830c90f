"""Small data sets, all in memory and offline. Shapes: ``x: (N, n_in)``, ``y: (N, n_out)``."""

from __future__ import annotations

import numpy as np


def seed_example(dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Seed 001's code example: 6 examples x 3 inputs; targets ``(0 1 0 1 1 0)`` as a column ``(6, 1)``."""
    x = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1]], dtype=dtype)
    y = np.array([[0, 1, 0, 1, 1, 0]], dtype=dtype).T
    return x, y


def seed_example_params(dtype=np.float32, seed: int = 1) -> tuple[dict, dict]:
    """Seed 001's initial weights, drawn as its code draws them, in fbackprop's layout.

    The seed draws ``hidden_weights: (1 + 3, 3)`` and ``output_weights: (1 + 3, 1)`` after
    ``np.random.seed(1)``, bias in row 0; here ``W = weights[1:].T`` and ``b = weights[0]``, for
    ``fb.mlp([3, 3, 1], activation="sigmoid")``.
    """
    rng = np.random.RandomState(seed)  # the legacy global generator's stream, without touching it
    hidden = 2 * rng.random_sample((4, 3)) - 1
    output = 2 * rng.random_sample((4, 1)) - 1
    layer = lambda w: {"W": w[1:].T.astype(dtype), "b": w[0].astype(dtype)}
    return layer(hidden), layer(output)
