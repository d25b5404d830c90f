"""Checks at the API boundary: clear errors from static shapes and dtypes, never an XLA trace.

Every public function that takes ``(params, x, y)`` runs these before it calls its compiled
core. Most read only shapes and dtypes, which are static under ``jit`` (so they cost nothing
there). Two read values, and only when the arrays are concrete (outside ``jit``, not tracers):
the range of integer class labels, and NaN/Inf in ``params``, ``x`` and ``y`` (``fbackprop.finite``
says what that costs and what happens under ``jit``).

This module holds the call checks (``check_call``, ``checked`` and the pieces they are made of) and
the dtype rule (``params_dtype``). The scalar options (``as_int``, ``as_float``, ``check_choice``,
``cached_transformation``) live in ``fbackprop.options`` and the finiteness checks in
``fbackprop.finite``; both are re-exported here, so ``from .validate import as_int`` keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

# Re-exports: the options and the finiteness checks live in their own modules; code imports them
# from here (``from .validate import as_int, check_finite``), and that keeps working (``__all__``).
from .finite import _dtype, check_finite, check_finite_named, finite_flag, is_concrete, raise_nonfinite  # noqa: F401
from .inputs import _floating, as_array, check_inputs, check_params, check_x, params_dtype  # noqa: F401
from .layers.base import PASSES, READOUTS
from .layers.network import Network
from .layers.serial import leaves
from .options import as_float, as_int, cached_transformation, check_choice  # noqa: F401

if TYPE_CHECKING:  # pragma: no cover
    from .losses import Loss

__all__ = ["as_apply", "as_array", "check_call", "check_inputs", "check_like", "check_params"]
__all__ += ["check_targets", "check_x", "checked", "is_network", "params_dtype", "require_network"]
__all__ += ["require_layer_methods"]
__all__ += ["as_float", "as_int", "cached_transformation", "check_choice"]  # from fbackprop.options
__all__ += ["check_finite", "check_finite_named", "finite_flag", "is_concrete", "raise_nonfinite"]  # .finite


def check_targets(loss: Loss, y: Any, n_examples: int, n_out: int, dtype: Any) -> jax.Array:
    """``y`` in the ``(N, n_out)`` form ``loss`` takes, in ``x``'s float ``dtype``, with x's N rows.

    Args:
        loss: the ``Loss`` (its ``prepare`` checks the target form).
        y: the targets.
        n_examples: N, the rows of ``x``.
        n_out: the model's output width.
        dtype: the computation's dtype.

    Returns:
        ``y: (N, n_out)`` in ``dtype``.
    """
    y = loss.prepare(y, n_out)
    if y.dtype != dtype:
        y = y.astype(dtype)
    if y.shape[0] != n_examples:
        raise ValueError(
            f"y has {y.shape[0]} rows but x has {n_examples}: one target per example is expected "
            f"(y of shape ({n_examples}, {n_out})"
            f"{' or integer labels (N,)' if loss.name == 'cross_entropy' else ''})"
        )
    return y


def is_network(model: Any) -> bool:
    """Whether ``model`` is an fbackprop ``Network`` (rather than an ``apply`` callable).

    Args:
        model: anything.

    Returns:
        A bool.
    """
    return isinstance(model, Network)


def as_apply(model: Any):
    """``apply(params, x)`` of a Network, or the callable itself (a Flax/Equinox apply works).

    Args:
        model: a ``Network`` or a callable.

    Returns:
        The ``(params, x) -> yhat`` function.

    Raises:
        TypeError: for anything else.
    """
    if is_network(model):
        return model.apply
    if callable(model):
        return model
    raise TypeError(
        f"expected an fbackprop Network or an apply(params, x) callable; got {type(model).__name__}"
    )


def require_network(model: Any, what: str, alternative: str = "fb.autodiff(apply, loss)") -> Network:
    """Hand-written derivatives walk the network's layers, so they need a Network, not any callable.

    Args:
        model: what the user passed.
        what: the function refusing it (``"fb.backprop"``).
        alternative: the call that does accept ``model`` (``'fb.hvp(apply, loss, method="autodiff")'``).

    Returns:
        ``model``, when it is a Network.

    Raises:
        TypeError: saying what came and naming ``alternative``.
    """
    if not is_network(model):
        raise TypeError(
            f"{what} is hand-written over the network's layers and needs an fbackprop Network "
            f"(from fb.mlp or fb.serial); got {model!r}. For any apply(params, x) callable use {alternative}"
        )
    return model


SIGNATURES = {**PASSES, **READOUTS}  # each method's signature, for the message that asks for it


def require_layer_methods(net: Network, what: str, passes=(), readouts=(), alternative: str | None = None):
    """Every layer of ``net`` must have the ``passes`` and every layer with parameters the ``readouts``.

    Args:
        net: the network.
        what: the function that needs them (``"fb.hessian_diag"``).
        passes: method names every layer needs (``"backward2"``).
        readouts: method names every layer with parameters needs (``"hessian_diag"``).
        alternative: a call that works without them (autodiff), named in the message.

    Raises:
        TypeError: naming the first layer that lacks one and the method (with its signature) to add.
    """
    for name, layer in leaves(net.body):
        needed = tuple(passes) + (tuple(readouts) if layer.has_params else ())
        for method in needed:
            if not callable(getattr(layer, method, None)):
                kind = type(layer).__name__
                instead = f", or use {alternative}" if alternative else ""
                which = " with parameters" if method in readouts else ""
                raise TypeError(
                    f"{what} needs {method} on every layer{which}; {name} has none: add "
                    f"{kind}.{SIGNATURES.get(method, method)} (see fbackprop.layers.base){instead}"
                )


def check_call(
    model: Any, loss: Loss, params: Any, x: Any, y: Any, *, finite: bool = True
) -> tuple[jax.Array, jax.Array]:
    """Validate ``(params, x, y)`` for ``model`` and ``loss``; returns ``x`` and the prepared ``y``.

    Args:
        model: a ``Network`` or an ``apply(params, x)`` callable.
        loss: a ``Loss``.
        params: the parameters; their (one, floating) dtype is the computation's dtype.
        x: ``(N, n_in)`` floating inputs, cast to the params' dtype.
        y: targets in any form ``loss.prepare`` accepts.
        finite: also refuse NaN/Inf in concrete ``params``, ``x`` and ``y`` (``check_finite``).

    Returns:
        ``(x, y)``: ``x: (N, n_in)`` and ``y: (N, n_out)``, both in the params' dtype.
    """
    from .streaming import stream_of  # streaming checks its chunks with this module

    if stream_of(x, y, "x") is not None:
        raise TypeError(
            "this function needs the whole batch at once and cannot take data given as chunks "
            "(fb.Chunks): those stream through fb.levenberg_marquardt (solver='accumulate' or 'cg') and the "
            "curvature products and diagonals (fbackprop.streaming); pass the arrays x and y"
        )
    dtype = params_dtype(params)
    if dtype is not None and hasattr(x, "dtype") and _floating(_dtype(x)) and _dtype(x) != dtype:
        x = as_array(x, dtype)  # the params' dtype is the computation's dtype
    if not isinstance(y, (jax.Array, jax.core.Tracer)):
        y = as_array(y)  # placed without compiling (loss.prepare takes it from here)
    if is_network(model):
        x = check_inputs(model, params, x)
        n_out = model.n_out
    else:
        x = check_x(x, input_shape="any")
        out = jax.eval_shape(model, params, x)
        if len(out.shape) != 2:
            raise ValueError(f"apply(params, x) must return (N, n_out); it returned shape {out.shape}")
        n_out = out.shape[1]
    y = check_targets(loss, y, x.shape[0], n_out, x.dtype)
    if finite:
        check_finite_named({"params": params, "x": x, "y": y})
    return x, y


def check_val(model: Any, loss: Loss, params: Any, val: Any, *, finite: bool = True):
    """Validation data: ``None``, or a pair ``(x_val, y_val)`` checked as the training data are.

    Args:
        model: a ``Network`` or an ``apply(params, x)`` callable.
        loss: a ``Loss``.
        params: the parameters (their dtype is the computation's).
        val: ``None`` or ``(x_val, y_val)``.
        finite: also refuse NaN/Inf in concrete ``x_val``/``y_val`` (as ``check_call``).

    Returns:
        ``None``, or ``(x_val, y_val)`` prepared as ``check_call`` prepares ``(x, y)``.

    Raises:
        TypeError: ``val`` is not a pair; ``TypeError``/``ValueError`` from ``check_call``, prefixed ``val:``.
    """
    if val is None:
        return None
    if not isinstance(val, (tuple, list)) or len(val) != 2:
        if isinstance(val, (tuple, list)):
            got = f"a {type(val).__name__} of length {len(val)}"
        elif hasattr(val, "shape"):
            got = f"an array of shape {tuple(np.shape(val))}"
        else:
            got = f"{val!r} ({type(val).__name__})"
        raise TypeError(
            f"val must be a pair (x_val, y_val) of validation inputs and targets, or None; got {got}"
        )
    try:
        return check_call(model, loss, params, *val, finite=finite)
    except (TypeError, ValueError) as err:
        raise type(err)(f"val: {err}") from None


def check_like(v: Any, params: Any, name: str = "v") -> None:
    """A tangent ``v`` (for ``H v``) must have the tree structure and leaf shapes of ``params``.

    Args:
        v: the tangent.
        params: the parameters it must be shaped like.
        name: its name in messages.

    Raises:
        ValueError: naming the first leaf of another structure or shape.
    """
    want, got = jax.tree.structure(params), jax.tree.structure(v)
    if want != got:
        raise ValueError(f"{name} must be shaped like params, with structure {want}; got {got}")
    for (path, p), w in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(v)):
        if jnp.shape(w) != jnp.shape(p):
            raise ValueError(
                f"{name}{jax.tree_util.keystr(path)} has shape {tuple(jnp.shape(w))}; "
                f"params{jax.tree_util.keystr(path)} has {tuple(jnp.shape(p))}"
            )


def checked(model: Any, loss: Loss, core, vectors: int = 0, doc: str | None = None):
    """The public ``(params, x, y, *args) -> ...`` function: the checks above, then ``jit(core)``.

    With concrete inputs the finiteness check runs inside the same compiled program as ``core``
    (one dispatch, one extra bool output), and a NaN/Inf in ``params``, ``x``, ``y`` or a tangent
    raises ``ValueError`` naming it; under an outer ``jit`` only the static checks run.

    Args:
        model: a ``Network`` or an ``apply(params, x)`` callable.
        loss: a ``Loss``.
        core: ``(params, x, y, *args) -> result``, traceable.
        vectors: how many of ``args`` are tangents that must be shaped like params (``v`` of ``H v``).
        doc: the returned function's docstring (with ``Args:``/``Returns:``), shown by ``help()``.

    Returns:
        The checked, compiled function.
    """
    compiled = jax.jit(core)
    guarded = jax.jit(
        lambda params, x, y, *args: (core(params, x, y, *args), finite_flag((params, x, y, args[:vectors])))
    )

    def fn(params, x, y, *args):
        x, y = check_call(model, loss, params, x, y, finite=False)
        for v in args[:vectors]:
            check_like(v, params)
        if not is_concrete((params, x, y, args)):
            return compiled(params, x, y, *args)
        out, ok = guarded(params, x, y, *args)
        if not bool(ok):
            named = {"params": params, "x": x, "y": y}
            named.update({"v" if vectors == 1 else f"v{i}": v for i, v in enumerate(args[:vectors])})
            raise_nonfinite(named)
        return out

    fn.__doc__ = doc if doc is not None else core.__doc__
    return fn
