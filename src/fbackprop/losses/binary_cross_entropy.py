"""Binary cross-entropy of the logistic from logits, each output independent:
``l = sum_k softplus(z_k) - y_k z_k = -sum_k [y_k log s(z_k) + (1 - y_k) log s(-z_k)]``.

**Targets.** Values in ``[0, 1]`` (0/1 labels or probabilities), ``(N, n_out)`` or ``(N,)`` when
``n_out == 1``. The range is checked when the targets are concrete; under a ``jax.jit`` of the
user's own their values are not checked (they pass as they are): check them outside it.

**Accuracy.** Values, gradients and curvatures stay finite for huge logits (``exp(-|z|)`` for the
logistic) and keep their relative accuracy where the sigmoid saturates: ``s (1 - s)`` is
``exp(-|z|) / (1 + exp(-|z|))^2``, accurate at any ``z``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..finite import host_values
from ..validate import as_int, is_concrete
from .base import _column_targets, _float, _make


def _diag(d):
    """``(N, k) -> (N, k, k)``: one diagonal matrix per row."""
    return d[:, :, None] * jnp.eye(d.shape[-1], dtype=d.dtype)


def _bce_prepare(y: Any, n_out: int) -> jax.Array:
    """Binary cross-entropy targets as float rows.

    Args:
        y: targets in ``[0, 1]`` (0/1 labels or probabilities), ``(N, n_out)`` or ``(N,)`` when
            ``n_out == 1``; bool and integer 0/1 arrays are accepted.
        n_out: the network's output width.

    Returns:
        ``(N, n_out)`` floats.

    Raises:
        ValueError: another shape, or (when concrete) a value outside ``[0, 1]`` or NaN.
        TypeError: a non-numeric array.
    """
    n_out = as_int(n_out, "n_out")
    y = _column_targets(y, n_out, "binary_cross_entropy")
    if is_concrete(y):
        arr = host_values(y)
        bad = ~((arr >= 0) & (arr <= 1))
        if np.any(bad):
            i, j = (int(k) for k in np.argwhere(bad)[0])
            raise ValueError(
                f"binary_cross_entropy: targets must lie in [0, 1] (0/1 labels or probabilities); "
                f"got y[{i}, {j}] = {arr[i, j]} ({int(bad.sum())} outside)"
            )
    return _float(y)


def _bce_tail(z):
    """``t = sigmoid(-|z|) = e / (1 + e)`` with ``e = exp(-|z|) <= 1``: accurate, never overflows."""
    e = jnp.exp(-jnp.abs(z))
    return e, e / (1 + e)


def _bce_value(z, y):
    """Per-example ``l_n = sum_k softplus(z_k) - y_k z_k = -sum_k [y_k log s(z_k) + (1 - y_k) log s(-z_k)]``.

    For ``z_k > 0`` written ``(1 - y_k) z_k + softplus(-z_k)``, so a confident right answer keeps
    its small loss's digits.

    Args:
        z: ``(N, n_out)`` logits.
        y: ``(N, n_out)`` targets in ``[0, 1]``, or ``(N,)`` when ``n_out == 1``.

    Returns:
        ``(N,)``; their mean is the cost ``C`` (``binary_cross_entropy(z, y)``).
    """
    per_output = jnp.where(z > 0, (1 - y) * z + jax.nn.softplus(-z), jax.nn.softplus(z) - y * z)
    return jnp.sum(per_output, axis=-1)


def _bce_grad(z, y):
    """``dl_n/dz_nk = sigmoid(z_k) - y_k``, written ``(1 - y_k) - sigmoid(-z_k)`` for ``z_k >= 0``.

    Args:
        z: ``(N, n_out)`` logits.
        y: ``(N, n_out)`` targets in ``[0, 1]``, or ``(N,)`` when ``n_out == 1``.

    Returns:
        ``(N, n_out)``; ``dC/dz`` is this divided by N.
    """
    t = _bce_tail(z)[1]
    return jnp.where(z >= 0, (1 - y) - t, t - y)


def _bce_curvature(z):
    """``s(z)(1 - s(z)) = e / (1 + e)^2`` with ``e = exp(-|z|)``: no cancellation at any ``z``."""
    e, t = _bce_tail(z)
    return t / (1 + e)


def _bce_hessian(z, y):
    """``d^2 l_n/dz_n^2 = diag(s(z_k)(1 - s(z_k)))``, accurate at large ``|z|``.

    Args:
        z: ``(N, n_out)`` logits.
        y: ``(N, n_out)`` targets in ``[0, 1]``, or ``(N,)`` when ``n_out == 1``.

    Returns:
        ``(N, n_out, n_out)``, diagonal and positive.
    """
    return _diag(_bce_curvature(z))


def _bce_hvp(z, y, v):
    """``H_n v_n = s(z)(1 - s(z)) * v_n``.

    Args:
        z: ``(N, n_out)`` logits.
        y: ``(N, n_out)`` targets in ``[0, 1]``, or ``(N,)`` when ``n_out == 1``.
        v: ``(N, n_out)`` one tangent per example.

    Returns:
        ``(N, n_out)``.
    """
    return _bce_curvature(z) * v


def _bce_hessian_sqrt(z, y):
    """``S_n = diag(sqrt(s(z_k)(1 - s(z_k)))) = diag(exp(-|z_k|/2) / (1 + exp(-|z_k|)))``.

    Args:
        z: ``(N, n_out)`` logits.
        y: ``(N, n_out)`` targets in ``[0, 1]``, or ``(N,)`` when ``n_out == 1``.

    Returns:
        ``(N, n_out, n_out)``, diagonal.
    """
    e = jnp.exp(-jnp.abs(z))
    return _diag(jnp.exp(-0.5 * jnp.abs(z)) / (1 + e))


def _bce_sample(key, z):
    """Independent Bernoulli draws of ``sigmoid(z)``.

    Args:
        key: a ``jax.random`` key.
        z: ``(N, n_out)`` logits.

    Returns:
        ``(N, n_out)`` 0/1 values of ``z``'s dtype.
    """
    return jax.random.bernoulli(key, jax.nn.sigmoid(z)).astype(z.dtype)


binary_cross_entropy = _make(
    "binary_cross_entropy",
    _bce_value,
    _bce_grad,
    _bce_hessian,
    _bce_hvp,
    _bce_hessian_sqrt,
    _bce_prepare,
    _bce_sample,
)
