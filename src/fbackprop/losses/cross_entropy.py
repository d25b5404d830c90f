"""Cross-entropy of ``softmax(z)`` from logits: ``l = -sum_k y_k log p_k``, gradient ``p - y``,
Hessian ``diag(p) - p p^T``.

**Targets.** Integer class labels ``(N,)`` in ``[0, n_out)``, or rows of class probabilities
``(N, n_out)`` (one-hot rows, label smoothing): entries ``>= 0`` summing to 1 within ``sqrt(eps)``
of their dtype. A 1-output network is refused (a softmax over one logit is the constant 1): use
``binary_cross_entropy`` there.

**Target values under ``jit``.** Range and probability checks read the target *values*, so they run
only when the targets are concrete arrays (outside ``jit``). Under a ``jax.jit`` of the user's own,
the values are unknown at trace time; there integer labels are clamped-and-flagged instead: an
out-of-range label becomes a row of NaN, so that example's loss, gradient and curvature are NaN
(never a wrong finite number), which the training loops then report as a non-finite loss. This
costs one comparison per label and needs no ``checkify``. Probability rows are not checked under
``jit`` (their values pass as they are); check them outside it.

**Accuracy.** Values, gradients and curvatures stay finite for huge logits (log-sum-exp for the
softmax) and keep their relative accuracy where the softmax saturates. For the winning class (the
only one whose ``p_k`` can exceed 1/2) ``1 - p_k`` is never formed by subtraction but summed as
``sum_{j != k} p_j``; so ``diag(p) - p p^T`` has diagonal ``p_k (1 - p_k)`` to full relative
accuracy and off-diagonal ``-p_j p_k``, is positive semi-definite up to the rounding of its
entries, and its product is ``(H v)_k = p_k sum_j p_j (v_k - v_j)``, in ``O(n_out)``; the gradient
``p_k - y_k`` and the factor ``S`` likewise. At logits ``(0, 0, 40)`` the textbook ``p_k - p_k^2``
gives exactly 0 for the winner and a matrix with a negative eigenvalue; here every entry is within
a few ``eps`` of the matrix's scale (tested against mpmath).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..finite import host_values
from ..validate import as_int, is_concrete
from .base import _as_array, _first_bad_row, _float, _make, _shape_error


def _with_diag(off, d):
    """``off`` with its diagonal replaced by ``d`` (``(N, k, k)``, ``(N, k)``): no arithmetic on it."""
    eye = jnp.eye(d.shape[-1], dtype=bool)
    return jnp.where(eye, d[:, :, None], off)


class _Softmax(NamedTuple):
    """``p = softmax(z)``, ``top`` (the mask of each row's largest ``p``), ``q = 1 - p``: ``(N, k)`` each."""

    p: jax.Array
    top: jax.Array
    q: jax.Array


def _softmax_parts(z) -> _Softmax:
    """``q_k = 1 - p_k = sum_{j != k} p_j`` to full relative accuracy, in ``O(k)`` per row.

    Only a row's largest entry can exceed 1/2 (two would sum past 1). Elsewhere ``1 - p_k >= 1/2``
    is accurate as written; at the top entry it is summed as ``sum_{j != top} p_j``, so it keeps
    its digits even when ``p_top -> 1`` (``1 - p_top`` would be 0 at logits ``(0, 0, 40)``).
    """
    p = jax.nn.softmax(z, axis=-1)
    top = jnp.arange(z.shape[-1]) == jnp.argmax(z, axis=-1, keepdims=True)
    rest = jnp.sum(jnp.where(top, 0.0, p), axis=-1, keepdims=True)
    return _Softmax(p, top, jnp.where(top, rest, 1 - p))


def _sum_others(a, top):
    """``s_k = sum_{j != k} a_j``: summed directly at the ``top`` entry, ``sum - a_k`` elsewhere.

    With ``a = p * v``: elsewhere ``p_k <= 1/2``, so the subtraction's error, ``eps |p_k v_k|``,
    is within ``2 eps`` of the scale ``p_k (1 - p_k) max|v|`` of ``(H v)_k``.
    """
    total = jnp.sum(a, axis=-1, keepdims=True)
    rest = jnp.sum(jnp.where(top, 0.0, a), axis=-1, keepdims=True)
    return jnp.where(top, rest, total - a)


def _nan_rows(out, y):
    """``out`` with every example whose target row holds a NaN (a flagged label) set to NaN."""
    bad = jnp.any(jnp.isnan(y), axis=-1)
    return jnp.where(bad.reshape(bad.shape + (1,) * (out.ndim - 1)), jnp.nan, out)


def _check_probability_rows(y, n_out: int):
    arr = host_values(y)
    tol = float(np.sqrt(np.finfo(arr.dtype).eps)) if np.issubdtype(arr.dtype, np.floating) else 0.0
    arr = arr.astype(np.float64)
    forms = f"integer labels (N,) or rows of class probabilities (N, {n_out})"
    if not np.all(np.isfinite(arr)):
        i = _first_bad_row(~np.all(np.isfinite(arr), axis=1))
        raise ValueError(f"cross_entropy: y[{i}] = {arr[i]} is not finite; expected {forms}")
    if np.any(arr < 0):
        i = _first_bad_row(np.any(arr < 0, axis=1))
        raise ValueError(
            f"cross_entropy: y[{i}] = {arr[i]} has a negative entry, so it is not a probability vector; "
            f"expected {forms}"
        )
    sums = arr.sum(axis=1)
    off = np.abs(sums - 1.0) > tol
    if np.any(off):
        i = _first_bad_row(off)
        raise ValueError(
            f"cross_entropy: y[{i}] sums to {sums[i]:.6g}, so it is not a probability vector "
            f"(rows must sum to 1 within {tol:.2g}); expected {forms}"
        )


def _check_label_range(y, n_out: int):
    """Label values are data, not shapes: checked whenever they are concrete (not under jit)."""
    if y.size == 0:
        return
    y = host_values(y)
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_out:
        i = _first_bad_row((y < 0) | (y >= n_out))
        raise ValueError(
            f"cross_entropy: labels must lie in [0, {n_out}) for a network with {n_out} outputs; "
            f"got labels from {lo} to {hi} (the first out of range: y[{i}] = {int(y[i])})"
        )


def _ce_prepare(y: Any, n_out: int) -> jax.Array:
    """Cross-entropy targets as rows of class probabilities.

    Integer labels become one-hot rows. Under ``jit`` (traced labels) the range cannot be checked:
    an out-of-range label becomes a row of NaN there, so that example's loss, gradient and
    curvature are NaN instead of a wrong finite number (clamp-and-flag).

    Args:
        y: integer labels ``(N,)`` in ``[0, n_out)``, or probability rows ``(N, n_out)`` (entries
            ``>= 0``, each row summing to 1 within ``sqrt(eps)`` of its dtype; one-hot rows included).
        n_out: the network's output width, at least 2.

    Returns:
        ``(N, n_out)`` floats (the default float dtype for labels and integer rows).

    Raises:
        ValueError: ``n_out == 1`` (use ``binary_cross_entropy``), another shape, or (when concrete)
            labels out of range or rows that are not probability vectors.
        TypeError: ``(N,)`` targets that are not integers, or a non-numeric array.
    """
    n_out = as_int(n_out, "n_out")
    if n_out == 1:
        raise ValueError(
            "cross_entropy needs a network with at least 2 outputs (one logit per class); this one has 1, "
            "and a softmax over one logit is the constant 1 (loss and gradient 0 whatever the data). "
            "For two classes use loss='binary_cross_entropy' with 1 output and targets 0/1, "
            "or 2 outputs with cross_entropy"
        )
    y = _as_array(y, "cross_entropy")
    forms = f"integer labels (N,) in [0, {n_out}) or rows of class probabilities (N, {n_out})"
    if y.ndim == 1:
        if not jnp.issubdtype(y.dtype, jnp.integer):
            raise TypeError(
                f"cross_entropy: labels of shape {tuple(y.shape)} must be integers, got {y.dtype}; "
                f"pass integer labels (N,) or one-hot rows (N, {n_out})"
            )
        if is_concrete(y):
            _check_label_range(y, n_out)
        labels = jnp.asarray(y)
        one_hot = jax.nn.one_hot(labels, n_out, dtype=jax.dtypes.canonicalize_dtype(jnp.float64))
        inside = (labels >= 0) & (labels < n_out)
        return jnp.where(inside[:, None], one_hot, jnp.nan)  # clamp-and-flag: a no-op for checked labels
    if y.ndim != 2 or y.shape[1] != n_out:
        hint = " (integer labels of shape (N, 1)? pass y[:, 0])" if y.ndim == 2 and y.shape[1] == 1 else ""
        raise _shape_error("cross_entropy", y, n_out, forms + hint)
    if is_concrete(y):
        _check_probability_rows(y, n_out)
    return _float(y)


def _ce_value(z, y):
    """Per-example cross-entropy of ``softmax(z)``: ``l_n = -sum_k y_nk log softmax(z_n)_k``.

    Computed as ``sum_k y_k (z_m - z_k) + log1p(sum_{j != m} exp(z_j - z_m))`` with ``m`` the
    largest logit (for rows summing to 1), so a well-fit example's small loss keeps its digits.

    Args:
        z: ``(N, n_out)`` logits.
        y: integer labels ``(N,)`` or probability rows ``(N, n_out)`` (see ``prepare``).

    Returns:
        ``(N,)``; their mean is the cost ``C`` (``cross_entropy(z, y)``).
    """
    m = jnp.argmax(z, axis=-1, keepdims=True)
    z_m = jnp.take_along_axis(z, m, axis=-1)  # the derivative flows to that entry alone
    rest = jnp.where(jnp.arange(z.shape[-1]) == m, 0.0, jnp.exp(z - z_m))
    return jnp.sum(y * (z_m - z), axis=-1) + jnp.sum(y, axis=-1) * jnp.log1p(jnp.sum(rest, axis=-1))


def _ce_grad(z, y):
    """``dl_n/dz_n = softmax(z_n) - y_n``, as ``(1 - y_k) - sum_{j != k} p_j`` where ``p_k > 1/2``.

    Args:
        z: ``(N, n_out)`` logits.
        y: integer labels ``(N,)`` or probability rows ``(N, n_out)`` (see ``prepare``).

    Returns:
        ``(N, n_out)``; ``dC/dz`` is this divided by N.
    """
    p, _, q = _softmax_parts(z)
    return jnp.where(p > 0.5, (1 - y) - q, p - y)


def _ce_hessian(z, y):
    """``d^2 l_n/dz_n^2 = diag(p) - p p^T`` with ``p = softmax(z_n)``, without cancellation.

    The diagonal is ``p_k sum_{j != k} p_j``, the off-diagonal ``-p_j p_k``; the matrix does not
    depend on the targets (an example with a flagged, NaN target row gives NaN).

    Args:
        z: ``(N, n_out)`` logits.
        y: integer labels ``(N,)`` or probability rows ``(N, n_out)`` (see ``prepare``).

    Returns:
        ``(N, n_out, n_out)``, symmetric positive semi-definite.
    """
    p, _, q = _softmax_parts(z)
    return _nan_rows(_with_diag(-p[:, :, None] * p[:, None, :], p * q), y)


def _ce_hvp(z, y, v):
    """``(H_n v_n)_k = p_k sum_j p_j (v_k - v_j) = p_k (v_k sum_{j != k} p_j - sum_{j != k} p_j v_j)``.

    Both sums exclude ``k``, so nothing cancels as ``p_k -> 1``; ``O(n_out)`` per example.

    Args:
        z: ``(N, n_out)`` logits.
        y: integer labels ``(N,)`` or probability rows ``(N, n_out)`` (see ``prepare``).
        v: ``(N, n_out)`` one tangent per example.

    Returns:
        ``(N, n_out)``.
    """
    p, top, q = _softmax_parts(z)
    return _nan_rows(p * (v * q - _sum_others(p * v, top)), y)


def _ce_hessian_sqrt(z, y):
    """``S_n = diag(sqrt p) - p sqrt(p)^T``, so that ``S_n S_n^T = diag(p) - p p^T``.

    Entries: ``S_kk = sqrt(p_k) sum_{j != k} p_j``, ``S_kj = -p_k sqrt(p_j)`` (``j != k``).

    Args:
        z: ``(N, n_out)`` logits.
        y: integer labels ``(N,)`` or probability rows ``(N, n_out)`` (see ``prepare``).

    Returns:
        ``(N, n_out, n_out)``.
    """
    p, _, q = _softmax_parts(z)
    r = jnp.sqrt(p)
    return _nan_rows(_with_diag(-p[:, :, None] * r[:, None, :], r * q), y)


def _ce_sample(key, z):
    """One-hot rows drawn from the categorical of ``softmax(z)``.

    Args:
        key: a ``jax.random`` key.
        z: ``(N, n_out)`` logits.

    Returns:
        ``(N, n_out)`` one-hot rows of ``z``'s dtype.
    """
    return jax.nn.one_hot(jax.random.categorical(key, z, axis=-1), z.shape[-1], dtype=z.dtype)


cross_entropy = _make(
    "cross_entropy", _ce_value, _ce_grad, _ce_hessian, _ce_hvp, _ce_hessian_sqrt, _ce_prepare, _ce_sample
)
