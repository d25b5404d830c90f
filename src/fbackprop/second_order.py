"""Hand-written curvature: the R-operator on the backward pass, and second-order backpropagation.

Everything is of the batch-mean cost ``C = (1/N) sum_n l_n`` (the package's convention: one example
per row, the cost the mean of the per-example losses) unless its name says per-example (then of
``l_n``, without the ``1/N``).

**Hessian-vector product by the R-operator** (Pearlmutter 1994). ``R{q} = d/dr q(theta + r v)``
at ``r = 0``, applied to every line of the forward and backward passes of ``backprop.py``:

    R{z^l} = R{a^{l-1}} W^T + a^{l-1} V_W^T + v_b,     R{a^l} = f'(z^l) * R{z^l},      R{a^0} = 0
    R{dC/da^L} = loss.hvp(a^L, y, R{a^L}) / N
    R{delta^l} = f''(z^l) * R{z^l} * dC/da^l + f'(z^l) * R{dC/da^l}
    R{dC/da^{l-1}} = R{delta^l} W + delta^l V_W
    R{dC/dW^l} = R{delta^l}^T a^{l-1} + (delta^l)^T R{a^{l-1}},    R{dC/db^l} = sum_n R{delta^l}

and ``H v = R{dC/dtheta}``: one forward and one backward pass more than the gradient.

**Second-order backpropagation** (the backward recursion of the curvature: Bishop 1992; the
layer-wise Hessian backpropagation of Dangel, Harmeling & Hennig 2020), per example, with
``H^l = d2C/dz^l dz^l`` and ``A^l = d2C/da^l da^l``:

    A^L = loss.hessian(a^L, y) / N
    H^l = f'(z^l) f'(z^l)^T * A^l + diag(f''(z^l) * dC/da^l)
    A^{l-1} = (W^l)^T H^l W^l

``z^l = W^l a^{l-1} + b^l`` is linear in ``W^l, b^l``, so the block of the Hessian of layer l's own
parameters is exact: ``d2C/dW_ij dW_kl = sum_n a_nj H^l_n,ik a_nl``; its diagonal is
``sum_n a_nj^2 H^l_n,ii``. Dropping the ``f''`` term gives the generalized Gauss-Newton matrix
``J^T H_loss J`` (``J = d a^L / d theta``) instead.

Any layer kind takes part through its own ``backward2`` (``fbackprop.layers``): a convolution or a
pooling layer, linear in its input, passes ``A = J^T H J`` (its backward applied to the columns of
``H``); a layer norm adds its second-derivative term; a residual block adds the cross terms. The
walk and the readouts are ``Serial``'s (``layers/serial.py``).

Memory: ``H`` is dense per example over a layer's flattened output, ``(N, n_l, n_l)`` with ``n_l``
the feature count (``H*W*C`` for a feature map), so ``O(N max_l n_l^2)``; ``chunk_size`` bounds it
to ``O(chunk_size max_l n_l^2)`` by summing over chunks of examples (a 8x8x8 feature map: 2 MB per
example in float64).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import losses as _losses
from .factory_docs import _V, function_doc
from .layers.network import Network, Params
from .losses.registry import require_hessian_sqrt
from .streaming import streamable, unstreamable
from .validate import as_int, cached_transformation, checked, require_layer_methods, require_network


def chunk_option(chunk_size) -> int | None:
    """Check a ``chunk_size`` option.

    Args:
        chunk_size: ``None`` (the whole batch at once) or an integer >= 1 (NumPy/JAX integers too).

    Returns:
        ``None`` or a Python int.
    """
    return None if chunk_size is None else as_int(chunk_size, "chunk_size")


def _bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return value


@cached_transformation
def hvp_backprop(net: Network, loss: str | _losses.Loss):
    """The Hessian-vector product by the R-operator on the hand-written passes (Pearlmutter 1994).

    Args:
        net: an fbackprop ``Network``; for an ``apply`` callable use ``fb.hvp(apply, loss,
            method="autodiff")``.
        loss: a loss name or ``fb.losses.Loss``.

    Returns:
        ``(params, x, y, v) -> H v``, ``H = d2C/dtheta^2``, shaped like params (compiled; cached on
        ``(net, loss)``, so inline calls compile once).
    """
    net = require_network(
        net, 'fb.hvp(net, loss, method="backprop")', 'fb.hvp(apply, loss, method="autodiff")'
    )
    loss = _losses.get(loss)

    require_layer_methods(
        net,
        'fb.hvp(net, loss, method="backprop")',
        passes=("forward_r", "backward_r"),
        alternative='fb.hvp(net.apply, loss, method="autodiff")',
    )

    def hv(params, x, y, v):
        n = x.shape[0]
        yhat, cache = net.forward(params, x)
        r_yhat, r_cache = net.body.forward_r(params, v, cache, None)  # R{x} = 0: the input does not move
        g, r_g = loss.grad(yhat, y) / n, loss.hvp(yhat, y, r_yhat) / n
        return net.body.walk_back(params, cache, g, v=v, r_cache=r_cache, r_g=r_g).r_grads

    return streamable(
        net,
        loss,
        hv,
        what="fb.hvp",
        vectors=1,
        doc=function_doc(
            "``H v`` for ``H = d2C/dtheta^2``, by the R-operator on the hand-written passes "
            "(Pearlmutter 1994).",
            "``H v``, shaped like params.",
            _V,
            streams=True,
        ),
    )


def curvature_read(
    net: Network, loss: _losses.Loss, name: str, params: Params, x, y, n_total: int, exact: bool
):
    """Second-order backprop over a batch (module docstring), a readout at every layer; unchecked, traceable.

    Args:
        net: the network.
        loss: the loss (a ``Loss``).
        name: the readout: ``"hessian_diag"``, ``"per_example_hessian_diag"`` or ``"hessian_block"``.
        params: its params.
        x: inputs ``(n, *input_shape)`` (the batch or a chunk of it).
        y: prepared targets ``(n, n_out)``.
        n_total: the N of the batch mean (the whole batch's, when ``x`` is a chunk of it; 1 for ``l_n``).
        exact: keep the ``f''`` terms (the Hessian) or drop them (the GGN).

    Returns:
        The readout of every layer with parameters, laid out like params.
    """
    yhat, cache = net.forward(params, x)
    g, A = loss.grad(yhat, y) / n_total, loss.hessian(yhat, y) / n_total  # dC/dyhat, d2C/dyhat^2
    return getattr(net.body, name)(params, cache, A, g, exact)


def _chunked_sum(fn, x, y, chunk_size: int | None):
    """``fn(x_chunk, y_chunk)`` summed over chunks of at most ``chunk_size`` (>= 1) rows (``lax.scan``)."""
    n = x.shape[0]
    if chunk_size is None or chunk_size >= n:
        return fn(x, y)
    k = n // chunk_size
    head = k * chunk_size
    xs = x[:head].reshape((k, chunk_size) + x.shape[1:])
    ys = y[:head].reshape((k, chunk_size) + y.shape[1:])
    total = jax.lax.scan(
        lambda acc, xy: (jax.tree.map(jnp.add, acc, fn(*xy)), None),
        jax.tree.map(jnp.zeros_like, jax.eval_shape(fn, xs[0], ys[0])),
        (xs, ys),
    )[0]
    return total if head == n else jax.tree.map(jnp.add, total, fn(x[head:], y[head:]))


def factored_ggn_read(
    net: Network, loss: _losses.Loss, params: Params, x, y, n_total: int, per_example: bool
):
    """The GGN diagonal from a factor of the loss Hessian, never forming a per-example ``H`` (Dangel,
    Kunstner & Hennig 2020, BackPACK's DiagGGN); unchecked, traceable.

    With ``H_n = S_n S_n^T`` at the output (``loss.hessian_sqrt``, ``C = n_out`` columns), the GGN of
    ``l_n`` is ``sum_c (J_n^T s_nc)(J_n^T s_nc)^T``, and ``J_n^T s_nc`` is the per-example gradient of a
    backward pass seeded with ``s_nc``: its diagonal is ``sum_c (per_example_grads seeded by s_c)^2``.
    Memory ``O(C N n)`` for the walk (``n`` the largest layer output) instead of ``O(N n^2)``.

    Args:
        net: the network.
        loss: the loss (with ``hessian_sqrt``).
        params: its params.
        x: inputs ``(n, *input_shape)``.
        y: prepared targets ``(n, n_out)``.
        n_total: the N of the batch mean (1 for ``l_n``).
        per_example: keep one diagonal per example (leading N axis) instead of their sum.

    Returns:
        The diagonal, laid out like params.
    """
    yhat, cache = net.forward(params, x)
    S = loss.hessian_sqrt(yhat, y) / jnp.sqrt(jnp.asarray(n_total, yhat.dtype))  # (n, n_out, C)
    square = (lambda t: t * t) if per_example else (lambda t: jnp.sum(t * t, axis=0))

    def read(layer, theta, c, g, H):
        return jax.tree.map(square, layer.per_example_grads(theta, c, g))

    reads = jax.vmap(lambda s: net.body.walk_back(params, cache, s, readout=read).reads)(
        jnp.moveaxis(S, 2, 0)
    )
    return jax.tree.map(lambda r: jnp.sum(r, axis=0), reads)  # the sum over the factor's columns


def diag_core(
    net: Network,
    loss: _losses.Loss,
    exact: bool,
    chunk_size: int | None = None,
    per_example: bool = False,
    factored: bool = False,
):
    """The unchecked ``(params, x, y) ->`` Hessian (``exact``) or GGN diagonal, for use inside other programs.

    Args:
        net: the network.
        loss: the loss (a ``Loss``).
        exact: the Hessian's diagonal (``True``) or the GGN's (``False``).
        chunk_size: examples per chunk, or ``None`` for the whole batch at once.
        per_example: the diagonals of each ``l_n`` (leading N axis) instead of C's.
        factored: (GGN only) from a factor of the loss Hessian (``factored_ggn_read``) instead of
            second-order backpropagation of ``H``.

    Returns:
        ``(params, x, y) -> diag``, shaped like params.
    """
    name = "per_example_hessian_diag" if per_example else "hessian_diag"

    def read(params, x, y, n):
        if factored:
            return factored_ggn_read(net, loss, params, x, y, n, per_example)
        return curvature_read(net, loss, name, params, x, y, n, exact)

    def diag(params, x, y):
        if per_example:  # of l_n: the 1/N of the mean left out
            return read(params, x, y, 1)
        n = x.shape[0]
        return _chunked_sum(lambda xc, yc: read(params, xc, yc, n), x, y, chunk_size)

    return diag


_DIAG_ALTERNATIVE = {
    "hessian_diag": "jnp.diag(fb.hessian(apply, loss)(params, x, y)) (dense, small nets), or "
    'fb.hutchinson_diag with fb.hvp(apply, loss, method="autodiff") (an estimate)',
    "ggn_diag": "jnp.diag(fb.ggn(apply, loss)(params, x, y)) (dense, small nets), or "
    "fb.hutchinson_diag with fb.ggn_vp(apply, loss) (an estimate)",
}


def _diag(net, loss, what: str, exact: bool, chunk_size: int | None, per_example: bool, factored=False):
    net = require_network(net, f"fb.{what}", _DIAG_ALTERNATIVE[what])
    factored = _bool(factored, "factored")
    readout = "per_example_hessian_diag" if per_example else "hessian_diag"
    require_layer_methods(
        net,
        f"fb.{what}",
        passes=() if factored else ("backward2",),
        readouts=("per_example_grads",) if factored else (readout,),
        alternative=_DIAG_ALTERNATIVE[what].replace("apply", "net.apply"),
    )
    loss, chunk_size = _losses.get(loss), chunk_option(chunk_size)
    if factored:
        require_hessian_sqrt(loss, f"fb.{what}(factored=True)")
    per_example = _bool(per_example, "per_example")
    name = "Hessian" if exact else "generalized Gauss-Newton matrix"
    of = "each per-example loss l_n" if per_example else "the batch-mean cost C"
    shape = "shaped like params with a leading N axis on every leaf" if per_example else "shaped like params"
    doc = function_doc(
        f"The exact diagonal of the {name} of {of}, by second-order backpropagation.",
        f"The diagonal, {shape} (``fb.flatten``'s order when flattened).",
        streams=not per_example,
    )
    core = diag_core(net, loss, exact, chunk_size, per_example, factored)
    if per_example:
        why = "per_example=True returns one row per example; call it on each chunk's arrays instead"
        return unstreamable(checked(net, loss, core, doc=doc), f"fb.{what}(per_example=True)", why)
    return streamable(net, loss, core, what=f"fb.{what}", doc=doc)


@cached_transformation
def hessian_diag(
    net: Network, loss: str | _losses.Loss, chunk_size: int | None = None, per_example: bool = False
):
    """The exact diagonal of the Hessian ``d2C/dtheta^2`` by second-order backpropagation.

    Args:
        net: an fbackprop ``Network`` (hand-written over its layers).
        loss: a loss name or ``fb.losses.Loss``.
        chunk_size: examples per chunk, an integer >= 1, or ``None`` (default: the whole batch at
            once); memory ``O(chunk_size n^2)``, ``n`` the largest flattened layer output (``H*W*C``
            for a feature map). On feature maps small chunks are also faster on CPU (a CNN at
            P ~ 1e4: ``chunk_size=1`` 2-4x faster than the whole batch of 64).
        per_example: ``True``: the diagonals of each ``l_n``'s Hessian (without the 1/N), leaves
            with a leading N axis; default ``False``.

    Returns:
        ``(params, x, y) -> diag``, shaped like params (compiled; cached on the arguments, so
        inline calls compile once).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> d = fb.hessian_diag(net, "squared_error")(params, x, y)
        >>> H = fb.hessian(net, "squared_error")(params, x, y)
        >>> bool(jnp.allclose(fb.flatten(d)[0], jnp.diag(H)))
        True
    """
    return _diag(net, loss, "hessian_diag", True, chunk_size, per_example)


@cached_transformation
def ggn_diag(
    net: Network,
    loss: str | _losses.Loss,
    chunk_size: int | None = None,
    per_example: bool = False,
    factored: bool = False,
):
    """The exact diagonal of the generalized Gauss-Newton matrix ``G = J^T H_loss J / N``
    (Schraudolph 2002): second-order backpropagation without the ``f''`` term.

    Args:
        net: an fbackprop ``Network``.
        loss: a loss name or ``fb.losses.Loss``.
        chunk_size: examples per chunk, an integer >= 1, or ``None`` (default: the whole batch).
        per_example: ``True``: each ``l_n``'s GGN diagonal, leaves with a leading N axis; default ``False``.
        factored: ``True``: propagate the ``n_out`` columns of a factor ``S`` of the loss Hessian
            (``H = S S^T``) backward instead of ``H`` itself, as BackPACK does (Dangel, Kunstner &
            Hennig 2020): memory ``O(N n_out n)`` instead of ``O(N n^2)`` (``n`` the largest flattened
            layer output), the better route for wide feature maps and few outputs; same numbers.

    Returns:
        ``(params, x, y) -> diag``, shaped like params (compiled; cached on the arguments).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> d = fb.ggn_diag(net, "squared_error")(params, x, y)   # shaped like params
        >>> d[0]["W"].shape
        (3, 2)
    """
    return _diag(net, loss, "ggn_diag", False, chunk_size, per_example, factored)


@cached_transformation
def hessian_blocks(net: Network, loss: str | _losses.Loss, chunk_size: int | None = None, exact: bool = True):
    """The exact diagonal blocks of the Hessian, one per layer with parameters, by second-order backprop.

    Args:
        net: an fbackprop ``Network``.
        loss: a loss name or ``fb.losses.Loss``.
        chunk_size: examples per chunk, an integer >= 1, or ``None`` (default: the whole batch).
        exact: ``True`` (default) the Hessian's blocks; ``False`` the GGN's.

    Returns:
        ``(params, x, y) -> blocks``: a tuple with one ``(P_l, P_l)`` matrix per dense layer (W
        and b jointly, W row-major then b, as ``fb.flatten`` orders them; compiled, cached).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> blocks = fb.hessian_blocks(net, "squared_error")(params, x, y)
        >>> [B.shape for B in blocks]   # W and b of each layer jointly
        [(9, 9), (4, 4)]
    """
    net = require_network(net, "fb.hessian_blocks", "fb.hessian(apply, loss) (dense; its diagonal blocks)")
    loss, chunk_size, exact = _losses.get(loss), chunk_option(chunk_size), _bool(exact, "exact")

    require_layer_methods(
        net,
        "fb.hessian_blocks",
        passes=("backward2",),
        readouts=("hessian_block",),
        alternative="fb.hessian(net.apply, loss)",
    )

    def blocks(params, x, y):
        n = x.shape[0]
        return _chunked_sum(
            lambda xc, yc: curvature_read(net, loss, "hessian_block", params, xc, yc, n, exact),
            x,
            y,
            chunk_size,
        )

    name = "Hessian" if exact else "generalized Gauss-Newton matrix"
    return streamable(
        net,
        loss,
        blocks,
        what="fb.hessian_blocks",
        doc=function_doc(
            f"The diagonal blocks of the {name} of C, one per layer with parameters, by second-order "
            "backpropagation.",
            "A tuple of ``(P_l, P_l)`` matrices laid out like params (W row-major, then b).",
            streams=True,
        ),
    )
