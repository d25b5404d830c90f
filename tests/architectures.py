"""Every hand-written quantity of a network beside its autodiff twin, for any architecture.

``twins(net, params, x, y, loss)`` returns ``{name: (hand_written, autodiff)}``; the tests assert
each pair agrees to 1e-10 relative in float64 (through ``fb.compare``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from problems import targets

import fbackprop as fb
from fbackprop.layer_checks import _leaf_dicts


def _blocks_of(M, params):
    """The diagonal blocks of a ``(P, P)`` matrix, one per layer with parameters (leaf layers, in order)."""
    sizes = [sum(leaf.size for leaf in jax.tree.leaves(entry)) for entry in _leaf_dicts(params)]
    cuts = np.cumsum([0] + sizes)
    return [M[a:b, a:b] for a, b in zip(cuts[:-1], cuts[1:])]


def problem(net, n=5, loss="squared_error", seed=0):
    """``(params, x, y)`` for ``net``: fresh params with biases moved off zero (no unit exactly at a
    relu kink or in a max-pooling tie), ``x: (n, *input_shape)`` normal, targets of ``loss``'s form."""
    kp, kx, ky, kb = jax.random.split(jax.random.key(seed), 4)
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(kb, p.shape, p.dtype), net.init(kp))
    x = jax.random.normal(kx, (n,) + net.input_shape)
    return params, x, targets(ky, loss, n, net.n_out)


def twins(net, params, x, y, loss, *, key=None, per_example=True, curvature=True):
    """``{name: (hand-written, autodiff)}`` for every quantity fbackprop writes by hand."""
    key = jax.random.key(0) if key is None else key
    v = jax.tree.map(lambda p: jax.random.normal(key, p.shape, p.dtype), params)
    apply = net.apply
    out = {"gradient": (fb.backprop(net, loss)(params, x, y), fb.autodiff(apply, loss)(params, x, y))}
    C_hand, _ = fb.value_and_backprop(net, loss)(params, x, y)
    out["cost"] = (C_hand, fb.value_and_autodiff(apply, loss)(params, x, y)[0])
    if per_example:
        out["per_example_grads"] = (
            fb.per_example_grads(net, loss)(params, x, y),
            jax.vmap(lambda xn, yn: jax.grad(lambda p: _loss_n(apply, loss, p, xn, yn))(params))(
                x, jnp.asarray(y)
            ),
        )
    rows = fb.jacobian(net)(params, x)
    out["jacobian"] = (rows, fb.jacobian(apply, method="autodiff")(params, x))
    out["jacobian_gram"] = (
        fb.jacobian_gram(net)(params, x),
        fb.jacobian_gram(apply, method="autodiff")(params, x),
    )
    out["hvp"] = (
        fb.hvp(net, loss, method="backprop")(params, x, y, v),
        fb.hvp(apply, loss, method="autodiff")(params, x, y, v),
    )
    if curvature:
        H = fb.hessian(apply, loss)(params, x, y)
        G = fb.ggn(apply, loss)(params, x, y)
        unflat = fb.flatten(params)[1]
        out["hessian_diag"] = (fb.hessian_diag(net, loss)(params, x, y), unflat(jnp.diag(H)))
        out["ggn_diag"] = (fb.ggn_diag(net, loss)(params, x, y), unflat(jnp.diag(G)))
        out["ggn_diag factored"] = (fb.ggn_diag(net, loss, factored=True)(params, x, y), unflat(jnp.diag(G)))
        out["hessian_diag chunked"] = (
            fb.hessian_diag(net, loss, chunk_size=2)(params, x, y),
            unflat(jnp.diag(H)),
        )
        out["hessian_blocks"] = (
            jax.tree.leaves(fb.hessian_blocks(net, loss)(params, x, y)),
            _blocks_of(H, params),
        )
        out["ggn_blocks"] = (
            jax.tree.leaves(fb.hessian_blocks(net, loss, exact=False)(params, x, y)),
            _blocks_of(G, params),
        )
    return out


def _loss_n(apply, loss, p, xn, yn):
    """``l_n``: the loss of one example (the batch mean of a batch of one)."""
    return fb.losses.get(loss)(apply(p, xn[None]), yn[None])


def assert_twins_agree(net, params, x, y, loss, rtol=1e-10, **kwargs):
    """Every pair of ``twins`` within ``rtol`` (``fb.compare``), naming the quantity that is not.

    All of them run in one compiled program (the public functions inline under an outer ``jit``):
    one compilation instead of one per quantity.
    """
    y = jnp.asarray(y)
    pairs = jax.jit(lambda p, xx, yy: twins(net, p, xx, yy, loss, **kwargs))(params, x, y)
    for name, (hand, auto) in pairs.items():
        report = fb.compare(hand, auto, rtol=rtol)
        assert report.ok(), f"{name}:\n{report}"
