"""The hand-written backward pass: seed 000's matrix form, a reverse walk over the layers.

Notation (seed 000, batch rows; ``L`` dense layers, ``l = 1..L``):

    forward:   z^l = a^{l-1} @ W^l.T + b^l,   a^l = f^l(z^l),   a^0 = x        x: (N, n_in)
    output:    delta^L = f^L'(z^L) * dC/da^L,   dC/da^L = loss.grad(a^L, y) / N
    backward:  delta^{l-1} = f^{l-1}'(z^{l-1}) * (delta^l @ W^l)                  (BP2)
    gradients: dC/dW^l = delta^l.T @ a^{l-1},   dC/db^l = sum_n delta^l_n         (BP3, BP4)

``C`` is the batch mean of the per-example losses (DESIGN.md), so ``delta^l`` here is
``dC/dz^l`` and already carries the ``1/N`` of seed 001's "combine the individual gradients"
step; summing over rows in (BP3, BP4) is that averaging. For cross-entropy on logits the output
line is the fused ``delta^L = (softmax(z^L) - y) / N``.

Each dense layer computes (BP3, BP4) and the first half of (BP2), each activation layer the
second half (``nets.py``); ``backward`` here only walks them in reverse.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import losses as _losses
from .nets import Network, Params, layer_params
from .validate import checked, require_network


def forward(net: Network, params: Params, x: jax.Array) -> tuple[jax.Array, tuple]:
    """Forward phase: ``(yhat, inputs)``; ``inputs[k]`` is what layer k saw (``a^{l-1}`` or ``z^l``).

    This is all the backward pass needs (seed 001: "activations and outputs will be remembered").
    """
    inputs = []
    a = x
    for layer, theta in zip(net.layers, layer_params(net, params)):
        inputs.append(a)
        a = layer.forward(theta, a)
    return a, tuple(inputs)


def backward(net: Network, params: Params, inputs: tuple, g: jax.Array) -> tuple[Params, tuple]:
    """Backward phase from ``g = dC/dyhat``: ``(grads, deltas)``, both first dense layer first.

    ``deltas[l] = dC/dz^l: (N, n_l)``; ``grads[l] = {"W": dC/dW^l, "b": dC/db^l}``.
    """
    grads, deltas = [], []
    walk = zip(net.layers, layer_params(net, params), inputs)
    for layer, theta, inp in reversed(list(walk)):
        if layer.has_params:
            deltas.append(g)                      # g arriving at a dense layer is delta^l = dC/dz^l
        g, dtheta = layer.backward(theta, inp, g)
        if layer.has_params:
            grads.append(dtheta)
    return tuple(reversed(grads)), tuple(reversed(deltas))


class Trace(NamedTuple):
    """One forward and backward pass, laid out by dense layer ``l = 1..L`` (tuples, first first).

    ``a = (a^0 = x, a^1, ..., a^L = yhat)``, ``z = (z^1, ..., z^L)``,
    ``delta = (delta^1, ..., delta^L)`` with ``delta^l = dC/dz^l``, and the gradients.
    """

    C: jax.Array
    a: tuple
    z: tuple
    delta: tuple
    grads: Params


def _trace(net: Network, loss: _losses.Loss, params: Params, x: jax.Array, y: jax.Array) -> Trace:
    yhat, inputs = forward(net, params, x)
    C = loss(yhat, y)
    dC_dyhat = loss.grad(yhat, y) / x.shape[0]    # dC/da^L: the 1/N of the batch mean
    grads, deltas = backward(net, params, inputs, dC_dyhat)
    dense_in = [inp for layer, inp in zip(net.layers, inputs) if layer.has_params]
    z = tuple(inp for layer, inp in zip(net.layers, inputs) if not layer.has_params)
    return Trace(C, tuple(dense_in) + (yhat,), z, deltas, grads)


def backprop_trace(net: Network, loss: str | _losses.Loss):
    """``(params, x, y) -> Trace``: every ``a^l``, ``z^l`` and ``delta^l`` of the pass, to inspect."""
    net, loss = require_network(net, "backprop_trace"), _losses.get(loss)
    return checked(net, loss, lambda params, x, y: _trace(net, loss, params, x, y))


def value_and_backprop(net: Network, loss: str | _losses.Loss):
    """``(params, x, y) -> (C, dC/dparams)`` by the hand-written backward pass.

    ``x: (N, n_in)``, ``y: (N, n_out)`` (or labels ``(N,)`` for cross_entropy); grads are
    shaped like params. Jit-compiled; checks shapes at the call.
    """
    net, loss = require_network(net, "value_and_backprop"), _losses.get(loss)

    def value_and_grads(params, x, y):
        t = _trace(net, loss, params, x, y)
        return t.C, t.grads

    return checked(net, loss, value_and_grads)


def backprop(net: Network, loss: str | _losses.Loss):
    """``(params, x, y) -> dC/dparams`` by the hand-written backward pass (see module docstring)."""
    net, loss = require_network(net, "backprop"), _losses.get(loss)
    return checked(net, loss, lambda params, x, y: _trace(net, loss, params, x, y).grads)


def per_example_grads(net: Network, loss: str | _losses.Loss):
    """``(params, x, y) ->`` per-example gradients ``dl_n/dparams``: every leaf gains a leading N axis.

    The backward pass runs from ``dl_n/dyhat_n`` (no ``1/N``), and each dense layer keeps one
    outer product per row, ``dW_n = delta_n a_n^T``, instead of summing them; the mean over
    ``n`` is ``backprop``'s gradient. Memory: ``N`` times the parameter count.
    """
    net, loss = require_network(net, "per_example_grads"), _losses.get(loss)

    def grads_n(params, x, y):
        yhat, inputs = forward(net, params, x)
        _, deltas = backward(net, params, inputs, loss.grad(yhat, y))
        dense_in = [inp for layer, inp in zip(net.layers, inputs) if layer.has_params]
        return tuple(layer.per_example_grads(a, d) for layer, a, d in zip(net.dense, dense_in, deltas))

    return checked(net, loss, grads_n)



def _unit_backward(net: Network, params: Params, inputs: tuple):
    """One backward pass per output unit ``k`` (seed ``e_k`` in every row) from forward's ``inputs``:
    ``(dense_in, deltas)``, ``dense_in[l] = a^{l-1}: (N, fan_in)``, ``deltas[l]: (n_out, N, fan_out)``."""
    n, n_out = inputs[0].shape[0], net.n_out
    seeds = jnp.broadcast_to(jnp.eye(n_out, dtype=inputs[0].dtype)[:, None, :], (n_out, n, n_out))
    dense_in = tuple(inp for layer, inp in zip(net.layers, inputs) if layer.has_params)
    return dense_in, jax.vmap(lambda e_k: backward(net, params, inputs, e_k)[1])(seeds)


def jacobian_rows(net: Network, params: Params, x: jax.Array) -> Params:
    """``d yhat_nk / d theta``: leaves with leading ``(N, n_out)`` axes (``W: (N, n_out, fan_out, fan_in)``).

    Marquardt backpropagation (Hagan & Menhaj 1994): one backward pass per output unit ``k``, seeded
    with ``dyhat/dyhat_k = e_k`` in every row, so ``delta^L = f^L'(z^L) * e_k``; the passes share one
    forward and run together (``vmap`` over ``k``); each dense layer keeps its per-example outer products.
    """
    dense_in, deltas = _unit_backward(net, params, forward(net, params, x)[1])
    rows = tuple(jax.vmap(layer.per_example_grads, in_axes=(None, 0))(a, d)
                 for layer, a, d in zip(net.dense, dense_in, deltas))
    return jax.tree.map(lambda leaf: jnp.moveaxis(leaf, 0, 1), rows)


def jacobian_gram(net: Network, params: Params, x: jax.Array, inputs: tuple | None = None) -> jax.Array:
    """``K = J J^T: (N, n_out, N, n_out)`` without forming ``J`` (x: (N, n_in); ``inputs``: forward's
    cache at ``x``, when the caller already has it).

    A dense layer's Jacobian row is an outer product, ``dyhat_nk/dW^l = delta^l_nk a^{l-1}_n^T`` and
    ``dyhat_nk/db^l = delta^l_nk`` (BP3, BP4 with the unit seed), so the inner product of two rows
    factors: ``<J_nk, J_mj> = sum_l (delta^l_nk . delta^l_mj) (a^{l-1}_n . a^{l-1}_m + 1)``.
    That is ``(N n_out)^2 (fan_in + fan_out)`` multiply-adds a layer instead of ``(N n_out)^2 fan_in fan_out``.
    """
    dense_in, deltas = _unit_backward(net, params, forward(net, params, x)[1] if inputs is None else inputs)
    n_out, n = deltas[0].shape[:2]
    hi = jax.lax.Precision.HIGHEST
    K = 0.0
    for a, d in zip(dense_in, deltas):
        rows = jnp.moveaxis(d, 0, 1).reshape(n * n_out, -1)                   # (N n_out, fan_out), rows (n, k)
        dd = jnp.matmul(rows, rows.T, precision=hi).reshape(n, n_out, n, n_out)
        K = K + dd * (jnp.matmul(a, a.T, precision=hi) + 1.0)[:, None, :, None]
    return K
