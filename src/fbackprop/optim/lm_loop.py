"""One Levenberg-Marquardt iteration, for any cost, linear solve and damping rule (Levenberg 1944;
Marquardt 1963; Hagan & Menhaj 1994), run by the package's one loop (``loop.py``).

The iteration: solve ``(G + mu D) delta = -g`` (the solve part), evaluate the trial
``theta + delta``, its gain ratio ``rho = (E - E_trial) / predicted``, ask the damping part whether
to take it and what ``mu`` comes next, and re-linearize only at an accepted point. A non-finite
trial (NaN from a failed Cholesky, an overflowing step) is a rejected step with ``rho = -inf``.
With a line-search part, a rejected trial is followed by a backtracking search along the same
``delta`` (only cost evaluations: no new solve), whose point, if it finds one, is taken; the
damping part still answers the full trial, so ``mu`` grows as after any rejection.
It checks nothing: the public functions that build it (``levenberg_marquardt``, ``newton``,
``least_squares``) check every argument before compiling.
"""

from __future__ import annotations

import jax.numpy as jnp

from .dual import with_damping_diag
from .loop import COMPILED, Control, State, Step, Stop, iterate, start


def backtrack(search, cost, s: State, delta, slope, E_trial, control: Control = COMPILED):
    """After a rejected trial: the first ``theta + alpha delta`` along the same LM step with Armijo's
    decrease ``E(theta + alpha delta) <= E + c alpha g.delta`` (``line_search.Backtracking``).

    Args:
        search: the line-search part (``search(phi, phi0, slope, phi1, while_loop)``).
        cost: ``theta (P,) -> E``.
        s: the state the trial started from (``s.lin.g`` the gradient).
        delta: the rejected step ``(P,)``, finite, a descent direction.
        slope: ``g.delta < 0``, the cost's derivative along it.
        E_trial: ``E(theta + delta)`` (may be non-finite).
        control: how the search loops.

    Returns:
        ``(theta_new, E_new, found)``.
    """
    dtype = s.theta.dtype
    phi = lambda alpha: cost(s.theta + alpha * delta).astype(dtype)
    alpha, E_new, found = search.search(phi, s.E, slope, E_trial, control.while_loop)
    return s.theta + alpha * delta, E_new, found


def lm_step(cost, linearize, solve, damping, scale_d: bool, control: Control = COMPILED, search=None):
    """The trial step of Levenberg-Marquardt as a ``State -> Step`` function (traceable).

    Args:
        cost: ``theta (P,) -> E``, the summed cost (a scalar).
        linearize: ``theta -> lin`` with ``lin.g`` (``dE/dtheta``) and ``lin.d`` (the damping diagonal).
        solve: ``(lin, mu) -> (delta, predicted)``, ``predicted`` the quadratic model's decrease.
        damping: the rule, with ``accept(decreased, rho)`` and ``update(mu, nu, rho, accepted)``.
        scale_d: Marquardt scaling: the damping diagonal is the running maximum of ``diag G``.
        control: ``loop.COMPILED`` (default; ``lax.cond``) or ``loop.HOST`` (Python's ``if``).
        search: ``None`` (default), or a line-search part tried along a rejected trial's step
            (``backtrack``).

    Returns:
        ``step(state) -> Step``.
    """

    def relinearize(theta, d_before):
        lin = linearize(theta)
        return with_damping_diag(lin, jnp.maximum(lin.d, d_before)) if scale_d else lin

    def step(s: State) -> Step:
        dtype = s.theta.dtype
        delta, predicted = solve(s.lin, s.mu)
        delta = delta.astype(dtype)
        trial = s.theta + delta
        E_new = cost(trial).astype(dtype)
        rho = jnp.where(predicted > 0, (s.E - E_new) / predicted, -jnp.inf).astype(dtype)
        finite_step = jnp.all(jnp.isfinite(delta))
        ok = jnp.isfinite(E_new) & finite_step
        accepted = damping.accept(ok & (E_new < s.E), rho)
        mu, nu = damping.update(s.mu, s.nu, jnp.where(ok, rho, -jnp.inf).astype(dtype), accepted)
        taken = accepted  # whether the params move: the trial, or the search's point after a rejection
        if search is not None:
            slope = s.lin.g @ delta
            trial, E_new, taken = control.cond(
                ~accepted & finite_step & (slope < 0),
                lambda: backtrack(search, cost, s, delta, slope, E_new, control),
                lambda: (trial, E_new, jnp.asarray(accepted)),
            )
        theta, E = jnp.where(taken, trial, s.theta), jnp.where(taken, E_new, s.E)
        lin = control.cond(taken, lambda: relinearize(theta, s.lin.d), lambda: s.lin)
        return Step(theta, E, lin, mu.astype(dtype), nu.astype(dtype), taken, s.mu)

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
    search=None,
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
        search: ``None`` (default) or a line-search part for rejected trials (``lm_step``).

    Returns:
        ``run(theta0, mu0, mu_max, goal, min_grad, max_fail) -> State`` (the scalars in theta0's dtype,
        ``max_fail`` an ``int32``): the final state, ``state.mu`` the damping for a next trial.
    """
    step = lm_step(cost, linearize, solve, damping, scale_d, control, search)

    def run(theta0, mu0, mu_max, goal, min_grad, max_fail) -> State:
        dtype = theta0.dtype
        stop = Stop(goal, min_grad, max_steps, mu_max, max_fail)
        v0 = None if val_loss is None else val_loss(theta0).astype(dtype)
        state = start(theta0, cost(theta0).astype(dtype), linearize(theta0), mu0, stop, n, v0=v0)
        return iterate(step, state, stop, n, val_loss, report, control)

    return run
