"""The checks of ``params`` and ``x`` against a network's shapes, and the dtype rule.

They read only static shapes and dtypes (free under ``jit``). A network's expected parameters come
from ``jax.eval_shape`` of its ``init`` (``net.param_shapes``), so nothing here knows a layer kind.
``fbackprop.validate`` builds the whole call check (targets, finiteness) on top of these.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .finite import _dtype


def params_dtype(params: Any, name: str = "params") -> Any:
    """The one floating dtype every leaf of ``params`` must share: it is the computation's dtype.

    The rule for the whole package: ``x`` and float targets are cast to this dtype at the boundary;
    integer, complex or mixed-precision parameter leaves are refused (an integer leaf would never
    learn).

    Args:
        params: the parameter pytree.
        name: its name in messages.

    Returns:
        The dtype (``None`` for a tree without leaves).

    Raises:
        TypeError: for a non-floating leaf or for leaves of different dtypes.
    """
    leaves = jax.tree.leaves(params)
    dtypes = {_dtype(leaf) for leaf in leaves}
    if len(dtypes) == 1 and _floating(next(iter(dtypes))):  # the common case, without paths
        return next(iter(dtypes))
    found = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        dt = _dtype(leaf)
        if not _floating(dt):
            raise TypeError(
                f"{name}{jax.tree_util.keystr(path)} has dtype {dt}; parameters must be real floating "
                "point (float32 or float64): cast them, e.g. with "
                "jax.tree.map(lambda p: p.astype(jnp.float32), params)"
            )
        found.setdefault(jnp.dtype(dt).name, jax.tree_util.keystr(path))
    if len(found) > 1:
        raise TypeError(
            f"{name} mixes dtypes {found} (dtype: first leaf with it); use one floating dtype for every leaf"
        )
    return jnp.dtype(next(iter(found))) if found else None


@functools.cache
def _floating(dtype) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.floating))


def check_x(x: Any, n_in: int | None = None, *, input_shape: tuple | None = None) -> jax.Array:
    """``x`` must be a non-empty real floating batch: ``(N, n_in)``, or ``(N, *input_shape)``.

    Args:
        x: the inputs (any array-like).
        n_in: the width a model on vectors expects (``None``: any).
        input_shape: one example's shape a network expects (overrides ``n_in``; ``None``: a 2-D batch;
            ``"any"``: any shape of two axes or more, for a model that does not say).

    Returns:
        ``x`` as a JAX array (placed without compiling, see ``as_array``).

    Raises:
        TypeError: for a non-floating dtype.
        ValueError: for another rank or shape, or no rows.
    """
    if not hasattr(x, "dtype"):
        x = np.asarray(x)
    dtype = _dtype(x)
    if not _floating(dtype):
        raise TypeError(
            f"x must be a real floating-point array (float32 or float64); got dtype {dtype}. "
            "Convert it, e.g. x.astype(jnp.float32)"
        )
    if input_shape == "any":  # a model of unknown input shape: one example per leading row
        if x.ndim < 2:
            raise ValueError(
                f"x must have shape (N, n_in) or (N, *example_shape), one example per leading row; got shape "
                f"{tuple(x.shape)}. For a single example use x[None]"
            )
        input_shape = tuple(x.shape[1:])
    if input_shape is not None and len(input_shape) == 1:
        n_in, input_shape = input_shape[0], None
    if input_shape is not None:
        want = "(N, " + ", ".join(map(str, input_shape)) + ")"
        if x.ndim != len(input_shape) + 1:
            raise ValueError(
                f"x must have shape {want} (one example per leading row); got shape {tuple(x.shape)}. "
                "For a single example use x[None]"
            )
        if tuple(x.shape[1:]) != tuple(input_shape):
            raise ValueError(
                f"x has examples of shape {tuple(x.shape[1:])} but the network expects {tuple(input_shape)}: "
                f"expected shape {want}, got {tuple(x.shape)}"
            )
    else:
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
    return as_array(x)


def as_array(a: Any, dtype: Any = None) -> jax.Array:
    """``a`` as a JAX array (of ``dtype`` if given) without compiling anything for host data.

    ``jnp.asarray`` of a NumPy array compiles a small program per shape; NumPy data is cast on the
    host and placed with ``jax.device_put`` instead. JAX arrays and tracers pass through (cast if needed).

    Args:
        a: an array-like.
        dtype: the dtype wanted (``None``: keep ``a``'s).

    Returns:
        A JAX array (or the tracer).
    """
    if isinstance(a, (jax.Array, jax.core.Tracer)):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    return jax.device_put(np.asarray(a) if dtype is None else np.asarray(a, dtype))


def _got(value) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(value)}"
    return f"a {type(value).__name__}"


def _owner(name) -> str:
    """The layer a ``layer_names()`` entry names: itself, or the combinator holding a tuple of names."""
    return name if isinstance(name, str) else _owner(name[0]).rsplit(" > ", 1)[0]


def _check_entry(want, got, path: str, name, mlp_desc=None) -> None:
    """``got`` against the expected tree ``want`` (``ShapeDtypeStruct`` leaves) at ``params{path}``;
    ``name`` is the matching ``layer_names()`` entry (``mlp_desc()`` replaces it for an ``fb.mlp``).
    The layer's description is only written out for a message."""
    owner = lambda: mlp_desc() if mlp_desc else _owner(name)
    if isinstance(want, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            raise ValueError(
                f"params{path} must be a tuple of {len(want)} entries (the params of {owner()}'s layers); "
                f"got {_got(got)}"
            )
        for i, (w, g) in enumerate(zip(want, got)):
            _check_entry(w, g, f"{path}[{i}]", name[i], mlp_desc)
    elif isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            keys = sorted(got) if isinstance(got, dict) else type(got).__name__
            raise ValueError(f"params{path} must be a dict with keys {sorted(want)}; got {keys}")
        for key in sorted(want):
            _check_entry(want[key], got[key], f"{path}['{key}']", name, mlp_desc)
    elif not isinstance(want, jax.ShapeDtypeStruct):  # another pytree (an Equinox module, say)
        if jax.tree.structure(got) != jax.tree.structure(want):
            raise ValueError(
                f"params{path} must have the tree structure {jax.tree.structure(want)}; "
                f"got {jax.tree.structure(got)}"
            )
        for i, (w, g) in enumerate(zip(jax.tree.leaves(want), jax.tree.leaves(got))):
            _check_entry(w, g, f"{path} leaf {i}", name, mlp_desc)
    elif tuple(jnp.shape(got)) != tuple(want.shape):
        raise ValueError(
            f"params{path} has shape {tuple(jnp.shape(got))} but {owner()} needs {tuple(want.shape)}: "
            "were these params made for another network?"
        )


def check_params(net: Any, params: Any) -> None:
    """``params`` must have the structure and leaf shapes of ``net.init``'s (read by ``jax.eval_shape``).

    Args:
        net: the network (its ``param_shapes``, ``layer_names()``).
        params: what the user passed as its parameters.

    Raises:
        ValueError: naming the first entry or leaf of the wrong structure or shape, and the layer.
    """
    want = net.param_shapes
    mlp = net.is_mlp
    desc = (lambda: f"a network of sizes {list(net.sizes)}") if mlp else (lambda: "the network")
    if not isinstance(params, (tuple, list)) or len(params) != len(want):
        what = (
            f"{len(want)} dicts {{'W', 'b'}}"
            if mlp
            else f"{len(want)} entries, one per layer with parameters"
        )
        raise ValueError(f"params must be a tuple of {what} for {desc()}; got {_got(params)}")
    for i, (w, g, name) in enumerate(zip(want, params, net.layer_names())):
        _check_entry(w, g, f"[{i}]", name, desc if mlp else None)  # desc() only for a message


def check_inputs(net: Any, params: Any, x: Any) -> jax.Array:
    """``check_params`` and ``check_x`` for a network.

    Args:
        net: the network.
        params: its parameters.
        x: the inputs.

    Returns:
        ``x`` as a JAX array.
    """
    check_params(net, params)
    return check_x(x, input_shape=net.input_shape)
