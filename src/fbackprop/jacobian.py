"""The Jacobian of the network outputs with respect to the parameters, by hand and by autodiff.

``J_nk = d yhat_nk / d theta``: what Levenberg-Marquardt and Gauss-Newton are built from
(``J^T J``, ``J^T e``). ``jacobian(model, method)`` returns ``(params, x) ->`` a pytree shaped like
params whose leaves gain leading ``(N, n_out)`` axes; ``as_matrix`` lays it out as ``(N, n_out, P)``
in ``fb.flatten``'s order.

- ``method="backprop"``: Marquardt backpropagation, hand-written (``backprop.jacobian_rows``):
  one backward pass per output unit, all sharing one forward pass.
- ``jacobian_gram(model, method)``: ``K = J J^T: (N, n_out, N, n_out)``, what the dual
  (``N n_out < P``) Levenberg-Marquardt step solves with. ``backprop``: from the layers' deltas and
  inputs, never forming ``J`` (``backprop.jacobian_gram``); ``autodiff``: ``J`` by autodiff, then ``J J^T``.
- ``method="autodiff"``: reverse mode per example (``vmap`` of ``jax.jacrev`` of one row); never
  ``jacrev`` of the whole batch, which differentiates every output by every example's parameters'
  copies and is far slower.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .backprop import jacobian_gram as _gram
from .backprop import jacobian_rows
from .validate import as_apply, check_inputs, check_x, is_network, require_network

JACOBIAN_METHODS = ("backprop", "autodiff")


def jacobian(model: Any, method: str = "backprop"):
    """``(params, x) -> d yhat / d params`` with leading ``(N, n_out)`` axes on every leaf."""
    if method not in JACOBIAN_METHODS:
        raise ValueError(f"unknown jacobian method {method!r}; expected one of {JACOBIAN_METHODS}")
    if method == "backprop":
        net = require_network(model, "jacobian(method='backprop')")
        core = jax.jit(lambda params, x: jacobian_rows(net, params, x))
    else:
        apply = as_apply(model)
        one = lambda params, x_n: jax.jacrev(lambda p: apply(p, x_n[None])[0])(params)
        core = jax.jit(jax.vmap(one, in_axes=(None, 0)))

    def fn(params, x):
        x = check_inputs(model, params, x) if is_network(model) else check_x(x)
        return core(params, x)

    return fn


def jacobian_gram(model: Any, method: str = "backprop"):
    """``(params, x) -> J J^T: (N, n_out, N, n_out)``, the Gram matrix of the Jacobian's rows."""
    if method == "backprop":
        net = require_network(model, "jacobian_gram(method='backprop')")
        core = jax.jit(lambda params, x: _gram(net, params, x))
        return lambda params, x: core(params, check_inputs(net, params, x))
    rows = jacobian(model, method)

    def fn(params, x):
        J = as_matrix(rows(params, x))
        return jnp.einsum("nkp,mjp->nkmj", J, J, precision=jax.lax.Precision.HIGHEST)

    return fn


def as_matrix(rows) -> jax.Array:
    """A ``jacobian`` pytree as one ``(N, n_out, P)`` array, columns in ``fb.flatten``'s order."""
    leaves = jax.tree.leaves(rows)
    n, k = leaves[0].shape[:2]
    return jnp.concatenate([leaf.reshape(n, k, -1) for leaf in leaves], axis=-1)
