"""Undamped Gauss-Newton with a backtracking line search, one compiled ``lax.while_loop``.

Each iteration solves ``G delta = -g`` (``G = sum_n J_n^T H_n J_n``, the same normal equations as
Levenberg-Marquardt's dense solver, with no damping; a singular ``G`` gets its least-squares,
minimum-norm solution) and then halves a step length ``alpha`` from 1 until the Armijo condition
``E(theta + alpha delta) <= E(theta) + c alpha g.delta`` holds. When no ``alpha`` down to
``2^-max_halvings`` is accepted the run stops (``LINE_SEARCH``) with the params unchanged: the
undamped method has nothing else to try, which is what Levenberg-Marquardt's damping adds
(Levenberg 1944; Marquardt 1963). The sufficient-decrease test is Armijo's (1966).

Reported loss: the batch-mean cost ``C = E / N``, as ``levenberg_marquardt``'s. A start whose loss
or gradient is not finite stops at once with ``Status.NONFINITE_START``, the params unchanged.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .. import losses as _losses
from ..backprop import forward
from ..validate import as_int
from . import _options as O
from . import solvers as S
from .levenberg_marquardt import (
    GOAL,
    LINE_SEARCH,
    MAX_STEPS,
    MIN_GRAD,
    NONFINITE_START,
    STATUS,
    LMHistory,
    LMResult,
    _like,
)
from .lm_loop import start_is_finite

__all__ = ["gauss_newton", "LINE_SEARCH", "STATUS"]


def gauss_newton(
    net,
    params,
    x,
    y,
    *,
    loss: str | _losses.Loss = "squared_error",
    max_steps: int = 100,
    goal: float = 0.0,
    min_grad: float = 1e-7,
    armijo: float = 1e-4,
    max_halvings: int = 30,
) -> LMResult:
    """Train ``net`` by undamped Gauss-Newton with a backtracking (Armijo) line search.

    Args:
        net: an fbackprop ``Network``. For a Flax/Equinox ``apply`` use ``fb.least_squares``.
        params: the starting params (their dtype is the computation's dtype).
        x: inputs ``(N, n_in)``.
        y: targets ``(N, n_out)`` (``(N,)`` for one output; integer labels for cross-entropy).
        loss: a loss name or ``fb.losses.Loss``; default ``"squared_error"``.
        max_steps: the most iterations, an integer >= 1 (default 100).
        goal: stop (``GOAL``) once ``C <= goal``; >= 0 (default 0).
        min_grad: stop (``MIN_GRAD``) once ``||dC/dtheta|| <= min_grad``; >= 0 (default 1e-7).
        armijo: the sufficient-decrease constant c of ``E(theta + alpha delta) <= E + c alpha
            g.delta``, in (0, 1) (default 1e-4).
        max_halvings: the most halvings of the step length, an integer >= 0 (default 30); when
            none is accepted the run stops with ``LINE_SEARCH``.

    Returns:
        An ``LMResult``; ``history.loss`` is the batch-mean cost ``C = E / N`` and ``history.mu``
        the step length ``alpha`` taken at each iteration.

    Raises:
        TypeError, ValueError: for a bad argument, naming it, before anything is compiled.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> r = fb.optim.gauss_newton(net, params, x, y, max_steps=3)
        >>> r.history.loss.shape[0] >= 1, r.params[0]["W"].shape
        (True, (3, 2))
    """
    net, loss = O.network(net, "fb.gauss_newton"), _losses.get(loss)
    goal, min_grad, max_steps = O.stopping(goal, min_grad, max_steps)
    armijo = O.open_interval(armijo, "armijo", 0.0, 1.0, "the sufficient-decrease constant")
    max_halvings = as_int(max_halvings, "max_halvings", minimum=0)
    x, y = O.data(net, loss, params, x, y)
    theta, unflatten = ravel_pytree(params)
    run = _compiled(net, loss, max_steps, max_halvings)
    theta, hist, status, k = run(
        theta, x, y, *(jnp.asarray(v, theta.dtype) for v in (goal, min_grad, armijo))
    )
    return LMResult(unflatten(theta), hist, status, k)


@functools.lru_cache(maxsize=32)
def _compiled(net, loss, max_steps, max_halvings):
    def run(theta0, x, y, goal, min_grad, armijo):
        n = x.shape[0]
        unflatten = ravel_pytree(_like(net, theta0))[1]
        pb = S.Problem(net, loss, x, y, unflatten, False, n, 0.0, 1)
        E = lambda t: jnp.sum(loss.value(forward(net, unflatten(t), x)[0], y)).astype(theta0.dtype)
        nan = jnp.full(max_steps + 1, jnp.nan, theta0.dtype)

        def record(h, k, E_k, alpha, accepted, g):
            return LMHistory(
                h.loss.at[k].set(E_k / n),
                h.mu.at[k].set(alpha),
                h.accepted.at[k].set(accepted),
                h.grad_norm.at[k].set(jnp.linalg.norm(g) / n),
                h.val_loss,
            )

        def stopping(k, E_k, g):
            return jnp.select(
                [E_k / n <= goal, jnp.linalg.norm(g) / n <= min_grad, k >= max_steps],
                [int(GOAL), int(MIN_GRAD), int(MAX_STEPS)],
                0,
            ).astype(jnp.int32)

        def body(s):
            theta, E_k, lin, k, _, hist = s
            delta = jnp.linalg.lstsq(lin.G, -lin.g)[0]
            slope = lin.g @ delta

            def halve(c):
                alpha, E_t = c
                return alpha / 2, E(theta + (alpha / 2) * delta)

            fails = lambda c: ~(c[1] <= E_k + armijo * c[0] * slope) & (c[0] > 2.0**-max_halvings)
            alpha, E_t = jax.lax.while_loop(fails, halve, (jnp.asarray(1.0, theta.dtype), E(theta + delta)))
            ok = (E_t <= E_k + armijo * alpha * slope) & jnp.isfinite(E_t)
            theta, E_k = jnp.where(ok, theta + alpha * delta, theta), jnp.where(ok, E_t, E_k)
            lin = jax.lax.cond(ok, lambda: S.linearize_dense(pb, theta), lambda: lin)
            hist = record(hist, k + 1, E_k, alpha, ok.astype(theta.dtype), lin.g)
            status = jnp.where(ok, stopping(k + 1, E_k, lin.g), int(LINE_SEARCH)).astype(jnp.int32)
            return theta, E_k, lin, k + 1, status, hist

        lin0, E0 = S.linearize_dense(pb, theta0), E(theta0)
        hist = record(LMHistory(nan, nan, nan, nan, nan), 0, E0, jnp.nan, 1.0, lin0.g)
        status0 = jnp.where(
            start_is_finite(E0, lin0.g), stopping(jnp.int32(0), E0, lin0.g), int(NONFINITE_START)
        )
        state = (theta0, E0, lin0, jnp.int32(0), status0.astype(jnp.int32), hist)
        theta, _, _, k, status, hist = jax.lax.while_loop(lambda s: s[4] == 0, body, state)
        return theta, hist, status, k

    return jax.jit(run)
