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

EKFAC (George et al. 2018) keeps the eigenbases ``U_A, U_G`` and refits the diagonal in them to the
per-example gradients, ``S_ij = (1/N) sum_(n, k) (U_G^T dW_nk U_A)_ij^2`` (``ekfac_factors``). The
products with the factors and their damped inverses are in ``kronecker_products``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import losses as _losses
from .factory_docs import function_doc
from .layers.base import KFactors
from .layers.network import Network
from .losses.registry import require_hessian_sqrt
from .options import as_int, check_choice
from .spectra import check_key
from .streaming import streamable, unstreamable
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


def is_factors(t) -> bool:
    """Whether ``t`` is one layer's factors (a ``KFactors`` or an ``EKFactors``), for ``is_leaf``."""
    return isinstance(t, (KFactors, EKFactors))


def as_wb(theta: dict) -> jax.Array:
    """A layer's ``{"W", "b"}`` as the ``(fan_out, fan_in + 1)`` matrix ``[W | b]`` (``W`` flattened per row).

    Args:
        theta: ``{"W": (fan_out, ...), "b": (fan_out,)}`` (a dense or convolution layer's).

    Returns:
        ``(fan_out, fan_in + 1)``.
    """
    W = theta["W"]
    return jnp.concatenate([W.reshape(W.shape[0], -1), theta["b"][:, None]], axis=1)


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


def _public(net, loss, kind: str, core, summary: str, returns: str, what: str, mean: bool):
    """The checked, compiled ``(params, x, y) ->`` (``(params, x, y, key)`` for ``"fisher"``) of ``core``;
    ``mean``: ``core`` is a batch mean, so it streams (``fbackprop.streaming``) unless it draws targets."""
    if kind != "fisher":
        no_key = lambda params, x, y: core(params, x, y, None)  # noqa: E731
        if mean:
            doc = function_doc(summary, returns, streams=True)
            return streamable(net, loss, no_key, what=what, doc=doc)
        why = "its eigenbases are those of the whole batch's factors, before the refit on the same rows"
        return unstreamable(checked(net, loss, no_key, doc=function_doc(summary, returns)), what, why)
    doc = function_doc(summary, returns, "\n        key: a JAX PRNG key for the target draws.")
    why = 'kind="fisher" draws targets keyed to the rows of one batch; use kind="exact" or "empirical"'
    fn = unstreamable(checked(net, loss, core, doc=doc), f'{what}(kind="fisher")', why)

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
        "fb.kfac_factors",
        True,
    )


@cached_transformation
def ekfac_scales(U_A: jax.Array, U_G: jax.Array, rows: dict) -> jax.Array:
    """One layer's scales ``S = (1/N) sum_(n, k) (U_G^T dW_nk U_A)^2`` in a given basis.

    Args:
        U_A: ``(fan_in + 1, fan_in + 1)``.
        U_G: ``(fan_out, fan_out)``.
        rows: the layer's per-example gradients, ``{"W": (K, N, fan_out, ...), "b": (K, N, fan_out)}``.

    Returns:
        ``S``: ``(fan_out, fan_in + 1)``, laid out like ``[W | b]``.
    """
    hi = jax.lax.Precision.HIGHEST
    W, b = rows["W"], rows["b"]
    K, N, out = W.shape[:3]
    # two large matrix products over all K N rows at once (XLA's batched small products are slower):
    # [W | b] U_A without forming [W | b], then U_G^T from the left on the transposed rows
    right = jnp.matmul(W.reshape(K * N * out, -1), U_A[:-1], precision=hi) + b.reshape(-1, 1) * U_A[-1]
    inp = right.shape[1]
    rows_t = jnp.swapaxes(right.reshape(K * N, out, inp), 1, 2).reshape(K * N * inp, out)
    proj = jnp.matmul(rows_t, U_G, precision=hi)  # (K N inp, out): (U_G^T dW_nk U_A)^T, stacked
    return jnp.sum(jnp.square(proj).reshape(K * N, inp, out), axis=0).T / N


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

    def factors(params, x, y, key):
        yhat, cache = net.forward(params, x)
        seeds = _seeds(loss, kind, n_samples, yhat, y, key)
        kf = net.body.kfac_factors(params, cache, seeds)
        rows = jax.vmap(lambda g: net.body.per_example_grads(params, cache, g))(seeds)  # leaves (K, N, ...)

        def refit(f, r):
            U_A, U_G = jnp.linalg.eigh(f.A)[1], jnp.linalg.eigh(f.G)[1]
            return EKFactors(U_A, U_G, ekfac_scales(U_A, U_G, r))

        return jax.tree.map(refit, kf, rows, is_leaf=is_factors)

    return _public(
        net,
        loss,
        kind,
        factors,
        f"EKFAC's factors ({kind}) of every layer with parameters.",
        "A tuple shaped like params, one ``EKFactors(U_A, U_G, S)`` per layer with parameters.",
        "fb.ekfac_factors",
        False,
    )
