"""The Levenberg-Marquardt iteration itself: one traceable ``lax.while_loop`` over flat params, for
any cost and any linear solve (Levenberg 1944; Marquardt 1963; Hagan & Menhaj 1994).

Its concern is the loop only: trial steps, their acceptance (``damping.py``'s rules), the stopping
tests with the package's status codes (``fb.status.Status``), the per-iteration record
(``LMHistory``) and the optional progress line. It checks nothing: the public functions that build
it (``levenberg_marquardt``, ``newton``, ``least_squares``) check every argument before compiling.
``start_is_finite`` is shared with ``gauss_newton`` and ``hessian_free``, whose loops differ.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..status import Status
from . import solvers as S
from .damping import Damping

MAX_STEPS, GOAL, MIN_GRAD, MU_MAX = Status.MAX_STEPS, Status.GOAL, Status.MIN_GRAD, Status.MU_MAX
MAX_FAIL, NONFINITE_START = Status.MAX_FAIL, Status.NONFINITE_START


class LMHistory(NamedTuple):
    """What each iteration recorded, arrays of shape ``(max_steps + 1,)`` in the params' dtype.

    Entry 0 is the start; entries after the stop are NaN (with a leading run axis under ``vmap``).

    Attributes:
        loss: the reported cost C after the iteration (``levenberg_marquardt``: the batch mean
            ``E / N``; ``least_squares``: ``0.5 ||r||^2 / N`` over the residual's N rows).
        mu: the damping used for the iteration's trial (Gauss-Newton: the step length taken;
            Hessian-free: the damping ``lam``).
        accepted: 1.0 where the trial step was taken, 0.0 where it was rejected.
        grad_norm: ``||dC/dtheta||`` at the params after the iteration.
        val_loss: the validation cost (NaN without validation data).
    """

    loss: jax.Array
    mu: jax.Array
    accepted: jax.Array
    grad_norm: jax.Array
    val_loss: jax.Array


def print_progress(k, C, mu, accepted):
    """Print one line per Levenberg-Marquardt iteration (``progress=True``).

    Args:
        k: the iteration (1-based).
        C: the cost after it.
        mu: the damping its trial used.
        accepted: whether its step was taken.

    Returns:
        None (it prints to stdout).
    """
    print(
        f"LM {int(k):5d}  loss {float(C):.6e}  mu {float(mu):.1e}  {'accepted' if accepted else 'rejected'}",
        flush=True,
    )


def _reporter(progress):
    if progress is True:
        return print_progress
    if progress is False or progress is None or callable(progress):
        return progress or None
    raise TypeError(
        f"progress must be True, False or a callable (iteration, loss, mu, accepted); got {progress!r}"
    )


def _scalars(dtype, *values):
    return tuple(jnp.asarray(v, dtype) for v in values)


def start_is_finite(E0, g0, v0=None):
    """Whether a run may start: the cost, its gradient (and the validation cost, if given) finite.

    Args:
        E0: the cost at the start (a scalar).
        g0: its gradient ``(P,)``.
        v0: the validation cost, or ``None`` without validation data.

    Returns:
        A bool scalar (traceable); where it is False the run stops with ``NONFINITE_START``.
    """
    ok = jnp.isfinite(E0) & jnp.all(jnp.isfinite(g0))
    return ok if v0 is None else ok & jnp.isfinite(v0)


def lm_loop(
    cost,
    linearize,
    solve,
    val_loss,
    damping: Damping,
    max_steps: int,
    n: int,
    has_val: bool,
    scale_d: bool,
    report=None,
):
    """The loop itself over flat params, for any cost and linear solve (traceable).

    Args:
        cost: ``theta (P,) -> E``, the summed cost (a scalar in theta's dtype).
        linearize: ``theta -> lin`` with ``lin.g`` (``dE/dtheta``) and ``lin.d`` (the damping diagonal).
        solve: ``(lin, mu) -> (delta, predicted)``, ``predicted`` the quadratic model's decrease.
        val_loss: ``theta ->`` the validation cost (used when ``has_val``).
        damping: the rule (``damping.Damping``).
        max_steps: the most trial steps.
        n: the divisor of E in the reported cost ``C = E / n`` (and of the gradient norm).
        has_val: whether there are validation data (static).
        scale_d: Marquardt scaling (the damping diagonal is the running maximum of diag G).
        report: ``(k, C, mu, accepted)``, run on the host after every iteration, or ``None``.

    Returns:
        ``run(theta0, mu0, mu_max, goal, min_grad, max_fail) -> (theta, LMHistory, status, iterations)``
        (the scalars in theta0's dtype, ``max_fail`` an ``int32``).
    """

    def running_max_d(lin, d_before):
        return S.with_damping_diag(lin, jnp.maximum(lin.d, d_before)) if scale_d else lin

    def run(theta0, mu0, mu_max, goal, min_grad, max_fail):
        dtype = theta0.dtype
        nan = jnp.full(max_steps + 1, jnp.nan, dtype)

        def record(h, k, E, mu, accepted, g, vl):
            return LMHistory(
                h.loss.at[k].set(E / n),
                h.mu.at[k].set(mu),
                h.accepted.at[k].set(accepted),
                h.grad_norm.at[k].set(jnp.linalg.norm(g) / n),
                h.val_loss.at[k].set(vl),
            )

        def stopping(k, E, g, mu, fails):
            conditions = [
                E / n <= goal,
                jnp.linalg.norm(g) / n <= min_grad,
                mu > mu_max,
                fails >= max_fail,
                k >= max_steps,
            ]
            return jnp.select(
                conditions, [int(c) for c in (GOAL, MIN_GRAD, MU_MAX, MAX_FAIL, MAX_STEPS)], 0
            ).astype(jnp.int32)

        lin0, E0, v0 = linearize(theta0), cost(theta0).astype(dtype), val_loss(theta0).astype(dtype)
        hist = record(LMHistory(nan, nan, nan, nan, nan), 0, E0, mu0, jnp.asarray(1.0, dtype), lin0.g, v0)

        def body(s):
            theta, E, lin, mu, nu, k, _, hist, best, best_theta, fails = s
            delta, predicted = solve(lin, mu)
            trial = theta + delta.astype(dtype)
            E_new = cost(trial).astype(dtype)
            rho = jnp.where(predicted > 0, (E - E_new) / predicted, -jnp.inf).astype(dtype)
            ok = jnp.isfinite(E_new) & jnp.all(jnp.isfinite(delta))
            accepted = damping.accept(ok & (E_new < E), rho)
            mu_next, nu = damping.update(mu, nu, jnp.where(ok, rho, -jnp.inf).astype(dtype), accepted)
            mu_next, nu = mu_next.astype(dtype), nu.astype(dtype)
            theta, E = jnp.where(accepted, trial, theta), jnp.where(accepted, E_new, E)
            lin = jax.lax.cond(accepted, lambda: running_max_d(linearize(theta), lin.d), lambda: lin)
            vl = jnp.asarray(jnp.nan, dtype)
            if has_val:  # static: no validation work in the loop without it
                vl = jax.lax.cond(accepted, lambda: val_loss(theta).astype(dtype), lambda: hist.val_loss[k])
                improved = accepted & (vl < best)
                fails = jnp.where(accepted, jnp.where(improved, 0, fails + 1), fails)
                best_theta, best = jnp.where(improved, theta, best_theta), jnp.where(improved, vl, best)
            hist = record(hist, k + 1, E, mu, accepted.astype(dtype), lin.g, vl)
            if report is not None:
                jax.debug.callback(report, k + 1, E / n, mu, accepted, ordered=True)
            return (
                theta,
                E,
                lin,
                mu_next,
                nu,
                k + 1,
                stopping(k + 1, E, lin.g, mu_next, fails),
                hist,
                best,
                best_theta,
                fails,
            )

        start_ok = start_is_finite(E0, lin0.g, v0 if has_val else None)
        status0 = jnp.where(
            start_ok, stopping(jnp.int32(0), E0, lin0.g, mu0, jnp.int32(0)), jnp.int32(NONFINITE_START)
        ).astype(jnp.int32)
        best0 = v0 if has_val else jnp.asarray(jnp.inf, dtype)
        state = (
            theta0,
            E0,
            lin0,
            mu0,
            jnp.asarray(2.0, dtype),
            jnp.int32(0),
            status0,
            hist,
            best0,
            theta0,
            jnp.int32(0),
        )
        theta, E, _, _, _, k, status, hist, _, best_theta, _ = jax.lax.while_loop(
            lambda s: s[6] == 0, body, state
        )
        theta = jnp.where(status == MAX_FAIL, best_theta, theta) if has_val else theta
        return theta, hist, status, k

    return run
