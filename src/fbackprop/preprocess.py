"""Splitting a data set into train/validation/test parts and standardizing its features.

Re-exported by ``fbackprop.data`` (``fb.data.split``, ``fb.data.standardize``). Pure NumPy; the
shuffle is a function of its ``seed``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .validate import as_int


class Split(NamedTuple):
    """Train, validation and test parts, each an ``(x, y)`` pair of arrays."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def split(x, y, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> Split:
    """Shuffle ``N`` examples and cut them into train/val/test of about ``fractions`` of ``N`` each.

    Args:
        x: inputs ``(N, ...)``.
        y: targets ``(N, ...)``.
        fractions: three positive numbers summing to 1 (default ``(0.6, 0.2, 0.2)``).
        seed: the shuffle's random seed, an integer ``>= 0``.

    Returns:
        ``Split(train, val, test)``, each an ``(x, y)`` pair; every part holds at least one example.

    Raises:
        ValueError: for mismatched ``x``/``y``, bad fractions, or a part that would be empty.

    Examples:
        >>> x, y = np.arange(20.0).reshape(10, 2), np.arange(10.0).reshape(10, 1)
        >>> s = fb.data.split(x, y, (0.6, 0.2, 0.2))
        >>> s.train[0].shape, s.val[0].shape, s.test[0].shape
        ((6, 2), (2, 2), (2, 2))
    """
    seed = as_int(seed, "seed", minimum=0)
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y hold different numbers of examples: {len(x)} and {len(y)}")
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or np.any(fractions <= 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(
            f"fractions must be 3 positive numbers summing to 1, got {tuple(fractions.tolist())}"
        )
    order = np.random.default_rng(seed).permutation(len(x))
    cuts = np.rint(np.cumsum(fractions)[:2] * len(x)).astype(int)  # monotone, so the parts never overlap
    parts = np.split(order, cuts)
    sizes = [len(p) for p in parts]
    if min(sizes) == 0:
        empty = ["train", "val", "test"][sizes.index(0)]
        raise ValueError(
            f"split: {len(x)} examples cut by fractions {tuple(fractions.tolist())} give an empty "
            f"{empty} part (sizes {sizes}); expected at least one example in each: use more "
            "examples or larger fractions"
        )
    return Split(*((x[idx], y[idx]) for idx in parts))


def standardize(x_train, *others) -> tuple[np.ndarray, ...]:
    """Scale features by the train set's statistics (each ``x: (N, n_in)``).

    A constant train feature gets ``std = 1`` (and its exact value as mean), so it maps to 0 and stays finite.

    Args:
        x_train: ``(N, n_in)``, whose per-feature mean and standard deviation are used.
        *others: more arrays ``(M, n_in)`` (validation, test), scaled by the same statistics.

    Returns:
        ``(mean: (n_in,), std: (n_in,), x_train', *others')``, ``x' = (x - mean) / std``.

    Raises:
        ValueError: for an ``x_train`` that is not ``(N, n_in)`` with ``N >= 1``, or another array of
            a different width.

    Examples:
        >>> x_train, x_test = np.array([[0.0], [2.0], [4.0]]), np.array([[2.0]])
        >>> mean, std, xs_train, xs_test = fb.data.standardize(x_train, x_test)
        >>> mean.tolist(), xs_train.shape, xs_test.tolist()   # both scaled by the training statistics
        ([2.0], (3, 1), [[0.0]])
    """
    x_train = np.asarray(x_train)
    if x_train.ndim != 2 or x_train.shape[0] == 0:
        raise ValueError(
            f"standardize: x_train must have shape (N, n_in) with N >= 1; got shape {x_train.shape}"
        )
    for i, a in enumerate(others):
        shape = np.shape(a)
        if len(shape) != 2 or shape[1] != x_train.shape[1]:
            raise ValueError(
                f"standardize: others[{i}] must have shape (M, {x_train.shape[1]}), the width of "
                f"x_train; got shape {shape}"
            )
    if not np.issubdtype(x_train.dtype, np.floating):
        x_train = x_train.astype(np.float64)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    constant = np.all(x_train == x_train[:1], axis=0) | (std == 0)
    mean = np.where(constant, x_train[0], mean).astype(x_train.dtype)
    std = np.where(constant, 1, std).astype(x_train.dtype)
    return (mean, std, *((np.asarray(a) - mean) / std for a in (x_train, *others)))
