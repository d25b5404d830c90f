"""The dual solve for softmax cross-entropy on a system of ``N (K - 1)`` rows, symmetric positive
definite, where the general dual solve factors ``H K + mu I`` of ``N K`` rows by LU.

The softmax Hessian ``H_n = diag(p) - p p^T`` has rank ``K - 1`` (it does not see a shift of all
the logits), so it has a factor ``S_n: (K, K - 1)`` with ``S_n S_n^T = H_n``. Measured from a
reference class ``m`` (the most probable, ``p_m >= 1/K``), the loss depends on the logit
differences ``d = B z``, ``B = [I | -1]`` (the column of ``m`` is the ``-1``), whose Hessian is the
``(K - 1)``-square ``Hh = diag(q) - q q^T`` over the other classes' probabilities ``q``; so
``H = B^T Hh B`` and ``S = B^T L`` with ``L`` the Cholesky factor of ``Hh``, in closed form (the
multinomial covariance's; Tanabe & Sagae 1992): with ``s_k = sum_{i >= k} q_i + p_m``,
``L_kk = sqrt(q_k s_{k+1} / s_k)`` and ``L_jk = -q_j sqrt(q_k / (s_k s_{k+1}))`` for ``j > k``.

With ``Jt_n = S_n^T J_n`` (``N (K - 1)`` rows), ``G = Jt^T Jt`` exactly, and the gradient
``g = J^T u`` splits as ``u = S r + v``: ``r = L^-1 uh`` (``uh`` the other classes' entries of ``u``)
and ``v = (sum_k u_k) e_m``, which is zero for targets that sum to 1 and stays for the soft targets
``fb.losses.cross_entropy`` accepts within ``sqrt(eps)`` of 1. Then (push-through and Woodbury)

    (G + mu I)^-1 g = Jt^T w1 + (J^T v - Jt^T w2) / mu,   (Kt + mu I) w1 = r,  (Kt + mu I) w2 = t,

with ``Kt = Jt Jt^T = S^T K S`` (``K = J J^T``) formed from the layers with ``K - 1`` backward passes
seeded by ``S``'s columns, and ``t = Jt J^T v`` (a backward and a forward-mode pass): one Cholesky
of ``Kt + mu I`` a trial, both right-hand sides at once, and one backward pass seeded with
``S (w1 - w2 / mu) + v / mu``. The model's ``delta.G delta = |Jt delta|^2`` is read off the
systems: ``Jt delta = -(r - mu w1 + w2)``. Damping ``D = I`` only (Marquardt's scaling keeps the
general dual solve).

A class whose probability is below ``sqrt(tiny)`` of the dtype (1e-154 in float64, 1e-19 in
float32) counts with that probability in the factor, so that ``L`` stays invertible; its
contribution to ``G`` is then of that order instead of its own.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ..backprop import backward, forward
from .solvers import spd_solve

HIGHEST = jax.lax.Precision.HIGHEST


def softmax_factor(z, u):
    """``S (N, K, K-1)`` with ``S_n S_n^T = diag(p_n) - p_n p_n^T``, and the split ``u = S r + v``.

    Args:
        z: logits ``(N, K)``, ``K >= 2``.
        u: the loss gradient ``dl_n/dz_n = p_n - y_n``, ``(N, K)``.

    Returns:
        ``(S (N, K, K-1), L (N, K-1, K-1) lower, r (N, K-1), v (N, K))``: ``L`` the Cholesky factor
        of the reduced Hessian over the classes other than each row's most probable one.
    """
    k = z.shape[-1]
    p = jax.nn.softmax(z, axis=-1)
    m = jnp.argmax(z, axis=-1)
    others = jnp.arange(k - 1)[None, :] + (jnp.arange(k - 1)[None, :] >= m[:, None])  # (N, K-1)
    tiny = jnp.sqrt(jnp.finfo(z.dtype).tiny)
    q = jnp.maximum(jnp.take_along_axis(p, others, axis=1), tiny)
    p_m = jnp.take_along_axis(p, m[:, None], axis=1)
    s = jnp.flip(jnp.cumsum(jnp.flip(q, 1), axis=1), 1) + p_m  # s_k = sum_{i >= k} q_i + p_m
    s_next = jnp.concatenate([s[:, 1:], p_m], axis=1)
    diag = jnp.sqrt(q * s_next / s)
    below = -q[:, :, None] * jnp.sqrt(q / (s * s_next))[:, None, :]  # L_jk for j > k
    L = jnp.where(jnp.tri(k - 1, k=-1, dtype=bool), below, 0.0) + diag[:, :, None] * jnp.eye(
        k - 1, dtype=z.dtype
    )
    rows = jax.nn.one_hot(others, k, dtype=z.dtype)  # (N, K-1, K): class of each reduced row
    S_ = (
        jnp.einsum("nik,nij->nkj", rows, L)
        - jax.nn.one_hot(m, k, dtype=z.dtype)[:, :, None] * jnp.sum(L, axis=1)[:, None, :]
    )
    uh = jnp.take_along_axis(u, others, axis=1)
    r = jax.scipy.linalg.solve_triangular(L, uh[..., None], lower=True)[..., 0]
    v = jnp.sum(u, axis=1, keepdims=True) * jax.nn.one_hot(m, k, dtype=z.dtype)
    return S_, L, r, v


class SoftmaxDual(NamedTuple):
    """The reduced dual's point: ``Kt = S^T K S`` is ``N (K - 1)``-square (fields below)."""

    theta: jax.Array
    inputs: tuple  # forward's cache at theta (J^T w by a backward pass)
    S: jax.Array  # (N, K, K-1)
    r: jax.Array  # (N, K-1)
    v: jax.Array  # (N, K): the part of u outside S's range
    t: jax.Array  # (N, K-1): S^T K v
    g: jax.Array
    d: jax.Array  # ones (D = I)
    K: jax.Array  # Kt, (N (K-1), N (K-1))


def linearize(pb, theta) -> SoftmaxDual:
    """``Kt = Jt Jt^T`` from the layers (their ``jacobian_gram`` with the backward passes seeded by the
    columns of ``S``: the rows of ``Jt = S^T J``), the split of ``u``, ``t`` and the gradient.

    Args:
        pb: the problem (cross-entropy, ``D = I``).
        theta: the flat params ``(P,)`` at an accepted point.

    Returns:
        ``SoftmaxDual`` with ``K: (N (K-1), N (K-1))``.
    """
    params = pb.unflatten(theta)
    z, inputs = forward(pb.net, params, pb.x)
    u = pb.loss.grad(z, pb.y)
    S_, _, r, v = softmax_factor(z, u)
    g = ravel_pytree(backward(pb.net, params, inputs, u)[0])[0]
    n, k = u.shape
    # the rows of Jt = S^T J are backward passes seeded with S's columns: Kt = Jt Jt^T from the layers
    Kt = pb.net.body.jacobian_gram(params, inputs, jnp.moveaxis(S_, 2, 0)).reshape(n * (k - 1), -1)
    apply = lambda th: forward(pb.net, pb.unflatten(th), pb.x)[0]
    Jv = jax.jvp(apply, (theta,), (ravel_pytree(backward(pb.net, params, inputs, v)[0])[0],))[1]
    t = jnp.einsum("nai,na->ni", S_, Jv, precision=HIGHEST)  # S^T J J^T v
    return SoftmaxDual(theta, inputs, S_, r, v, t, g, jnp.ones_like(theta), Kt)


def solve(pb, lin: SoftmaxDual, mu):
    """``delta = -(G + mu I)^-1 g`` by one Cholesky of ``Kt + mu I`` (two right-hand sides) and one
    backward pass (module docstring).

    Args:
        pb: the problem.
        lin: ``linearize``'s point.
        mu: the damping (a scalar, > 0).

    Returns:
        ``(delta (P,), predicted)``: the step and the model's decrease ``-(g.delta + delta.G delta / 2)``.
    """
    n, k1 = lin.r.shape
    A = lin.K + mu * jnp.eye(n * k1, dtype=lin.K.dtype)
    w = spd_solve(A, jnp.stack([lin.r.reshape(-1), lin.t.reshape(-1)], axis=1))
    w1, w2 = w[:, 0].reshape(n, k1), w[:, 1].reshape(n, k1)
    seed = jnp.einsum("nkj,nj->nk", lin.S, w1 - w2 / mu, precision=HIGHEST) + lin.v / mu
    delta = -ravel_pytree(backward(pb.net, pb.unflatten(lin.theta), lin.inputs, seed)[0])[0]
    Jt_delta = -(lin.r - mu * w1 + w2)
    return delta, -(lin.g @ delta + 0.5 * jnp.sum(Jt_delta * Jt_delta))
