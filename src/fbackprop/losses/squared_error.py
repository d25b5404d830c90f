"""Squared error: ``l = 0.5 ||yhat - y||^2``, gradient ``yhat - y``, Hessian ``I``.

**Targets.** Real targets ``(N, n_out)``; ``(N,)`` is taken as a column when ``n_out == 1``.
Non-finite values are refused when the targets are concrete (outside ``jit``).

``sample`` draws from the unit-variance Gaussian around ``yhat``, whose negative log-likelihood is
this loss (up to a constant).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..validate import as_int, is_concrete
from .base import _check_finite_values, _column_targets, _float, _make


def _se_prepare(y: Any, n_out: int) -> jax.Array:
    """Squared-error targets as float rows.

    Args:
        y: real targets ``(N, n_out)``, or ``(N,)`` when ``n_out == 1`` (a column).
        n_out: the network's output width.

    Returns:
        ``(N, n_out)`` floats (integer targets become the default float dtype).

    Raises:
        ValueError: another shape, or non-finite values (when concrete).
        TypeError: a non-numeric array.
    """
    n_out = as_int(n_out, "n_out")
    y = _column_targets(y, n_out, "squared_error")
    if is_concrete(y):
        _check_finite_values(y, "squared_error")
    return _float(y)


def _se_value(yhat, y):
    """Per-example squared error ``l_n = 0.5 ||yhat_n - y_n||^2``.

    Args:
        yhat: ``(N, n_out)`` network output.
        y: ``(N, n_out)`` real targets, or ``(N,)`` when ``n_out == 1``.

    Returns:
        ``(N,)``; their mean is the cost ``C`` (``squared_error(yhat, y)``).
    """
    r = yhat - y
    return 0.5 * jnp.sum(r * r, axis=-1)


def _se_grad(yhat, y):
    """``dl_n/dyhat_n = yhat_n - y_n``.

    Args:
        yhat: ``(N, n_out)`` network output.
        y: ``(N, n_out)`` real targets, or ``(N,)`` when ``n_out == 1``.

    Returns:
        ``(N, n_out)``; ``dC/dyhat`` is this divided by N.
    """
    return yhat - y


def _se_hessian(yhat, y):
    """``d^2 l_n/dyhat_n^2 = I``.

    Args:
        yhat: ``(N, n_out)`` network output.
        y: ``(N, n_out)`` real targets, or ``(N,)`` when ``n_out == 1``.

    Returns:
        ``(N, n_out, n_out)``: one identity per example.
    """
    return jnp.broadcast_to(jnp.eye(yhat.shape[-1], dtype=yhat.dtype), yhat.shape + yhat.shape[-1:])


def _se_hvp(yhat, y, v):
    """``H_n v_n = v_n``.

    Args:
        yhat: ``(N, n_out)`` network output.
        y: ``(N, n_out)`` real targets, or ``(N,)`` when ``n_out == 1``.
        v: ``(N, n_out)`` one tangent per example.

    Returns:
        ``(N, n_out)``.
    """
    return v


def _se_sample(key, yhat):
    """Targets from the unit-variance Gaussian around ``yhat`` (whose NLL is squared error).

    Args:
        key: a ``jax.random`` key.
        yhat: ``(N, n_out)`` network output.

    Returns:
        ``(N, n_out)`` of ``yhat``'s dtype.
    """
    return yhat + jax.random.normal(key, yhat.shape, yhat.dtype)


def _se_hessian_sqrt(yhat, y):
    """``S_n = I`` (so ``S_n S_n^T = I = H_n``).

    Args:
        yhat: ``(N, n_out)`` network output.
        y: ``(N, n_out)`` real targets, or ``(N,)`` when ``n_out == 1``.

    Returns:
        ``(N, n_out, n_out)``: one identity per example.
    """
    return _se_hessian(yhat, y)


squared_error = _make(
    "squared_error", _se_value, _se_grad, _se_hessian, _se_hvp, _se_hessian_sqrt, _se_prepare, _se_sample
)
