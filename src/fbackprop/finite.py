"""Finiteness: NaN/Inf in concrete arrays refused with a message naming the leaf and the index.

The finiteness check and ``jit``: outside ``jit`` a NaN or Inf in ``params``, ``x`` or ``y`` is a
``ValueError`` naming the array, the leaf and the first bad index. It costs one fused reduction
computed in the same compiled program as the result (``validate.checked``) or one small program
(``validate.check_call``), and one read of a bool per call. Under ``jit`` (the user's own, or
``jax.jit`` of an fbackprop function) the values are unknown at trace time and are not checked:
non-finite inputs then give non-finite results, and the training loops report a loss that is not
finite at the start through their status (``Status.NONFINITE_START``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(tree: Any) -> bool:
    """True when no leaf of ``tree`` is a tracer (so its values can be read: outside ``jit``).

    Args:
        tree: any pytree.

    Returns:
        ``False`` as soon as one leaf is a ``jax.core.Tracer``.
    """
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


@functools.cache
def _inexact(dtype) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.inexact))


def _dtype(leaf: Any):
    dt = getattr(leaf, "dtype", None)
    return np.dtype(dt) if dt is not None else jnp.result_type(leaf)


def finite_flag(tree: Any) -> jax.Array:
    """``True`` (a 0-d bool array) when every float leaf of ``tree`` is finite: one fused reduction.

    Traceable, so it can run inside a compiled program beside the computation it guards (``checked``
    does this: the check costs one extra output, not one extra dispatch).

    Args:
        tree: a pytree of arrays; integer and bool leaves are skipped.

    Returns:
        A 0-d bool array.
    """
    flags = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree) if _inexact(_dtype(leaf))]
    return jnp.all(jnp.stack(flags)) if flags else jnp.array(True)


_finite_flag = jax.jit(finite_flag)


def host_values(a: Any) -> np.ndarray:
    """``a``'s values as a NumPy array on this host, also when ``a`` spans several processes.

    An array over the devices of several processes (``fb.distributed.global_batch``) is gathered from
    all of them (a collective every process makes), so that each one reads, and refuses, the same rows.

    Args:
        a: an array-like.

    Returns:
        A NumPy array of ``a``'s global shape.
    """
    if isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated:
        from jax.experimental import multihost_utils

        with jax.ensure_compile_time_eval():  # also when read while tracing a closure over ``a``
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)


def _first_nonfinite(tree: Any, name: str) -> str | None:
    """The message for the first leaf of ``tree`` holding NaN/Inf (host side, only on failure)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        arr = host_values(leaf)
        if not _inexact(arr.dtype):
            continue
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0]) if arr.ndim else ()
            count = int(bad.sum())
            return (
                f"{name}{jax.tree_util.keystr(path)} holds {count} non-finite value{'s' * (count > 1)} "
                f"(the first, {arr[where]}, at index {where}); expected finite numbers. fbackprop checks "
                "params, x and y whenever they are concrete (outside jit); under jit they are not checked "
                "and NaN/Inf gives NaN results"
            )
    return None


def raise_nonfinite(named: dict[str, Any]) -> None:
    """Raise the ``ValueError`` of ``check_finite`` for the first named tree holding NaN/Inf.

    Args:
        named: ``{"params": params, "x": x, ...}``, searched in order.

    Raises:
        ValueError: naming the argument, the leaf and the index of the first non-finite value.
    """
    for name, tree in named.items():
        msg = _first_nonfinite(tree, name)
        if msg is not None:
            raise ValueError(msg)
    raise ValueError(f"one of {', '.join(named)} holds a non-finite value; expected finite numbers")


def check_finite(tree: Any, name: str) -> None:
    """Refuse NaN/Inf in ``tree`` when its values are concrete, naming the leaf and the first bad index.

    The common case costs one fused on-device reduction (``finite_flag``) and one read of a bool;
    the index is computed on the host only when something is not finite. NumPy leaves are checked
    with NumPy (no transfer). Under ``jit`` the values are not known at trace time, so nothing is
    checked there: non-finite inputs then give non-finite results (and ``train``/
    ``levenberg_marquardt`` report a non-finite start through their status).

    Args:
        tree: a pytree of arrays (``params``, ``x``, ``y``); integer and bool leaves are skipped.
        name: the argument's name, for the message (``"x"``).

    Raises:
        ValueError: ``"x holds 1 non-finite value (the first, nan, at index (2, 1)); expected finite
            numbers ..."``.
    """
    check_finite_named({name: tree})


def check_finite_named(named: dict[str, Any]) -> None:
    """``check_finite`` for several arguments at once, in one fused reduction.

    Args:
        named: ``{"params": params, "x": x, "y": y}``: the argument names (for the message) and
            their trees. Nothing is checked unless every leaf is concrete.

    Raises:
        ValueError: naming the first argument (in the dict's order) holding NaN/Inf, its leaf and index.
    """
    if not is_concrete(named):
        return
    leaves = [leaf for leaf in jax.tree.leaves(named) if _inexact(_dtype(leaf))]
    host = [leaf for leaf in leaves if not isinstance(leaf, jax.Array)]
    device = [leaf for leaf in leaves if isinstance(leaf, jax.Array)]
    ok = all(np.isfinite(leaf).all() for leaf in host)
    if ok and device:
        flag = _finite_flag(device)
        if isinstance(flag, jax.core.Tracer):  # called while tracing: the arrays are constants of the trace
            flag = all(np.isfinite(np.asarray(leaf)).all() for leaf in device)
        ok = bool(flag)
    if not ok:
        raise_nonfinite(named)
