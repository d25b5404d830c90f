"""The linear solve of a Levenberg-Marquardt step, four ways: ``(G + mu D) delta = -g``.

Sum form over the batch (``E = sum_n l_n = N C``): ``G = sum_n J_n^T H_n J_n`` (for squared error
``H_n = I`` and ``G = J^T J``), ``g = sum_n J_n^T dl_n/dyhat_n`` (``J^T e``), ``J_n = dyhat_n/dtheta``
by Marquardt backpropagation. ``D = I`` or ``diag(G)`` (Marquardt's scaling). Vectors are flat
(``fb.flatten``'s order). Each solver is ``linearize(theta) -> lin`` at an accepted point, then
``solve(lin, mu) -> (delta, predicted)`` for as many ``mu`` as the damping tries, ``predicted =
-(g.delta + delta.G delta / 2)`` being the quadratic model's decrease (for the gain ratio).

- ``dense``: form ``J`` (``N n_out x P``), ``G``, Cholesky of ``G + mu D`` (matmuls at highest precision).
- ``accumulate`` (Wilamowski & Yu 2010): ``G`` and ``g`` summed over chunks of examples in
  ``lax.scan``; ``J`` is never stored, memory ``O(P^2)`` whatever N.
- ``cg``: matrix-free conjugate gradients on ``v -> G v + mu D v`` (a jvp, the loss's ``hvp`` and
  a vjp; ``D`` from the exact GGN diagonal of second-order backprop); memory ``O(P)``.
- ``dual``: for ``N n_out < P``, ``(G + mu D)^-1 g = D^-1/2 Jt^T (H Jt Jt^T + mu I)^-1 u`` with
  ``Jt = J D^-1/2``, an ``N n_out``-square system (push-through identity). With ``D = I`` it never
  forms ``J``: ``J J^T`` factors over the layers (``fb.jacobian_gram``) and ``J^T w`` is a backward pass.
  For softmax cross-entropy with ``D = I`` the system is ``N (n_out - 1)``-square and symmetric
  positive definite, from a rank-``(n_out - 1)`` factor of the softmax Hessian (``softmax_dual.py``).
  The dual solve lives in ``dual.py``; this module holds the problem and the other three.

With Marquardt's scaling ``D`` is the running maximum of ``diag(G)`` over the accepted points (as
MINPACK keeps its column norms; Moré 1978), so a column whose curvature drops towards zero cannot make the
damped step blow up.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ..backprop import forward, jacobian_rows
from ..second_order import diag_core

SOLVERS = ("dense", "accumulate", "cg", "dual")
HIGHEST = jax.lax.Precision.HIGHEST


class Problem(NamedTuple):
    """What the solvers need: the network, the loss, the batch and how to (un)flatten params.

    Attributes:
        net: the ``Network``.
        loss: the ``Loss``.
        x: inputs ``(N, n_in)`` in the params' dtype.
        y: prepared targets ``(N, n_out)`` in the params' dtype.
        unflatten: flat ``(P,)`` -> params pytree.
        scale_d: ``D = diag(G)`` (Marquardt's scaling) instead of ``I``.
        chunk_size: examples per chunk (``accumulate``; the GGN diagonal of ``cg``), >= 1.
        cg_tol: ``cg``'s relative residual tolerance, >= 0.
        cg_maxiter: ``cg``'s most iterations per solve, >= 1.
    """

    net: object
    loss: object
    x: jax.Array
    y: jax.Array
    unflatten: object
    scale_d: bool  # D = diag(G) (Marquardt) instead of I
    chunk_size: int
    cg_tol: float
    cg_maxiter: int

    def residual_pieces(self, theta, x, y):
        """The pieces of the normal equations on a chunk of examples.

        Args:
            theta: flat params ``(P,)``.
            x: the chunk's inputs ``(n, n_in)``.
            y: its prepared targets ``(n, n_out)``.

        Returns:
            ``(Jt (P, n, n_out), H (n, n_out, n_out), u = dl/dyhat (n, n_out))``, ``Jt`` the Jacobian
            transposed (``transposed_jacobian``).
        """
        params = self.unflatten(theta)
        yhat, _ = forward(self.net, params, x)
        return transposed_jacobian(self.net, params, x), self.loss.hessian(yhat, y), self.loss.grad(yhat, y)

    def damping_diag(self, G_diag):
        """``D``'s diagonal: ``max(diag G, tiny)`` with Marquardt scaling, ones otherwise.

        Args:
            G_diag: ``diag(G)``, ``(P,)``.

        Returns:
            ``(P,)``.
        """
        eps = jnp.finfo(G_diag.dtype).tiny
        return jnp.maximum(G_diag, eps) if self.scale_d else jnp.ones_like(G_diag)


def transposed_jacobian(net, params, x) -> jax.Array:
    """``J^T: (P, N, n_out)``, a row per parameter (``fb.flatten``'s order), each layer's Jacobian rows
    (``jacobian_rows``, Marquardt backpropagation) transposed as they are joined.

    Stored this way, ``G = J^T J`` contracts the rows of one contiguous ``(P, N n_out)`` matrix with
    themselves; on CPU that product took half the time of ``J.T @ J`` over ``J`` stored by rows, at
    every size measured (``P`` = 31 to 1051, ``N n_out`` = 200 to 4096, float64).

    Args:
        net: the network.
        params: its parameters.
        x: inputs ``(N, *input_shape)``.

    Returns:
        ``(P, N, n_out)``.
    """
    leaves = jax.tree.leaves(jacobian_rows(net, params, x))
    n, k = leaves[0].shape[:2]
    return jnp.concatenate([leaf.reshape(n, k, -1).transpose(2, 0, 1) for leaf in leaves], axis=0)


def normal_equations(Jt, H, u):
    """``G = sum_n J_n^T H_n J_n`` and ``g = sum_n J_n^T u_n``, each one matrix product.

    ``Jt`` is read as the ``(P, N n_out)`` matrix ``J^T``; ``G = J^T (H J)``, where ``H J`` is formed
    per example (``N n_out^2 P``) unless ``H`` is ``None``, the identity (squared error), where
    ``G = J^T J`` is one product (``2 N n_out P^2`` flops either way; the three-operand einsum it
    replaces let XLA pick a slower contraction order).

    Args:
        Jt: ``(P, N, n_out)``, the Jacobian transposed (``transposed_jacobian``).
        H: ``(N, n_out, n_out)``, the per-example loss Hessians, or ``None`` for the identity.
        u: ``(N, n_out)``, ``dl_n/dyhat_n``.

    Returns:
        ``(G (P, P), g (P,))``.
    """
    P, n, k = Jt.shape
    cols = Jt.reshape(P, n * k)
    HJ = cols if H is None else jnp.einsum("nab,pnb->pna", H, Jt, precision=HIGHEST).reshape(P, n * k)
    G = jnp.matmul(cols, HJ.T, precision=HIGHEST)
    return G, jnp.matmul(cols, u.reshape(-1), precision=HIGHEST)


def _identity_hessian(pb) -> bool:
    """Whether the loss Hessian is the identity per example (squared error: ``H_n = I``), so that the
    solvers may skip it (``normal_equations(Jt, None, u)``, the dual's Cholesky)."""
    return pb.loss.name == "squared_error"


class Normal(NamedTuple):
    """``G (P, P)``, ``g (P,)`` and the damping diagonal ``d (P,)``, formed (dense, accumulate, newton)."""

    G: jax.Array
    g: jax.Array
    d: jax.Array


def linearize_dense(pb: Problem, theta) -> Normal:
    """``J`` formed on the whole batch, then ``G = sum_n J_n^T H_n J_n`` and ``g = sum_n J_n^T u_n``.

    Args:
        pb: the problem (network, loss, batch, flattening, options).
        theta: the flat params ``(P,)`` at an accepted point.

    Returns:
        ``Normal(G (P, P), g (P,), d (P,))``.
    """
    Jt, H, u = pb.residual_pieces(theta, pb.x, pb.y)
    G, g = normal_equations(Jt, None if _identity_hessian(pb) else H, u)
    return Normal(G, g, pb.damping_diag(jnp.diag(G)))


def linearize_accumulate(pb: Problem, theta) -> Normal:
    """``G`` and ``g`` summed over chunks of ``pb.chunk_size`` examples (``lax.scan``; Wilamowski & Yu
    2010): ``J`` is never stored whole, memory ``O(P^2 + chunk_size n_out P)``.

    Args:
        pb: the problem (network, loss, batch, flattening, options).
        theta: the flat params ``(P,)`` at an accepted point.

    Returns:
        ``Normal(G (P, P), g (P,), d (P,))``.
    """
    n, c = pb.x.shape[0], min(pb.chunk_size, pb.x.shape[0])
    k = n // c

    def add(acc, xy):
        Jt, H, u = pb.residual_pieces(theta, *xy)
        G, g = normal_equations(Jt, None if _identity_hessian(pb) else H, u)
        return (acc[0] + G, acc[1] + g), None

    P = theta.size
    zero = (jnp.zeros((P, P), theta.dtype), jnp.zeros(P, theta.dtype))
    chunks = (pb.x[: k * c].reshape((k, c) + pb.x.shape[1:]), pb.y[: k * c].reshape(k, c, -1))
    G, g = jax.lax.scan(add, zero, chunks)[0]
    if k * c < n:
        (G, g), _ = add((G, g), (pb.x[k * c :], pb.y[k * c :]))
    return Normal(G, g, pb.damping_diag(jnp.diag(G)))


def linearize_newton(pb: Problem, theta) -> Normal:
    """The exact Hessian of ``E`` in place of ``G`` (damped Newton; dense, small nets).

    Args:
        pb: the problem (network, loss, batch, flattening, options).
        theta: the flat params ``(P,)`` at an accepted point.

    Returns:
        ``Normal(H (P, P), g (P,), d (P,))``, ``d = |diag H|`` for Marquardt scaling.
    """
    E = lambda t: jnp.sum(pb.loss.value(forward(pb.net, pb.unflatten(t), pb.x)[0], pb.y))
    H = jax.hessian(E)(theta)
    return Normal(H, jax.grad(E)(theta), pb.damping_diag(jnp.abs(jnp.diag(H))))


def spd_solve(A, b):
    """``A^-1 b`` by Cholesky for symmetric ``A: (n, n)``; NaN where ``A`` is not positive definite.

    Args:
        A: a symmetric ``(n, n)`` matrix.
        b: ``(n,)``.

    Returns:
        ``(n,)``: the solution, or NaN where the factorization fails (never an error).

    LAPACK wants column-major input; ``A`` is row-major, so its transpose (the same matrix, ``A``
    being symmetric) is passed: a free relayout, where ``jnp.linalg.cholesky`` symmetrizes
    ``(A + A^T) / 2`` and copies through a transpose (2-3x the factorization's time at n = 900).
    """
    L = jax.lax.linalg.cholesky(A.T, symmetrize_input=False)
    return jax.scipy.linalg.cho_solve((L, True), b)


def _predicted(g, delta, dGd):
    """The quadratic model's decrease ``-(g.delta + delta.G delta / 2)``."""
    return -(g @ delta + 0.5 * dGd)


def solve_normal(lin: Normal, mu):
    """Cholesky of ``G + mu D``; a matrix that is not positive definite gives NaN (the step is rejected).

    Args:
        lin: what the solver's ``linearize`` returned at the current point.
        mu: the damping (a scalar, > 0).

    Returns:
        ``(delta (P,), predicted)``: the step and the quadratic model's decrease
        ``-(g.delta + delta.G delta / 2)``.
    """
    delta = -spd_solve(lin.G + mu * jnp.diag(lin.d), lin.g)
    return delta, _predicted(lin.g, delta, delta @ lin.G @ delta)


class MatrixFree(NamedTuple):
    """``cg``'s point: the flat params ``theta``, the gradient ``g`` and the damping diagonal ``d``,
    all ``(P,)``."""

    theta: jax.Array
    g: jax.Array
    d: jax.Array


def _ggn_times(pb: Problem, theta, v):
    """``G v = sum_n J_n^T H_n J_n v``: jvp, the loss's hvp, vjp."""
    apply = lambda t: forward(pb.net, pb.unflatten(t), pb.x)[0]
    yhat, Jv = jax.jvp(apply, (theta,), (v,))
    return jax.vjp(apply, theta)[1](pb.loss.hvp(yhat, pb.y, Jv))[0]


def linearize_cg(pb: Problem, theta) -> MatrixFree:
    """The gradient (one backward pass) and, for Marquardt scaling, the exact GGN diagonal by
    second-order backpropagation; ``G`` itself is never formed.

    Args:
        pb: the problem (network, loss, batch, flattening, options).
        theta: the flat params ``(P,)`` at an accepted point.

    Returns:
        ``MatrixFree(theta, g (P,), d (P,))``.
    """
    apply = lambda t: forward(pb.net, pb.unflatten(t), pb.x)[0]
    yhat, pullback = jax.vjp(apply, theta)
    g = pullback(pb.loss.grad(yhat, pb.y))[0]
    d = (
        pb.x.shape[0]
        * ravel_pytree(diag_core(pb.net, pb.loss, False, pb.chunk_size)(pb.unflatten(theta), pb.x, pb.y))[0]
        if pb.scale_d
        else jnp.ones_like(theta)
    )  # diag(G): second-order backprop without f''
    return MatrixFree(theta, g, pb.damping_diag(d))


def solve_cg(pb: Problem, lin: MatrixFree, mu):
    """Conjugate gradients on ``v -> G v + mu D v`` (Pearlmutter 1994 / Schraudolph 2002 products),
    to ``pb.cg_tol`` relative residual or ``pb.cg_maxiter`` iterations.

    Args:
        pb: the problem.
        lin: what the solver's ``linearize`` returned at the current point.
        mu: the damping (a scalar, > 0).

    Returns:
        ``(delta (P,), predicted)``: the step and the quadratic model's decrease
        ``-(g.delta + delta.G delta / 2)``.
    """
    A = lambda v: _ggn_times(pb, lin.theta, v) + mu * lin.d * v
    delta, _ = jax.scipy.sparse.linalg.cg(A, -lin.g, tol=pb.cg_tol, maxiter=pb.cg_maxiter)
    return delta, _predicted(lin.g, delta, delta @ _ggn_times(pb, lin.theta, delta))
