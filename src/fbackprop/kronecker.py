"""Kronecker-factored curvature read off the backward pass: K-FAC, KFC and EKFAC.

For a dense layer ``z = W a + b`` the gradient of one example is ``g_n abar_n^T`` (``abar = [a, 1]``,
``g_n = dl_n/dz_n``), so its curvature block over ``[W | b]`` (read as a ``(fan_out, fan_in + 1)``
matrix, flattened row-major) is ``(1/N) sum_n (g_n g_n^T) (x) (abar_n abar_n^T)``, and K-FAC
(Martens & Grosse 2015) approximates the mean of the products by the product of the means:

    A = (1/N) sum_n abar_n abar_n^T          (the layer's inputs, from the forward pass)
    G = (1/N) sum_n sum_k g_nk g_nk^T        (its output gradients, from the backward pass)
    block ~ kron(G, A)

The ``K`` columns ``g_nk`` of each example come from backward passes seeded at the output:

- ``"exact"`` (KFLR, Botev, Ritter & Barber 2017): the ``K = n_out`` columns of a square root of
  the loss Hessian, ``d2l_n/dyhat^2 = sum_k s_nk s_nk^T``; ``kron(G, A)`` then approximates the GGN,
  and is its block exactly for one example (``N = 1``).
- ``"fisher"``: ``dl_n/dyhat`` at targets drawn from the model's predictive distribution (``loss.sample``,
  ``n_samples`` draws each weighted ``1/n_samples``): an unbiased estimate of ``"exact"``'s ``G``.
- ``"empirical"``: ``dl_n/dyhat`` at the data's targets (the empirical Fisher's factor).

A convolution (KFC, Grosse & Martens 2016) has one row per output position: ``A`` sums its patches
over the ``T`` positions of an example, ``G`` averages over them (``layers.base.kron_factors``).

Products: ``kron(G, A) vec(V) = vec(G V A)`` for ``V = [W | b]`` (``kfac_vp``); the damped inverse
``(G + (sqrt(lam)/pi) I)^-1 (x) (A + pi sqrt(lam) I)^-1`` with Martens & Grosse's (2015, sec. 6.3)
``pi = sqrt((tr A / dim A) / (tr G / dim G))`` (``kfac_inverse``, ``kfac_inverse_vp``). EKFAC (George
et al. 2018) keeps the eigenbases ``U_A, U_G`` and refits the diagonal in them to the per-example
gradients, ``S_ij = (1/N) sum_(n, k) (U_G^T dW_nk U_A)_ij^2`` (``ekfac_factors``, ``ekfac_vp``,
``ekfac_inverse_vp``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg

from . import losses as _losses
from .layers.base import KFactors
from .layers.network import Network
from .options import as_float, as_int, check_choice
from .second_order import function_doc, require_hessian_sqrt
from .spectra import check_key
from .validate import cached_transformation, checked, require_layer_methods, require_network

KINDS = ("exact", "fisher", "empirical")


class EKFactors(NamedTuple):
    """One layer's EKFAC factors: the curvature block over ``[W | b]`` is approximated by
    ``(U_G (x) U_A) diag(vec S) (U_G (x) U_A)^T``.

    Attributes:
        U_A: ``(fan_in + 1, fan_in + 1)``, the eigenvectors of K-FAC's ``A`` (columns).
        U_G: ``(fan_out, fan_out)``, the eigenvectors of K-FAC's ``G``.
        S: ``(fan_out, fan_in + 1)``, the refitted scales in that basis.
    """

    U_A: jax.Array
    U_G: jax.Array
    S: jax.Array


def _is_factors(t) -> bool:
    return isinstance(t, (KFactors, EKFactors))


def _per_layer(fn, factors, v):
    """``fn(layer_factors, layer_v)`` at every layer with parameters (nested blocks included)."""
    layers = jax.tree.structure(factors, is_leaf=_is_factors)
    if layers != jax.tree.structure(v, is_leaf=lambda t: isinstance(t, dict)):
        raise ValueError(
            "factors and v must have one entry per layer with parameters, in the same tree; got factors "
            f"{layers} and v {jax.tree.structure(v)}"
        )
    jax.tree.map(_checked_layer, factors, v, is_leaf=_is_factors)  # every layer, before any arithmetic
    return jax.tree.map(fn, factors, v, is_leaf=_is_factors)


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


def as_wb(theta: dict) -> jax.Array:
    """A layer's ``{"W", "b"}`` as the ``(fan_out, fan_in + 1)`` matrix ``[W | b]`` (``W`` flattened per row).

    Args:
        theta: ``{"W": (fan_out, ...), "b": (fan_out,)}`` (a dense or convolution layer's).

    Returns:
        ``(fan_out, fan_in + 1)``.
    """
    W = theta["W"]
    return jnp.concatenate([W.reshape(W.shape[0], -1), theta["b"][:, None]], axis=1)


def _from_wb(M: jax.Array, like: dict) -> dict:
    return {"W": M[:, :-1].reshape(like["W"].shape), "b": M[:, -1]}


def _seeds(loss: _losses.Loss, kind: str, n_samples: int, yhat, y, key):
    """The ``K`` columns ``(K, N, n_out)`` a backward pass is seeded with (module docstring)."""
    if kind == "exact":
        return jnp.moveaxis(loss.hessian_sqrt(yhat, y), 2, 0)  # (n_out, N, n_out): s_nk
    if kind == "empirical":
        return loss.grad(yhat, y)[None]
    draws = jax.vmap(lambda k: loss.sample(k, jax.lax.stop_gradient(yhat)))(jax.random.split(key, n_samples))
    return jax.vmap(lambda ys: loss.grad(yhat, ys))(draws) / jnp.sqrt(jnp.asarray(n_samples, yhat.dtype))


def factors_at(net: Network, loss: _losses.Loss, kind: str, n_samples: int, params, cache, yhat, y, key):
    """Every layer's factors from one forward pass (its ``cache`` and output ``yhat``); unchecked, traceable.

    Args:
        net: the network.
        loss: the loss (a ``Loss``).
        kind: ``"exact"``, ``"fisher"`` or ``"empirical"``.
        n_samples: draws per example for ``"fisher"``.
        params: the params.
        cache: ``net.forward``'s cache.
        yhat: ``net.forward``'s output, ``(N, n_out)``.
        y: prepared targets ``(N, n_out)``.
        key: a PRNG key for ``"fisher"`` (else unused).

    Returns:
        A tuple shaped like params, one ``KFactors`` per layer with parameters.
    """
    return net.body.kfac_factors(params, cache, _seeds(loss, kind, n_samples, yhat, y, key))


def _public(net, loss, kind: str, core, summary: str, returns: str):
    """The checked, compiled ``(params, x, y) ->`` (``(params, x, y, key)`` for ``"fisher"``) of ``core``."""
    if kind != "fisher":
        no_key = lambda params, x, y: core(params, x, y, None)  # noqa: E731
        return checked(net, loss, no_key, doc=function_doc(summary, returns))
    doc = function_doc(summary, returns, "\n        key: a JAX PRNG key for the target draws.")
    fn = checked(net, loss, core, doc=doc)

    def with_key(params, x, y, key=None):
        if key is None:
            raise TypeError(
                'kind="fisher" draws targets from the model: call it with a key, (params, x, y, key)'
            )
        check_key(key)
        return fn(params, x, y, key)

    with_key.__doc__ = doc
    return with_key


def kfac_options(net, loss, kind, n_samples, what: str, readouts=("kfac_factors",)):
    """The checked ``(net, loss, n_samples)`` of a K-FAC quantity ``what`` (``"fb.kfac_factors"``).

    Args:
        net: must be an fbackprop ``Network`` whose layers with parameters have ``readouts``.
        loss: a loss name or ``Loss`` (with ``hessian_sqrt`` for ``kind="exact"``).
        kind: one of ``KINDS``.
        n_samples: an integer >= 1.
        what: the caller, for the messages.
        readouts: the layer readouts it needs.

    Returns:
        ``(net, loss, n_samples)``.
    """
    net = require_network(net, what, "fb.ggn_vp(apply, loss) (autodiff products; no factors)")
    check_choice(kind, "kind", KINDS)
    loss = _losses.get(loss)
    if kind == "exact":
        require_hessian_sqrt(loss, f'{what}(kind="exact")')
    require_layer_methods(
        net,
        what,
        readouts=readouts,
        alternative="fb.ggn_diag or fb.ggn_vp (no Kronecker factors for this layer kind)",
    )
    return net, loss, as_int(n_samples, "n_samples")


@cached_transformation
def kfac_factors(net: Network, loss: str | _losses.Loss, kind: str = "exact", n_samples: int = 1):
    """K-FAC's Kronecker factors ``(A, G)`` of every dense and convolution layer, read off one forward
    and ``K`` backward passes (module docstring).

    Args:
        net: an fbackprop ``Network`` whose layers with parameters are ``Dense`` or ``Conv2D`` (or
            nested blocks of them).
        loss: a loss name or ``fb.losses.Loss``.
        kind: ``"exact"`` (default; the loss Hessian's square root, KFLR), ``"fisher"`` (targets
            drawn from the model: the call takes a key) or ``"empirical"`` (the data's targets).
        n_samples: ``kind="fisher"``: draws per example, an integer >= 1 (default 1).

    Returns:
        ``(params, x, y) -> factors`` (``(params, x, y, key)`` for ``"fisher"``): a tuple shaped like
        params with one ``KFactors(A, G)`` per layer with parameters (compiled; cached).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> f = fb.kfac_factors(net, "squared_error")(params, x, y)
        >>> f[0].A.shape, f[0].G.shape   # (fan_in + 1, fan_in + 1), (fan_out, fan_out)
        ((3, 3), (3, 3))
    """
    net, loss, n_samples = kfac_options(net, loss, kind, n_samples, "fb.kfac_factors")

    def factors(params, x, y, key):
        yhat, cache = net.forward(params, x)
        return factors_at(net, loss, kind, n_samples, params, cache, yhat, y, key)

    return _public(
        net,
        loss,
        kind,
        factors,
        f"K-FAC's factors ({kind}) of every layer with parameters.",
        "A tuple shaped like params, one ``KFactors(A, G)`` per layer with parameters.",
    )


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

    return jax.tree.map(inverse, factors, is_leaf=_is_factors)


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


@cached_transformation
def ekfac_factors(net: Network, loss: str | _losses.Loss, kind: str = "exact", n_samples: int = 1):
    """EKFAC's factors (George et al. 2018): K-FAC's eigenbases and the diagonal refitted in them to
    the per-example gradients of the same backward passes (module docstring).

    Args:
        net: an fbackprop ``Network`` (layers with parameters ``Dense`` or ``Conv2D``).
        loss: a loss name or ``fb.losses.Loss``.
        kind: ``"exact"`` (default), ``"fisher"`` (the call takes a key) or ``"empirical"``.
        n_samples: ``kind="fisher"``: draws per example (default 1).

    Returns:
        ``(params, x, y) -> factors`` (``(params, x, y, key)`` for ``"fisher"``): one
        ``EKFactors(U_A, U_G, S)`` per layer with parameters, laid out like params (compiled; cached).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> fb.ekfac_factors(net, "squared_error")(params, x, y)[0].S.shape   # like [W | b]
        (3, 3)
    """
    readouts = ("kfac_factors", "per_example_grads")
    net, loss, n_samples = kfac_options(net, loss, kind, n_samples, "fb.ekfac_factors", readouts)
    hi = jax.lax.Precision.HIGHEST

    def factors(params, x, y, key):
        yhat, cache = net.forward(params, x)
        seeds = _seeds(loss, kind, n_samples, yhat, y, key)
        kf = net.body.kfac_factors(params, cache, seeds)
        rows = jax.vmap(lambda g: net.body.per_example_grads(params, cache, g))(seeds)  # leaves (K, N, ...)

        def refit(f, r):
            U_A, U_G = jnp.linalg.eigh(f.A)[1], jnp.linalg.eigh(f.G)[1]
            wb = jax.vmap(jax.vmap(as_wb))(r)  # (K, N, fan_out, fan_in + 1): each dW_nk
            proj = jnp.einsum("io,knij,jp->knop", U_G, wb, U_A, precision=hi)
            return EKFactors(U_A, U_G, jnp.sum(proj * proj, axis=0).mean(axis=0))

        return jax.tree.map(refit, kf, rows, is_leaf=_is_factors)

    return _public(
        net,
        loss,
        kind,
        factors,
        f"EKFAC's factors ({kind}) of every layer with parameters.",
        "A tuple shaped like params, one ``EKFactors(U_A, U_G, S)`` per layer with parameters.",
    )


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
