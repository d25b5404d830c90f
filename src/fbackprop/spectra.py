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
  Rademacher ``z`` (entries +-1; Hutchinson 1989); the standard error of the mean comes with the
  trace.

Lanczos (1950) with full reorthogonalisation; power iteration (von Mises 1929). Every function
checks ``matvec`` at the call with ``jax.eval_shape`` (no compile): it must map a pytree shaped like
``like`` to one of the same structure and shapes; its output is cast to ``like``'s dtype (the
params' dtype is the computation's dtype).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .validate import as_int, check_choice, params_dtype


def check_key(key, name: str = "key"):
    """``key`` must be a JAX PRNG key: a typed key (``jax.random.key(0)``) or a legacy ``uint32[2]``.

    Args:
        key: what came.
        name: the argument's name, for the message.

    Returns:
        ``key`` unchanged.

    Raises:
        TypeError: naming ``name``, for anything else (an int seed, say).
    """
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return key
    if dtype is not None and dtype == jnp.uint32 and tuple(jnp.shape(key))[-1:] == (2,):
        return key
    raise TypeError(f"{name} must be a JAX PRNG key such as jax.random.key(0); got {key!r}")


def _describe(tree) -> str:
    """``structure`` with each leaf's shape and dtype, for messages."""
    leaves = [f"{tuple(jnp.shape(leaf))} {jnp.result_type(leaf)}" for leaf in jax.tree.leaves(tree)]
    return f"{jax.tree.structure(tree)} with leaves [{', '.join(leaves)}]"


def check_matvec(matvec: Callable, like) -> None:
    """``matvec(v)`` must return a pytree of ``like``'s structure and leaf shapes (checked by
    ``jax.eval_shape``: traced, not compiled, not run), with real floating leaves.

    Args:
        matvec: ``v -> M v``.
        like: a pytree shaped like ``v`` (the params).

    Returns:
        None; it raises for a bad ``matvec`` or ``like``.

    Raises:
        TypeError: ``matvec`` is not callable, or ``like`` or its output is not real floating.
        ValueError: the output's structure or shapes differ from ``like``'s, saying what came.
    """
    if not callable(matvec):
        raise TypeError(f"matvec must be a callable v -> M v over pytrees shaped like `like`; got {matvec!r}")
    if params_dtype(like, "like") is None:
        raise ValueError(f"like must be a pytree of floating arrays (the params); got {like!r}")
    spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), like)
    out = jax.eval_shape(matvec, spec)
    same = jax.tree.structure(out) == jax.tree.structure(spec) and all(
        tuple(o.shape) == tuple(s.shape) for o, s in zip(jax.tree.leaves(out), jax.tree.leaves(spec))
    )
    if not same:
        raise ValueError(
            f"matvec(v) must return a pytree shaped like `like` ({_describe(spec)}); "
            f"it returned {_describe(out)}"
        )
    bad = [str(o.dtype) for o in jax.tree.leaves(out) if not jnp.issubdtype(o.dtype, jnp.floating)]
    if bad:
        raise TypeError(f"matvec(v) must return real floating arrays; it returned dtypes {bad}")


class Lanczos(NamedTuple):
    """``Q^T M Q = T`` with ``T`` tridiagonal.

    Attributes:
        alpha: ``(m,)``, T's diagonal.
        beta: ``(m,)``, T's off-diagonal in its first m - 1 entries (0 where a restart happened).
        Q: ``(m, P)``, the orthonormal Lanczos vectors as rows (flat, in ``fb.flatten``'s order).
    """

    alpha: jax.Array
    beta: jax.Array
    Q: jax.Array

    def ritz(self) -> tuple[jax.Array, jax.Array]:
        """The eigenpairs of ``T``, mapped back through ``Q``.

        Returns:
            ``(theta (m,), V (m, P))``: the Ritz values ascending and the flat Ritz vectors as rows.
        """
        T = jnp.diag(self.alpha) + jnp.diag(self.beta[:-1], 1) + jnp.diag(self.beta[:-1], -1)
        theta, S = jnp.linalg.eigh(T)
        return theta, S.T @ self.Q


def _flat(matvec: Callable, like, key=None):
    """Check ``matvec``, ``like`` (and ``key``), then the flat product ``q (P,) -> M q (P,)``."""
    check_matvec(matvec, like)
    if key is not None:
        check_key(key)
    theta, unravel = ravel_pytree(like)
    return (
        (lambda q: ravel_pytree(matvec(unravel(q)))[0].astype(theta.dtype)),
        theta.size,
        theta.dtype,
        unravel,
    )


def lanczos(matvec: Callable, like, key: jax.Array, num_iter: int) -> Lanczos:
    """Lanczos tridiagonalisation of a symmetric ``M`` from a random start (Lanczos 1950).

    Args:
        matvec: ``v -> M v`` over pytrees shaped like ``like`` (``M`` symmetric, P x P).
        like: a pytree shaped like ``v`` (the params); its dtype is the computation's.
        key: a JAX PRNG key (the start and the restart directions).
        num_iter: the number of steps, an integer >= 1 (capped at P).

    Returns:
        ``Lanczos(alpha (m,), beta (m,), Q (m, P))`` with ``m = min(num_iter, P)``;
        ``.ritz()`` gives the Ritz values ascending and their flat vectors.

    Examples:
        >>> A = jnp.diag(jnp.arange(1.0, 6.0))
        >>> lz = fb.lanczos(lambda v: A @ v, jnp.zeros(5), jax.random.key(0), num_iter=3)
        >>> lz.alpha.shape, lz.Q.shape
        ((3,), (3, 5))
    """
    num_iter = as_int(num_iter, "num_iter")
    mv, P, dtype, _ = _flat(matvec, like, key)
    m = min(num_iter, P)
    starts = jax.random.normal(key, (m, P), dtype)  # row 0 the start, the others for restarts

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


def eigenvalues(
    matvec: Callable, like, key: jax.Array, k: int = 1, which: str = "top", num_iter: int | None = None
):
    """The extreme eigenpairs of a symmetric ``M`` from Lanczos' Ritz pairs.

    Args:
        matvec: ``v -> M v`` over pytrees shaped like ``like``.
        like: a pytree shaped like ``v`` (the params).
        key: a JAX PRNG key.
        k: how many eigenpairs, an integer in [1, P] (default 1).
        which: ``"top"`` (default: the largest, descending) or ``"bottom"`` (the smallest, ascending).
        num_iter: Lanczos steps, an integer >= k, or ``None`` (default) for ``max(3k, 40)``
            (capped at P).

    Returns:
        ``(values (k,), vectors)``: ``vectors`` a pytree like ``like`` with a leading k axis.

    Examples:
        >>> A = jnp.diag(jnp.arange(1.0, 6.0))
        >>> values, vectors = fb.eigenvalues(lambda v: A @ v, jnp.zeros(5), jax.random.key(1), 2, num_iter=5)
        >>> values.shape, vectors.shape, bool(jnp.allclose(values, jnp.array([5.0, 4.0])))
        ((2,), (2, 5), True)
    """
    check_choice(which, "which", ("top", "bottom"))
    P = sum(math.prod(jnp.shape(leaf)) for leaf in jax.tree.leaves(like))  # from shapes: nothing compiled
    k = as_int(k, "k", minimum=1, maximum=P)
    num_iter = max(3 * k, 40) if num_iter is None else as_int(num_iter, "num_iter", minimum=k)
    theta, V = lanczos(matvec, like, key, num_iter).ritz()
    idx = jnp.arange(k) if which == "bottom" else theta.shape[0] - 1 - jnp.arange(k)
    unravel = ravel_pytree(like)[1]
    return theta[idx], jax.vmap(unravel)(V[idx])


def power_iteration(matvec: Callable, like, key: jax.Array, num_iter: int = 100):
    """The eigenvalue of largest magnitude by power iteration.

    Args:
        matvec: ``v -> M v`` over pytrees shaped like ``like``.
        like: a pytree shaped like ``v`` (the params).
        key: a JAX PRNG key (the start).
        num_iter: the number of products, an integer >= 1 (default 100).

    Returns:
        ``(lambda, v)``: the Rayleigh quotient (a scalar) and the unit vector, a pytree like ``like``.

    Examples:
        >>> A = jnp.diag(jnp.arange(1.0, 6.0))
        >>> lam, v = fb.power_iteration(lambda v: A @ v, jnp.zeros(5), jax.random.key(0), num_iter=5)
        >>> lam.shape, v.shape
        ((), (5,))
    """
    num_iter = as_int(num_iter, "num_iter")
    mv, P, dtype, unravel = _flat(matvec, like, key)
    q0 = jax.random.normal(key, (P,), dtype)

    def step(_, q):
        w = mv(q)
        return w / jnp.linalg.norm(w)

    q = jax.lax.fori_loop(0, num_iter, step, q0 / jnp.linalg.norm(q0))
    return q @ mv(q), unravel(q)


def _rademacher_products(matvec: Callable, like, key: jax.Array, n_samples: int):
    mv, P, dtype, unravel = _flat(matvec, like, key)
    z = jax.random.rademacher(key, (n_samples, P), dtype)
    return z, jax.lax.map(mv, z), unravel


def hutchinson_trace(matvec: Callable, like, key: jax.Array, n_samples: int = 100):
    """Hutchinson's (1989) estimate of ``tr M`` from Rademacher probes ``z^T M z``.

    Args:
        matvec: ``v -> M v`` over pytrees shaped like ``like``.
        like: a pytree shaped like ``v`` (the params).
        key: a JAX PRNG key (the probes).
        n_samples: the number of probes, an integer >= 2 (default 100): the standard error needs
            the samples' variance, which needs two.

    Returns:
        ``(estimate, standard error)``, two scalars: the probes' mean and its standard error
        ``std(ddof=1) / sqrt(n_samples)``.

    Examples:
        >>> A = jnp.diag(jnp.arange(1.0, 6.0))
        >>> est, se = fb.hutchinson_trace(lambda v: A @ v, jnp.zeros(5), jax.random.key(0), n_samples=8)
        >>> est.shape, se.shape
        ((), ())
    """
    n_samples = as_int(n_samples, "n_samples", minimum=2)
    z, Mz, _ = _rademacher_products(matvec, like, key, n_samples)
    samples = jnp.sum(z * Mz, axis=1)
    return jnp.mean(samples), jnp.std(samples, ddof=1) / jnp.sqrt(n_samples)


def hutchinson_diag(matvec: Callable, like, key: jax.Array, n_samples: int = 100):
    """Hutchinson-style estimate of ``diag M``: the mean of ``z * M z`` over Rademacher probes.

    Args:
        matvec: ``v -> M v`` over pytrees shaped like ``like``.
        like: a pytree shaped like ``v`` (the params).
        key: a JAX PRNG key (the probes).
        n_samples: the number of probes, an integer >= 1 (default 100; the mean of none is undefined).

    Returns:
        The estimate, a pytree shaped like ``like``.

    Examples:
        >>> A = jnp.diag(jnp.arange(1.0, 6.0))
        >>> d = fb.hutchinson_diag(lambda v: A @ v, jnp.zeros(5), jax.random.key(0), n_samples=8)
        >>> d.shape
        (5,)
    """
    n_samples = as_int(n_samples, "n_samples")
    z, Mz, unravel = _rademacher_products(matvec, like, key, n_samples)
    return unravel(jnp.mean(z * Mz, axis=0))
