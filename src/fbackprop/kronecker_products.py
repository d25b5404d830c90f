"""Products with Kronecker factors and their damped inverses (Martens & Grosse 2015; George et al. 2018).

For a layer's ``V = [W | b]`` (``as_wb``: a ``(fan_out, fan_in + 1)`` matrix, ``W`` flattened per row):

    kron(G, A) vec(V) = vec(G V A)                                          (kfac_vp)
    (G + (sqrt(lam)/pi) I)^-1 (x) (A + pi sqrt(lam) I)^-1,
        pi = sqrt((tr A / dim A) / (tr G / dim G))   (sec. 6.3)               (kfac_inverse)
    (U_G (x) U_A) diag(S) (U_G (x) U_A)^T vec(V) = vec(U_G (S * (U_G^T V U_A)) U_A^T)   (ekfac_vp)

The factors come from ``fbackprop.kronecker`` (``fb.kfac_factors``, ``fb.ekfac_factors``); ``v`` is
shaped like params, one ``{"W", "b"}`` per layer with parameters, checked against the factors' sizes
before any arithmetic.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg

from .kronecker import EKFactors, as_wb, is_factors
from .layers.base import KFactors
from .options import as_float


def _per_layer(fn, factors, v):
    """``fn(layer_factors, layer_v)`` at every layer with parameters (nested blocks included)."""
    layers = jax.tree.structure(factors, is_leaf=is_factors)
    if layers != jax.tree.structure(v, is_leaf=lambda t: isinstance(t, dict)):
        raise ValueError(
            "factors and v must have one entry per layer with parameters, in the same tree; got factors "
            f"{layers} and v {jax.tree.structure(v)}"
        )
    jax.tree.map(_checked_layer, factors, v, is_leaf=is_factors)  # every layer, before any arithmetic
    return jax.tree.map(fn, factors, v, is_leaf=is_factors)


def _checked_layer(f, t: dict) -> dict:
    """``t``, a layer's ``{"W", "b"}``, after checking it against its factors' sizes (static shapes)."""
    out, inp = (f.G.shape[0], f.A.shape[0]) if isinstance(f, KFactors) else (f.U_G.shape[0], f.U_A.shape[0])
    shapes = {k: tuple(getattr(a, "shape", ())) for k, a in t.items()} if isinstance(t, dict) else t
    W = shapes.get("W", ()) if isinstance(shapes, dict) else ()
    if not (
        set(shapes) == {"W", "b"}
        and shapes["b"] == (out,)
        and W[:1] == (out,)
        and math.prod(W[1:]) == inp - 1
    ):
        raise ValueError(
            f"a layer's tangent must be {{'W': ({out}, ...) with {inp - 1} entries a row, 'b': ({out},)}} "
            f"to match its factors; got {shapes}"
        )
    return t


def _sandwich(L: jax.Array, M: jax.Array, R: jax.Array) -> jax.Array:
    """``L M R`` at full precision."""
    hi = jax.lax.Precision.HIGHEST
    return jnp.matmul(jnp.matmul(L, M, precision=hi), R, precision=hi)


def _positive(damping, name: str = "damping"):
    """``damping``, refused unless a number > 0 (a traced value passes unchecked)."""
    if isinstance(damping, jax.core.Tracer):
        return damping
    return as_float(damping, name, minimum=0.0, open_min=True)


def _from_wb(M: jax.Array, like: dict) -> dict:
    return {"W": M[:, :-1].reshape(like["W"].shape), "b": M[:, -1]}


def kfac_vp(factors: Any, v: Any) -> Any:
    """``kron(G, A) v`` layer by layer: ``G [V_W | v_b] A`` (module docstring).

    Args:
        factors: ``fb.kfac_factors``' result (or ``kfac_inverse``'s).
        v: a tangent shaped like params.

    Returns:
        The product, shaped like ``v``.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> f = fb.kfac_factors(net, "squared_error")(params, x, y)
        >>> fb.kfac_vp(f, params)[1]["W"].shape
        (1, 3)
    """
    return _per_layer(lambda f, t: _from_wb(_sandwich(f.G, as_wb(t), f.A), t), factors, v)


def _damped_inverse(M: jax.Array, d) -> jax.Array:
    """``(M + d I)^-1`` of a symmetric positive semidefinite ``M``, ``d > 0``, by a Cholesky factorisation."""
    eye = jnp.eye(M.shape[0], dtype=M.dtype)
    return jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(M + d * eye, lower=True), eye)


def kfac_inverse(factors: Any, damping) -> Any:
    """The damped inverse factors ``(A + pi sqrt(lam) I)^-1`` and ``(G + sqrt(lam)/pi I)^-1`` by Cholesky
    factorisations (Martens & Grosse 2015, sec. 6.3: ``pi = sqrt((tr A / dim A) / (tr G / dim G))``, and
    1 when a factor is zero, a dead layer or a perfect fit, which keeps the inverse finite), for ``kfac_vp``.

    Args:
        factors: ``fb.kfac_factors``' result.
        damping: ``lam > 0``, the Tikhonov damping of the whole block.

    Returns:
        ``KFactors`` of the inverses, laid out like ``factors``.

    Examples:
        >>> A, G = 2.0 * jnp.eye(3), jnp.eye(2)
        >>> inv = fb.kfac_inverse((fb.KFactors(A, G),), 1e-2)
        >>> round(float(inv[0].A[0, 0] * inv[0].G[0, 0] * (2 + 0.1 * 2**0.5) * (1 + 0.1 / 2**0.5)), 12)
        1.0
    """

    damping = _positive(damping)

    def inverse(f):
        root = jnp.sqrt(jnp.asarray(damping, f.A.dtype))
        tA, tG = jnp.trace(f.A) / f.A.shape[0], jnp.trace(f.G) / f.G.shape[0]
        pi = jnp.where(
            (tA > 0) & (tG > 0), jnp.sqrt(tA / jnp.where(tG > 0, tG, 1.0)), 1.0
        )  # 1 for a zero factor
        return KFactors(_damped_inverse(f.A, pi * root), _damped_inverse(f.G, root / pi))

    return jax.tree.map(inverse, factors, is_leaf=is_factors)


def kfac_inverse_vp(factors: Any, v: Any, damping) -> Any:
    """``v`` through the damped inverse of ``kron(G, A)``: ``kfac_vp(kfac_inverse(factors, damping), v)``.

    Args:
        factors: ``fb.kfac_factors``' result.
        v: a tangent shaped like params (a gradient, for the K-FAC direction).
        damping: ``lam > 0``.

    Returns:
        The product, shaped like ``v``.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> f = fb.kfac_factors(net, "squared_error")(params, x, y)
        >>> fb.kfac_inverse_vp(f, params, 1e-3)[0]["b"].shape
        (3,)
    """
    return kfac_vp(kfac_inverse(factors, damping), v)


def _in_basis(f: EKFactors, t: dict, scale) -> dict:
    """``U_G (scale(S) * (U_G^T [W | b] U_A)) U_A^T``."""
    return _from_wb(_sandwich(f.U_G, scale(f.S) * _sandwich(f.U_G.T, as_wb(t), f.U_A), f.U_A.T), t)


def ekfac_vp(factors: Any, v: Any) -> Any:
    """``(U_G (x) U_A) diag(S) (U_G (x) U_A)^T v`` layer by layer: ``U_G (S * (U_G^T V U_A)) U_A^T``.

    Args:
        factors: ``fb.ekfac_factors``' result.
        v: a tangent shaped like params.

    Returns:
        The product, shaped like ``v``.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> f = fb.ekfac_factors(net, "squared_error")(params, x, y)
        >>> fb.ekfac_vp(f, params)[0]["W"].shape
        (3, 2)
    """
    return _per_layer(lambda f, t: _in_basis(f, t, lambda S: S), factors, v)


def ekfac_inverse_vp(factors: Any, v: Any, damping) -> Any:
    """``v`` through the inverse of EKFAC's block plus ``lam I``: the scales become ``1 / (S + lam)``.

    Args:
        factors: ``fb.ekfac_factors``' result.
        v: a tangent shaped like params.
        damping: ``lam > 0``.

    Returns:
        The product, shaped like ``v``.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> f = fb.ekfac_factors(net, "squared_error")(params, x, y)
        >>> fb.ekfac_inverse_vp(f, params, 1e-3)[0]["W"].shape
        (3, 2)
    """
    damping = _positive(damping)
    return _per_layer(lambda f, t: _in_basis(f, t, lambda S: 1.0 / (S + damping)), factors, v)
