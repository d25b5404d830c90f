"""Hand-written curvature: the R-operator on the backward pass, and second-order backpropagation.

Everything is of the batch-mean cost ``C = (1/N) sum_n l_n`` (DESIGN.md) unless its name says
per-example (then of ``l_n``, without the ``1/N``).

**Hessian-vector product by the R-operator** (Pearlmutter 1994). ``R{q} = d/dr q(theta + r v)``
at ``r = 0``, applied to every line of the forward and backward passes of ``backprop.py``:

    R{z^l} = R{a^{l-1}} W^T + a^{l-1} V_W^T + v_b,     R{a^l} = f'(z^l) * R{z^l},      R{a^0} = 0
    R{dC/da^L} = loss.hvp(a^L, y, R{a^L}) / N
    R{delta^l} = f''(z^l) * R{z^l} * dC/da^l + f'(z^l) * R{dC/da^l}
    R{dC/da^{l-1}} = R{delta^l} W + delta^l V_W
    R{dC/dW^l} = R{delta^l}^T a^{l-1} + (delta^l)^T R{a^{l-1}},    R{dC/db^l} = sum_n R{delta^l}

and ``H v = R{dC/dtheta}``: one forward and one backward pass more than the gradient.

**Second-order backpropagation** (seeds 000/003, "Second-order gradient descent"), per example,
with ``H^l = d2C/dz^l dz^l`` and ``A^l = d2C/da^l da^l``:

    A^L = loss.hessian(a^L, y) / N
    H^l = f'(z^l) f'(z^l)^T * A^l + diag(f''(z^l) * dC/da^l)
    A^{l-1} = (W^l)^T H^l W^l

``z^l = W^l a^{l-1} + b^l`` is linear in ``W^l, b^l``, so the block of the Hessian of layer l's own
parameters is exact: ``d2C/dW_ij dW_kl = sum_n a_nj H^l_n,ik a_nl``; its diagonal is
``sum_n a_nj^2 H^l_n,ii``. Dropping the ``f''`` term gives the generalized Gauss-Newton matrix
``J^T H_loss J`` (``J = d a^L / d theta``) instead. Memory: ``H^l`` is ``(N, n_l, n_l)``, so
``O(N width^2)`` per layer; ``chunk_size`` bounds it by summing over chunks of examples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import losses as _losses
from .backprop import forward
from .nets import Network, Params, layer_params
from .validate import checked, require_network


def hvp_backprop(net: Network, loss: str | _losses.Loss):
    """``(params, x, y, v) -> H v`` by the R-operator on the hand-written passes (module docstring)."""
    net, loss = require_network(net, "hvp(method='backprop')"), _losses.get(loss)

    def hv(params, x, y, v):
        n = x.shape[0]
        thetas, vs = layer_params(net, params), layer_params(net, v)
        inputs, r_inputs, a, r_a = [], [], x, None
        for layer, theta, v_theta in zip(net.layers, thetas, vs):      # forward and R-forward
            inputs.append(a), r_inputs.append(r_a)
            a, r_a = layer.forward(theta, a), layer.forward_r(theta, v_theta, a, r_a)
        g, r_g = loss.grad(a, y) / n, loss.hvp(a, y, r_a) / n
        Hv = []
        for layer, theta, v_theta, inp, r_inp in reversed(list(zip(net.layers, thetas, vs, inputs, r_inputs))):
            r_g, r_grads = layer.backward_r(theta, v_theta, inp, r_inp, g, r_g)   # uses g before it moves on
            g = layer.backward(theta, inp, g)[0]
            if layer.has_params:
                Hv.append(r_grads)
        return tuple(reversed(Hv))

    return checked(net, loss, hv, vectors=1)


def curvature_walk(net: Network, loss: _losses.Loss, params: Params, x, y, n_total: int, exact: bool):
    """Second-order backprop over a batch: ``[(a^{l-1}, H^l)]`` per dense layer, first first.

    ``n_total`` is the N of the batch mean (the whole batch when ``x`` is one chunk of it).
    """
    yhat, inputs = forward(net, params, x)
    g, A = loss.grad(yhat, y) / n_total, loss.hessian(yhat, y) / n_total
    out = []
    for layer, theta, inp in reversed(list(zip(net.layers, layer_params(net, params), inputs))):
        if layer.has_params:
            out.append((inp, A))                  # A arriving at a dense layer is H^l = d2C/dz^l dz^l
        A = layer.backward2(theta, inp, A, g, exact)  # A^{l-1} = W^T H W, or H = f'f'^T * A + diag(f'' g)
        g = layer.backward(theta, inp, g)[0]      # dC/da^{l-1} (or delta), for the next f'' term
    return out[::-1]


def _chunked_sum(fn, x, y, chunk_size: int | None):
    """``fn(x_chunk, y_chunk)`` summed over chunks of at most ``chunk_size`` rows (``lax.scan``)."""
    n = x.shape[0]
    if chunk_size is None or chunk_size >= n:
        return fn(x, y)
    k = n // chunk_size
    head = k * chunk_size
    xs, ys = x[:head].reshape(k, chunk_size, -1), y[:head].reshape(k, chunk_size, -1)
    total = jax.lax.scan(lambda acc, xy: (jax.tree.map(jnp.add, acc, fn(*xy)), None),
                         jax.tree.map(jnp.zeros_like, jax.eval_shape(fn, xs[0], ys[0])), (xs, ys))[0]
    return total if head == n else jax.tree.map(jnp.add, total, fn(x[head:], y[head:]))


def diag_core(net: Network, loss: _losses.Loss, exact: bool, chunk_size: int | None = None, per_example: bool = False):
    """The unchecked ``(params, x, y) ->`` Hessian (``exact``) or GGN diagonal, for use inside other programs."""
    def diag(params, x, y):
        n = x.shape[0]
        if per_example:        # of l_n: the 1/N of the mean left out
            walk = curvature_walk(net, loss, params, x, y, 1, exact)
            return tuple(layer.per_example_hessian_diag(a, H) for layer, (a, H) in zip(net.dense, walk))

        def chunk(xc, yc):
            walk = curvature_walk(net, loss, params, xc, yc, n, exact)
            return tuple(layer.hessian_diag(a, H) for layer, (a, H) in zip(net.dense, walk))

        return _chunked_sum(chunk, x, y, chunk_size)

    return diag


def _diag(net, loss, what: str, exact: bool, chunk_size: int | None, per_example: bool):
    net, loss = require_network(net, what), _losses.get(loss)
    return checked(net, loss, diag_core(net, loss, exact, chunk_size, per_example))


def hessian_diag(net: Network, loss: str | _losses.Loss, chunk_size: int | None = None, per_example: bool = False):
    """``(params, x, y) -> diag(d2C/dtheta^2)`` shaped like params, exact, by second-order backprop.

    ``chunk_size``: examples per chunk (memory ``O(chunk_size width^2)``); ``per_example=True``:
    the diagonals of each ``l_n``'s Hessian, leaves with a leading N axis.
    """
    return _diag(net, loss, "hessian_diag", True, chunk_size, per_example)


def ggn_diag(net: Network, loss: str | _losses.Loss, chunk_size: int | None = None, per_example: bool = False):
    """``(params, x, y) -> diag(J^T H_loss J)`` (the GGN of C), exact: the recursion without ``f''``."""
    return _diag(net, loss, "ggn_diag", False, chunk_size, per_example)


def hessian_blocks(net: Network, loss: str | _losses.Loss, chunk_size: int | None = None, exact: bool = True):
    """``(params, x, y) ->`` one exact ``(P_l, P_l)`` Hessian block per dense layer (W and b jointly,
    ordered as ``ravel_pytree`` orders ``{"W", "b"}``: W row-major, then b); ``exact=False``: GGN blocks."""
    net, loss = require_network(net, "hessian_blocks"), _losses.get(loss)

    def blocks(params, x, y):
        n = x.shape[0]

        def chunk(xc, yc):
            walk = curvature_walk(net, loss, params, xc, yc, n, exact)
            return tuple(layer.hessian_block(a, H) for layer, (a, H) in zip(net.dense, walk))

        return _chunked_sum(chunk, x, y, chunk_size)

    return checked(net, loss, blocks)
