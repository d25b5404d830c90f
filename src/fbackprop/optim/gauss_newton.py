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
from ..status import MESSAGES as STATUS
from ..status import Status
from ..validate import as_int
from . import _options as O
from . import solvers as S
from .levenberg_marquardt import LMResult
from .line_search import Backtracking
from .loop import Step, Stop, iterate, start

LINE_SEARCH = Status.LINE_SEARCH
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
        net: an fbackprop ``Network``, or any model ``apply(params, x)`` (Flax, Equinox; its
            derivatives from autodiff, as ``levenberg_marquardt``'s).
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
    net, params, unwrap = O.model(net, params, x, "fb.gauss_newton")
    loss = _losses.get(loss)
    goal, min_grad, max_steps = O.stopping(goal, min_grad, max_steps)
    armijo = O.open_interval(armijo, "armijo", 0.0, 1.0, "the sufficient-decrease constant")
    max_halvings = as_int(max_halvings, "max_halvings", minimum=0)
    x, y = O.data(net, loss, params, x, y)
    search = Backtracking(factor=0.5, armijo=armijo, max_steps=max_halvings)
    dtype = O.params_dtype(params)
    goal, min_grad = (jnp.asarray(v, dtype) for v in (goal, min_grad))
    return O.unwrapped(
        LMResult(*_compiled(net, loss, max_steps, search)(params, x, y, goal, min_grad)), unwrap
    )


def gn_step(E, linearize, search: Backtracking):
    """One Gauss-Newton iteration as a ``State -> Step`` function: ``G delta = -g`` (least squares,
    minimum norm), then the line search along ``delta``; a failed search stops the run.

    Args:
        E: ``theta -> `` the summed cost.
        linearize: ``theta -> solvers.Normal`` (``G``, ``g``).
        search: the line-search part.

    Returns:
        ``step(state) -> Step``.
    """

    def step(s):
        delta = jnp.linalg.lstsq(s.lin.G, -s.lin.g)[0]
        alpha, E_t, ok = search.search(
            lambda a: E(s.theta + a * delta), s.E, s.lin.g @ delta, E(s.theta + delta)
        )
        theta, E_k = jnp.where(ok, s.theta + alpha * delta, s.theta), jnp.where(ok, E_t, s.E)
        lin = jax.lax.cond(ok, lambda: linearize(theta), lambda: s.lin)
        return Step(theta, E_k, lin, s.mu, s.nu, ok, alpha, stuck=~ok)

    return step


@functools.lru_cache(maxsize=32)
def _compiled(net, loss, max_steps, search):
    def run(params, x, y, goal, min_grad):
        theta0, unflatten = ravel_pytree(params)
        n, dtype = x.shape[0], theta0.dtype
        pb = S.Problem(
            net=net, loss=loss, x=x, y=y, unflatten=unflatten, scale_d=False,
            chunk_size=n, cg_tol=0.0, cg_maxiter=1,
        )  # fmt: skip
        E = lambda t: jnp.sum(loss.value(forward(net, unflatten(t), x)[0], y)).astype(dtype)
        stop = Stop(goal, min_grad, max_steps)
        nan = jnp.asarray(jnp.nan, dtype)
        state = start(theta0, E(theta0), S.linearize_dense(pb, theta0), nan, stop, n)
        s = iterate(gn_step(E, lambda t: S.linearize_dense(pb, t), search), state, stop, n)
        return unflatten(s.theta), s.history, s.status, s.k, s.mu

    return jax.jit(run)
