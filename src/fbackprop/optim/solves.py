"""Linear-solve parts: how a damped second-order step ``(G + mu D) delta = -g`` is found.

A solve part is a frozen dataclass whose fields are its own options, with two pure methods:

- ``linearize(pb, theta) -> lin``: what the part needs at an accepted point (``lin.g = dE/dtheta``,
  ``lin.d`` the damping diagonal ``D``), computed once per accepted point;
- ``solve(pb, lin, mu) -> (delta, predicted)``: the step for one damping ``mu`` (called for every
  ``mu`` the damping part tries there), ``predicted = -(g.delta + delta.G delta / 2)`` the decrease
  of the quadratic model.

``pb`` is ``solvers.Problem`` (the network, the loss, the batch, the flattening). The arithmetic is
in ``solvers.py``; a part only says which pieces it uses and with which options:

- ``Dense()``: ``J`` formed, ``G = J^T H J``, Cholesky (small N and P).
- ``Accumulate(chunk_size)``: ``G`` and ``g`` summed over chunks of examples (Wilamowski & Yu 2010).
- ``CG(tol, maxiter, chunk_size)``: matrix-free conjugate gradients on ``G v + mu D v``.
- ``Dual()``: the ``N n_out``-square system, for fewer residuals than parameters.
- ``Newton()``: the exact Hessian in place of ``G`` (damped Newton; Levenberg 1944).
- ``KFAC()``: K-FAC's Kronecker-factored ``G`` (Martens & Grosse 2015), inverted layer by layer
  with Martens & Grosse's factored damping; ``predicted`` uses the exact ``delta.G delta``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .. import kronecker as K
from ..backprop import backward, forward
from ..kronecker_products import kfac_inverse_vp
from ..validate import as_int
from . import dual as D
from . import solvers as S


class NormalSolve:
    """The solve of the parts that form ``G`` (``Dense``, ``Accumulate``, ``Newton``): Cholesky of
    ``G + mu D``."""

    def solve(self, pb: S.Problem, lin, mu):
        """Cholesky of ``G + mu D``; NaN, so a rejected step and a larger ``mu``, where it is not
        positive definite (an indefinite Hessian, for ``Newton``).

        Args:
            pb: the problem.
            lin: ``linearize``'s result (``solvers.Normal``).
            mu: the damping.

        Returns:
            ``(delta (P,), predicted)``.
        """
        return S.solve_normal(lin, mu)


@dataclasses.dataclass(frozen=True)
class Dense(NormalSolve):
    """``J`` formed on the whole batch, ``G = sum_n J_n^T H_n J_n``, Cholesky of ``G + mu D``.

    Memory ``O(N n_out P + P^2)``. Examples:
        >>> fb.optim.Dense().name
        'dense'
    """

    @property
    def name(self) -> str:
        """The solver's name, as ``solver=`` takes it."""
        return "dense"

    def linearize(self, pb: S.Problem, theta) -> S.Normal:
        """``G``, ``g`` and ``D`` at ``theta`` (``solvers.linearize_dense``).

        Args:
            pb: the problem.
            theta: the flat params ``(P,)``.

        Returns:
            ``solvers.Normal(G, g, d)``.
        """
        return S.linearize_dense(pb, theta)


@dataclasses.dataclass(frozen=True)
class Accumulate(NormalSolve):
    """``G`` and ``g`` summed over chunks of examples in ``lax.scan`` (Wilamowski & Yu 2010).

    Attributes:
        chunk_size: examples per chunk, >= 1 (default 1024); memory ``O(P^2 + chunk_size n_out P)``.

    Examples:
        >>> fb.optim.Accumulate(chunk_size=256).chunk_size
        256
    """

    chunk_size: int = 1024

    @property
    def name(self) -> str:
        """The solver's name, as ``solver=`` takes it."""
        return "accumulate"

    def linearize(self, pb: S.Problem, theta) -> S.Normal:
        """``G``, ``g`` and ``D`` summed chunk by chunk (``solvers.linearize_accumulate``).

        Args:
            pb: the problem.
            theta: the flat params ``(P,)``.

        Returns:
            ``solvers.Normal(G, g, d)``.
        """
        return S.linearize_accumulate(pb._replace(chunk_size=self.chunk_size), theta)


@dataclasses.dataclass(frozen=True)
class CG:
    """Matrix-free conjugate gradients on ``v -> G v + mu D v`` (Pearlmutter 1994; Schraudolph 2002).

    A loose ``tol`` (1e-2 to 1e-3) makes each trial a truncated, inexact Newton step (Dembo,
    Eisenstat & Steihaug 1982; for Levenberg-Marquardt, Wright & Holt 1985): every CG iterate from
    zero lowers the damped quadratic model, so the step is a descent direction and ``predicted > 0``
    at any tolerance. With ``line_search=True`` it is often the fastest solve at ``P ~ 10^3``.

    Attributes:
        tol: the relative residual at which CG stops, >= 0 (default 1e-8).
        maxiter: the most CG iterations per solve, >= 1, or ``None`` (default) for 10 P.
        chunk_size: examples per chunk of the exact GGN diagonal that Marquardt scaling needs
            (default 1024).

    Examples:
        >>> fb.optim.CG(tol=1e-10).tol
        1e-10
    """

    tol: float = 1e-8
    maxiter: int | None = None
    chunk_size: int = 1024

    @property
    def name(self) -> str:
        """The solver's name, as ``solver=`` takes it."""
        return "cg"

    def _problem(self, pb: S.Problem, P: int) -> S.Problem:
        return pb._replace(chunk_size=self.chunk_size, cg_tol=self.tol, cg_maxiter=self.maxiter or 10 * P)

    def linearize(self, pb: S.Problem, theta) -> S.MatrixFree:
        """The gradient and, for Marquardt scaling, the exact GGN diagonal (``solvers.linearize_cg``).

        Args:
            pb: the problem.
            theta: the flat params ``(P,)``.

        Returns:
            ``solvers.MatrixFree(theta, g, d)``.
        """
        return S.linearize_cg(self._problem(pb, theta.size), theta)

    def solve(self, pb: S.Problem, lin, mu):
        """CG to ``tol`` or ``maxiter`` (``solvers.solve_cg``).

        Args:
            pb: the problem.
            lin: ``linearize``'s result.
            mu: the damping.

        Returns:
            ``(delta (P,), predicted)``.
        """
        return S.solve_cg(self._problem(pb, lin.theta.size), lin, mu)


@dataclasses.dataclass(frozen=True)
class Dual:
    """The ``N n_out``-square system of the push-through identity (for ``N n_out < P``); for softmax
    cross-entropy with ``D = I`` the ``N (n_out - 1)``-square one of a factor of the softmax Hessian
    (``optim/softmax_dual.py``).

    Examples:
        >>> fb.optim.Dual().name
        'dual'
    """

    @property
    def name(self) -> str:
        """The solver's name, as ``solver=`` takes it."""
        return "dual"

    def linearize(self, pb: S.Problem, theta) -> D.Dual:
        """``K = Jt Jt^T`` and what ``J^T w`` needs (``dual.linearize_dual``).

        Args:
            pb: the problem.
            theta: the flat params ``(P,)``.

        Returns:
            ``dual.Dual``.
        """
        return D.linearize_dual(pb, theta)

    def solve(self, pb: S.Problem, lin, mu):
        """``w = (H K + mu I)^-1 u``, ``delta = -D^-1 J^T w`` (``dual.solve_dual``).

        Args:
            pb: the problem.
            lin: ``linearize``'s result.
            mu: the damping.

        Returns:
            ``(delta (P,), predicted)``.
        """
        return D.solve_dual(pb, lin, mu)


@dataclasses.dataclass(frozen=True)
class Newton(NormalSolve):
    """The exact Hessian of ``E`` in place of ``G``, solved densely (damped Newton; small networks).

    Examples:
        >>> fb.optim.Newton().name
        'newton'
    """

    @property
    def name(self) -> str:
        """The solver's name (``fb.newton``)."""
        return "newton"

    def linearize(self, pb: S.Problem, theta) -> S.Normal:
        """The Hessian, the gradient and ``D = |diag H|`` or ``I`` (``solvers.linearize_newton``).

        Args:
            pb: the problem.
            theta: the flat params ``(P,)``.

        Returns:
            ``solvers.Normal(H, g, d)``.
        """
        return S.linearize_newton(pb, theta)


class KFACPoint(NamedTuple):
    """``KFAC``'s point: the flat params and gradient ``(P,)``, ``d = 1`` and the layers' factors."""

    theta: jax.Array
    g: jax.Array
    d: jax.Array
    factors: tuple


@dataclasses.dataclass(frozen=True)
class KFAC:
    """K-FAC's curvature (Martens & Grosse 2015; KFC for convolutions, Grosse & Martens 2016).

    The sum-form ``G`` is ``N kron(G_l, A_l)`` block by block (``fb.kfac_factors``' mean-form factors,
    ``kind`` as there), so ``(G + mu I)^-1 g`` is ``kfac_inverse_vp(factors, g / N, mu / N)``, the
    damping split between the factors by Martens & Grosse's pi. Every layer with parameters must be
    a Dense or Conv2D layer; ``D = I`` (``scaling="identity"``).

    Attributes:
        kind: ``"exact"`` (default; KFLR, Botev et al. 2017) or ``"empirical"``.

    Examples:
        >>> fb.optim.KFAC().kind
        'exact'
    """

    kind: str = "exact"

    @property
    def name(self) -> str:
        """The solver's name (passed as the part ``solver=fb.optim.KFAC()``)."""
        return "kfac"

    def linearize(self, pb: S.Problem, theta) -> KFACPoint:
        """The gradient and the layers' Kronecker factors from one forward and the backward walk.

        Args:
            pb: the problem.
            theta: the flat params ``(P,)``.

        Returns:
            ``KFACPoint(theta, g, d, factors)``.
        """
        params = pb.unflatten(theta)
        yhat, cache = forward(pb.net, params, pb.x)
        g = ravel_pytree(backward(pb.net, params, cache, pb.loss.grad(yhat, pb.y))[0])[0]
        factors = K.factors_at(pb.net, pb.loss, self.kind, 1, params, cache, yhat, pb.y, None)
        return KFACPoint(theta, g, jnp.ones_like(theta), factors)

    def solve(self, pb: S.Problem, lin: KFACPoint, mu):
        """``delta = -(N kron(G, A) + mu I)^-1 g`` with the factored damping; the model's exact
        ``delta.G delta`` from one forward-mode pass.

        Args:
            pb: the problem.
            lin: ``linearize``'s result.
            mu: the damping.

        Returns:
            ``(delta (P,), predicted)``.
        """
        n = pb.x.shape[0]
        step = kfac_inverse_vp(lin.factors, pb.unflatten(-lin.g / n), mu / n)
        delta = ravel_pytree(step)[0]
        apply = lambda t: forward(pb.net, pb.unflatten(t), pb.x)[0]
        yhat, Jd = jax.jvp(apply, (lin.theta,), (delta,))
        dGd = jnp.sum(Jd * pb.loss.hvp(yhat, pb.y, Jd))
        return delta, -(lin.g @ delta + 0.5 * dGd)


#: The solve parts by the names ``solver=`` takes (``KFAC`` and ``Newton`` are passed as parts:
#: ``solver=fb.optim.KFAC()``; ``curvature="hessian"`` is ``Newton``).
SOLVES = {"dense": Dense, "accumulate": Accumulate, "cg": CG, "dual": Dual}


def is_solve(solver) -> bool:
    """Whether ``solver`` has the two methods of a solve part.

    Args:
        solver: anything.

    Returns:
        True when it has callable ``linearize`` and ``solve``.
    """
    return callable(getattr(solver, "linearize", None)) and callable(getattr(solver, "solve", None))


def auto_solver(n_rows: int, n_params: int, itemsize: int = 8, gram_flops: float | None = None) -> str:
    """The linear solver ``solver="auto"`` picks for a problem's size.

    The dual solve costs ``M^3/3`` (its Cholesky) plus forming ``K = J J^T`` (``gram_flops``) a
    trial point; the dense solve ``P^3/3 + 2 M P^2`` (the Cholesky and ``G = J^T J``). With the
    Gram matrix from the layers' factorised form (``jacobian_gram``: ``2 M^2 (n_l + n_{l-1})`` a
    dense layer, far below ``2 M^2 P``) the dual solve can win with more residuals than params too
    (Franke's function in ``benchmarks/bench_lm.py``: 5x sooner to its target than the dense solve).

    Args:
        n_rows: the number of residuals ``M = N n_out``.
        n_params: the number of parameters P.
        itemsize: bytes per number (8 for float64, 4 for float32).
        gram_flops: the cost of ``K = J J^T``, or ``None`` (default) for ``2 M^2 P`` (from J's rows).

    Returns:
        ``"dual"`` when ``M <= 4096`` (its square fits) and either ``M < P`` or the dual solve is the
        cheaper by the counts above, ``"dense"`` when ``J`` fits in 256 MB and ``P <= 4096``,
        ``"accumulate"`` when only ``G`` fits, ``"cg"`` beyond.

    Examples:
        >>> fb.optim.auto_solver(900, 1051), fb.optim.auto_solver(10_000, 100)
        ('dual', 'dense')
        >>> fb.optim.auto_solver(1024, 941), fb.optim.auto_solver(1024, 941, gram_flops=2 * 1024**2 * 123)
        ('dense', 'dual')
    """
    n_rows, n_params = as_int(n_rows, "n_rows"), as_int(n_params, "n_params")
    M, P = n_rows, n_params
    gram = 2.0 * M * M * P if gram_flops is None else float(gram_flops)
    if M <= 4096 and (M < P or M**3 / 3 + gram < P**3 / 3 + 2.0 * M * P * P):
        return "dual"
    if n_params <= 4096:
        return "dense" if n_rows * n_params * itemsize <= 2**28 else "accumulate"
    return "cg"


def dual_gram_flops(net, n_rows: int, scale_d: bool) -> float | None:
    """What forming the dual's ``K = J J^T`` costs for ``net`` (``auto_solver``'s ``gram_flops``).

    Args:
        net: the network.
        n_rows: ``M = N n_out``.
        scale_d: Marquardt scaling (then the dual forms ``J``: ``None``, the rows' ``2 M^2 P``).

    Returns:
        ``sum_l 2 M^2 (n_l + n_{l-1})`` for a network of Dense and Activation layers, else ``None``.
    """
    if scale_d or not net.is_mlp:
        return None
    s = net.sizes
    return float(sum(2.0 * n_rows * n_rows * (a + b) for a, b in zip(s[:-1], s[1:])))
