"""Levenberg-Marquardt for any residual function over any params pytree (a Flax or Equinox model's).

``least_squares(residual, params)`` minimises ``E = 1/2 ||r(params)||^2`` for ``r`` returning an
array of any shape, with the Jacobian from autodiff (reverse mode when there are fewer residuals
than params, forward mode otherwise) and the dense solve; it shares the loop, the damping rules
and the stopping rules of ``levenberg_marquardt``; its history's ``loss`` is ``||r||^2 / (2 M)`` with
M the number of residuals (the batch-mean convention of ``squared_error``). The compiled loop is
cached on the residual function object, as ``jax.jit`` caches on its function: define ``residual``
once and call ``least_squares`` with it again (new params, new ``mu`` or goal) without recompiling.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import solvers as S
from .damping import Damping
from .levenberg_marquardt import LMResult, _check_options, _scalars, lm_loop


def least_squares(residual: Callable, params, *, damping: str = "marquardt", scaling: str = "identity",
                  mu: float = 1e-3, mu_dec: float = 0.1, mu_inc: float = 10.0, mu_max: float = 1e10,
                  max_steps: int = 1000, goal: float = 0.0, min_grad: float = 1e-7) -> LMResult:
    """Minimise ``1/2 ||residual(params)||^2`` by Levenberg-Marquardt with an autodiff Jacobian."""
    _check_options("dense", damping, scaling, max_steps, mu)
    r0 = jax.eval_shape(residual, params)
    if not jnp.issubdtype(r0.dtype, jnp.floating):
        raise TypeError(f"residual(params) must return a floating array; it returned {r0.dtype}")
    config = (Damping(damping, mu_dec, mu_inc), scaling == "marquardt", max_steps)
    try:
        program = _compiled(residual, config)
    except TypeError:                                   # an unhashable callable: compiled for this call
        program = _compiled.__wrapped__(residual, config)
    return program(params, mu, mu_max, goal, min_grad)


@functools.lru_cache(maxsize=32)
def _compiled(residual, config):
    damping, scale_d, max_steps = config

    def run(params, mu0, mu_max, goal, min_grad):
        theta0, unflatten = ravel_pytree(params)
        r = lambda t: jnp.ravel(residual(unflatten(t)))
        M, P = max(1, jax.eval_shape(r, theta0).size), theta0.size
        jac = jax.jacrev(r) if M < P else jax.jacfwd(r)

        def linearize(t):
            J, e = jac(t), r(t)
            G = jnp.matmul(J.T, J, precision=S.HIGHEST)
            d = jnp.maximum(jnp.diag(G), jnp.finfo(t.dtype).tiny) if scale_d else jnp.ones_like(t)
            return S.Normal(G, jnp.matmul(J.T, e, precision=S.HIGHEST), d)

        loop = lm_loop(lambda t: 0.5 * jnp.sum(r(t) ** 2), linearize, S.solve_normal,
                       lambda t: jnp.asarray(jnp.nan, t.dtype), damping, max_steps, M, False, scale_d)
        theta, hist, status, k = loop(theta0, *_scalars(theta0.dtype, mu0, mu_max, goal, min_grad), jnp.int32(1))
        return LMResult(unflatten(theta), hist, status, k)

    return jax.jit(run)
