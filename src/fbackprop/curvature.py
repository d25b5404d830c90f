"""Curvature of the batch-mean cost ``C = (1/N) sum_n l_n`` from JAX autodiff: products and dense matrices.

Every product is a transformation like ``fb.autodiff``: it takes a Network or any
``apply(params, x)`` callable and a loss, and returns a compiled ``(params, x, y, v) -> M v`` with
``v`` and ``M v`` shaped like params. With ``J = d yhat / d theta`` (``yhat = apply(params, x)``,
per example ``J_n: (n_out, P)``) and ``H_n = d2 l_n / d yhat_n^2`` (the loss's hand-written Hessian):

- ``hvp``: ``H v = d2C/dtheta^2 v``; ``method="autodiff"`` is forward-over-reverse
  (``jvp`` of ``grad``), ``method="backprop"`` the R-operator on the hand-written passes
  (``second_order.py``).
- ``ggn_vp``: ``G v = (1/N) sum_n J_n^T H_n J_n v`` (one ``jvp``, the loss's ``hvp``, one ``vjp``).
- ``fisher_vp``: ``F v = (1/N) sum_n g_n g_n^T v`` with ``g_n = dl_n/dtheta = J_n^T dl_n/dyhat_n``:
  ``kind="empirical"`` uses the data's targets, ``kind="mc"`` targets drawn from the model's own
  predictive distribution (``loss.sample``; explicit key; ``n_samples`` draws per example).
  The three losses are negative log-likelihoods of exponential families whose natural parameter
  is ``yhat`` (unit Gaussian, softmax categorical, logistic Bernoulli), so for each of them
  ``E_y~model[grad l grad l^T] = H_n`` and the *true* Fisher equals the GGN: the MC Fisher is an
  unbiased estimate of ``G``. The empirical Fisher is not (it uses the data's ``y``); it equals
  neither in general.

Dense matrices for small nets (``P x P``), in the order of ``flatten``:
``hessian``, ``ggn``. ``flatten(params) -> (theta, unflatten)`` is ``jax.flatten_util.ravel_pytree``:
layer 1's ``W`` row-major, then its ``b``, then layer 2's, and so on.

Each factory is cached on its (hashable) arguments: ``fb.hvp(net, loss)(params, x, y, v)`` written
inline in a loop compiles once (an ``apply`` that is a fresh lambda each time cannot hit the
cache: define it once). The GGN product is Schraudolph's (2002); on the Fisher and the GGN see
Martens 2020.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import losses as _losses
from .factory_docs import _V, function_doc
from .second_order import hvp_backprop
from .spectra import check_key
from .streaming import streamable, unstreamable
from .validate import as_apply, as_int, cached_transformation, check_choice, checked

HVP_METHODS = ("autodiff", "backprop")
FISHER_KINDS = ("empirical", "mc")


def flatten(params) -> tuple[jax.Array, Any]:
    """Flatten a params pytree into one vector, in the order of the dense matrices.

    Args:
        params: any pytree of arrays (the network's tuple of ``{"W", "b"}`` dicts).

    Returns:
        ``(theta (P,), unflatten)``: W^1 row-major, b^1, W^2, b^2, ...; ``unflatten(theta)``
        rebuilds the pytree (``jax.flatten_util.ravel_pytree``).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> theta, unflatten = fb.flatten(params)
        >>> theta.shape, unflatten(theta)[0]["W"].shape
        ((13,), (3, 2))
    """
    return ravel_pytree(params)


@cached_transformation
def hvp(model: Any, loss: str | _losses.Loss, method: str = "autodiff"):
    """The Hessian-vector product of the batch-mean cost C.

    Args:
        model: an fbackprop ``Network`` or any ``apply(params, x) -> (N, n_out)`` callable (Flax,
            Equinox); define it once, so that the factory's cache is hit.
        loss: a loss name or ``fb.losses.Loss``.
        method: ``"autodiff"`` (default; forward-over-reverse, ``jvp`` of ``grad``, any model) or
            ``"backprop"`` (the R-operator on the hand-written passes, Pearlmutter 1994; a Network).

    Returns:
        ``(params, x, y, v) -> H v``, ``H = d2C/dtheta^2``, shaped like params (compiled; cached
        on the arguments, so inline calls compile once).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> Hv = fb.hvp(net, "squared_error")(params, x, y, params)   # shaped like params
        >>> Hv[0]["W"].shape
        (3, 2)
    """
    check_choice(method, "method", HVP_METHODS)
    if method == "backprop":
        return hvp_backprop(model, loss)
    loss = _losses.get(loss)
    apply = as_apply(model)
    grad = jax.grad(lambda params, x, y: loss(apply(params, x), y))
    return streamable(
        model,
        loss,
        lambda params, x, y, v: jax.jvp(lambda p: grad(p, x, y), (params,), (v,))[1],
        what="fb.hvp",
        vectors=1,
        doc=function_doc(
            "``H v`` for ``H = d2C/dtheta^2``, by forward-over-reverse autodiff.",
            "``H v``, shaped like params.",
            _V,
            streams=True,
        ),
    )


def gauss_newton_product(apply, params, x, cotangent):
    """``v -> J^T cotangent(yhat, J v)`` at ``params`` (Schraudolph 2002): the pullback formed once,
    so that many products (CG's) share it; each product is one jvp and the pullback.

    Args:
        apply: ``(params, x) -> yhat: (N, n_out)``.
        params: the point (any pytree; for Hessian-free, the flat ``theta``).
        x: the batch.
        cotangent: ``(yhat, J v) -> `` the output cotangent (the loss's ``hvp`` for the GGN).

    Returns:
        ``(yhat, product)``.
    """
    f = lambda p: apply(p, x)
    yhat, pullback = jax.vjp(f, params)
    return yhat, lambda v: pullback(cotangent(yhat, jax.jvp(f, (params,), (v,))[1]))[0]


def _j_then_jt(apply, params, x, v, cotangent):
    """``J^T cotangent(yhat, J v)``: one product of ``gauss_newton_product``."""
    return gauss_newton_product(apply, params, x, cotangent)[1](v)


@cached_transformation
def ggn_vp(model: Any, loss: str | _losses.Loss):
    """The generalized Gauss-Newton product (Schraudolph 2002): one ``jvp``, the loss's ``hvp``, one ``vjp``.

    Args:
        model: an fbackprop ``Network`` or any ``apply(params, x) -> (N, n_out)`` callable (Flax,
            Equinox); define it once, so that the factory's cache is hit.
        loss: a loss name or ``fb.losses.Loss``.

    Returns:
        ``(params, x, y, v) -> G v``, ``G = (1/N) sum_n J_n^T H_n J_n``, shaped like params
        (compiled; cached on the arguments).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> Gv = fb.ggn_vp(net, "squared_error")(params, x, y, params)
        >>> Gv[1]["b"].shape
        (1,)
    """
    loss = _losses.get(loss)
    apply = as_apply(model)

    def gv(params, x, y, v):
        return _j_then_jt(apply, params, x, v, lambda yhat, Jv: loss.hvp(yhat, y, Jv) / x.shape[0])

    return streamable(
        model,
        loss,
        gv,
        what="fb.ggn_vp",
        vectors=1,
        doc=function_doc(
            "``G v`` for the generalized Gauss-Newton matrix ``G = (1/N) sum_n J_n^T H_n J_n``.",
            "``G v``, shaped like params.",
            _V,
            streams=True,
        ),
    )


def _outer_cotangent(loss, y):
    """``(1/N) sum_n e_n (e_n . J_n v)`` as a cotangent on yhat, ``e_n = dl_n/dyhat_n``."""

    def cotangent(yhat, Jv):
        e = loss.grad(yhat, y)
        return e * jnp.sum(e * Jv, axis=-1, keepdims=True) / yhat.shape[0]

    return cotangent


@cached_transformation
def fisher_vp(model: Any, loss: str | _losses.Loss, kind: str = "empirical", n_samples: int = 1):
    """The Fisher-vector product ``F v = (1/N) sum_n g_n g_n^T v``, ``g_n = dl_n/dtheta``.

    Args:
        model: an fbackprop ``Network`` or any ``apply(params, x) -> (N, n_out)`` callable (Flax,
            Equinox); define it once, so that the factory's cache is hit.
        loss: a loss name or ``fb.losses.Loss``.
        kind: ``"empirical"`` (default; the data's targets) or ``"mc"`` (targets drawn from the
            model's predictive distribution: an unbiased estimate of the GGN).
        n_samples: ``kind="mc"``: draws per example, an integer >= 1 (default 1).

    Returns:
        ``kind="empirical"``: ``(params, x, y, v) -> F v``; ``kind="mc"``: ``(params, x, y, v, key)
        -> F v`` (``y`` is checked, not used); shaped like params (compiled; cached).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> Fv = fb.fisher_vp(net, "squared_error")(params, x, y, params)
        >>> Fv[0]["W"].shape
        (3, 2)
    """
    check_choice(kind, "kind", FISHER_KINDS)
    n_samples = as_int(n_samples, "n_samples")
    loss = _losses.get(loss)
    apply = as_apply(model)
    if kind == "empirical":
        return streamable(
            model,
            loss,
            lambda params, x, y, v: _j_then_jt(apply, params, x, v, _outer_cotangent(loss, y)),
            what="fb.fisher_vp",
            vectors=1,
            doc=function_doc(
                "``F v`` for the empirical Fisher ``F = (1/N) sum_n g_n g_n^T`` (the data's targets).",
                "``F v``, shaped like params.",
                _V,
                streams=True,
            ),
        )

    def fv(params, x, y, v, key):
        check_key(key)  # static: the key's dtype, at trace time

        def cotangent(yhat, Jv):
            samples = jax.vmap(lambda k: loss.sample(k, jax.lax.stop_gradient(yhat)))(
                jax.random.split(key, n_samples)
            )
            return jnp.mean(jax.vmap(lambda ys: _outer_cotangent(loss, ys)(yhat, Jv))(samples), axis=0)

        return _j_then_jt(apply, params, x, v, cotangent)

    mc = checked(
        model,
        loss,
        fv,
        vectors=1,
        doc=function_doc(
            f"``F v`` for the Monte-Carlo Fisher ({n_samples} target draw(s) per example from the model).",
            "``F v``, shaped like params.",
            _V
            + """
        key: a JAX PRNG key for the draws (the same key gives the same estimate).""",
        ),
    )
    why = (
        'its target draws are keyed to the rows of one batch; use kind="empirical" or fb.ggn_vp (the GGN, '
        "which the MC Fisher estimates)"
    )
    return unstreamable(mc, 'fb.fisher_vp(kind="mc")', why)


@cached_transformation
def hessian(model: Any, loss: str | _losses.Loss):
    """The dense Hessian of C by autodiff (small nets only: ``P x P``).

    Args:
        model: an fbackprop ``Network`` or any ``apply(params, x) -> (N, n_out)`` callable (Flax,
            Equinox); define it once, so that the factory's cache is hit.
        loss: a loss name or ``fb.losses.Loss``.

    Returns:
        ``(params, x, y) -> d2C/dtheta^2: (P, P)`` in ``flatten``'s order (compiled; cached).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> H = fb.hessian(net, "squared_error")(params, x, y)   # (P, P)
        >>> H.shape, bool(jnp.allclose(H, H.T))
        ((13, 13), True)
    """
    loss = _losses.get(loss)
    apply = as_apply(model)

    def dense(params, x, y):
        theta, unflatten = flatten(params)
        return jax.hessian(lambda t: loss(apply(unflatten(t), x), y))(theta)

    return streamable(
        model,
        loss,
        dense,
        what="fb.hessian",
        doc=function_doc(
            "The dense Hessian ``d2C/dtheta^2`` by autodiff.",
            "``(P, P)``, in ``fb.flatten``'s order.",
            streams=True,
        ),
    )


@cached_transformation
def ggn(model: Any, loss: str | _losses.Loss):
    """The dense generalized Gauss-Newton matrix of C (small nets only: ``P x P``).

    Args:
        model: an fbackprop ``Network`` or any ``apply(params, x) -> (N, n_out)`` callable (Flax,
            Equinox); define it once, so that the factory's cache is hit.
        loss: a loss name or ``fb.losses.Loss``.

    Returns:
        ``(params, x, y) -> G: (P, P) = (1/N) sum_n J_n^T H_n J_n`` in ``flatten``'s order
        (compiled; cached).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> fb.ggn(net, "squared_error")(params, x, y).shape   # (P, P)
        (13, 13)
    """
    loss = _losses.get(loss)
    apply = as_apply(model)

    def dense(params, x, y):
        theta, unflatten = flatten(params)
        yhat = apply(params, x)
        J = jax.jacfwd(lambda t: apply(unflatten(t), x))(theta)  # (N, n_out, P)
        return jnp.einsum("nop,noq,nqr->pr", J, loss.hessian(yhat, y), J) / x.shape[0]

    return streamable(
        model,
        loss,
        dense,
        what="fb.ggn",
        doc=function_doc(
            "The dense generalized Gauss-Newton matrix ``G = (1/N) sum_n J_n^T H_n J_n``.",
            "``(P, P)``, in ``fb.flatten``'s order.",
            streams=True,
        ),
    )
