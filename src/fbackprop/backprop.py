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
second half (``layers/dense.py``, ``layers/activation.py``); any other layer kind its own part in the
same form (``fbackprop.layers``). The walk over the layers is ``Serial.walk_back``, written once;
every function here runs it and reads what it needs.

Every factory here (``backprop``, ``value_and_backprop``, ``backprop_trace``,
``per_example_grads``) is cached on its arguments: ``fb.backprop(net, loss)(params, x, y)``
written inline in a loop compiles once per shape and dtype, as ``jax.jit`` does.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import losses as _losses
from .layers.network import Network, Params
from .validate import cached_transformation, checked, require_layer_methods, require_network


def forward(net: Network, params: Params, x: jax.Array) -> tuple[jax.Array, tuple]:
    """Forward phase, remembering what every layer saw: all the backward pass needs.

    Args:
        net: the network.
        params: its parameters (for ``fb.mlp``, a tuple of ``{"W": (fan_out, fan_in), "b": (fan_out,)}``).
        x: inputs ``(N, *input_shape)``, one example per row (not checked here: this is the raw pass).

    Returns:
        ``(yhat, cache)``: ``yhat: (N, n_out)`` and a ``SerialCache``: ``cache.inputs[k]``, what
        layer ``k`` of ``net.layers`` received (``a^{l-1}`` for a dense layer, ``z^l`` for an
        activation), and ``cache.caches[k]``, what its backward needs.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> yhat, cache = fb.forward(net, params, x)
        >>> yhat.shape, len(cache.inputs)
        ((4, 1), 4)
    """
    return net.forward(params, x)


def backward(net: Network, params: Params, cache, g: jax.Array) -> tuple[Params, tuple]:
    """Backward phase (BP1-BP4) from ``g = dC/dyhat``, walking the layers in reverse.

    Args:
        net: the network.
        params: its parameters.
        cache: ``forward``'s second output.
        g: ``dC/dyhat: (N, n_out)`` (``loss.grad(yhat, y) / N`` for the batch-mean cost).

    Returns:
        ``(grads, deltas)``, both one entry per layer with parameters, first first: ``grads`` shaped
        like ``params`` and ``deltas[l]`` the gradient at that layer's output (``delta^l = dC/dz^l:
        (N, n_l)`` for a dense layer).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> yhat, cache = fb.forward(net, params, x)
        >>> grads, deltas = fb.backward(net, params, cache, (yhat - y) / len(x))
        >>> grads[1]["W"].shape, deltas[0].shape
        ((1, 3), (4, 3))
    """
    back = net.body.walk_back(params, cache, g)
    deltas = tuple(d for layer, d in zip(net.layers, back.g_out) if layer.has_params)
    return back.grads, deltas


class Trace(NamedTuple):
    """One forward and backward pass, every layer kept.

    ``a``, ``z``, ``delta`` are laid out by layer with parameters ``l = 1..L`` (tuples, first first):
    ``a^{l-1}`` enters layer ``l``, ``z^l`` leaves it, ``delta^l = dC/dz^l``; for ``fb.mlp`` these are
    the textbook's. ``inputs``, ``outputs`` and ``g_out`` hold the same for every layer of
    ``net.layers``, whatever its kind.

    Attributes:
        C: the batch-mean cost, a scalar.
        a: ``(a^0 = x, a^1, ..., a^{L-1}, yhat)``: the inputs of the layers with parameters, then the output.
        z: ``(z^1, ..., z^L)``: the outputs of the layers with parameters.
        delta: ``(delta^1, ..., delta^L)``, ``delta^l = dC/dz^l``, shaped like ``z^l``.
        grads: ``dC/dparams``, shaped like params.
        inputs: per layer of ``net.layers``, what it received, ``(N, *in_shape)``.
        outputs: per layer, what it gave, ``(N, *out_shape)``.
        g_out: per layer, ``dC/d output``.
    """

    C: jax.Array
    a: tuple
    z: tuple
    delta: tuple
    grads: Params
    inputs: tuple = ()
    outputs: tuple = ()
    g_out: tuple = ()


def _trace(net: Network, loss: _losses.Loss, params: Params, x: jax.Array, y: jax.Array) -> Trace:
    yhat, cache = net.forward(params, x)
    C = loss(yhat, y)
    dC_dyhat = loss.grad(yhat, y) / x.shape[0]  # dC/da^L (BP1): the 1/N of the batch mean
    back = net.body.walk_back(params, cache, dC_dyhat)
    outputs = cache.inputs[1:] + (yhat,)
    has = [layer.has_params for layer in net.layers]
    pick = lambda seq: tuple(item for item, h in zip(seq, has) if h)
    a = pick(cache.inputs) + (yhat,)
    return Trace(C, a, pick(outputs), pick(back.g_out), back.grads, cache.inputs, outputs, back.g_out)


_ARGS = """
    Args:
        params: the network's params (for ``fb.mlp``, one ``{"W", "b"}`` dict per dense layer); their
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

    require_layer_methods(net, "fb.per_example_grads", readouts=("per_example_grads",))

    def grads_n(params, x, y):
        yhat, cache = net.forward(params, x)
        return net.body.per_example_grads(params, cache, loss.grad(yhat, y))

    doc = (
        "The gradient of each example's loss ``l_n`` (not divided by N).\n"
        + _ARGS
        + "\n    Returns:\n        A tree shaped like params with a leading N axis on every leaf; its mean "
        "over axis 0 is ``fb.backprop``'s gradient.\n" + _RAISES
    )
    return checked(net, loss, grads_n, doc=doc)


def _unit_seeds(net: Network, x: jax.Array) -> jax.Array:
    """``e_k`` in every row, for each output unit ``k``: ``(n_out, N, n_out)``."""
    n, n_out = x.shape[0], net.n_out
    return jnp.broadcast_to(jnp.eye(n_out, dtype=x.dtype)[:, None, :], (n_out, n, n_out))


def jacobian_rows(net: Network, params: Params, x: jax.Array) -> Params:
    """The Jacobian of the outputs, ``d yhat_nk / d theta``, by Marquardt backpropagation.

    Marquardt backpropagation (Hagan & Menhaj 1994): one backward pass per output unit ``k``, seeded
    with ``dyhat/dyhat_k = e_k`` in every row, so ``delta^L = f^L'(z^L) * e_k``; the passes share one
    forward and run together (``vmap`` over ``k``); each layer keeps its per-example gradients.

    Args:
        net: the network.
        params: its parameters.
        x: inputs ``(N, *input_shape)`` (not checked: the raw pass; ``fb.jacobian`` checks).

    Returns:
        A tree shaped like params whose leaves gain leading ``(N, n_out)`` axes
        (``W: (N, n_out, fan_out, fan_in)``).
    """
    yhat, cache = net.forward(params, x)
    rows = jax.vmap(lambda e_k: net.body.per_example_grads(params, cache, e_k))(_unit_seeds(net, x))
    return jax.tree.map(lambda leaf: jnp.moveaxis(leaf, 0, 1), rows)


def jacobian_gram(net: Network, params: Params, x: jax.Array, cache=None) -> jax.Array:
    """``K = J J^T: (N, n_out, N, n_out)`` from the layers' unit-seeded deltas, without forming ``J``
    where a layer factorises its part (x: (N, *input_shape); ``cache``: forward's, when the caller has it).

    A dense layer's Jacobian row is an outer product, ``dyhat_nk/dW^l = delta^l_nk a^{l-1}_n^T`` and
    ``dyhat_nk/db^l = delta^l_nk`` (BP4, BP3 started from the unit vector), so the inner product of two rows
    factors: ``<J_nk, J_mj> = sum_l (delta^l_nk . delta^l_mj) (a^{l-1}_n . a^{l-1}_m + 1)``.
    That is ``(N n_out)^2 (fan_in + fan_out)`` multiply-adds a layer instead of
    ``(N n_out)^2 fan_in fan_out`` (``Dense.jacobian_gram``). A layer without a ``jacobian_gram`` of its
    own adds ``R R^T`` of its rows ``R`` (``per_example_grads`` seeded with unit vectors).

    Args:
        net: the network.
        params: its parameters.
        x: inputs ``(N, *input_shape)`` (not checked).
        cache: ``forward(net, params, x)[1]`` when the caller has it (default: computed).

    Returns:
        ``K: (N, n_out, N, n_out)``, ``K[n, k, m, j] = <dyhat_nk/dtheta, dyhat_mj/dtheta>``.
    """
    cache = net.forward(params, x)[1] if cache is None else cache
    return net.body.jacobian_gram(params, cache, _unit_seeds(net, x))
