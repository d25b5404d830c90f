"""Losses with hand-written value, gradient and Hessian with respect to the network output.

Shapes: ``yhat: (N, n_out)`` is the network output (logits for the classification losses),
``y`` the targets, of the same shape (or integer labels ``(N,)`` for ``cross_entropy``).

A ``Loss`` is written one example (one row) at a time, like the seeds' ``E_d``:

- ``value(yhat, y) -> (N,)``            the per-example losses ``l_n``,
- ``grad(yhat, y) -> (N, n_out)``       ``dl_n / dyhat_n``,
- ``hessian(yhat, y) -> (N, n_out, n_out)``  ``d^2 l_n / dyhat_n^2``,
- ``hvp(yhat, y, v) -> (N, n_out)``     ``(d^2 l_n / dyhat_n^2) v_n`` without forming the matrix,
- ``sample(key, yhat) -> (N, n_out)``   targets drawn from the model's predictive distribution, the
  one whose negative log-likelihood ``l`` is: a unit-variance Gaussian around ``yhat`` (squared
  error), a categorical of ``softmax(yhat)`` as one-hot rows, independent Bernoullis of
  ``sigmoid(yhat)``. The Monte-Carlo Fisher uses it.

The cost is their batch mean (DESIGN.md contract, seed 001 "fourth equation"):
``C = (1/N) sum_n l_n``, which is ``loss(yhat, y)``; so ``dC/dyhat = grad / N``, which is
what the backward pass starts from. ``prepare(y, n_out)`` turns accepted target forms (integer
labels, a flat column) into the ``(N, n_out)`` float form the three functions take.

All three are numerically stable: log-sum-exp for softmax, log-sigmoid for the logistic.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Loss(NamedTuple):
    """Per-example loss ``l(yhat, y)`` with hand-written derivatives in ``yhat``; ``C`` is the mean."""

    name: str
    value: Callable[[jax.Array, jax.Array], jax.Array]
    grad: Callable[[jax.Array, jax.Array], jax.Array]
    hessian: Callable[[jax.Array, jax.Array], jax.Array]
    hvp: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    prepare: Callable[[jax.Array, int], jax.Array]
    sample: Callable[[jax.Array, jax.Array], jax.Array]

    def __call__(self, yhat: jax.Array, y: jax.Array) -> jax.Array:
        """``C = (1/N) sum_n l(yhat_n, y_n)``: the batch-mean cost (a scalar)."""
        return jnp.mean(self.value(yhat, y))


def _diag(d):
    """``(N, k) -> (N, k, k)``: one diagonal matrix per row."""
    return d[:, :, None] * jnp.eye(d.shape[-1], dtype=d.dtype)


def _check_targets(y, n_out: int, name: str):
    """Float targets of shape ``(N, n_out)``; a flat ``(N,)`` is taken as a column when ``n_out == 1``."""
    y = jnp.asarray(y)
    if y.ndim == 1 and n_out == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != n_out:
        raise ValueError(
            f"{name}: y has shape {tuple(y.shape)} but the network output is (N, {n_out}); "
            f"expected y of shape (N, {n_out})"
        )
    if not jnp.issubdtype(y.dtype, jnp.floating):
        y = y.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
    return y


# --- squared_error: l = 0.5 ||yhat - y||^2, grad yhat - y, Hessian I --------------------------
def _se_value(yhat, y):
    r = yhat - y
    return 0.5 * jnp.sum(r * r, axis=-1)


squared_error = Loss(
    "squared_error",
    value=_se_value,
    grad=lambda yhat, y: yhat - y,
    hessian=lambda yhat, y: jnp.broadcast_to(
        jnp.eye(yhat.shape[-1], dtype=yhat.dtype), yhat.shape + yhat.shape[-1:]
    ),
    hvp=lambda yhat, y, v: v,
    prepare=lambda y, n_out: _check_targets(y, n_out, "squared_error"),
    sample=lambda key, yhat: yhat + jax.random.normal(key, yhat.shape, yhat.dtype),
)


# --- cross_entropy: softmax from logits; l = logsumexp(z) - y.z, grad p - y, H diag(p) - p p^T
def _ce_value(z, y):
    return jax.nn.logsumexp(z, axis=-1) - jnp.sum(y * z, axis=-1)


def _ce_grad(z, y):
    return jax.nn.softmax(z, axis=-1) - y


def _ce_hessian(z, y):
    p = jax.nn.softmax(z, axis=-1)
    return _diag(p) - p[:, :, None] * p[:, None, :]


def _ce_hvp(z, y, v):
    p = jax.nn.softmax(z, axis=-1)
    return p * v - p * jnp.sum(p * v, axis=-1, keepdims=True)


def _ce_prepare(y, n_out: int):
    """Integer labels ``(N,)`` in ``[0, n_out)`` become one-hot rows; probability rows pass."""
    y = jnp.asarray(y) if not isinstance(y, np.ndarray) else y
    if y.ndim == 1 and jnp.issubdtype(y.dtype, jnp.integer):
        _check_label_range(y, n_out)
        return jax.nn.one_hot(y, n_out, dtype=jax.dtypes.canonicalize_dtype(jnp.float64))
    if y.ndim == 1:
        raise TypeError(
            f"cross_entropy: labels of shape {tuple(y.shape)} must be integers, got {y.dtype}; "
            f"pass integer labels (N,) or one-hot rows (N, {n_out})"
        )
    return _check_targets(y, n_out, "cross_entropy")


def _check_label_range(y, n_out: int):
    """Label values are data, not shapes: checked whenever they are concrete (not under jit)."""
    if isinstance(y, jax.core.Tracer) or y.size == 0:
        return
    y = np.asarray(y)  # numpy, so that the check stays concrete even when called inside a jit trace
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_out:
        raise ValueError(
            f"cross_entropy: labels must lie in [0, {n_out}) for a network with {n_out} outputs; "
            f"got labels from {lo} to {hi}"
        )


def _ce_sample(key, z):
    return jax.nn.one_hot(jax.random.categorical(key, z, axis=-1), z.shape[-1], dtype=z.dtype)


cross_entropy = Loss("cross_entropy", _ce_value, _ce_grad, _ce_hessian, _ce_hvp, _ce_prepare, _ce_sample)


# --- binary_cross_entropy: logistic from logits, each output independent ----------------------
# l = sum_k softplus(z_k) - y_k z_k = -sum_k [y_k log s(z_k) + (1 - y_k) log s(-z_k)]
def _bce_value(z, y):
    return jnp.sum(jax.nn.softplus(z) - y * z, axis=-1)


def _bce_curvature(z):
    return jax.nn.sigmoid(z) * jax.nn.sigmoid(-z)  # s(1 - s) without cancellation


binary_cross_entropy = Loss(
    "binary_cross_entropy",
    value=_bce_value,
    grad=lambda z, y: jax.nn.sigmoid(z) - y,
    hessian=lambda z, y: _diag(_bce_curvature(z)),
    hvp=lambda z, y, v: _bce_curvature(z) * v,
    prepare=lambda y, n_out: _check_targets(y, n_out, "binary_cross_entropy"),
    sample=lambda key, z: jax.random.bernoulli(key, jax.nn.sigmoid(z)).astype(z.dtype),
)


LOSSES: dict[str, Loss] = {l.name: l for l in (squared_error, cross_entropy, binary_cross_entropy)}


def get(loss: str | Loss) -> Loss:
    """Look a loss up by name (or pass a ``Loss`` through)."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]
    raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)} or an fbackprop.losses.Loss")
