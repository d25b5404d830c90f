"""Spectra and estimators from any matrix-vector product ``matvec(v) -> M v`` over a params pytree.

``matvec`` is e.g. ``lambda v: fb.hvp(net, loss)(params, x, y, v)`` (or ``ggn_vp``, ``fisher_vp``);
``like`` is a pytree shaped like ``v`` (the params). ``M`` must be symmetric. Each function runs
its loop as one ``lax`` loop; randomness only through the explicit ``key``.

- ``lanczos``: Lanczos tridiagonalisation with full reorthogonalisation (and a random restart when
  the Krylov space is exhausted, which happens when ``M`` has few distinct eigenvalues, e.g. the
  many zero eigenvalues of a relu network's Hessian); its Ritz values approximate the extreme
  eigenvalues first. ``eigenvalues`` returns the top-k or bottom-k of them with Ritz vectors.
- ``power_iteration``: the eigenvalue of largest magnitude.
- ``hutchinson_trace`` / ``hutchinson_diag``: ``E[z^T M z] = tr M`` and ``E[z * M z] = diag M`` for
  Rademacher ``z`` (entries +-1); the standard error of the mean comes with the trace.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


class Lanczos(NamedTuple):
    """``Q^T M Q = T`` with ``T`` tridiagonal (``alpha`` on the diagonal, ``beta`` beside it), ``Q: (m, P)``."""

    alpha: jax.Array
    beta: jax.Array
    Q: jax.Array

    def ritz(self) -> tuple[jax.Array, jax.Array]:
        """Ritz values ascending ``(m,)`` and flat Ritz vectors ``(m, P)``."""
        T = jnp.diag(self.alpha) + jnp.diag(self.beta[:-1], 1) + jnp.diag(self.beta[:-1], -1)
        theta, S = jnp.linalg.eigh(T)
        return theta, S.T @ self.Q


def _flat(matvec: Callable, like):
    theta, unravel = ravel_pytree(like)
    return (lambda q: ravel_pytree(matvec(unravel(q)))[0]), theta.size, theta.dtype, unravel


def lanczos(matvec: Callable, like, key: jax.Array, num_iter: int) -> Lanczos:
    """``num_iter`` (at most P) Lanczos steps from a random start; see the module docstring."""
    mv, P, dtype, _ = _flat(matvec, like)
    m = min(num_iter, P)
    if m < 1:
        raise ValueError(f"num_iter must be at least 1; got {num_iter}")
    starts = jax.random.normal(key, (m, P), dtype)           # row 0 the start, the others for restarts

    def orthonormal(w, Q, j):
        """``w`` without its components along ``Q[:j+1]`` (twice: "twice is enough"), and its norm."""
        mask = (jnp.arange(m) <= j)[:, None]
        for _ in range(2):
            w = w - (mask * Q).T @ (mask * Q @ w)
        return w, jnp.linalg.norm(w)

    def step(j, carry):
        Q, alpha, beta = carry
        w = mv(Q[j])
        a = Q[j] @ w
        w, b = orthonormal(w, Q, j)
        scale = jnp.maximum(jnp.abs(a), jnp.max(jnp.abs(alpha)))
        exhausted = b <= 1e3 * jnp.finfo(dtype).eps * jnp.maximum(scale, 1.0)
        r, rb = orthonormal(starts[jnp.minimum(j + 1, m - 1)], Q, j)  # a fresh direction on breakdown
        q_next = jnp.where(exhausted, r / rb, w / jnp.where(exhausted, 1.0, b))
        Q = Q.at[jnp.minimum(j + 1, m - 1)].set(jnp.where(j + 1 < m, q_next, Q[m - 1]))
        return Q, alpha.at[j].set(a), beta.at[j].set(jnp.where(exhausted, 0.0, b))

    Q0 = jnp.zeros((m, P), dtype).at[0].set(starts[0] / jnp.linalg.norm(starts[0]))
    Q, alpha, beta = jax.lax.fori_loop(0, m, step, (Q0, jnp.zeros(m, dtype), jnp.zeros(m, dtype)))
    return Lanczos(alpha, beta, Q)


def eigenvalues(matvec: Callable, like, key: jax.Array, k: int = 1, which: str = "top", num_iter: int | None = None):
    """``(values (k,), vectors)``: the ``k`` largest (``which="top"``, descending) or smallest
    (``"bottom"``, ascending) Ritz pairs; ``vectors`` is a pytree like ``like`` with a leading k axis.
    ``num_iter`` defaults to ``min(P, max(3k, 40))``."""
    if which not in ("top", "bottom"):
        raise ValueError(f"which must be 'top' or 'bottom'; got {which!r}")
    P = ravel_pytree(like)[0].size
    if not 1 <= k <= P:
        raise ValueError(f"k must lie in [1, P={P}]; got {k}")
    theta, V = lanczos(matvec, like, key, num_iter or max(3 * k, 40)).ritz()
    idx = jnp.arange(k) if which == "bottom" else theta.shape[0] - 1 - jnp.arange(k)
    unravel = ravel_pytree(like)[1]
    return theta[idx], jax.vmap(unravel)(V[idx])


def power_iteration(matvec: Callable, like, key: jax.Array, num_iter: int = 100):
    """``(lambda, v)``: the eigenvalue of largest magnitude (Rayleigh quotient) and its unit vector."""
    mv, P, dtype, unravel = _flat(matvec, like)
    q0 = jax.random.normal(key, (P,), dtype)

    def step(_, q):
        w = mv(q)
        return w / jnp.linalg.norm(w)

    q = jax.lax.fori_loop(0, num_iter, step, q0 / jnp.linalg.norm(q0))
    return q @ mv(q), unravel(q)


def _rademacher_products(matvec: Callable, like, key: jax.Array, n_samples: int):
    mv, P, dtype, unravel = _flat(matvec, like)
    z = jax.random.rademacher(key, (n_samples, P), dtype)
    return z, jax.lax.map(mv, z), unravel


def hutchinson_trace(matvec: Callable, like, key: jax.Array, n_samples: int = 100):
    """``(estimate, standard error)`` of ``tr M`` from ``n_samples`` Rademacher probes ``z^T M z``."""
    z, Mz, _ = _rademacher_products(matvec, like, key, n_samples)
    samples = jnp.sum(z * Mz, axis=1)
    return jnp.mean(samples), jnp.std(samples, ddof=1) / jnp.sqrt(n_samples)


def hutchinson_diag(matvec: Callable, like, key: jax.Array, n_samples: int = 100):
    """``diag M`` estimated as the mean of ``z * M z`` over Rademacher probes, shaped like ``like``."""
    z, Mz, unravel = _rademacher_products(matvec, like, key, n_samples)
    return unravel(jnp.mean(z * Mz, axis=0))
