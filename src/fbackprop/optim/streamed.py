"""Levenberg-Marquardt on data streamed in chunks: the sums over examples taken chunk by chunk.

The ``accumulate`` and ``cg`` solvers need the data only through sums over examples: the cost
``E = sum_n l_n``, the gradient ``g = sum_n J_n^T u_n``, the curvature ``G = sum_n J_n^T H_n J_n`` (or
its products ``G v`` and its diagonal). Each sum is taken over the chunks of a ``fb.Chunks`` stream
on the host (``streaming.chunk_sum``), one jitted function per chunk: the rows are never all held.

The loop is the package's one loop (``lm_loop.lm_run``: the trial step, the damping, the stopping
tests, the history) run with ``loop.HOST``'s primitives, Python's ``while`` and ``if``, since a
``lax.while_loop`` cannot read a host-side stream. CG over a host-side product is a host CG loop
(Hestenes & Stiefel 1952), the same recurrence and stopping rule as ``jax.scipy.sparse.linalg.cg``.

Per accepted point: one pass for ``G`` and ``g`` (accumulate) or for ``g`` and, with Marquardt
scaling, the GGN diagonal (cg); per trial, one pass for the cost, and for cg one pass per CG
iteration and one for the model's ``delta.G delta``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..backprop import forward
from ..streaming import Chunks, chunk_sum
from . import solvers as S
from .lm_loop import lm_run
from .loop import HOST
from .solves import CG, Accumulate

#: The solvers that stream.
STREAMING_SOLVERS = ("accumulate", "cg")


def solver_name(solver, curvature: str, data_parallel: bool, n_params: int):
    """The solver for data given as chunks, or a clear refusal.

    Args:
        solver: ``"accumulate"``, ``"cg"``, ``"auto"`` or the part ``fb.optim.Accumulate(...)`` /
            ``fb.optim.CG(...)``.
        curvature: must be ``"ggn"``.
        data_parallel: must be ``False``.
        n_params: P (``"auto"``: ``accumulate`` while ``G`` has at most ``4096^2`` entries, else ``cg``).

    Returns:
        The solver as ``_options.solve_part`` takes it (a name, ``"auto"`` resolved, or the part).

    Raises:
        ValueError: for another solver, ``curvature="hessian"`` or ``data_parallel=True``.
    """
    if curvature != "ggn":
        raise ValueError(
            f"curvature={curvature!r} (damped Newton) forms the Hessian on the whole batch: data given as "
            f"chunks take curvature='ggn' with solver='accumulate' or 'cg'"
        )
    if data_parallel:
        raise ValueError(
            "data_parallel=True shards an in-memory batch over the local devices; data given as chunks "
            "are read one chunk at a time: leave data_parallel=False (for several processes, each streams "
            "its own chunks and the sums are added across them)"
        )
    if isinstance(solver, (Accumulate, CG)):
        return solver
    if solver == "auto":
        return "accumulate" if n_params <= 4096 else "cg"
    if isinstance(solver, str) and solver in STREAMING_SOLVERS:
        return solver
    shown = solver if isinstance(solver, str) else type(solver).__name__
    raise ValueError(
        f"data given as chunks stream through the solvers that need only sums over examples: solver must "
        f"be 'accumulate', 'cg' or 'auto' (or fb.optim.Accumulate(...), fb.optim.CG(...)); got {shown!r}, "
        f"which needs the whole batch at once"
    )


class _Pieces(NamedTuple):
    """The jitted per-chunk sums (each ``(theta, ..., x_c, y_c) ->`` a sum over the chunk's rows)."""

    cost: object  # E_c
    normal: object  # (G_c, g_c): accumulate
    gradient: object  # (g_c, diag G_c or None): cg
    ggn_times: object  # G_c v: cg
    solve_normal: object  # (lin, mu) -> (delta, predicted), jitted
    problem: S.Problem  # without data: its damping diagonal and unflatten


@functools.lru_cache(maxsize=32)
def _pieces(net, loss, treedef, leaves: tuple, scale_d: bool, chunk_size: int) -> _Pieces:
    """The per-chunk functions, compiled once per (network, loss, params layout, options)."""
    unflatten = ravel_pytree(jax.tree.unflatten(treedef, [np.zeros(s, d) for s, d in leaves]))[1]
    pb = S.Problem(
        net=net,
        loss=loss,
        x=None,
        y=None,
        unflatten=unflatten,
        scale_d=scale_d,
        chunk_size=chunk_size,
        cg_tol=0.0,
        cg_maxiter=1,
    )  # fmt: skip  (the data come per chunk; CG runs on the host)

    def cost(theta, x, y):
        return jnp.sum(loss.value(forward(net, unflatten(theta), x)[0], y))

    def normal(theta, x, y):
        lin = S.linearize_accumulate(pb._replace(x=x, y=y), theta)
        return lin.G, lin.g

    def gradient(theta, x, y):
        lin = S.linearize_cg(pb._replace(x=x, y=y), theta)
        return lin.g, (lin.d if scale_d else None)

    def ggn_times(theta, v, x, y):
        return S._ggn_times(pb._replace(x=x, y=y), theta, v)

    jit = jax.jit
    return _Pieces(jit(cost), jit(normal), jit(gradient), jit(ggn_times), jit(S.solve_normal), pb)


def host_cg(A, b, tol: float, maxiter: int):
    """Conjugate gradients on the host (Hestenes & Stiefel 1952) for ``A x = b``, ``A`` symmetric
    positive definite, from ``x0 = 0``: ``jax.scipy.sparse.linalg.cg``'s recurrence and stopping rule
    (``||r|| <= tol ||b||`` or ``maxiter`` iterations), with ``A`` a host function (a streamed product).

    Args:
        A: ``v (P,) -> A v``.
        b: ``(P,)``.
        tol: the relative residual at which it stops, >= 0.
        maxiter: the most iterations, >= 1.

    Returns:
        ``x (P,)`` (NaN where a product was not finite: the caller rejects the step).

    Examples:
        >>> A = jnp.array([[4.0, 1.0], [1.0, 3.0]]); b = jnp.array([1.0, 2.0])
        >>> x = fb.optim.streamed.host_cg(lambda v: A @ v, b, 1e-12, 10)
        >>> bool(jnp.allclose(A @ x, b))
        True
    """
    x, r = jnp.zeros_like(b), b
    gamma = r @ r
    p, atol2, k = r, float(tol) ** 2 * float(b @ b), 0
    while float(gamma) > atol2 and k < maxiter:
        x, r, p, gamma = _cg_update(x, r, p, A(p), gamma)
        k += 1
    return x


@jax.jit
def _cg_update(x, r, p, Ap, gamma):
    """One step of the recurrence: ``alpha = r.r / p.Ap``, ``x += alpha p``, ``r -= alpha Ap``,
    ``p = r + (r_new.r_new / r.r) p``."""
    alpha = gamma / (p @ Ap)
    x, r = x + alpha * p, r - alpha * Ap
    gamma_new = r @ r
    return x, r, r + (gamma_new / gamma) * p, gamma_new


def run(net, loss, params, chunks: Chunks, part, config, n_rows: int, val, scalars) -> tuple:
    """Levenberg-Marquardt over a stream: ``lm_run`` with host control and streamed sums.

    Args:
        net: the network.
        loss: the loss.
        params: the starting params (their dtype is the computation's).
        chunks: the stream (checked once already: ``n_rows`` rows).
        part: the solve part, ``Accumulate`` or ``CG`` (with its options).
        config: ``levenberg_marquardt._Config`` (the damping rule, scaling, max_steps, report).
        n_rows: N, the rows of the stream (over every process).
        val: in-memory validation data ``(x_val, y_val)`` or ``None``.
        scalars: ``(mu0, mu_max, goal, min_grad, max_fail)``.

    Returns:
        ``(params, history, status, iterations, mu)``.
    """
    theta0, unflatten = ravel_pytree(params)
    leaves = tuple((np.shape(a), np.asarray(a).dtype) for a in jax.tree.leaves(params))
    chunk_size = getattr(part, "chunk_size", 1024)
    pc = _pieces(net, loss, jax.tree.structure(params), leaves, config.scale_d, chunk_size)
    pb = pc.problem
    dtype = theta0.dtype

    def total(fn, *args):
        return chunk_sum(fn, chunks, net, loss, params, *args, finite=False, rows=n_rows)[0]

    def cost(theta):
        return total(pc.cost, theta)

    if isinstance(part, Accumulate):

        def linearize(theta):
            G, g = total(pc.normal, theta)
            return S.Normal(G, g, pb.damping_diag(jnp.diag(G)))

        solve = pc.solve_normal
    else:
        tol, maxiter = part.tol, part.maxiter or 10 * theta0.size

        def linearize(theta):
            g, d = total(pc.gradient, theta)
            return S.MatrixFree(theta, g, pb.damping_diag(d) if config.scale_d else jnp.ones_like(theta))

        def solve(lin, mu):
            A = lambda v: total(pc.ggn_times, lin.theta, v) + mu * lin.d * v  # noqa: E731
            delta = host_cg(A, -lin.g, tol, maxiter)
            return delta, -(lin.g @ delta + 0.5 * delta @ total(pc.ggn_times, lin.theta, delta))

    val_loss = None
    if val is not None:
        xv, yv = val
        val_loss = lambda t: pc.cost(t, xv, yv) / xv.shape[0]  # noqa: E731
    loop = lm_run(
        cost, linearize, solve, config.damping, config.scale_d, n_rows, config.max_steps, val_loss,
        config.report, HOST, config.search,
    )  # fmt: skip
    mu0, mu_max, goal, min_grad, max_fail = scalars
    as_dtype = lambda v: jnp.asarray(v, dtype)  # noqa: E731
    s = loop(theta0, as_dtype(mu0), as_dtype(mu_max), as_dtype(goal), as_dtype(min_grad), jnp.int32(max_fail))
    return unflatten(s.theta), s.history, s.status, s.k, s.mu
