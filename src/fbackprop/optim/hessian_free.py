"""Hessian-free optimisation (Martens 2010), one compiled ``lax.while_loop`` over outer iterations.

Each iteration at ``theta`` (C the batch-mean cost, ``g = dC/dtheta`` on the whole batch):

1. curvature on a mini-batch (``batch_size`` examples drawn with the key; all of them by default):
   the damped GGN product ``B v = G_mb v + lam v`` (jvp, the loss's ``hvp``, vjp; never formed);
2. conjugate gradients on ``B delta = -g``, warm-started from ``decay`` times the previous
   solution, optionally preconditioned by ``(diag(G_mb) + lam)^0.75`` (Martens uses the empirical
   Fisher's diagonal; here the exact GGN diagonal from second-order backpropagation), stopped by
   Martens' relative-progress test on the quadratic ``phi(x) = g.x + x.B x / 2``;
3. CG-iterate backtracking: of the iterates kept at ``i = ceil(1.3^j)``, the one with the lowest C;
4. Levenberg-Marquardt-style damping: ``rho`` = actual over predicted (``g.d + d.G_mb d / 2``)
   decrease; ``lam *= 3/2`` when ``rho < 1/4``, ``lam *= 2/3`` when ``rho > 3/4``;
5. a backtracking line search (``alpha *= 0.8`` until Armijo holds; no step when none does).

The products are Pearlmutter's (1994) R-operator and Schraudolph's (2002) Gauss-Newton product.
The reported loss is the batch-mean cost C on the whole batch, as ``levenberg_marquardt``'s. A
start whose loss or gradient is not finite stops at once with ``Status.NONFINITE_START``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .. import losses as _losses
from ..backprop import forward
from ..curvature import gauss_newton_product
from ..second_order import diag_core
from ..spectra import check_key
from ..validate import as_int
from . import _options as O
from .damping import TrustRegion
from .levenberg_marquardt import LMResult
from .line_search import Backtracking
from .loop import Step, Stop, iterate, start

#: Hessian-free's damping of ``lam`` (Martens 2010): the trust-region thresholds with 2/3 and 3/2.
HF_DAMPING = TrustRegion(mu_dec=2.0 / 3.0, mu_inc=1.5)
#: Its line search along the chosen CG iterate: ``alpha *= 0.8`` until Armijo's test with c = 1e-2.
HF_SEARCH = Backtracking(factor=0.8, armijo=1e-2, max_steps=60)


def checkpoints(cg_iters: int) -> tuple[int, ...]:
    """The CG iterations whose iterates are kept for backtracking (Martens 2010).

    Args:
        cg_iters: the number of CG iterations, an integer >= 1.

    Returns:
        The sorted distinct ``ceil(1.3^j) <= cg_iters``, and ``cg_iters`` itself.
    """
    cg_iters = as_int(cg_iters, "cg_iters")
    ks = sorted({math.ceil(1.3**j) for j in range(64) if math.ceil(1.3**j) <= cg_iters} | {cg_iters})
    return tuple(ks)


def hessian_free(
    net,
    params,
    x,
    y,
    *,
    loss: str | _losses.Loss = "squared_error",
    max_steps: int = 100,
    cg_iters: int = 50,
    lam: float = 1.0,
    batch_size: int | None = None,
    precondition: bool = False,
    decay: float = 0.95,
    key=None,
    goal: float = 0.0,
    min_grad: float = 1e-7,
) -> LMResult:
    """Train ``net`` by Hessian-free optimisation (Martens 2010; module docstring).

    Args:
        net: an fbackprop ``Network``, or any model ``apply(params, x)`` (Flax, Equinox; its
            derivatives from autodiff, as ``levenberg_marquardt``'s).
        params: the starting params (their dtype is the computation's dtype).
        x: inputs ``(N, n_in)``.
        y: targets ``(N, n_out)`` (``(N,)`` for one output; integer labels for cross-entropy).
        loss: a loss name or ``fb.losses.Loss``; default ``"squared_error"``.
        max_steps: the most outer iterations, an integer >= 1 (default 100).
        cg_iters: CG iterations per outer iteration, an integer >= 1 (default 50).
        lam: the starting damping of ``G v + lam v``, > 0 (default 1).
        batch_size: examples in the curvature mini-batch, an integer in [1, N], or ``None``
            (default) for all N.
        precondition: precondition CG by ``(diag(G_mb) + lam)^0.75`` (default ``False``).
        decay: CG starts from ``decay`` times the previous solution, in [0, 1] (default 0.95).
        key: a JAX PRNG key for the mini-batches (default ``jax.random.key(0)``).
        goal: stop (``GOAL``) once ``C <= goal``; >= 0 (default 0).
        min_grad: stop (``MIN_GRAD``) once ``||dC/dtheta|| <= min_grad``; >= 0 (default 1e-7).

    Returns:
        An ``LMResult``; ``history.loss`` is the batch-mean cost C and ``history.mu`` holds ``lam``.

    Raises:
        TypeError, ValueError: for a bad argument, naming it, before anything is compiled.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> r = fb.optim.hessian_free(net, params, x, y, max_steps=3, cg_iters=5)
        >>> r.params[0]["W"].shape
        (3, 2)
    """
    net, params, unwrap = O.model(net, params, x, "fb.hessian_free")
    loss = _losses.get(loss)
    goal, min_grad, max_steps = O.stopping(goal, min_grad, max_steps)
    cg_iters = as_int(cg_iters, "cg_iters")
    lam = O.real(lam, "lam", minimum=0.0, open_min=True)
    decay = O.real(decay, "decay", minimum=0.0, maximum=1.0)
    precondition = O.flag(precondition, "precondition")
    key = jax.random.key(0) if key is None else check_key(key)
    x, y = O.data(net, loss, params, x, y)
    n = x.shape[0]
    batch_size = n if batch_size is None else as_int(batch_size, "batch_size", minimum=1, maximum=n)
    run = _compiled(net, loss, max_steps, cg_iters, batch_size, precondition)
    dtype = O.params_dtype(params)
    result = LMResult(*run(params, x, y, key, *(jnp.asarray(v, dtype) for v in (lam, decay, goal, min_grad))))
    return O.unwrapped(result, unwrap)


def _cg(Bv, b, x0, precond, cg_iters: int, keep: tuple[int, ...]):
    """Preconditioned CG from ``x0`` on ``B x = b``; the iterates at ``keep`` and how many steps ran."""
    keep_at = jnp.array(keep)
    phi = lambda x, Bx: 0.5 * x @ Bx - b @ x

    def step(i, s):
        x, r, z, p, kept, phis, active, ran = s
        Bp = Bv(p)
        alpha = (r @ z) / (p @ Bp)
        x_new, r_new = x + alpha * p, r - alpha * Bp
        z_new = precond(r_new)
        p_new = z_new + ((r_new @ z_new) / (r @ z)) * p
        phi_i = phi(x_new, b - r_new)
        k = jnp.maximum(10, (i + 1) // 10)
        progress = (phi_i - phis[jnp.maximum(i + 1 - k, 0)]) / jnp.where(phi_i == 0, 1.0, phi_i)
        done = (i + 1 > k) & (phi_i < 0) & (progress < k * 5e-4)
        upd = lambda new, old: jnp.where(active, new, old)
        x, r, z, p = upd(x_new, x), upd(r_new, r), upd(z_new, z), upd(p_new, p)
        kept = jnp.where(active & (keep_at == i + 1)[:, None], x_new, kept)
        return (
            x,
            r,
            z,
            p,
            kept,
            phis.at[i + 1].set(jnp.where(active, phi_i, phis[i])),
            active & ~done & jnp.all(jnp.isfinite(x_new)),
            ran + active,
        )

    r0 = b - Bv(x0)
    z0 = precond(r0)
    init = (
        x0,
        r0,
        z0,
        z0,
        jnp.zeros((len(keep), x0.size), x0.dtype),
        jnp.zeros(cg_iters + 1, x0.dtype).at[0].set(phi(x0, b - r0)),
        jnp.bool_(True),
        jnp.int32(0),
    )
    x, _, _, _, kept, _, _, ran = jax.lax.fori_loop(0, cg_iters, step, init)
    kept = jnp.where((keep_at > ran)[:, None], x, kept)  # iterates never reached: the last one
    return kept, x


class HFPoint(NamedTuple):
    """What Hessian-free carries about the current point: the gradient of C ``(P,)``, the last CG
    solution (the next warm start) and the mini-batch key."""

    g: jax.Array
    prev: jax.Array
    key: jax.Array


@functools.lru_cache(maxsize=32)
def _compiled(net, loss, max_steps, cg_iters, batch_size, precondition):
    keep = checkpoints(cg_iters)

    def run(params, x, y, key, lam0, decay, goal, min_grad):
        theta0, unflatten = ravel_pytree(params)
        n = x.shape[0]
        apply = lambda t, xx: forward(net, unflatten(t), xx)[0]
        C = lambda t: jnp.mean(loss.value(apply(t, x), y)).astype(theta0.dtype)

        def step(s):
            theta, C_k, g, lam = s.theta, s.E, s.lin.g, s.mu
            key, sub = jax.random.split(s.lin.key)
            idx = jax.random.choice(sub, n, (batch_size,), replace=False) if batch_size < n else jnp.arange(n)
            xb, yb = x[idx], y[idx]
            _, Gv = gauss_newton_product(apply, theta, xb, lambda yh, Jv: loss.hvp(yh, yb, Jv) / batch_size)
            if precondition:
                m = (ravel_pytree(diag_core(net, loss, False)(unflatten(theta), xb, yb))[0] + lam) ** 0.75
                precond = lambda r: r / m
            else:
                precond = lambda r: r
            kept, last = _cg(lambda v: Gv(v) + lam * v, -g, decay * s.lin.prev, precond, cg_iters, keep)
            costs = jax.vmap(lambda d: C(theta + d))(kept)
            costs = jnp.where(jnp.isfinite(costs), costs, jnp.inf)
            delta = kept[jnp.argmin(costs)]
            C_d = jnp.min(costs)
            predicted = g @ delta + 0.5 * delta @ Gv(delta)
            rho = jnp.where(predicted < 0, (C_d - C_k) / predicted, -jnp.inf)
            lam, nu = HF_DAMPING.update(lam, s.nu, rho, True)  # the step is the line search's to refuse
            slope = g @ delta
            alpha, C_a, ok = HF_SEARCH.search(lambda a: C(theta + a * delta), C_k, slope, C_d)
            ok = ok & (slope < 0)
            theta, C_k = jnp.where(ok, theta + alpha * delta, theta), jnp.where(ok, C_a, C_k)
            g = jax.lax.cond(ok, lambda: jax.grad(C)(theta), lambda: g)
            point = HFPoint(g, jnp.where(ok, last, jnp.zeros_like(last)), key)
            return Step(theta, C_k, point, lam, nu, ok, lam)

        C0, g0 = jax.value_and_grad(C)(theta0)
        stop = Stop(goal, min_grad, max_steps)
        state = start(theta0, C0, HFPoint(g0, jnp.zeros_like(theta0), key), lam0, stop, 1)
        s = iterate(step, state, stop, 1)
        return unflatten(s.theta), s.history, s.status, s.k, s.mu

    return jax.jit(run)
