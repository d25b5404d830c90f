"""Losses with hand-written value, gradient, Hessian and Hessian square root in the network output.

Shapes: ``yhat: (N, n_out)`` is the network output (logits for the two classification losses),
one example per row; ``y`` the targets. A ``Loss`` is written one example (one row) at a time:

- ``value(yhat, y) -> (N,)``                the per-example losses ``l_n``,
- ``grad(yhat, y) -> (N, n_out)``           ``dl_n / dyhat_n``,
- ``hessian(yhat, y) -> (N, n_out, n_out)``  ``H_n = d^2 l_n / dyhat_n^2``,
- ``hvp(yhat, y, v) -> (N, n_out)``         ``H_n v_n`` without forming the matrix,
- ``hessian_sqrt(yhat, y) -> (N, n_out, n_out)``  a factor ``S_n`` with ``H_n = S_n S_n^T`` (the
  factorization BackPACK uses, Dangel, Kunstner & Hennig 2020),
- ``sample(key, yhat) -> (N, n_out)``       targets drawn from the model's predictive distribution,
  the one whose negative log-likelihood ``l`` is: a unit-variance Gaussian around ``yhat``
  (squared error), a categorical of ``softmax(yhat)`` as one-hot rows, independent Bernoullis of
  ``sigmoid(yhat)``. The Monte-Carlo Fisher uses it.

The cost is the batch mean ``C = (1/N) sum_n l_n``, which is ``loss(yhat, y)``; so
``dC/dyhat = grad / N``, which is what the backward pass starts from.

**Targets.** ``prepare(y, n_out)`` turns every accepted target form into the ``(N, n_out)`` float
rows the functions above compute with, and refuses the rest with a ``ValueError``/``TypeError``
naming what was expected and what came:

- ``squared_error``: real targets ``(N, n_out)``; ``(N,)`` is taken as a column when ``n_out == 1``.
- ``binary_cross_entropy``: targets in ``[0, 1]`` (0/1 labels or probabilities), ``(N, n_out)``
  or ``(N,)`` when ``n_out == 1``.
- ``cross_entropy``: integer class labels ``(N,)`` in ``[0, n_out)``, or rows of class
  probabilities ``(N, n_out)`` (one-hot rows, label smoothing): entries ``>= 0`` summing to 1
  within ``sqrt(eps)`` of their dtype. A 1-output network is refused (a softmax over one logit is
  the constant 1): use ``binary_cross_entropy`` there.

Every public callable (``loss(yhat, y)``, ``value``, ``grad``, ``hessian``, ``hvp``,
``hessian_sqrt``) prepares its targets so, exactly as ``fb.backprop`` does, and checks that ``yhat``
is a floating ``(N, n_out)`` array with as many rows as ``y``; the targets are cast to ``yhat``'s
dtype. Preparing is idempotent: prepared targets pass through unchanged, and the shape and dtype
checks are static, so the internal callers (which pass prepared targets, under ``jit``) pay nothing.

**Target values under ``jit``.** Range and probability checks read the target *values*, so they run
only when the targets are concrete arrays (outside ``jit``). Under a ``jax.jit`` of the user's own,
the values are unknown at trace time; there integer labels are clamped-and-flagged instead: an
out-of-range label becomes a row of NaN, so that example's loss, gradient and curvature are NaN
(never a wrong finite number), which the training loops then report as a non-finite loss. This
costs one comparison per label and needs no ``checkify``. Probability rows and binary targets are
not checked under ``jit`` (their values pass as they are); check them outside it.

**Accuracy.** Values, gradients and curvatures stay finite for huge logits (log-sum-exp for the
softmax, ``exp(-|z|)`` for the logistic) and keep their relative accuracy where a softmax or
sigmoid saturates. For the winning class (the only one whose ``p_k`` can exceed 1/2) ``1 - p_k`` is
never formed by subtraction but summed as ``sum_{j != k} p_j``; so ``diag(p) - p p^T`` has diagonal
``p_k (1 - p_k)`` to full relative accuracy and off-diagonal ``-p_j p_k``, is positive semi-definite
up to the rounding of its entries, and its product is ``(H v)_k = p_k sum_j p_j (v_k - v_j)``, in
``O(n_out)``; the gradient ``p_k - y_k`` and the factor ``S`` likewise. At logits ``(0, 0, 40)`` the
textbook ``p_k - p_k^2`` gives exactly 0 for the winner and a matrix with a negative eigenvalue;
here every entry is within a few ``eps`` of the matrix's scale (tested against mpmath). Binary
cross-entropy's ``s (1 - s)`` is ``exp(-|z|) / (1 + exp(-|z|))^2``, accurate at any ``z``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .validate import as_int, check_finite, is_concrete


class Loss(NamedTuple):
    """Per-example loss ``l(yhat, y)`` with hand-written derivatives in ``yhat``; ``C`` is the mean.

    Attributes:
        name: the loss's name (``"squared_error"``, ``"cross_entropy"``, ``"binary_cross_entropy"``).
        value: ``(yhat, y) -> (N,)``, the per-example losses ``l_n``.
        grad: ``(yhat, y) -> (N, n_out)``, ``dl_n/dyhat_n``.
        hessian: ``(yhat, y) -> (N, n_out, n_out)``, ``d^2 l_n/dyhat_n^2``.
        hvp: ``(yhat, y, v) -> (N, n_out)``, ``(d^2 l_n/dyhat_n^2) v_n``.
        prepare: ``(y, n_out) -> (N, n_out)``, the accepted target forms as float rows.
        sample: ``(key, yhat) -> (N, n_out)``, targets drawn from the model's predictive distribution.
        hessian_sqrt: ``(yhat, y) -> (N, n_out, n_out)``, ``S_n`` with ``H_n = S_n S_n^T``.

    Every callable taking ``(yhat, y)`` prepares ``y`` with ``prepare`` (module docstring: the
    accepted forms) and raises ``ValueError``/``TypeError`` for targets it refuses, for a ``yhat``
    that is not a floating ``(N, n_out)`` array, or for ``y`` with another number of rows.
    """

    name: str
    value: Callable[[jax.Array, jax.Array], jax.Array]
    grad: Callable[[jax.Array, jax.Array], jax.Array]
    hessian: Callable[[jax.Array, jax.Array], jax.Array]
    hvp: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    prepare: Callable[[jax.Array, int], jax.Array]
    sample: Callable[[jax.Array, jax.Array], jax.Array]
    hessian_sqrt: Callable[[jax.Array, jax.Array], jax.Array]

    def __call__(self, yhat: jax.Array, y: jax.Array) -> jax.Array:
        """The batch-mean cost ``C = (1/N) sum_n l(yhat_n, y_n)``.

        Args:
            yhat: ``(N, n_out)`` network output (logits for the classification losses).
            y: targets in any form ``prepare`` accepts (module docstring).

        Returns:
            A scalar of ``yhat``'s dtype.
        """
        return jnp.mean(self.value(yhat, y))


# --- shared checks ------------------------------------------------------------------------------
def _as_array(y: Any, name: str, what: str = "y"):
    """``y`` as an array (NumPy arrays stay NumPy, so that their values stay readable under a trace)."""
    if not isinstance(y, (jax.Array, np.ndarray)):
        try:
            y = np.asarray(y)  # lists of numbers: concrete NumPy values
        except Exception:  # noqa: BLE001 (e.g. a list holding tracers)
            y = None
        if y is None or y.dtype == object:
            try:
                y = jnp.asarray(y)
            except (TypeError, ValueError) as err:
                raise TypeError(
                    f"{name}: {what} must be an array of numbers; got {type(y).__name__} ({err})"
                ) from None
    dt = y.dtype
    if not (
        jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer) or jnp.issubdtype(dt, jnp.bool_)
    ):
        raise TypeError(f"{name}: {what} must hold real numbers (float, integer or bool); got dtype {dt}")
    return y


def _float(y):
    """Integer/bool targets as the default float dtype; float targets unchanged."""
    if jnp.issubdtype(y.dtype, jnp.floating):
        return jnp.asarray(y)
    return jnp.asarray(y, jax.dtypes.canonicalize_dtype(jnp.float64))


def _shape_error(name: str, y, n_out: int, forms: str):
    return ValueError(
        f"{name}: y has shape {tuple(y.shape)} but the network output is (N, {n_out}); expected {forms}"
    )


def _column_targets(y, n_out: int, name: str):
    """Real targets ``(N, n_out)``, or ``(N,)`` taken as a column when ``n_out == 1`` (shapes only)."""
    y = _as_array(y, name)
    if y.ndim == 1 and n_out == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != n_out:
        forms = f"y of shape (N, {n_out})" + (" or (N,)" if n_out == 1 else "")
        raise _shape_error(name, y, n_out, forms)
    return y


def _first_bad_row(bad: np.ndarray) -> int:
    return int(np.argwhere(bad)[0][0])


def _check_finite_values(y, name: str):
    check_finite(y, f"{name}: y")  # the package's one message for NaN/Inf, naming the index


def _output(yhat: Any, name: str, fn: str):
    """``yhat`` must be a floating ``(N, n_out)`` array: the network output, one example per row."""
    yhat = _as_array(yhat, f"{name}.{fn}", "yhat")
    if not jnp.issubdtype(yhat.dtype, jnp.floating):
        raise TypeError(
            f"{name}.{fn}: yhat (the network output) must be floating point; got dtype {yhat.dtype}"
        )
    if yhat.ndim != 2:
        hint = "; for a single-output network pass yhat[:, None]" if yhat.ndim == 1 else ""
        raise ValueError(
            f"{name}.{fn}: yhat must have shape (N, n_out) (one example per row); "
            f"got shape {tuple(yhat.shape)}{hint}"
        )
    return jnp.asarray(yhat)


def _pair(loss_name: str, prepare, fn: str, yhat, y):
    """``yhat`` checked, ``y`` prepared for its width, cast to its dtype, with as many rows."""
    yhat = _output(yhat, loss_name, fn)
    y = prepare(y, yhat.shape[1])
    if y.shape[0] != yhat.shape[0]:
        raise ValueError(
            f"{loss_name}.{fn}: y has {y.shape[0]} rows but yhat has {yhat.shape[0]}: one target per example "
            "is expected"
        )
    return yhat, y.astype(yhat.dtype)


def _public(loss_name: str, prepare, fn: str, core, tangent: bool = False):
    """The public ``(yhat, y[, v])`` callable: targets prepared and checked, then ``core``."""
    if tangent:

        def public(yhat, y, v):
            yhat, y = _pair(loss_name, prepare, fn, yhat, y)
            v = _as_array(v, f"{loss_name}.{fn}", "v")
            if v.shape != yhat.shape:
                raise ValueError(
                    f"{loss_name}.{fn}: v must have yhat's shape {tuple(yhat.shape)}; got {tuple(v.shape)}"
                )
            return core(yhat, y, jnp.asarray(v, yhat.dtype))
    else:

        def public(yhat, y):
            return core(*_pair(loss_name, prepare, fn, yhat, y))

    functools.update_wrapper(public, core)
    public.__name__ = public.__qualname__ = f"{loss_name}.{fn}"
    return public


def _make(name, value, grad, hessian, hvp, hessian_sqrt, prepare, sample) -> Loss:
    for fn, what in ((prepare, "prepare"), (sample, "sample")):
        fn.__name__ = fn.__qualname__ = f"{name}.{what}"
    return Loss(
        name,
        value=_public(name, prepare, "value", value),
        grad=_public(name, prepare, "grad", grad),
        hessian=_public(name, prepare, "hessian", hessian),
        hvp=_public(name, prepare, "hvp", hvp, tangent=True),
        prepare=prepare,
        sample=sample,
        hessian_sqrt=_public(name, prepare, "hessian_sqrt", hessian_sqrt),
    )


def _diag(d):
    """``(N, k) -> (N, k, k)``: one diagonal matrix per row."""
    return d[:, :, None] * jnp.eye(d.shape[-1], dtype=d.dtype)


def _with_diag(off, d):
    """``off`` with its diagonal replaced by ``d`` (``(N, k, k)``, ``(N, k)``): no arithmetic on it."""
    eye = jnp.eye(d.shape[-1], dtype=bool)
    return jnp.where(eye, d[:, :, None], off)


# --- squared_error: l = 0.5 ||yhat - y||^2, grad yhat - y, Hessian I ------------------------------
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


# --- cross_entropy: softmax from logits; l = -sum_k y_k log p_k, grad p - y, H diag(p) - p p^T -----
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
    arr = np.asarray(y)
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
    y = np.asarray(y)
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


# --- binary_cross_entropy: logistic from logits, each output independent ---------------------------
# l = sum_k softplus(z_k) - y_k z_k = -sum_k [y_k log s(z_k) + (1 - y_k) log s(-z_k)]
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
        arr = np.asarray(y)
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


LOSSES: dict[str, Loss] = {l.name: l for l in (squared_error, cross_entropy, binary_cross_entropy)}


def get(loss: str | Loss) -> Loss:
    """Look a loss up by name, or pass a ``Loss`` through.

    Args:
        loss: ``"squared_error"``, ``"cross_entropy"``, ``"binary_cross_entropy"`` or a ``Loss``.

    Returns:
        The ``Loss``.

    Raises:
        ValueError: an unknown name (the valid ones are listed).
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]
    raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)} or an fbackprop.losses.Loss")
