"""EKFAC (George et al. 2018) as an optax transformation: K-FAC's eigenbases with the diagonal re-fitted
in them to the per-example gradients of the same backward passes.

Each ``update(g, state, params, x=..., y=...)`` on a batch, at step ``t = 1, 2, ...``, does what
``fb.kfac`` does (``fbackprop.optim.kfac``: running averages of ``A, G``, the quadratic model's rate and
momentum or the ones given, the norm constraint, the Levenberg-Marquardt rule on ``lam``) with
EKFAC's preconditioner in place of the damped Kronecker inverse:

1. every ``inverse_every`` steps, the eigenbases ``U_A, U_G`` of the running ``A`` and ``G`` (``eigh``),
   kept between;
2. at every step, the batch's scales in that basis from the per-example gradients ``dW_nk`` (the
   ``K`` backward passes of the factors, ``fb.ekfac_factors``'s pieces),
   ``S_batch = (1/N) sum_(n, k) (U_G^T dW_nk U_A)^2`` (elementwise, over ``[W | b]``), folded into
   a running average ``S <- eps S + (1 - eps) S_batch``, ``eps = min(1 - 1/s, ema)`` with ``s`` the
   steps since the basis was last recomputed (the average restarts with each new basis: scales
   measured in the old one do not carry over);
3. the direction ``Delta = -(U_G (x) U_A) diag(1 / (S + lam)) (U_G (x) U_A)^T g``, layer by layer
   ``-U_G ((U_G^T [g_W | g_b] U_A) / (S + lam)) U_A^T`` (``fb.ekfac_inverse_vp``).

Each step costs K-FAC's plus the per-example gradients (``K x N x P`` numbers, ``K = n_out`` for
``kind="exact"``, 1 otherwise) and their projections; the eigendecompositions replace K-FAC's Cholesky
factorisations.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .. import losses as _losses
from ..kronecker import EKFactors, _seeds, ekfac_scales, is_factors
from ..kronecker_products import ekfac_inverse_vp
from .kfac import ema_weight, finish_step, running, settings, zero_factors


class EKFACState(NamedTuple):
    """The EKFAC optimizer's state.

    Attributes:
        step: the number of updates made, an int32 scalar.
        factors: the running averages of K-FAC's factors, one ``KFactors(A, G)`` per layer with
            parameters (like params).
        basis: one ``EKFactors(U_A, U_G, S)`` per layer: the eigenbases last computed and the running
            average of the scales in them.
        damping: ``lam``, the damping added to the scales (adapted when ``adapt_damping``).
        delta: the last update, shaped like params (zeros before the first).
        rho: the last reduction ratio measured (``nan`` before the first).
        key: the PRNG key of ``kind="fisher"``'s target draws.
    """

    step: jax.Array
    factors: Any
    basis: Any
    damping: jax.Array
    delta: Any
    rho: jax.Array
    key: jax.Array


class Bases(NamedTuple):
    """One layer's eigenbases: ``U_A`` ``(fan_in + 1, fan_in + 1)`` and ``U_G`` ``(fan_out, fan_out)``."""

    U_A: jax.Array
    U_G: jax.Array


def _is_layer(t) -> bool:
    return isinstance(t, Bases) or is_factors(t)


def eigenbases(factors: Any) -> Any:
    """The eigenvectors of every layer's ``KFactors`` (columns, by ``eigh``).

    Args:
        factors: one ``KFactors(A, G)`` per layer with parameters.

    Returns:
        Laid out like ``factors``, one ``Bases(U_A, U_G)`` per layer.
    """
    return jax.tree.map(
        lambda f: Bases(jnp.linalg.eigh(f.A)[1], jnp.linalg.eigh(f.G)[1]), factors, is_leaf=is_factors
    )


def ekfac(
    net,
    loss: str | _losses.Loss,
    *,
    learning_rate: float | None = None,
    momentum: float | None = None,
    damping: float = 1e-2,
    adapt_damping: bool = True,
    ema: float = 0.95,
    inverse_every: int = 20,
    damping_every: int = 5,
    norm_constraint: float | None = None,
    kind: str = "exact",
    key: jax.Array | None = None,
) -> optax.GradientTransformationExtraArgs:
    """The EKFAC optimizer (George et al. 2018; module docstring for each step), with ``fb.kfac``'s options.

    Args:
        net: an fbackprop ``Network`` whose layers with parameters are ``Dense`` or ``Conv2D``.
        loss: a loss name or ``fb.losses.Loss``.
        learning_rate: ``alpha`` fixed, or ``None`` (default) for the quadratic model's.
        momentum: ``mu`` fixed, or ``None`` (default) for the quadratic model's (with ``learning_rate``
            given and ``momentum=None``, ``mu = 0``).
        damping: the initial ``lam > 0`` added to the scales (default ``1e-2``).
        adapt_damping: adapt ``lam`` by the reduction ratio (default ``True``).
        ema: the running averages' decay, in ``[0, 1]`` (default 0.95; 1: the mean of every step's).
        inverse_every: recompute the eigenbases every this many steps (default 20).
        damping_every: adapt ``lam`` every this many steps (default 5).
        norm_constraint: ``c > 0`` to bound ``delta^T (G + lam I) delta <= c``, or ``None`` (default).
        kind: the backward passes' seeds (``fb.kfac_factors``): ``"exact"`` (default), ``"fisher"``,
            ``"empirical"``.
        key: the PRNG key of ``kind="fisher"``'s draws (default ``jax.random.key(0)``).

    Returns:
        An optax ``GradientTransformationExtraArgs``: ``init(params) -> EKFACState`` and
        ``update(grads, state, params, *, x, y) -> (updates, state)``.

    Examples:
        >>> net = fb.mlp([2, 8, 1], activation="tanh"); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = fb.data.peaks(6)
        >>> r = fb.train(net, "squared_error", params, x, y, fb.ekfac(net, "squared_error"), epochs=30)
        >>> bool(r.history.loss[-1] < 0.5 * r.history.loss[0])
        True
    """
    net, loss, s = settings(
        net,
        loss,
        kind,
        "fb.ekfac",
        ("kfac_factors", "per_example_grads"),
        learning_rate=learning_rate,
        momentum=momentum,
        damping=damping,
        adapt_damping=adapt_damping,
        ema=ema,
        inverse_every=inverse_every,
        damping_every=damping_every,
        norm_constraint=norm_constraint,
        key=key,
    )

    def init(params) -> EKFACState:
        """The state before the first step (zero factors, scales and update, identity bases, ``rho = nan``).

        Args:
            params: the parameters, one ``{"W", "b"}`` per layer with parameters.

        Returns:
            An ``EKFACState``.
        """
        dtype = jax.tree.leaves(params)[0].dtype
        zeros = zero_factors(params)
        basis = jax.tree.map(
            lambda f: EKFactors(
                jnp.eye(f.A.shape[0], dtype=dtype),
                jnp.eye(f.G.shape[0], dtype=dtype),
                jnp.zeros((f.G.shape[0], f.A.shape[0]), dtype),
            ),
            zeros,
            is_leaf=is_factors,
        )
        return EKFACState(
            jnp.zeros((), jnp.int32), zeros, basis, jnp.asarray(s.lam0, dtype),
            jax.tree.map(jnp.zeros_like, params), jnp.asarray(jnp.nan, dtype), s.key0,
        )  # fmt: skip

    def update(grads, state: EKFACState, params=None, *, x, y, **_):
        """One EKFAC step on the batch ``(x, y)`` (module docstring).

        Args:
            grads: the batch's gradient, like params.
            state: the ``EKFACState``.
            params: the parameters the gradient was taken at.
            x: the batch's inputs ``(N, ...)``.
            y: its targets.

        Returns:
            ``(updates, state)``: the update to add to params and the new state.
        """
        y = loss.prepare(y, net.n_out)
        t = state.step + 1
        dtype = state.damping.dtype
        key, draw = jax.random.split(state.key)
        yhat, cache = net.forward(params, x)
        seeds = _seeds(loss, kind, 1, yhat, y, draw)  # (K, N, n_out), as fb.ekfac_factors
        batch = net.body.kfac_factors(params, cache, seeds)
        factors = running(state.factors, batch, ema_weight(t, s.ema, dtype))
        new_basis = (t - 1) % s.inverse_every == 0
        kept = jax.tree.map(lambda b: Bases(b.U_A, b.U_G), state.basis, is_leaf=is_factors)
        bases = jax.lax.cond(new_basis, lambda: eigenbases(factors), lambda: kept)
        rows = jax.vmap(lambda g: net.body.per_example_grads(params, cache, g))(seeds)  # leaves (K, N, ...)
        eps = ema_weight((t - 1) % s.inverse_every + 1, s.ema, dtype)  # 0 at a new basis: a restart

        def refit(b, old, r):
            return EKFactors(b.U_A, b.U_G, eps * old.S + (1.0 - eps) * ekfac_scales(b.U_A, b.U_G, r))

        basis = jax.tree.map(refit, bases, state.basis, rows, is_leaf=_is_layer)
        Delta = jax.tree.map(jnp.negative, ekfac_inverse_vp(basis, grads, state.damping))
        delta, lam, rho = finish_step(net, loss, s, params, x, cache, yhat, y, grads, Delta, state, t)
        return delta, EKFACState(t, factors, basis, lam, delta, rho, key)

    return optax.GradientTransformationExtraArgs(init, update)
