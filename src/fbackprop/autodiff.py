"""The references the hand-written backward pass is checked against.

Each takes a Network or any ``apply(params, x)`` callable (a Flax or Equinox model's apply
works) and a loss, and returns ``(params, x, y) -> dC/dparams`` for the batch-mean cost
``C = loss(apply(params, x), y)``. They differentiate only the *values* (``f`` of each
activation, the loss value), never the hand-written derivatives, so they are independent of
the code they check.

- ``autodiff``: reverse mode, ``jax.grad``; the same cost as backprop (seed 000: one backward pass).
- ``forward_mode``: forward accumulation, ``jax.jacfwd`` taken in chunks of the standard basis:
  one Jacobian-vector product per parameter, P times the cost of a forward pass.
- ``numerical_grad``: central differences ``(C(theta + h e_i) - C(theta - h e_i)) / 2h``,
  2P forward passes; error ``O(h^2)`` plus rounding ``O(eps_mach / h)``; use float64.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import losses as _losses
from .validate import as_apply, checked

#: Default number of basis directions evaluated together (one ``vmap``) by the per-parameter methods.
CHUNK_SIZE = 256


def _cost(model: Any, loss: _losses.Loss):
    apply = as_apply(model)
    return lambda params, x, y: loss(apply(params, x), y)


def autodiff(model: Any, loss: str | _losses.Loss):
    """``(params, x, y) -> dC/dparams`` by reverse-mode autodiff (``jax.grad``)."""
    loss = _losses.get(loss)
    return checked(model, loss, jax.grad(_cost(model, loss)))


def value_and_autodiff(model: Any, loss: str | _losses.Loss):
    """``(params, x, y) -> (C, dC/dparams)`` by ``jax.value_and_grad``."""
    loss = _losses.get(loss)
    return checked(model, loss, jax.value_and_grad(_cost(model, loss)))


def _per_parameter(partial_i, params, chunk_size: int):
    """Evaluate ``partial_i(i)`` for every flat parameter index, ``chunk_size`` at a time."""
    theta, unravel = ravel_pytree(params)
    P = theta.size
    g = jax.lax.map(lambda i: partial_i(theta, i), jnp.arange(P), batch_size=min(P, chunk_size))
    return unravel(g)


def forward_mode(model: Any, loss: str | _losses.Loss, chunk_size: int = CHUNK_SIZE):
    """``(params, x, y) -> dC/dparams`` by forward-mode autodiff: ``jax.jacfwd`` in basis chunks.

    Entry ``i`` is the Jacobian-vector product of ``C`` along the unit vector ``e_i``;
    ``chunk_size`` of them share one ``vmap`` (memory: ``chunk_size`` tangents of every activation).
    """
    loss = _losses.get(loss)
    cost = _cost(model, loss)

    def grad(params, x, y):
        unravel = ravel_pytree(params)[1]

        def directional(theta, i):
            e_i = jax.nn.one_hot(i, theta.size, dtype=theta.dtype)
            return jax.jvp(lambda t: cost(unravel(t), x, y), (theta,), (e_i,))[1]

        return _per_parameter(directional, params, chunk_size)

    return checked(model, loss, grad)


def default_eps(dtype) -> float:
    """Finite-difference step: 1e-6 in float64 (DESIGN.md), ``eps_mach^(1/3)`` in lower precision."""
    dtype = jnp.dtype(dtype)
    return 1e-6 if dtype == jnp.float64 else float(jnp.finfo(dtype).eps) ** (1.0 / 3.0)


def numerical_grad(model: Any, loss: str | _losses.Loss, eps: float | None = None,
                   chunk_size: int = CHUNK_SIZE):
    """``(params, x, y) -> dC/dparams`` by central differences with step ``eps`` (see ``default_eps``)."""
    loss = _losses.get(loss)
    cost = _cost(model, loss)

    def grad(params, x, y):
        unravel = ravel_pytree(params)[1]

        def central(theta, i):
            h = eps if eps is not None else default_eps(theta.dtype)
            e = h * jax.nn.one_hot(i, theta.size, dtype=theta.dtype)
            return (cost(unravel(theta + e), x, y) - cost(unravel(theta - e), x, y)) / (2 * h)

        return _per_parameter(central, params, chunk_size)

    return checked(model, loss, grad)
