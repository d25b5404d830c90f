"""One Levenberg-Marquardt iteration, for any cost, linear solve and damping rule (Levenberg 1944;
Marquardt 1963; Hagan & Menhaj 1994), run by the package's one loop (``loop.py``).

The iteration: solve ``(G + mu D) delta = -g`` (the solve part), evaluate the trial
``theta + delta``, its gain ratio ``rho = (E - E_trial) / predicted``, ask the damping part whether
to take it and what ``mu`` comes next, and re-linearize only at an accepted point. A non-finite
trial (NaN from a failed Cholesky, an overflowing step) is a rejected step with ``rho = -inf``.
It checks nothing: the public functions that build it (``levenberg_marquardt``, ``newton``,
``least_squares``) check every argument before compiling.
"""

from __future__ import annotations

import jax.numpy as jnp

from .dual import with_damping_diag
from .loop import COMPILED, Control, State, Step, Stop, iterate, start


def lm_step(cost, linearize, solve, damping, scale_d: bool, control: Control = COMPILED):
    """The trial step of Levenberg-Marquardt as a ``State -> Step`` function (traceable).

    Args:
        cost: ``theta (P,) -> E``, the summed cost (a scalar).
        linearize: ``theta -> lin`` with ``lin.g`` (``dE/dtheta``) and ``lin.d`` (the damping diagonal).
        solve: ``(lin, mu) -> (delta, predicted)``, ``predicted`` the quadratic model's decrease.
        damping: the rule, with ``accept(decreased, rho)`` and ``update(mu, nu, rho, accepted)``.
        scale_d: Marquardt scaling: the damping diagonal is the running maximum of ``diag G``.
        control: ``loop.COMPILED`` (default; ``lax.cond``) or ``loop.HOST`` (Python's ``if``).

    Returns:
        ``step(state) -> Step``.
    """

    def relinearize(theta, d_before):
        lin = linearize(theta)
        return with_damping_diag(lin, jnp.maximum(lin.d, d_before)) if scale_d else lin

    def step(s: State) -> Step:
        dtype = s.theta.dtype
        delta, predicted = solve(s.lin, s.mu)
        trial = s.theta + delta.astype(dtype)
        E_new = cost(trial).astype(dtype)
        rho = jnp.where(predicted > 0, (s.E - E_new) / predicted, -jnp.inf).astype(dtype)
        ok = jnp.isfinite(E_new) & jnp.all(jnp.isfinite(delta))
        accepted = damping.accept(ok & (E_new < s.E), rho)
        mu, nu = damping.update(s.mu, s.nu, jnp.where(ok, rho, -jnp.inf).astype(dtype), accepted)
        theta, E = jnp.where(accepted, trial, s.theta), jnp.where(accepted, E_new, s.E)
        lin = control.cond(accepted, lambda: relinearize(theta, s.lin.d), lambda: s.lin)
        return Step(theta, E, lin, mu.astype(dtype), nu.astype(dtype), accepted, s.mu)

    return step


def lm_run(
    cost,
    linearize,
    solve,
    damping,
    scale_d: bool,
    n,
    max_steps: int,
    val_loss=None,
    report=None,
    control: Control = COMPILED,
):
    """Levenberg-Marquardt from ``theta0`` to a stopping test (traceable).

    Args:
        cost: ``theta (P,) -> E``, the summed cost.
        linearize: ``theta -> lin`` (with ``g`` and ``d``).
        solve: ``(lin, mu) -> (delta, predicted)``.
        damping: the damping rule.
        scale_d: Marquardt scaling (the running maximum of ``diag G``).
        n: the divisor of E in the reported cost ``C = E / n`` (and of the gradient norm).
        max_steps: the most trial steps (a Python int).
        val_loss: ``theta ->`` the validation cost, or ``None`` without validation data.
        report: ``(k, C, mu, accepted)`` run on the host after every iteration, or ``None``.
        control: ``loop.COMPILED`` (default; one traceable program) or ``loop.HOST`` (the same step
            and loop with Python's ``while`` and ``if``, for a cost and linearization on the host).

    Returns:
        ``run(theta0, mu0, mu_max, goal, min_grad, max_fail) -> State`` (the scalars in theta0's dtype,
        ``max_fail`` an ``int32``): the final state, ``state.mu`` the damping for a next trial.
    """
    step = lm_step(cost, linearize, solve, damping, scale_d, control)

    def run(theta0, mu0, mu_max, goal, min_grad, max_fail) -> State:
        dtype = theta0.dtype
        stop = Stop(goal, min_grad, max_steps, mu_max, max_fail)
        v0 = None if val_loss is None else val_loss(theta0).astype(dtype)
        state = start(theta0, cost(theta0).astype(dtype), linearize(theta0), mu0, stop, n, v0=v0)
        return iterate(step, state, stop, n, val_loss, report, control)

    return run
