"""The references the hand-written backward pass is checked against.

Each takes a Network or any ``apply(params, x)`` callable (a Flax or Equinox model's apply
works) and a loss, and returns ``(params, x, y) -> dC/dparams`` for the batch-mean cost
``C = loss(apply(params, x), y)``. They differentiate only the *values* (``f`` of each
activation, the loss value), never the hand-written derivatives, so they are independent of
the code they check.

- ``autodiff``: reverse mode, ``jax.grad``; about the cost of one forward and one backward pass,
  as backpropagation (Rumelhart, Hinton & Williams 1986; Griewank & Walther 2008).
- ``forward_mode``: forward accumulation, ``jax.jvp`` along chunks of the standard basis:
  one Jacobian-vector product per parameter, P times the cost of a forward pass.
- ``numerical_grad``: central differences ``(C(theta + h e_i) - C(theta - h e_i)) / 2h``,
  2P forward passes; error ``O(h^2)`` plus rounding ``O(eps_mach / h)``; use float64 and compare
  with ``fb.compare(..., method="finite_difference")``.

Every factory is cached on its arguments (``validate.cached_transformation``): written inline in a
loop, ``fb.autodiff(net, loss)(params, x, y)`` compiles once per shape and dtype. A model passed as
an unhashable object skips the cache (and compiles at every build).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import losses as _losses
from .validate import as_apply, as_float, as_int, cached_transformation, checked

#: Default number of basis directions evaluated together (one ``vmap``) by the per-parameter methods.
CHUNK_SIZE = 256

_ARGS = """
    Args:
        params: the model's parameter pytree; its floating dtype is the computation's dtype.
        x: inputs ``(N, n_in)``, one example per row (cast to the params' dtype).
        y: targets ``(N, n_out)``; integer labels ``(N,)`` for ``cross_entropy``; ``(N,)`` for one output.

    Returns:
        {returns}

    Raises:
        ValueError: for shapes that do not fit the model, or NaN/Inf in concrete params, x or y
            (under ``jit`` values are not checked).
        TypeError: for non-floating params or x.
"""


def _doc(summary: str, returns: str) -> str:
    return summary + "\n" + _ARGS.format(returns=returns)


def _cost(model: Any, loss: _losses.Loss):
    apply = as_apply(model)
    return lambda params, x, y: loss(apply(params, x), y)


@cached_transformation
def autodiff(model: Any, loss: str | _losses.Loss):
    """The gradient of the batch-mean cost by reverse-mode autodiff (``jax.grad``).

    Args:
        model: an fbackprop ``Network`` or any ``apply(params, x) -> (N, n_out)`` callable.
        loss: a loss name (``"squared_error"``, ``"cross_entropy"``, ``"binary_cross_entropy"``) or ``Loss``.

    Returns:
        ``(params, x, y) -> dC/dparams``, jit-compiled, checking its arguments at every call
        (cached: equal arguments give the same function).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> grads = fb.autodiff(net, "squared_error")(params, x, y)
        >>> grads[0]["W"].shape
        (3, 2)
    """
    loss = _losses.get(loss)
    as_apply(model)
    return checked(
        model,
        loss,
        jax.grad(_cost(model, loss)),
        doc=_doc("``dC/dparams`` by ``jax.grad``.", "The gradient, shaped like params."),
    )


@cached_transformation
def value_and_autodiff(model: Any, loss: str | _losses.Loss):
    """The cost and its gradient by ``jax.value_and_grad``.

    Args:
        model: an fbackprop ``Network`` or any ``apply(params, x) -> (N, n_out)`` callable.
        loss: a loss name or ``Loss``.

    Returns:
        ``(params, x, y) -> (C, dC/dparams)``, jit-compiled and checked (cached).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> C, grads = fb.value_and_autodiff(net, "squared_error")(params, x, y)
        >>> C.shape, grads[0]["b"].shape
        ((), (3,))
    """
    loss = _losses.get(loss)
    as_apply(model)
    return checked(
        model,
        loss,
        jax.value_and_grad(_cost(model, loss)),
        doc=_doc(
            "The batch-mean cost and its gradient by ``jax.value_and_grad``.",
            "``(C, grads)``: ``C`` a scalar, ``grads`` shaped like params.",
        ),
    )


def _per_parameter(partial_i, params, chunk_size: int):
    """Evaluate ``partial_i(i)`` for every flat parameter index, ``chunk_size`` at a time."""
    theta, unravel = ravel_pytree(params)
    P = theta.size
    g = jax.lax.map(lambda i: partial_i(theta, i), jnp.arange(P), batch_size=min(P, chunk_size))
    return unravel(g)


@cached_transformation
def forward_mode(model: Any, loss: str | _losses.Loss, chunk_size: int = CHUNK_SIZE):
    """The gradient by forward-mode autodiff: one ``jax.jvp`` per basis direction, in chunks.

    Entry ``i`` is the Jacobian-vector product of ``C`` along the unit vector ``e_i``;
    ``chunk_size`` of them share one ``vmap`` (memory: ``chunk_size`` tangents of every activation).

    Args:
        model: an fbackprop ``Network`` or any ``apply(params, x)`` callable.
        loss: a loss name or ``Loss``.
        chunk_size: directions per ``vmap``, a positive integer (default ``CHUNK_SIZE`` = 256).

    Returns:
        ``(params, x, y) -> dC/dparams``, jit-compiled and checked (cached).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> fm = fb.forward_mode(net, "squared_error")(params, x, y)
        >>> bool(fb.compare(fm, fb.backprop(net, "squared_error")(params, x, y)).ok())
        True
    """
    loss = _losses.get(loss)
    chunk_size = as_int(chunk_size, "chunk_size")
    cost = _cost(model, loss)

    def grad(params, x, y):
        unravel = ravel_pytree(params)[1]

        def directional(theta, i):
            e_i = jax.nn.one_hot(i, theta.size, dtype=theta.dtype)
            return jax.jvp(lambda t: cost(unravel(t), x, y), (theta,), (e_i,))[1]

        return _per_parameter(directional, params, chunk_size)

    return checked(
        model,
        loss,
        grad,
        doc=_doc(
            "``dC/dparams`` by forward-mode autodiff, one JVP per parameter.",
            "The gradient, shaped like params.",
        ),
    )


def default_eps(dtype) -> float:
    """The default finite-difference step for ``numerical_grad``.

    Central differences have truncation error ``O(h^2)`` and rounding error ``O(eps_mach / h)``,
    balanced near ``h ~ eps_mach^(1/3)``: that is the step in low precision; float64 uses 1e-6.

    Args:
        dtype: the computation's dtype.

    Returns:
        ``1e-6`` for float64, ``eps_mach^(1/3)`` otherwise (float32: about 4.9e-3).
    """
    dtype = jnp.dtype(dtype)
    return 1e-6 if dtype == jnp.float64 else float(jnp.finfo(dtype).eps) ** (1.0 / 3.0)


@cached_transformation
def numerical_grad(
    model: Any, loss: str | _losses.Loss, eps: float | None = None, chunk_size: int = CHUNK_SIZE
):
    """The gradient by central differences, ``(C(theta + h e_i) - C(theta - h e_i)) / 2h``.

    Approximate: compare it with an exact gradient through ``fb.compare(fd, exact,
    method="finite_difference")``, whose tolerance allows for the ``O(h^2)`` error.

    Args:
        model: an fbackprop ``Network`` or any ``apply(params, x)`` callable.
        loss: a loss name or ``Loss``.
        eps: the step ``h > 0`` (default ``None``: ``default_eps`` of the params' dtype).
        chunk_size: directions per ``vmap``, a positive integer (default 256).

    Returns:
        ``(params, x, y) -> dC/dparams``, jit-compiled and checked (cached).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> fd = fb.numerical_grad(net, "squared_error")(params, x, y)   # central differences
        >>> fd[1]["W"].shape
        (1, 3)
    """
    loss = _losses.get(loss)
    eps = None if eps is None else as_float(eps, "eps", minimum=0.0, open_min=True)
    chunk_size = as_int(chunk_size, "chunk_size")
    cost = _cost(model, loss)

    def grad(params, x, y):
        unravel = ravel_pytree(params)[1]

        def central(theta, i):
            h = eps if eps is not None else default_eps(theta.dtype)
            e = h * jax.nn.one_hot(i, theta.size, dtype=theta.dtype)
            return (cost(unravel(theta + e), x, y) - cost(unravel(theta - e), x, y)) / (2 * h)

        return _per_parameter(central, params, chunk_size)

    return checked(
        model,
        loss,
        grad,
        doc=_doc(
            "``dC/dparams`` by central differences, 2P cost evaluations.",
            "The approximate gradient, shaped like params.",
        ),
    )
