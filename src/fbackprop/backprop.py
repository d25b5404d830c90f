"""The hand-written backward pass: backpropagation in matrix form, a reverse walk over the layers.

Notation (batch rows, one example per row; ``L`` dense layers, ``l = 1..L``; Rumelhart, Hinton &
Williams 1986, written for a whole batch at once):

    forward:   z^l = a^{l-1} @ W^l.T + b^l,   a^l = f^l(z^l),   a^0 = x        x: (N, n_in)
    output:    delta^L = f^L'(z^L) * dC/da^L,   dC/da^L = loss.grad(a^L, y) / N        (BP1)
    backward:  delta^{l-1} = f^{l-1}'(z^{l-1}) * (delta^l @ W^l)                      (BP2)
    gradients: dC/db^l = sum_n delta^l_n,   dC/dW^l = delta^l.T @ a^{l-1}              (BP3, BP4)

``C`` is the batch mean of the per-example losses, ``C = (1/N) sum_n l_n``, so ``delta^l`` here
is ``dC/dz^l`` and already carries the ``1/N`` of averaging the per-example gradients; summing
over rows in (BP3, BP4) is that average. For cross-entropy on logits the output line (BP1) is
the fused ``delta^L = (softmax(z^L) - y) / N``.

Each dense layer computes (BP3, BP4) and the first half of (BP2), each activation layer the
second half (``nets.py``); ``backward`` here only walks them in reverse.

Every factory here (``backprop``, ``value_and_backprop``, ``backprop_trace``,
``per_example_grads``) is cached on its arguments: ``fb.backprop(net, loss)(params, x, y)``
written inline in a loop compiles once per shape and dtype, as ``jax.jit`` does.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import losses as _losses
from .nets import Network, Params, layer_params
from .validate import cached_transformation, checked, require_network


def forward(net: Network, params: Params, x: jax.Array) -> tuple[jax.Array, tuple]:
    """Forward phase, remembering what every layer saw: all the backward pass needs.

    Args:
        net: the network.
        params: its parameters, a tuple of ``{"W": (fan_out, fan_in), "b": (fan_out,)}``.
        x: inputs ``(N, n_in)``, one example per row (not checked here: this is the raw pass).

    Returns:
        ``(yhat, inputs)``: ``yhat: (N, n_out)`` and ``inputs[k]``, what layer ``k`` of
        ``net.layers`` received (``a^{l-1}`` for a dense layer, ``z^l`` for an activation).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> yhat, inputs = fb.forward(net, params, x)
        >>> yhat.shape, len(inputs)
        ((4, 1), 4)
    """
    inputs = []
    a = x
    for layer, theta in zip(net.layers, layer_params(net, params)):
        inputs.append(a)
        a = layer.forward(theta, a)
    return a, tuple(inputs)


def backward(net: Network, params: Params, inputs: tuple, g: jax.Array) -> tuple[Params, tuple]:
    """Backward phase (BP1-BP4) from ``g = dC/dyhat``, walking the layers in reverse.

    Args:
        net: the network.
        params: its parameters.
        inputs: ``forward``'s second output.
        g: ``dC/dyhat: (N, n_out)`` (``loss.grad(yhat, y) / N`` for the batch-mean cost).

    Returns:
        ``(grads, deltas)``, both first dense layer first: ``grads[l] = {"W": dC/dW^l, "b":
        dC/db^l}`` shaped like ``params`` and ``deltas[l] = dC/dz^l: (N, n_l)``.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> yhat, inputs = fb.forward(net, params, x)
        >>> grads, deltas = fb.backward(net, params, inputs, (yhat - y) / len(x))
        >>> grads[1]["W"].shape, deltas[0].shape
        ((1, 3), (4, 3))
    """
    grads, deltas = [], []
    walk = zip(net.layers, layer_params(net, params), inputs)
    for layer, theta, inp in reversed(list(walk)):
        if layer.has_params:
            deltas.append(g)  # g arriving at a dense layer is delta^l = dC/dz^l
        g, dtheta = layer.backward(theta, inp, g)
        if layer.has_params:
            grads.append(dtheta)
    return tuple(reversed(grads)), tuple(reversed(deltas))


class Trace(NamedTuple):
    """One forward and backward pass, laid out by dense layer ``l = 1..L`` (tuples, first first).

    Attributes:
        C: the batch-mean cost, a scalar.
        a: ``(a^0 = x, a^1, ..., a^L = yhat)``, ``a^l: (N, n_l)``.
        z: ``(z^1, ..., z^L)``, the pre-activations, ``z^l: (N, n_l)``.
        delta: ``(delta^1, ..., delta^L)`` with ``delta^l = dC/dz^l: (N, n_l)``.
        grads: ``dC/dparams``, shaped like params.
    """

    C: jax.Array
    a: tuple
    z: tuple
    delta: tuple
    grads: Params


def _trace(net: Network, loss: _losses.Loss, params: Params, x: jax.Array, y: jax.Array) -> Trace:
    yhat, inputs = forward(net, params, x)
    C = loss(yhat, y)
    dC_dyhat = loss.grad(yhat, y) / x.shape[0]  # dC/da^L: the 1/N of the batch mean
    grads, deltas = backward(net, params, inputs, dC_dyhat)
    dense_in = [inp for layer, inp in zip(net.layers, inputs) if layer.has_params]
    z = tuple(inp for layer, inp in zip(net.layers, inputs) if not layer.has_params)
    return Trace(C, tuple(dense_in) + (yhat,), z, deltas, grads)


_ARGS = """
    Args:
        params: a tuple of ``{"W": (fan_out, fan_in), "b": (fan_out,)}``, one per dense layer; their
            floating dtype is the computation's dtype.
        x: inputs ``(N, n_in)``, one example per row (cast to the params' dtype).
        y: targets ``(N, n_out)``; integer labels ``(N,)`` for ``cross_entropy``; ``(N,)`` for one output.
"""

_RAISES = """
    Raises:
        ValueError: for shapes that do not fit the network, or NaN/Inf in concrete params, x or y
            (under ``jit`` values are not checked).
        TypeError: for non-floating params or x.
"""


@cached_transformation
def backprop_trace(net: Network, loss: str | _losses.Loss):
    """Every ``a^l``, ``z^l`` and ``delta^l`` of one hand-written pass, to inspect.

    Args:
        net: an fbackprop ``Network`` (from ``fb.mlp``).
        loss: a loss name (``"squared_error"``, ``"cross_entropy"``, ``"binary_cross_entropy"``) or ``Loss``.

    Returns:
        ``(params, x, y) -> Trace``, jit-compiled, checking its arguments at every call.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> t = fb.backprop_trace(net, "squared_error")(params, x, y)
        >>> [a.shape for a in t.a]
        [(4, 2), (4, 3), (4, 1)]
    """
    net = require_network(net, "fb.backprop_trace", "fb.autodiff(apply, loss) (a trace needs the layers)")
    loss = _losses.get(loss)
    doc = (
        "The forward and backward pass of ``net`` under ``loss``, every layer kept.\n"
        + _ARGS
        + "\n    Returns:\n        ``Trace(C, a, z, delta, grads)``: ``a^l, z^l, delta^l: (N, n_l)``, grads "
        "shaped like params.\n" + _RAISES
    )
    return checked(net, loss, lambda params, x, y: _trace(net, loss, params, x, y), doc=doc)


@cached_transformation
def value_and_backprop(net: Network, loss: str | _losses.Loss):
    """The cost and its gradient by the hand-written backward pass.

    Args:
        net: an fbackprop ``Network`` (from ``fb.mlp``).
        loss: a loss name or ``Loss``.

    Returns:
        ``(params, x, y) -> (C, dC/dparams)``, jit-compiled, checking its arguments at every call
        (cached: equal arguments give the same function).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> C, grads = fb.value_and_backprop(net, "squared_error")(params, x, y)
        >>> C.shape, grads[0]["b"].shape
        ((), (3,))
    """
    net = require_network(net, "fb.value_and_backprop", "fb.value_and_autodiff(apply, loss)")
    loss = _losses.get(loss)

    def value_and_grads(params, x, y):
        t = _trace(net, loss, params, x, y)
        return t.C, t.grads

    doc = (
        "The batch-mean cost ``C`` and ``dC/dparams`` by backpropagation (BP1-BP4).\n"
        + _ARGS
        + "\n    Returns:\n        ``(C, grads)``: ``C`` a scalar, ``grads`` shaped like params.\n"
        + _RAISES
    )
    return checked(net, loss, value_and_grads, doc=doc)


@cached_transformation
def backprop(net: Network, loss: str | _losses.Loss):
    """The gradient of the batch-mean cost by the hand-written backward pass (BP1-BP4).

    ``C = loss(net.apply(params, x), y) = (1/N) sum_n l(yhat_n, y_n)``; see the module docstring
    for the equations (Rumelhart, Hinton & Williams 1986).

    Args:
        net: an fbackprop ``Network`` (from ``fb.mlp``); for any ``apply(params, x)`` callable use
            ``fb.autodiff``.
        loss: a loss name (``"squared_error"``, ``"cross_entropy"``, ``"binary_cross_entropy"``) or ``Loss``.

    Returns:
        ``(params, x, y) -> dC/dparams``, jit-compiled, checking its arguments at every call.
        Cached: ``fb.backprop(net, loss)`` called again with equal arguments returns the same
        function, so writing it inline in a loop compiles once per shape and dtype.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> grads = fb.backprop(net, "squared_error")(params, x, y)   # shaped like params
        >>> [g["W"].shape for g in grads]
        [(3, 2), (1, 3)]
    """
    net = require_network(net, "fb.backprop", "fb.autodiff(apply, loss)")
    loss = _losses.get(loss)
    doc = (
        "``dC/dparams`` of the batch-mean cost by backpropagation (BP1-BP4).\n"
        + _ARGS
        + "\n    Returns:\n        The gradient, shaped like params (same dtype).\n"
        + _RAISES
    )
    return checked(net, loss, lambda params, x, y: _trace(net, loss, params, x, y).grads, doc=doc)


@cached_transformation
def per_example_grads(net: Network, loss: str | _losses.Loss):
    """Per-example gradients ``dl_n/dparams`` by one hand-written backward pass.

    The backward pass runs from ``dl_n/dyhat_n`` (no ``1/N``), and each dense layer keeps one
    outer product per row, ``dW_n = delta_n a_n^T``, instead of summing them; the mean over
    ``n`` is ``backprop``'s gradient. Memory: ``N`` times the parameter count.

    Args:
        net: an fbackprop ``Network``.
        loss: a loss name or ``Loss``.

    Returns:
        ``(params, x, y) ->`` per-example gradients, every leaf with a leading ``N`` axis
        (``W: (N, fan_out, fan_in)``), jit-compiled and checked.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> g = fb.per_example_grads(net, "squared_error")(params, x, y)
        >>> g[0]["W"].shape   # (N, fan_out, fan_in)
        (4, 3, 2)
    """
    net = require_network(
        net,
        "fb.per_example_grads",
        "jax.vmap(fb.autodiff(apply, loss), in_axes=(None, 0, 0)) on rows x[:, None], y[:, None]",
    )
    loss = _losses.get(loss)

    def grads_n(params, x, y):
        yhat, inputs = forward(net, params, x)
        _, deltas = backward(net, params, inputs, loss.grad(yhat, y))
        dense_in = [inp for layer, inp in zip(net.layers, inputs) if layer.has_params]
        return tuple(layer.per_example_grads(a, d) for layer, a, d in zip(net.dense, dense_in, deltas))

    doc = (
        "The gradient of each example's loss ``l_n`` (not divided by N).\n"
        + _ARGS
        + "\n    Returns:\n        A tree shaped like params with a leading N axis on every leaf; its mean "
        "over axis 0 is ``fb.backprop``'s gradient.\n" + _RAISES
    )
    return checked(net, loss, grads_n, doc=doc)


def _unit_backward(net: Network, params: Params, inputs: tuple):
    """One backward pass per output unit ``k`` (started from ``e_k`` in every row) from forward's ``inputs``:
    ``(dense_in, deltas)``, ``dense_in[l] = a^{l-1}: (N, fan_in)``, ``deltas[l]: (n_out, N, fan_out)``."""
    n, n_out = inputs[0].shape[0], net.n_out
    seeds = jnp.broadcast_to(jnp.eye(n_out, dtype=inputs[0].dtype)[:, None, :], (n_out, n, n_out))
    dense_in = tuple(inp for layer, inp in zip(net.layers, inputs) if layer.has_params)
    return dense_in, jax.vmap(lambda e_k: backward(net, params, inputs, e_k)[1])(seeds)


def jacobian_rows(net: Network, params: Params, x: jax.Array) -> Params:
    """The Jacobian of the outputs, ``d yhat_nk / d theta``, by Marquardt backpropagation.

    Marquardt backpropagation (Hagan & Menhaj 1994): one backward pass per output unit ``k``, seeded
    with ``dyhat/dyhat_k = e_k`` in every row, so ``delta^L = f^L'(z^L) * e_k``; the passes share one
    forward and run together (``vmap`` over ``k``); each dense layer keeps its per-example outer products.

    Args:
        net: the network.
        params: its parameters.
        x: inputs ``(N, n_in)`` (not checked: the raw pass; ``fb.jacobian`` checks).

    Returns:
        A tree shaped like params whose leaves gain leading ``(N, n_out)`` axes
        (``W: (N, n_out, fan_out, fan_in)``).
    """
    dense_in, deltas = _unit_backward(net, params, forward(net, params, x)[1])
    rows = tuple(
        jax.vmap(layer.per_example_grads, in_axes=(None, 0))(a, d)
        for layer, a, d in zip(net.dense, dense_in, deltas)
    )
    return jax.tree.map(lambda leaf: jnp.moveaxis(leaf, 0, 1), rows)


def jacobian_gram(net: Network, params: Params, x: jax.Array, inputs: tuple | None = None) -> jax.Array:
    """``K = J J^T: (N, n_out, N, n_out)`` without forming ``J`` (x: (N, n_in); ``inputs``: forward's
    cache at ``x``, when the caller already has it).

    A dense layer's Jacobian row is an outer product, ``dyhat_nk/dW^l = delta^l_nk a^{l-1}_n^T`` and
    ``dyhat_nk/db^l = delta^l_nk`` (BP4, BP3 started from the unit vector), so the inner product of two rows
    factors: ``<J_nk, J_mj> = sum_l (delta^l_nk . delta^l_mj) (a^{l-1}_n . a^{l-1}_m + 1)``.
    That is ``(N n_out)^2 (fan_in + fan_out)`` multiply-adds a layer instead of
    ``(N n_out)^2 fan_in fan_out``.

    Args:
        net: the network.
        params: its parameters.
        x: inputs ``(N, n_in)`` (not checked).
        inputs: ``forward(net, params, x)[1]`` when the caller has it (default: computed).

    Returns:
        ``K: (N, n_out, N, n_out)``, ``K[n, k, m, j] = <dyhat_nk/dtheta, dyhat_mj/dtheta>``.
    """
    dense_in, deltas = _unit_backward(net, params, forward(net, params, x)[1] if inputs is None else inputs)
    n_out, n = deltas[0].shape[:2]
    hi = jax.lax.Precision.HIGHEST
    K = 0.0
    for a, d in zip(dense_in, deltas):
        rows = jnp.moveaxis(d, 0, 1).reshape(n * n_out, -1)  # (N n_out, fan_out), rows (n, k)
        dd = jnp.matmul(rows, rows.T, precision=hi).reshape(n, n_out, n, n_out)
        K = K + dd * (jnp.matmul(a, a.T, precision=hi) + 1.0)[:, None, :, None]
    return K
