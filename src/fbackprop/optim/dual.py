"""The dual linear solve of a Levenberg-Marquardt step, for fewer residuals than params (``solvers.py``
has the problem and the other solves).

``(G + mu D)^-1 g = D^-1/2 Jt^T (H Jt Jt^T + mu I)^-1 u`` with ``Jt = J D^-1/2`` (push-through
identity): an ``M = N n_out``-square system. With ``D = I`` it never forms ``J``: ``J J^T`` factors
over the layers (``fb.jacobian_gram``) and ``J^T w`` is a backward pass. For softmax cross-entropy
with ``D = I`` the system is ``N (n_out - 1)``-square (``softmax_dual.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ..backprop import backward, forward, jacobian_gram, jacobian_rows
from ..jacobian import as_matrix
from . import softmax_dual
from .solvers import HIGHEST, Problem, _identity_hessian, _predicted, spd_solve


class Dual(NamedTuple):
    """``dual``'s point (fields commented below): the system ``(H K + mu I) w = u`` is ``M``-square."""

    theta: jax.Array
    inputs: tuple  # forward's cache at theta (for J^T w by a backward pass)
    J: jax.Array | None  # (M, P), M = N n_out; None with D = I, where K comes from the layers (no J)
    H: jax.Array | None  # (N, n_out, n_out); None for squared error (H_n = I)
    u: jax.Array  # (N, n_out)
    g: jax.Array
    d: jax.Array
    K: jax.Array  # Jt Jt^T, (M, M): formed once per point, reused for every mu tried there


def _times_H(H, v):
    """``H_n v_n`` row by row: ``v: (N, n_out, ...)``; ``H = None`` is the identity."""
    return v if H is None else jnp.einsum("nab,nb...->na...", H, v, precision=HIGHEST)


def _dual_gram(J, d):
    """``Jt Jt^T`` with ``Jt = J D^-1/2: (M, P)``, rows grouped by example (the O(M^2 P) part)."""
    Jt = J / jnp.sqrt(d)
    return jnp.matmul(Jt, Jt.T, precision=HIGHEST)


def linearize_dual(pb: Problem, theta) -> Dual:
    """With ``D = I``: ``K = J J^T`` from the layers' deltas and inputs (``fb.jacobian_gram``), ``M^2
    (fan_in + fan_out)`` a layer, and ``J^T w`` by one backward pass; with Marquardt's ``D``, ``J`` is formed.

    Args:
        pb: the problem (network, loss, batch, flattening, options).
        theta: the flat params ``(P,)`` at an accepted point.

    Returns:
        ``Dual(...)`` with ``K: (M, M)``, ``M = N n_out``; for softmax cross-entropy with ``D = I``,
        ``softmax_dual.SoftmaxDual`` with ``K: (N (n_out - 1), N (n_out - 1))``.
    """
    if pb.loss.name == "cross_entropy" and not pb.scale_d:
        return softmax_dual.linearize(pb, theta)
    params = pb.unflatten(theta)
    yhat, inputs = forward(pb.net, params, pb.x)
    u = pb.loss.grad(yhat, pb.y)
    H = None if _identity_hessian(pb) else pb.loss.hessian(yhat, pb.y)
    g = ravel_pytree(backward(pb.net, params, inputs, u)[0])[0]
    n, k = u.shape
    if not pb.scale_d:
        K = jacobian_gram(pb.net, params, pb.x, inputs).reshape(n * k, n * k)
        return Dual(theta, inputs, None, H, u, g, jnp.ones_like(theta), K)
    J = as_matrix(jacobian_rows(pb.net, params, pb.x))
    d = pb.damping_diag(jnp.einsum("nap,nap->p", J, _times_H(H, J), precision=HIGHEST))
    J = J.reshape(n * k, -1)
    return Dual(theta, inputs, J, H, u, g, d, _dual_gram(J, d))


def with_damping_diag(lin, d):
    """``lin`` with another ``D`` (Marquardt scaling's running maximum); the dual system is re-formed.

    Args:
        lin: a ``Normal``, ``MatrixFree`` or ``Dual``.
        d: the new damping diagonal ``(P,)``.

    Returns:
        ``lin`` of the same kind with ``d`` (and, for ``Dual``, ``K``) replaced.
    """
    return lin._replace(d=d, K=_dual_gram(lin.J, d)) if isinstance(lin, Dual) else lin._replace(d=d)


def solve_dual(pb: Problem, lin: Dual, mu):
    """``w = (H K + mu I)^-1 u``, ``K = Jt Jt^T`` (Cholesky when ``H = I``, squared error; LU otherwise),
    ``delta = -D^-1 J^T w``. The model's ``delta.G delta`` needs no pass over the network:
    ``J delta = -K w``, so it is ``Kw.H Kw``; with ``H = I``, ``K w = u - mu w`` (the system itself),
    no pass over ``K`` either. A ``softmax_dual.SoftmaxDual`` point is solved by ``softmax_dual.solve``.

    Args:
        pb: the problem.
        lin: what the solver's ``linearize`` returned at the current point.
        mu: the damping (a scalar, > 0).

    Returns:
        ``(delta (P,), predicted)``: the step and the quadratic model's decrease
        ``-(g.delta + delta.G delta / 2)``.
    """
    if isinstance(lin, softmax_dual.SoftmaxDual):
        return softmax_dual.solve(pb, lin, mu)
    M = lin.K.shape[0]
    u, mu_I = lin.u.reshape(-1), mu * jnp.eye(M, dtype=lin.K.dtype)
    if lin.H is None:
        w = spd_solve(lin.K + mu_I, u)
        Kw = (u - mu * w).reshape(lin.u.shape)  # (K + mu I) w = u: no pass over K
    else:
        w = jnp.linalg.solve(_times_H(lin.H, lin.K.reshape(*lin.u.shape, M)).reshape(M, M) + mu_I, u)
        Kw = jnp.matmul(lin.K, w, precision=HIGHEST).reshape(lin.u.shape)
    delta = -_J_transpose_times(pb, lin, w.reshape(lin.u.shape)) / lin.d
    return delta, _predicted(lin.g, delta, jnp.sum(Kw * _times_H(lin.H, Kw)))


def _J_transpose_times(pb: Problem, lin: Dual, w):
    """``J^T w`` for ``w: (N, n_out)``: a matvec with the stored ``J``, or one backward pass seeded
    with ``w``."""
    if lin.J is not None:
        return jnp.matmul(lin.J.T, w.reshape(-1), precision=HIGHEST)
    return ravel_pytree(backward(pb.net, pb.unflatten(lin.theta), lin.inputs, w)[0])[0]
