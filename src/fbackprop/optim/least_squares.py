"""Levenberg-Marquardt for any residual function over any params pytree (a Flax or Equinox model's).

``least_squares(residual, params)`` minimises ``E = 1/2 ||r(params)||^2`` for ``r`` returning an
array of any shape, with the Jacobian from autodiff (reverse mode when there are fewer residuals
than params, forward mode otherwise) and the dense solve; it shares the loop, the damping rules
and the stopping rules of ``levenberg_marquardt`` (Levenberg 1944; Marquardt 1963).

The reported loss is ``C = 0.5 ||r||^2 / N`` with N the residual's leading-axis length (its rows;
1 for a scalar): for ``r = apply(params, x) - y`` of shape ``(N, D)`` this is squared error's batch
mean, the number ``levenberg_marquardt`` reports for the same problem. The compiled loop is cached
on the residual function object, as ``jax.jit`` caches on its function: define ``residual`` once
and call ``least_squares`` with it again (new params, new ``mu`` or goal) without recompiling.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ..validate import check_choice, check_finite, params_dtype
from . import _options as O
from . import solvers as S
from .levenberg_marquardt import SCALINGS, LMResult, _scalars
from .lm_loop import lm_run


def residual_rows(shape: tuple) -> int:
    """The N that divides ``0.5 ||r||^2`` in the reported loss.

    Args:
        shape: the residual's shape.

    Returns:
        ``shape[0]`` (the rows), or 1 for a scalar residual.
    """
    return int(shape[0]) if len(shape) else 1


def least_squares(
    residual: Callable,
    params,
    *,
    damping: str = "marquardt",
    scaling: str = "identity",
    mu: float = 1e-3,
    mu_dec: float = 0.1,
    mu_inc: float = 10.0,
    mu_max: float = 1e10,
    line_search=None,
    max_steps: int = 1000,
    goal: float = 0.0,
    min_grad: float = 1e-7,
) -> LMResult:
    """Minimise ``1/2 ||residual(params)||^2`` by Levenberg-Marquardt with an autodiff Jacobian.

    Args:
        residual: ``params -> r``, a floating array of any shape (``(N, D)`` for a model's errors
            ``apply(params, x) - y``), computed in the params' dtype (cast to it if not).
        params: the starting point, any pytree of floating arrays of one dtype (a Flax or Equinox
            model's parameters work).
        damping: ``"marquardt"`` (default), ``"nielsen"``, ``"trust_region"`` or a damping rule
            (``fb.optim.Marquardt(...)``, ``Nielsen()``, ``TrustRegion(...)`` or one of one's own).
        scaling: ``"identity"`` (``D = I``, default) or ``"marquardt"`` (``D``: running max of diag J^T J).
        mu: the starting damping, > 0 (default 1e-3).
        mu_dec: the factor on ``mu`` after an accepted step, in (0, 1) (default 0.1).
        mu_inc: the factor on ``mu`` after a rejected step, > 1 (default 10).
        mu_max: stop (``MU_MAX``) when ``mu`` exceeds it; >= ``mu`` (default 1e10).
        line_search: ``None`` (default), ``True`` or a ``fb.optim.Backtracking`` part: a backtracking
            search along a rejected trial's step (``fb.levenberg_marquardt``'s option).
        max_steps: the most trial steps, an integer >= 1 (default 1000).
        goal: stop (``GOAL``) once ``C <= goal``; >= 0 (default 0).
        min_grad: stop (``MIN_GRAD``) once ``||J^T r|| / N <= min_grad``; >= 0 (default 1e-7).

    Returns:
        ``LMResult(params, history, status, iterations)``; ``history.loss`` is
        ``C = 0.5 ||r||^2 / N`` over the residual's N rows (module docstring), ``status`` a
        ``fb.status.Status`` code (``NONFINITE_START`` when the start's residual or Jacobian
        product is not finite).

    Raises:
        TypeError, ValueError: for a bad argument, naming it, before anything is compiled.

    Examples:
        >>> t = jnp.linspace(0.0, 1.0, 8); obs = 2.0 * jnp.exp(-t)
        >>> residual = lambda p: p["a"] * jnp.exp(-p["k"] * t) - obs   # (8,) residuals r(p)
        >>> r = fb.optim.least_squares(residual, {"a": 1.0, "k": 0.5}, max_steps=5)
        >>> sorted(r.params)
        ['a', 'k']
    """
    if not callable(residual):
        raise TypeError(f"residual must be a callable params -> residual array; got {residual!r}")
    check_choice(scaling, "scaling", SCALINGS)
    if params_dtype(params) is None:
        raise ValueError(f"params must hold at least one floating array; got {params!r}")
    rule, mu, mu_max = O.damping_options(damping, mu, mu_dec, mu_inc, mu_max, params)
    goal, min_grad, max_steps = O.stopping(goal, min_grad, max_steps)
    check_finite(params, "params")
    r0 = jax.eval_shape(residual, params)
    if not isinstance(r0, jax.ShapeDtypeStruct):
        raise TypeError(f"residual(params) must return one array; it returned {jax.tree.structure(r0)}")
    if not jnp.issubdtype(r0.dtype, jnp.floating):
        raise TypeError(f"residual(params) must return a floating array; it returned {r0.dtype}")
    if r0.size == 0:
        raise ValueError(f"residual(params) returned an empty array of shape {r0.shape}; nothing to fit")
    search = O.line_search(line_search)
    config = (rule, scaling == "marquardt", max_steps, search)
    try:
        program = _compiled(residual, config)
    except TypeError:  # an unhashable callable: compiled for this call
        program = _compiled.__wrapped__(residual, config)
    return program(params, mu, mu_max, goal, min_grad)


@functools.lru_cache(maxsize=32)
def _compiled(residual, config):
    damping, scale_d, max_steps, search = config

    def run(params, mu0, mu_max, goal, min_grad):
        theta0, unflatten = ravel_pytree(params)
        r = lambda t: jnp.ravel(residual(unflatten(t))).astype(theta0.dtype)  # the params' dtype
        M, P = jax.eval_shape(r, theta0).size, theta0.size
        n = residual_rows(jax.eval_shape(residual, params).shape)
        jac = jax.jacrev(r) if M < P else jax.jacfwd(r)

        def linearize(t):
            J, e = jac(t), r(t)
            G = jnp.matmul(J.T, J, precision=S.HIGHEST)
            d = jnp.maximum(jnp.diag(G), jnp.finfo(t.dtype).tiny) if scale_d else jnp.ones_like(t)
            return S.Normal(G, jnp.matmul(J.T, e, precision=S.HIGHEST), d)

        cost = lambda t: 0.5 * jnp.sum(r(t) ** 2)
        loop = lm_run(cost, linearize, S.solve_normal, damping, scale_d, n, max_steps, search=search)
        st = loop(theta0, *_scalars(theta0.dtype, mu0, mu_max, goal, min_grad), jnp.int32(1))
        return LMResult(unflatten(st.theta), st.history, st.status, st.k, st.mu)

    return jax.jit(run)
