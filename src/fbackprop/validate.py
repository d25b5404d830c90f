"""Checks at the API boundary: clear errors from static shapes and dtypes, never an XLA trace.

Every public function that takes ``(params, x, y)`` runs these before it calls its compiled
core. They read only shapes and dtypes, which are static under ``jit`` (so they cost nothing
there), except the range of integer class labels, which is checked whenever the labels are
concrete arrays (not tracers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

if TYPE_CHECKING:  # pragma: no cover
    from .losses import Loss
    from .nets import Network


def check_x(x: Any, n_in: int | None = None) -> jax.Array:
    """``x`` must be a non-empty real floating ``(N, n_in)`` batch."""
    x = x if isinstance(x, jax.Array) else jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"x must be a real floating-point array (float32 or float64); got dtype {x.dtype}. "
            "Convert it, e.g. x.astype(jnp.float32)"
        )
    width = "n_in" if n_in is None else n_in
    if x.ndim != 2:
        raise ValueError(
            f"x must have shape (N, {width}) (one example per row); got shape {tuple(x.shape)}. "
            "For a single example use x[None, :]"
        )
    if n_in is not None and x.shape[1] != n_in:
        raise ValueError(
            f"x has {x.shape[1]} features but the network expects {n_in}: "
            f"expected shape (N, {n_in}), got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"x is an empty batch: shape {tuple(x.shape)}; expected at least one row")
    return x


def check_params(net: "Network", params: Any) -> None:
    """``params`` must be the tuple of ``{"W", "b"}`` dicts with the shapes ``net`` needs."""
    dense = net.dense
    sizes = list(net.sizes)
    if not isinstance(params, (tuple, list)) or len(params) != len(dense):
        got = (f"a {type(params).__name__} of length {len(params)}"
               if isinstance(params, (tuple, list)) else f"a {type(params).__name__}")
        raise ValueError(
            f"params must be a tuple of {len(dense)} dicts {{'W', 'b'}} for a network of sizes {sizes}; got {got}"
        )
    for i, (layer, theta) in enumerate(zip(dense, params)):
        if not isinstance(theta, dict) or set(theta) != {"W", "b"}:
            keys = sorted(theta) if isinstance(theta, dict) else type(theta).__name__
            raise ValueError(f"params[{i}] must be a dict with keys ['W', 'b']; got {keys}")
        for key, shape in (("W", (layer.n_out, layer.n_in)), ("b", (layer.n_out,))):
            got = tuple(jnp.shape(theta[key]))
            if got != shape:
                raise ValueError(
                    f"params[{i}]['{key}'] has shape {got} but a network of sizes {sizes} needs {shape}: "
                    "were these params made for another network?"
                )


def check_inputs(net: "Network", params: Any, x: Any) -> jax.Array:
    """Both of the above; returns ``x`` as an array."""
    check_params(net, params)
    return check_x(x, net.n_in)


def check_targets(loss: "Loss", y: Any, n_examples: int, n_out: int, dtype: Any) -> jax.Array:
    """``y`` in the ``(N, n_out)`` form ``loss`` takes, in ``x``'s float ``dtype``, with x's N rows."""
    y = loss.prepare(y, n_out).astype(dtype)
    if y.shape[0] != n_examples:
        raise ValueError(
            f"y has {y.shape[0]} rows but x has {n_examples}: one target per example is expected "
            f"(y of shape ({n_examples}, {n_out}){' or integer labels (N,)' if loss.name == 'cross_entropy' else ''})"
        )
    return y


def is_network(model: Any) -> bool:
    from .nets import Network

    return isinstance(model, Network)


def as_apply(model: Any):
    """``apply(params, x)`` of a Network, or the callable itself (a Flax/Equinox apply works)."""
    if is_network(model):
        return model.apply
    if callable(model):
        return model
    raise TypeError(f"expected an fbackprop Network or an apply(params, x) callable; got {type(model).__name__}")


def require_network(model: Any, what: str) -> "Network":
    """Hand-written derivatives walk the layers, so they need a Network, not any callable."""
    if not is_network(model):
        raise TypeError(
            f"{what} is hand-written over the network's layers and needs an fbackprop Network "
            f"(from fb.mlp); got {type(model).__name__}. For any apply(params, x) callable use fb.autodiff"
        )
    return model


def check_call(model: Any, loss: "Loss", params: Any, x: Any, y: Any) -> tuple[jax.Array, jax.Array]:
    """Validate ``(params, x, y)`` for ``model`` and ``loss``; returns ``x`` and the prepared ``y``."""
    if is_network(model):
        x = check_inputs(model, params, x)
        n_out = model.n_out
    else:
        x = check_x(x)
        out = jax.eval_shape(model, params, x)
        if len(out.shape) != 2:
            raise ValueError(f"apply(params, x) must return (N, n_out); it returned shape {out.shape}")
        n_out = out.shape[1]
    return x, check_targets(loss, y, x.shape[0], n_out, x.dtype)


def check_like(v: Any, params: Any, name: str = "v") -> None:
    """A tangent ``v`` (for ``H v``) must have the tree structure and leaf shapes of ``params``."""
    want, got = jax.tree.structure(params), jax.tree.structure(v)
    if want != got:
        raise ValueError(f"{name} must be shaped like params, with structure {want}; got {got}")
    for (path, p), w in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(v)):
        if jnp.shape(w) != jnp.shape(p):
            raise ValueError(f"{name}{jax.tree_util.keystr(path)} has shape {tuple(jnp.shape(w))}; "
                             f"params{jax.tree_util.keystr(path)} has {tuple(jnp.shape(p))}")


def checked(model: Any, loss: "Loss", core, vectors: int = 0):
    """The public ``(params, x, y, *args) -> ...`` function: the checks above, then ``jit(core)``.

    ``vectors``: how many of ``args`` are tangents that must be shaped like params (``v`` of ``H v``).
    """
    compiled = jax.jit(core)

    def fn(params, x, y, *args):
        x, y = check_call(model, loss, params, x, y)
        for v in args[:vectors]:
            check_like(v, params)
        return compiled(params, x, y, *args)

    fn.__doc__ = core.__doc__
    return fn
