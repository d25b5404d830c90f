"""Weight initializers for dense layers: ``(key, (fan_out, fan_in), dtype) -> (W, b)``.

``fb.mlp(..., init=NAME)`` picks one from ``INITIALIZERS`` by name (Glorot & Bengio 2010; He et al.
2015; LeCun et al. 1998; the uniform ``[-1, 1]`` of the classic NumPy tutorial).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp


def _uniform(key, shape, dtype):
    """W and b uniform on [-1, 1] (``2 * random - 1``, as the classic NumPy backpropagation tutorial)."""
    kw, kb = jax.random.split(key)
    return (
        jax.random.uniform(kw, shape, dtype, -1.0, 1.0),
        jax.random.uniform(kb, shape[:1], dtype, -1.0, 1.0),
    )


def _glorot(key, shape, dtype):
    """Glorot (Xavier) uniform: ``U[-r, r]``, ``r = sqrt(6 / (fan_in + fan_out))``; b = 0."""
    r = math.sqrt(6.0 / (shape[0] + shape[1]))
    return jax.random.uniform(key, shape, dtype, -r, r), jnp.zeros(shape[:1], dtype)


def _he(key, shape, dtype):
    """He (Kaiming) normal: ``N(0, 2 / fan_in)``, for relu-like layers; b = 0."""
    std = math.sqrt(2.0 / shape[1])
    return std * jax.random.normal(key, shape, dtype), jnp.zeros(shape[:1], dtype)


def _lecun(key, shape, dtype):
    """LeCun normal: ``N(0, 1 / fan_in)``; b = 0."""
    std = math.sqrt(1.0 / shape[1])
    return std * jax.random.normal(key, shape, dtype), jnp.zeros(shape[:1], dtype)


INITIALIZERS: dict[str, Callable] = {
    "uniform": _uniform,
    "glorot": _glorot,
    "he": _he,
    "lecun": _lecun,
}
