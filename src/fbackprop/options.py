"""Options: one rule for each kind of scalar argument, and the cache of transformations.

Every public function reads its integer, real and choice options through ``as_int``, ``as_float``
and ``check_choice``, so an ``epochs=2.5`` or a ``method="autodif"`` gets the same clear error
(naming the argument, what was expected and what came) wherever it is passed.
``cached_transformation`` keeps ``(model, loss, *options) -> function`` factories on their
hashable arguments, so a transformation written inline compiles once.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def as_int(value: Any, name: str, *, minimum: int | None = 1, maximum: int | None = None) -> int:
    """``value`` as a Python int: Python, NumPy and 0-d JAX integers are accepted (anything with
    ``__index__``), bools and floats are refused, and ``minimum <= value <= maximum`` is checked.

    Args:
        value: what the user passed.
        name: the argument's name, for messages (``"epochs"``).
        minimum: the smallest value accepted (default 1; ``None``: no bound).
        maximum: the largest value accepted (default ``None``: no bound).

    Returns:
        The value as a Python ``int`` (hashable and equal across integer types).

    Raises:
        TypeError: naming ``name``, what was expected and what came, for a non-integer.
        ValueError: likewise, for an integer out of range.
    """
    if isinstance(value, (bool, np.bool_)) or (
        hasattr(value, "dtype") and not jnp.issubdtype(value.dtype, jnp.integer)
    ):
        raise TypeError(f"{name} must be an integer; got {value!r} ({type(value).__name__})")
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{name} must be a concrete integer (it fixes a shape or a loop length); got a traced value"
        )
    try:
        out = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer; got {value!r} ({type(value).__name__})") from None
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        lo = "-inf" if minimum is None else minimum
        hi = "inf" if maximum is None else maximum
        raise ValueError(f"{name} must be an integer from {lo} to {hi}; got {out}")
    return out


def as_float(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    open_min: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a Python float in range: any real number, NumPy or 0-d JAX scalar (not a bool or str).

    Args:
        value: what the user passed.
        name: the argument's name, for messages.
        minimum: the lower bound (default ``None``: none).
        maximum: the upper bound, inclusive (default ``None``: none).
        open_min: refuse ``minimum`` itself (``> minimum`` rather than ``>=``; default False).
        finite: refuse infinities (default True); NaN is always refused.

    Returns:
        The value as a Python ``float``.

    Raises:
        TypeError: for a non-number (naming ``name``, what was expected and what came).
        ValueError: for NaN, an infinity when ``finite``, or a value out of range.
    """
    if isinstance(value, (bool, np.bool_, str, bytes)) or isinstance(value, jax.core.Tracer):
        kind = "concrete real number" if isinstance(value, jax.core.Tracer) else "real number"
        raise TypeError(f"{name} must be a {kind}; got {value!r} ({type(value).__name__})")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number; got {value!r} ({type(value).__name__})") from None
    if np.isnan(out) or (finite and not np.isfinite(out)):
        raise ValueError(
            f"{name} must be a finite number; got {out}"
            if finite
            else f"{name} must be a real number, not NaN; got {out}"
        )
    below = minimum is not None and (out <= minimum if open_min else out < minimum)
    if below or (maximum is not None and out > maximum):
        lo = "(" if open_min else "["
        raise ValueError(
            f"{name} must lie in {lo}{'-inf' if minimum is None else minimum}, "
            f"{'inf' if maximum is None else maximum}]; got {out}"
        )
    return out


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """``value`` must be one of ``choices`` (strings, usually).

    Args:
        value: what the user passed.
        name: the argument's name, for messages.
        choices: the accepted values.

    Returns:
        ``value``.

    Raises:
        ValueError: listing ``choices`` and showing what came.
    """
    try:
        ok = value in choices
    except TypeError:  # an unhashable value against a set
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value


def cached_transformation(factory):
    """Cache a transformation ``(model, loss, *options) -> function`` on its (hashable) arguments.

    ``fb.backprop(net, loss)(params, x, y)`` written inline then reuses one compiled program, as
    ``jax.jit`` does for one function: equal networks (``fb.mlp`` with equal arguments), the same loss
    and equal options give the same function object. Unhashable arguments (a model held in a list,
    say) skip the cache: each such call builds, and compiles, anew.

    Args:
        factory: the transformation to cache.

    Returns:
        The cached factory, with ``cache_info()`` and ``cache_clear()``.
    """
    cache = functools.lru_cache(maxsize=256)(factory)

    @functools.wraps(factory)
    def get(*args, **kwargs):
        try:
            hash((args, tuple(sorted(kwargs.items()))))
        except TypeError:
            return factory(*args, **kwargs)
        return cache(*args, **kwargs)

    get.cache_info, get.cache_clear = cache.cache_info, cache.cache_clear
    return get
