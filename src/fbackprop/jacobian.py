"""The Jacobian of the network outputs with respect to the parameters, by hand and by autodiff.

``J_nk = d yhat_nk / d theta``: what Levenberg-Marquardt and Gauss-Newton are built from
(``J^T J``, ``J^T e``). ``jacobian(model, method)`` returns ``(params, x) ->`` a pytree shaped like
params whose leaves gain leading ``(N, n_out)`` axes; ``as_matrix`` lays it out as ``(N, n_out, P)``
in ``fb.flatten``'s order.

- ``method="backprop"``: Marquardt backpropagation (Hagan & Menhaj 1994), hand-written
  (``backprop.jacobian_rows``): one backward pass per output unit, all sharing one forward pass.
- ``jacobian_gram(model, method)``: ``K = J J^T: (N, n_out, N, n_out)``, what the dual
  (``N n_out < P``) Levenberg-Marquardt step solves with. ``backprop``: from the layers' deltas and
  inputs, never forming ``J`` (``backprop.jacobian_gram``); ``autodiff``: ``J`` by autodiff, then ``J J^T``.
- ``method="autodiff"``: reverse mode per example (``vmap`` of ``jax.jacrev`` of one row); never
  ``jacrev`` of the whole batch, which differentiates every output by every example's parameters'
  copies and is far slower.

Both factories are cached on their (hashable) arguments: inline calls compile once.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .backprop import jacobian_gram as _gram
from .backprop import jacobian_rows
from .validate import (
    as_apply,
    cached_transformation,
    check_choice,
    check_inputs,
    check_x,
    is_network,
    require_network,
)

JACOBIAN_METHODS = ("backprop", "autodiff")

_ARGS = """

    Args:
        params: the model's params (for a Network, the tuple of ``{"W", "b"}`` dicts).
        x: inputs ``(N, n_in)``, one example per row.

    Returns:
        """


def _check_x(model, params, x):
    return check_inputs(model, params, x) if is_network(model) else check_x(x, input_shape="any")


@cached_transformation
def jacobian(model: Any, method: str = "backprop"):
    """The Jacobian of the outputs with respect to the params, per example.

    Args:
        model: an fbackprop ``Network``, or (``method="autodiff"``) any ``apply(params, x)`` callable.
        method: ``"backprop"`` (default; Marquardt backpropagation, hand-written, a Network) or
            ``"autodiff"`` (reverse mode per example, any model).

    Returns:
        ``(params, x) -> rows``: a pytree shaped like params whose leaves gain leading
        ``(N, n_out)`` axes (``as_matrix(rows)``: ``(N, n_out, P)``); compiled, cached on the arguments.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> rows = fb.jacobian(net)(params, x)   # leaves gain (N, n_out) axes
        >>> rows[0]["W"].shape
        (4, 1, 3, 2)
    """
    check_choice(method, "method", JACOBIAN_METHODS)
    if method == "backprop":
        net = require_network(
            model, 'fb.jacobian(net, method="backprop")', 'fb.jacobian(apply, method="autodiff")'
        )
        core = jax.jit(lambda params, x: jacobian_rows(net, params, x))
    else:
        apply = as_apply(model)
        one = lambda params, x_n: jax.jacrev(lambda p: apply(p, x_n[None])[0])(params)
        core = jax.jit(jax.vmap(one, in_axes=(None, 0)))

    def fn(params, x):
        return core(params, _check_x(model, params, x))

    fn.__doc__ = (
        f"``d yhat / d params`` per example, by {method}."
        + _ARGS
        + "A pytree shaped like params, every leaf with leading ``(N, n_out)`` axes.\n"
    )
    return fn


@cached_transformation
def jacobian_gram(model: Any, method: str = "backprop"):
    """The Gram matrix of the Jacobian's rows, ``K = J J^T``.

    Args:
        model: an fbackprop ``Network``, or (``method="autodiff"``) any ``apply(params, x)`` callable.
        method: ``"backprop"`` (default; from the layers' deltas and inputs, never forming J) or
            ``"autodiff"`` (J by autodiff, then ``J J^T``).

    Returns:
        ``(params, x) -> K: (N, n_out, N, n_out)`` (compiled; cached on the arguments).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> fb.jacobian_gram(net)(params, x).shape   # (N, n_out, N, n_out)
        (4, 1, 4, 1)
    """
    check_choice(method, "method", JACOBIAN_METHODS)
    doc = (
        f"``K = J J^T`` of the Jacobian's rows, by {method}."
        + _ARGS
        + "``K: (N, n_out, N, n_out)``, ``K[n, k, m, j] = J_nk . J_mj``.\n"
    )
    if method == "backprop":
        net = require_network(
            model, 'fb.jacobian_gram(net, method="backprop")', 'fb.jacobian_gram(apply, method="autodiff")'
        )
        core = jax.jit(lambda params, x: _gram(net, params, x))

        def gram(params, x):
            return core(params, check_inputs(net, params, x))
    else:
        rows = jacobian(model, method)

        def gram(params, x):
            J = as_matrix(rows(params, x))
            return jnp.einsum("nkp,mjp->nkmj", J, J, precision=jax.lax.Precision.HIGHEST)

    gram.__doc__ = doc
    return gram


def as_matrix(rows) -> jax.Array:
    """A ``jacobian`` pytree as one matrix per example.

    Args:
        rows: what ``jacobian(model)(params, x)`` returns (leaves with leading ``(N, n_out)`` axes).

    Returns:
        ``(N, n_out, P)``, the columns in ``fb.flatten``'s order.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> fb.as_matrix(fb.jacobian(net)(params, x)).shape   # (N, n_out, P)
        (4, 1, 13)
    """
    leaves = jax.tree.leaves(rows)
    if not leaves or any(len(getattr(leaf, "shape", ())) < 2 for leaf in leaves):
        got = [tuple(leaf.shape) if hasattr(leaf, "shape") else type(leaf).__name__ for leaf in leaves]
        raise ValueError(
            f"as_matrix takes what fb.jacobian returns: leaves with leading (N, n_out) axes; got leaves {got}"
        )
    n, k = leaves[0].shape[:2]
    return jnp.concatenate([leaf.reshape(n, k, -1) for leaf in leaves], axis=-1)
