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
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import losses as _losses
from .second_order import hvp_backprop
from .validate import as_apply, checked

HVP_METHODS = ("autodiff", "backprop")
FISHER_KINDS = ("empirical", "mc")


def flatten(params) -> tuple[jax.Array, Any]:
    """``(theta: (P,), unflatten)``: W^1 row-major, b^1, W^2, b^2, ... (the order of the dense matrices)."""
    return ravel_pytree(params)


def hvp(model: Any, loss: str | _losses.Loss, method: str = "autodiff"):
    """``(params, x, y, v) -> H v``, ``H = d2C/dtheta^2`` (autodiff: forward-over-reverse)."""
    if method not in HVP_METHODS:
        raise ValueError(f"unknown hvp method {method!r}; expected one of {HVP_METHODS}")
    if method == "backprop":
        return hvp_backprop(model, loss)
    loss = _losses.get(loss)
    apply = as_apply(model)
    grad = jax.grad(lambda params, x, y: loss(apply(params, x), y))
    return checked(model, loss, lambda params, x, y, v: jax.jvp(lambda p: grad(p, x, y), (params,), (v,))[1], vectors=1)


def _j_then_jt(apply, params, x, v, cotangent):
    """``J^T cotangent(yhat, J v)``: one jvp and one vjp through ``apply``."""
    yhat, Jv = jax.jvp(lambda p: apply(p, x), (params,), (v,))
    _, pullback = jax.vjp(lambda p: apply(p, x), params)
    return pullback(cotangent(yhat, Jv))[0]


def ggn_vp(model: Any, loss: str | _losses.Loss):
    """``(params, x, y, v) -> G v``, ``G = (1/N) sum_n J_n^T H_n J_n`` (the generalized Gauss-Newton)."""
    loss = _losses.get(loss)
    apply = as_apply(model)

    def gv(params, x, y, v):
        return _j_then_jt(apply, params, x, v, lambda yhat, Jv: loss.hvp(yhat, y, Jv) / x.shape[0])

    return checked(model, loss, gv, vectors=1)


def _outer_cotangent(loss, y):
    """``(1/N) sum_n e_n (e_n . J_n v)`` as a cotangent on yhat, ``e_n = dl_n/dyhat_n``."""
    def cotangent(yhat, Jv):
        e = loss.grad(yhat, y)
        return e * jnp.sum(e * Jv, axis=-1, keepdims=True) / yhat.shape[0]
    return cotangent


def fisher_vp(model: Any, loss: str | _losses.Loss, kind: str = "empirical", n_samples: int = 1):
    """``kind="empirical"``: ``(params, x, y, v) -> F v``; ``kind="mc"``: ``(params, x, y, v, key) -> F v``
    with ``n_samples`` targets per example drawn from the model (``y`` is checked, not used)."""
    if kind not in FISHER_KINDS:
        raise ValueError(f"unknown Fisher kind {kind!r}; expected one of {FISHER_KINDS}")
    loss = _losses.get(loss)
    apply = as_apply(model)
    if kind == "empirical":
        return checked(model, loss, lambda params, x, y, v: _j_then_jt(apply, params, x, v, _outer_cotangent(loss, y)),
                       vectors=1)

    def fv(params, x, y, v, key):
        def cotangent(yhat, Jv):
            samples = jax.vmap(lambda k: loss.sample(k, jax.lax.stop_gradient(yhat)))(jax.random.split(key, n_samples))
            return jnp.mean(jax.vmap(lambda ys: _outer_cotangent(loss, ys)(yhat, Jv))(samples), axis=0)
        return _j_then_jt(apply, params, x, v, cotangent)

    return checked(model, loss, fv, vectors=1)


def hessian(model: Any, loss: str | _losses.Loss):
    """``(params, x, y) -> d2C/dtheta^2: (P, P)``, dense, in ``flatten``'s order (small nets only)."""
    loss = _losses.get(loss)
    apply = as_apply(model)

    def dense(params, x, y):
        theta, unflatten = flatten(params)
        return jax.hessian(lambda t: loss(apply(unflatten(t), x), y))(theta)

    return checked(model, loss, dense)


def ggn(model: Any, loss: str | _losses.Loss):
    """``(params, x, y) -> G: (P, P) = (1/N) sum_n J_n^T H_n J_n``, dense, in ``flatten``'s order."""
    loss = _losses.get(loss)
    apply = as_apply(model)

    def dense(params, x, y):
        theta, unflatten = flatten(params)
        yhat = apply(params, x)
        J = jax.jacfwd(lambda t: apply(unflatten(t), x))(theta)          # (N, n_out, P)
        return jnp.einsum("nop,noq,nqr->pr", J, loss.hessian(yhat, y), J) / x.shape[0]

    return checked(model, loss, dense)
