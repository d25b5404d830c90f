"""Activation functions with hand-written first and second derivatives.

Each activation is an ``Activation(name, f, df, d2f)`` of elementwise functions of the
pre-activation ``z`` (any shape): ``a = f(z)``, ``f'(z)`` and ``f''(z)``. The first
derivative enters the backward recursion (BP2) of backpropagation (Rumelhart, Hinton & Williams
1986): ``delta^{l-1} = f'(z^{l-1}) * (delta^l @ W^l)``; the second enters the recursion of
second-order backpropagation for the Hessian's diagonal blocks (Bishop 1992; Dangel, Harmeling
& Hennig 2020): ``H^l = f'(z^l) f'(z^l)^T * A^l + diag(f''(z^l) * dC/da^l)``.

All three are finite for |z| up to 1e4 in float32 and float64: exponentials only ever see
arguments that cannot overflow (``sigmoid(-z)`` instead of ``1 - sigmoid(z)``,
``expm1(min(z, 0))`` instead of ``expm1(z)`` under a ``where``), so no inf ever meets a
zero. ``jax.grad`` of each ``f`` is the reference the tests compare ``df`` and ``d2f`` with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

Elementwise = Callable[[jax.Array], jax.Array]


class Activation(NamedTuple):
    """An elementwise activation ``a = f(z)`` with its hand-written ``f'(z)`` and ``f''(z)``.

    Attributes:
        name: the name ``get`` and ``fb.mlp`` know it by.
        f: ``z -> f(z)``, elementwise, any shape.
        df: ``z -> f'(z)``, same shape.
        d2f: ``z -> f''(z)``, same shape.
    """

    name: str
    f: Elementwise
    df: Elementwise
    d2f: Elementwise


def _sigmoid_pair(z):
    """``(sigmoid(z), sigmoid(-z))``: both accurate, and ``s(z) s(-z)`` has no cancellation."""
    return jax.nn.sigmoid(z), jax.nn.sigmoid(-z)


# --- identity -----------------------------------------------------------------------------
identity = Activation(
    "identity",
    f=lambda z: z,
    df=lambda z: jnp.ones_like(z),
    d2f=lambda z: jnp.zeros_like(z),
)


# --- sigmoid: s' = s(1 - s), s'' = s'(1 - 2s) ---------------------------------------------
def _sigmoid_df(z):
    s, t = _sigmoid_pair(z)
    return s * t


def _sigmoid_d2f(z):
    s, t = _sigmoid_pair(z)
    return s * t * (t - s)


sigmoid = Activation("sigmoid", jax.nn.sigmoid, _sigmoid_df, _sigmoid_d2f)


# --- tanh: t' = 1 - t^2, t'' = -2 t (1 - t^2) -----------------------------------------------
def _tanh_df(z):
    t = jnp.tanh(z)
    return 1 - t * t


def _tanh_d2f(z):
    t = jnp.tanh(z)
    return -2 * t * (1 - t * t)


tanh = Activation("tanh", jnp.tanh, _tanh_df, _tanh_d2f)


# --- relu and leaky_relu (derivative at the kink: the right-hand one for z > 0 only) -------
relu = Activation(
    "relu",
    f=lambda z: jnp.maximum(z, 0),
    df=lambda z: (z > 0).astype(z.dtype),
    d2f=lambda z: jnp.zeros_like(z),
)

LEAKY_SLOPE = 0.01  # jax.nn.leaky_relu's default negative slope


leaky_relu = Activation(
    "leaky_relu",
    f=lambda z: jnp.where(z >= 0, z, LEAKY_SLOPE * z),
    df=lambda z: jnp.where(z > 0, 1.0, LEAKY_SLOPE).astype(z.dtype),
    d2f=lambda z: jnp.zeros_like(z),
)


# --- softplus: log(1 + e^z); derivative sigmoid(z) ------------------------------------------
softplus = Activation("softplus", jax.nn.softplus, jax.nn.sigmoid, _sigmoid_df)


# --- swish (SiLU): z s(z); f' = s + z s', f'' = 2 s' + z s'' -------------------------------
def _swish_df(z):
    s, t = _sigmoid_pair(z)
    return s * (1 + z * t)


def _swish_d2f(z):
    s, t = _sigmoid_pair(z)
    ds = s * t
    return ds * (2 + z * (t - s))


swish = Activation("swish", lambda z: z * jax.nn.sigmoid(z), _swish_df, _swish_d2f)


# --- mish: z tanh(softplus(z)); with u = softplus(z), u' = s, sech^2 u = 1 - tanh^2 u -------
def _mish_parts(z):
    s, t = _sigmoid_pair(z)
    th = jnp.tanh(jax.nn.softplus(z))
    sech2 = 1 - th * th
    return s, t, th, sech2


def _mish_df(z):
    s, _, th, sech2 = _mish_parts(z)
    return th + z * sech2 * s  # tanh(u) + z sech^2(u) u'


def _mish_d2f(z):
    s, t, th, sech2 = _mish_parts(z)
    # d/dz [sech^2(u) s] = sech^2(u) (s t - 2 tanh(u) s^2), with s' = s t
    return 2 * sech2 * s + z * sech2 * s * (t - 2 * th * s)


mish = Activation("mish", lambda z: z * jnp.tanh(jax.nn.softplus(z)), _mish_df, _mish_d2f)


# --- gaussian: e^{-z^2}; f' = -2 z f, f'' = (4 z^2 - 2) f ----------------------------------
def _gaussian(z):
    return jnp.exp(-z * z)


gaussian = Activation(
    "gaussian",
    f=_gaussian,
    df=lambda z: -2 * z * _gaussian(z),
    d2f=lambda z: (4 * z * z - 2) * _gaussian(z),
)


# --- elu (alpha = 1): z for z > 0, e^z - 1 otherwise -------------------------------------
def _exp_neg_part(z):
    """``e^{min(z, 0)}``: never overflows, so the unused branch of ``where`` stays finite."""
    return jnp.exp(jnp.minimum(z, 0))


elu = Activation(
    "elu",
    # where, not minimum, for the safe argument: at z = 0 JAX differentiates minimum as half of each
    # side, which would make autodiff's f'(0) = 0.5 where both one-sided derivatives are 1
    f=lambda z: jnp.where(z > 0, z, jnp.expm1(jnp.where(z > 0, 0.0, z))),
    df=lambda z: jnp.where(z > 0, 1.0, _exp_neg_part(z)).astype(z.dtype),
    d2f=lambda z: jnp.where(z > 0, 0.0, _exp_neg_part(z)).astype(z.dtype),
)


# --- gelu (exact): z Phi(z); f' = Phi + z phi, f'' = phi (2 - z^2) ---------------------------
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _normal_pdf(z):
    return _INV_SQRT_2PI * jnp.exp(-0.5 * z * z)


gelu = Activation(
    "gelu",
    f=lambda z: z * ndtr(z),
    df=lambda z: ndtr(z) + z * _normal_pdf(z),
    d2f=lambda z: _normal_pdf(z) * (2 - z * z),
)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a for a in (identity, sigmoid, tanh, relu, leaky_relu, softplus, swish, mish, gaussian, elu, gelu)
}

#: Points where f' (relu, leaky_relu) or f'' (elu) jumps; derivative tests avoid them.
KINKS: dict[str, tuple[float, ...]] = {"relu": (0.0,), "leaky_relu": (0.0,), "elu": (0.0,)}


def get(activation: str | Activation) -> Activation:
    """Look an activation up by name, or pass an ``Activation`` through.

    Args:
        activation: a name from ``ACTIVATIONS`` (``"sigmoid"``, ``"tanh"``, ``"relu"``, ...) or an
            ``Activation(name, f, df, d2f)``.

    Returns:
        The ``Activation``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str) and activation in ACTIVATIONS:
        return ACTIVATIONS[activation]
    raise ValueError(
        f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)} "
        "or an fbackprop.activations.Activation"
    )
