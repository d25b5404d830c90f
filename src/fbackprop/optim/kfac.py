"""K-FAC (Martens & Grosse 2015) as an optax transformation: natural-gradient steps preconditioned by
Kronecker factors read off the hand-written passes (``fbackprop.kronecker``).

Each ``update(g, state, params, x=..., y=...)`` on a batch, at step ``t = 1, 2, ...``:

1. the batch's factors ``A, G`` of every layer (``fb.kfac_factors``) folded into running averages,
   ``F <- eps F + (1 - eps) F_batch`` with ``eps = min(1 - 1/t, ema)`` (sec. 5);
2. every ``inverse_every`` steps, the damped inverses ``(A + pi sqrt(lam) I)^-1`` and
   ``(G + sqrt(lam)/pi I)^-1`` (sec. 6.3; ``fb.kfac_inverse``), kept between;
3. the direction ``Delta = -F_hat^-1 g``;
4. the update ``delta = alpha Delta + mu delta_prev``: ``alpha, mu`` minimise the quadratic model
   ``M(delta) = g.delta + 1/2 delta^T (G_exact + lam I) delta`` of the batch (sec. 7), a 2 x 2 system
   whose entries need ``J Delta`` and ``J delta_prev`` only (two R-forward passes; ``G_exact = J^T H J / N``
   the batch's GGN); or ``alpha = learning_rate``, ``mu = momentum`` when they are given;
5. with ``norm_constraint = c``, ``delta`` scaled by ``min(1, sqrt(c / delta^T (G_exact + lam I) delta))``
   (Ba, Grosse & Martens 2017's trust region on the model's KL change);
6. every ``damping_every`` steps, ``lam`` adapted by the Levenberg-Marquardt rule on the reduction
   ratio ``rho = (C(theta + delta) - C(theta)) / M(delta)`` of the batch: ``lam <- omega lam`` when
   ``rho > 3/4``, ``lam <- lam / omega`` when ``rho < 1/4``, ``omega = (19/20)^damping_every`` (sec. 6.5).

With ``fb.train(net, loss, params, x, y, fb.kfac(net, loss), ...)`` the training loop passes each
step's batch; any other loop calls ``update`` with ``x=`` and ``y=`` (an optax
``GradientTransformationExtraArgs``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .. import losses as _losses
from ..kronecker import factors_at, kfac_options
from ..kronecker_products import kfac_inverse, kfac_vp
from ..layers.base import KFactors
from ..options import as_float, as_int
from ..spectra import check_key


class KFACState(NamedTuple):
    """The K-FAC optimizer's state.

    Attributes:
        step: the number of updates made, an int32 scalar.
        factors: the running averages, one ``KFactors(A, G)`` per layer with parameters (like params).
        inverse: the damped inverse factors last computed (``fb.kfac_inverse``).
        damping: ``lam``, the Tikhonov damping (adapted when ``adapt_damping``).
        delta: the last update, shaped like params (zeros before the first).
        rho: the last reduction ratio measured (``nan`` before the first).
        key: the PRNG key of ``kind="fisher"``'s target draws.
    """

    step: jax.Array
    factors: Any
    inverse: Any
    damping: jax.Array
    delta: Any
    rho: jax.Array
    key: jax.Array


def zero_factors(params) -> Any:
    """Zero ``KFactors`` shaped for each ``{"W", "b"}`` layer of ``params``."""

    def zeros(theta):
        out, fan_in = theta["W"].shape[0], theta["W"].size // theta["W"].shape[0]
        dtype = theta["W"].dtype
        return KFactors(jnp.zeros((fan_in + 1, fan_in + 1), dtype), jnp.zeros((out, out), dtype))

    return jax.tree.map(zeros, params, is_leaf=lambda t: isinstance(t, dict))


def _dot(u, v) -> jax.Array:
    return sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v)))


def _quadratic(loss, yhat, y, J_u, J_w, u, w, lam) -> jax.Array:
    """``u^T (G + lam I) w`` with ``G = (1/N) sum_n J_n^T H_n J_n``, from ``J u`` and ``J w``."""
    return jnp.sum(J_u * loss.hvp(yhat, y, J_w)) / yhat.shape[0] + lam * _dot(u, w)


def _model_step(loss, yhat, y, g, Delta, delta0, J_D, J_0, lam):
    """``alpha, mu`` minimising ``M(alpha Delta + mu delta0)`` (Martens & Grosse 2015, sec. 7)."""
    q = lambda a, Ja, b, Jb: _quadratic(loss, yhat, y, Ja, Jb, a, b, lam)  # noqa: E731
    m11, m12, m22 = q(Delta, J_D, Delta, J_D), q(Delta, J_D, delta0, J_0), q(delta0, J_0, delta0, J_0)
    b1, b2 = _dot(g, Delta), _dot(g, delta0)
    det = m11 * m22 - m12 * m12
    two = det > 1e-12 * jnp.maximum(m11 * m22, jnp.finfo(m11.dtype).tiny)  # delta0 = 0 on the first step
    alpha = jnp.where(two, (-b1 * m22 + b2 * m12) / jnp.where(two, det, 1.0), -b1 / m11)
    mu = jnp.where(two, (b1 * m12 - b2 * m11) / jnp.where(two, det, 1.0), 0.0)
    return alpha, mu


class Settings(NamedTuple):
    """The checked options the K-FAC-style optimizers share (``fb.kfac``, ``fb.ekfac``)."""

    fixed_lr: float | None
    fixed_mu: float | None
    lam0: float
    ema: float
    inverse_every: int
    damping_every: int
    clip: float | None
    adapt: bool
    omega: float
    key0: jax.Array


def settings(
    net,
    loss,
    kind: str,
    what: str,
    readouts: tuple,
    *,
    learning_rate,
    momentum,
    damping,
    adapt_damping,
    ema,
    inverse_every,
    damping_every,
    norm_constraint,
    key,
):
    """Check the options of a K-FAC-style optimizer ``what`` (``"fb.kfac"``) before anything is compiled.

    Args:
        net, loss, kind: as ``fb.kfac``'s (``kfac_options`` checks them, with the layer ``readouts``).
        what: the caller, for the messages.
        readouts: the layer readouts the optimizer needs.
        learning_rate, momentum, damping, adapt_damping, ema, inverse_every, damping_every,
            norm_constraint, key: as ``fb.kfac``'s.

    Returns:
        ``(net, loss, Settings)``.
    """
    net, loss, _ = kfac_options(net, loss, kind, 1, what, readouts)
    fixed_lr = (
        None
        if learning_rate is None
        else as_float(learning_rate, "learning_rate", minimum=0.0, open_min=True)
    )
    fixed_mu = None if momentum is None else as_float(momentum, "momentum", minimum=0.0)
    if fixed_lr is not None and fixed_mu is None:
        fixed_mu = 0.0
    lam0 = as_float(damping, "damping", minimum=0.0, open_min=True)
    ema = as_float(ema, "ema", minimum=0.0, maximum=1.0)
    inverse_every = as_int(inverse_every, "inverse_every")
    damping_every = as_int(damping_every, "damping_every")
    clip = (
        None
        if norm_constraint is None
        else as_float(norm_constraint, "norm_constraint", minimum=0.0, open_min=True)
    )
    if not isinstance(adapt_damping, bool):
        raise TypeError(f"adapt_damping must be True or False; got {adapt_damping!r}")
    omega = (19.0 / 20.0) ** damping_every
    key0 = jax.random.key(0) if key is None else check_key(key)
    s = Settings(
        fixed_lr, fixed_mu, lam0, ema, inverse_every, damping_every, clip, adapt_damping, omega, key0
    )
    return net, loss, s


def running(old, new, eps):
    """``eps old + (1 - eps) new`` leaf by leaf (an exponential moving average's update)."""
    return jax.tree.map(lambda o, n: eps * o + (1.0 - eps) * n, old, new)


def ema_weight(t, ema: float, dtype) -> jax.Array:
    """``eps = min(1 - 1/t, ema)`` at the ``t``-th average (``t = 1``: the newest alone; sec. 5)."""
    return jnp.minimum(1.0 - 1.0 / t, ema).astype(dtype)


def finish_step(net, loss, s: Settings, params, x, cache, yhat, y, grads, Delta, state, t):
    """Steps 4-6 of the module docstring, from the direction ``Delta``: the update and the damping.

    Args:
        net, loss: the network and its ``Loss``.
        s: the ``Settings``.
        params: the parameters; ``x``, ``y`` the batch (``y`` prepared); ``cache``, ``yhat`` its forward pass.
        grads: the batch's gradient, like params.
        Delta: the preconditioned direction, like params.
        state: the state before the step (its ``delta``, ``damping`` and ``rho`` are read).
        t: this step's number (1, 2, ...).

    Returns:
        ``(delta, lam, rho)``: the update, the damping and the reduction ratio after the step.
    """
    lam = state.damping
    J = lambda v: net.body.forward_r(params, v, cache, None)[0]  # noqa: E731  (R-forward: J v)
    J_D, J_0 = J(Delta), J(state.delta)
    if s.fixed_lr is None:
        alpha, mu = _model_step(loss, yhat, y, grads, Delta, state.delta, J_D, J_0, lam)
    else:
        alpha, mu = jnp.asarray(s.fixed_lr, lam.dtype), jnp.asarray(s.fixed_mu, lam.dtype)
    delta = jax.tree.map(lambda d, d0: alpha * d + mu * d0, Delta, state.delta)
    J_delta = alpha * J_D + mu * J_0
    curv = _quadratic(loss, yhat, y, J_delta, J_delta, delta, delta, lam)
    if s.clip is not None:
        scale = jnp.minimum(1.0, jnp.sqrt(s.clip / jnp.maximum(curv, jnp.finfo(curv.dtype).tiny)))
        delta, curv = jax.tree.map(lambda d: scale * d, delta), scale * scale * curv
    M = _dot(grads, delta) + 0.5 * curv  # the model's predicted change of C

    def adapted():
        C0 = jnp.mean(loss.value(yhat, y))
        C1 = jnp.mean(loss.value(net.apply(optax.apply_updates(params, delta), x), y))
        rho = (C1 - C0) / M
        lam_new = jnp.where(rho > 0.75, lam * s.omega, jnp.where(rho < 0.25, lam / s.omega, lam))
        return lam_new, rho

    if s.adapt:
        lam, rho = jax.lax.cond(t % s.damping_every == 0, adapted, lambda: (lam, state.rho))
    else:
        rho = state.rho
    return delta, lam, rho


def kfac(
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
    """The K-FAC optimizer (Martens & Grosse 2015; module docstring for each step).

    Args:
        net: an fbackprop ``Network`` whose layers with parameters are ``Dense`` or ``Conv2D``.
        loss: a loss name or ``fb.losses.Loss``.
        learning_rate: ``alpha`` fixed, or ``None`` (default) for the quadratic model's.
        momentum: ``mu`` fixed, or ``None`` (default) for the quadratic model's (with ``learning_rate``
            given and ``momentum=None``, ``mu = 0``).
        damping: the initial ``lam > 0`` (default ``1e-2``).
        adapt_damping: adapt ``lam`` by the reduction ratio (default ``True``; one more forward pass
            every ``damping_every`` steps).
        ema: the running averages' decay, in ``[0, 1]`` (default 0.95; 1: the mean of every step's).
        inverse_every: recompute the inverses every this many steps (default 20).
        damping_every: adapt ``lam`` every this many steps (default 5).
        norm_constraint: ``c > 0`` to bound ``delta^T (G + lam I) delta <= c``, or ``None`` (default).
        kind: the factors' ``G`` (``fb.kfac_factors``): ``"exact"`` (default), ``"fisher"``, ``"empirical"``.
        key: the PRNG key of ``kind="fisher"``'s draws (default ``jax.random.key(0)``).

    Returns:
        An optax ``GradientTransformationExtraArgs``: ``init(params) -> KFACState`` and
        ``update(grads, state, params, *, x, y) -> (updates, state)``.

    Examples:
        >>> net = fb.mlp([2, 8, 1], activation="tanh"); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = fb.data.peaks(6)
        >>> r = fb.train(net, "squared_error", params, x, y, fb.kfac(net, "squared_error"), epochs=30)
        >>> bool(r.history.loss[-1] < 0.5 * r.history.loss[0])
        True
    """
    net, loss, s = settings(
        net,
        loss,
        kind,
        "fb.kfac",
        ("kfac_factors",),
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

    def init(params) -> KFACState:
        """The state before the first step (zero factors and update, ``rho = nan``).

        Args:
            params: the parameters, one ``{"W", "b"}`` per layer with parameters.

        Returns:
            A ``KFACState``.
        """
        dtype = jax.tree.leaves(params)[0].dtype
        zeros = zero_factors(params)
        nan = jnp.asarray(jnp.nan, dtype)
        return KFACState(
            jnp.zeros((), jnp.int32), zeros, zeros, jnp.asarray(s.lam0, dtype),
            jax.tree.map(jnp.zeros_like, params), nan, s.key0,
        )  # fmt: skip

    def update(grads, state: KFACState, params=None, *, x, y, **_):
        """One K-FAC step on the batch ``(x, y)`` (module docstring).

        Args:
            grads: the batch's gradient, like params.
            state: the ``KFACState``.
            params: the parameters the gradient was taken at.
            x: the batch's inputs ``(N, ...)``.
            y: its targets.

        Returns:
            ``(updates, state)``: the update to add to params and the new state.
        """
        y = loss.prepare(y, net.n_out)
        t = state.step + 1
        key, draw = jax.random.split(state.key)
        yhat, cache = net.forward(params, x)
        batch = factors_at(net, loss, kind, 1, params, cache, yhat, y, draw)
        factors = running(state.factors, batch, ema_weight(t, s.ema, state.damping.dtype))
        lam = state.damping
        inverse = jax.lax.cond(
            (t - 1) % s.inverse_every == 0, lambda: kfac_inverse(factors, lam), lambda: state.inverse
        )
        Delta = jax.tree.map(jnp.negative, kfac_vp(inverse, grads))
        delta, lam, rho = finish_step(net, loss, s, params, x, cache, yhat, y, grads, Delta, state, t)
        return delta, KFACState(t, factors, inverse, lam, delta, rho, key)

    return optax.GradientTransformationExtraArgs(init, update)
